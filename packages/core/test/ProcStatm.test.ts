import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { type ProcStatm, parseProcStatm, parseProcStatmText } from "../src/ProcStatm.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<ProcStatm, ParseError>): ProcStatm => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<ProcStatm, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail("expected a ParseError")
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/statm")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

describe("parseProcStatm (size and resident, in pages)", () => {
  it("token 0 is VMS pages and token 1 is RSS pages", () => {
    assert.deepStrictEqual(right(parseProcStatmText("1000 200 30 4 0 5 0\n")), { vmsPages: 1000n, rssPages: 200n })
  })

  it("a real cloud-hypervisor line", () => {
    assert.deepStrictEqual(right(parseProcStatmText("279357 13468 2611 822 0 77330 0\n")), {
      vmsPages: 279357n,
      rssPages: 13468n
    })
  })

  it("exactly 2 tokens are enough", () => {
    assert.deepStrictEqual(right(parseProcStatmText("7 3")), { vmsPages: 7n, rssPages: 3n })
  })

  it("leading and repeated whitespace is skipped", () => {
    assert.deepStrictEqual(right(parseProcStatmText(" \t7 \n 3\n")), { vmsPages: 7n, rssPages: 3n })
  })

  it("tokens after the second are not validated", () => {
    assert.deepStrictEqual(right(parseProcStatmText("7 3 x y")), { vmsPages: 7n, rssPages: 3n })
  })

  it.each(["", "\n", "   ", "1000", "1000\n"])("fewer than 2 tokens (%j) is a ParseError", (text) => {
    left(parseProcStatmText(text))
  })

  it.each([
    ["abc 200", "size"],
    ["-1 200", "size"],
    ["1000 x", "resident"],
    ["1000 -5", "resident"],
    ["1000 2.5", "resident"],
    ["1000 18446744073709551616", "resident"]
  ])("%j is a ParseError naming the bad field", (text, field) => {
    assert.include(left(parseProcStatmText(text)).reason, field)
  })

  it("2^64 − 1 and values above 2^53 are exact", () => {
    assert.deepStrictEqual(right(parseProcStatmText("18446744073709551615 9007199254740993 0")), {
      vmsPages: U64_MAX,
      rssPages: 9007199254740993n
    })
  })

  it("the length argument is honoured", () => {
    const data = bytes("1000 200 0 0 0 0 0\n")
    assert.deepStrictEqual(right(parseProcStatm(data, 8)), { vmsPages: 1000n, rssPages: 200n })
    assert.deepStrictEqual(right(parseProcStatm(data, 7)), { vmsPages: 1000n, rssPages: 20n })
    left(parseProcStatm(data, 4))
    left(parseProcStatm(data, 0))
  })

  it("bytes past length are ignored, garbage included", () => {
    const data = bytes("1 2garbage")
    assert.deepStrictEqual(right(parseProcStatm(data, 3)), { vmsPages: 1n, rssPages: 2n })
    left(parseProcStatm(data))
  })

  describe("text path = byte path of the Latin-1 bytes", () => {
    it.each([
      ["a fullwidth digit", "1000 2\uff1100 0\n", "U+FF11"],
      ["U+3000 as a separator", "1000\u3000200 0\n", "U+3000"],
      ["U+0131 (low byte '1')", "1000 2\u01310 0\n", "U+0131"],
      ["an Arabic-Indic digit", "\u0661000 200\n", "U+0661"]
    ])("%s is a ParseError, never a value", (_, text, code) => {
      assert.include(left(parseProcStatmText(text)).reason, code)
    })

    it("a no-break space (U+00A0, a Latin-1 byte above 0x20) is not a separator", () => {
      left(parseProcStatmText("1000\u00a0200 0\n"))
    })

    it.each([-1, 1.5, Number.NaN, 1000])("length %d outside the buffer is a ParseError, not a throw", (length) => {
      assert.include(left(parseProcStatm(bytes("1000 200 0\n"), length)).reason, "outside the buffer")
    })
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseProcStatmText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 200 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseProcStatm(data)))
      assert.isTrue(isParseResult(parseProcStatm(data, n % (data.length + 1))))
    })

    const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
    const space = fc.string({ unit: fc.constantFrom(" ", "\t", "\n"), minLength: 1, maxLength: 3 })

    it.prop(
      "any two u64 values round-trip",
      [u64, u64, space, fc.array(u64, { maxLength: 5 })],
      ([vms, rss, sep, rest]) => {
        const text = [vms, rss, ...rest].join(sep)
        assert.deepStrictEqual(right(parseProcStatmText(`${text}\n`)), { vmsPages: vms, rssPages: rss })
      }
    )
  })
})
