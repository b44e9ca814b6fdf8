import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import { TAP_PREFIX, tapNameFor, validateTapName } from "../src/TapName.js"

describe("tapNameFor (parity 7)", () => {
  it.each([
    ["abcd1234", "hype-abcd1234"],
    ["abcd1234efgh5678", "hype-abcd1234"],
    ["ABCD1234", "hype-abcd1234"],
    ["AbCd1234XYZ", "hype-abcd1234"],
    ["qilviffnqzck2jrim1x6s2b1", "hype-qilviffn"],
    ["abc", "hype-abc"]
  ])("%s → %s", (id, expected) => {
    assert.strictEqual(tapNameFor(id), expected)
  })

  it("the prefix is hype-", () => {
    assert.strictEqual(TAP_PREFIX, "hype-")
  })

  it.prop(
    "names from alphanumeric ids are at most 15 chars and valid",
    [fc.stringMatching(/^[a-zA-Z0-9]{1,40}$/)],
    ([id]) => {
      const name = tapNameFor(id)
      assert.isAtMost(name.length, 15)
      assert.isTrue(name.startsWith("hype-"))
      assert.strictEqual(name, `hype-${id.slice(0, 8).toLowerCase()}`)
      assert.isTrue(Either.isRight(validateTapName(name)))
    }
  )
})

describe("validateTapName", () => {
  it.each(["hype-abcd1234", "eth0", "a", "tap_0.1-x", "123456789012345", "..."])("%j is valid", (name) => {
    assert.deepStrictEqual(validateTapName(name), Either.right(name))
  })

  it.each([
    ["empty", ""],
    ["16 chars", "1234567890123456"],
    ["dot", "."],
    ["dot dot", ".."],
    ["slash", "hype-x/y"],
    ["leading slash", "/etc"],
    ["colon", "hype:1"],
    ["space", "hype 1"],
    ["NUL", "hype\u00001"],
    ["tab", "hype\t1"],
    ["newline", "hype\n"],
    ["DEL", "hype\u007f"],
    ["unicode", "hype-é"],
    ["unicode lookalike", "hуpe-1"],
    ["emoji", "tap😀"],
    ["path traversal", "../../etc"]
  ])("%s (%j) is an InvalidTapName", (_, name) => {
    const result = validateTapName(name)
    if (Either.isRight(result)) return assert.fail(`${JSON.stringify(name)} was accepted`)
    assert.strictEqual(result.left._tag, "InvalidTapName")
    assert.strictEqual(result.left.name, name)
    assert.isAbove(result.left.reason.length, 0)
  })

  it.prop(
    "accepted names are 1–15 printable ASCII chars without '/', ':' or space, and not . or ..",
    [fc.string({ unit: "binary", maxLength: 20 })],
    ([name]) => {
      const result = validateTapName(name)
      const expected =
        name.length >= 1 &&
        name.length <= 15 &&
        name !== "." &&
        name !== ".." &&
        /^[\x21-\x7e]+$/.test(name) &&
        !name.includes("/") &&
        !name.includes(":")
      assert.strictEqual(Either.isRight(result), expected)
    }
  )
})
