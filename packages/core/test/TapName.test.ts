import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import * as fc from "effect/FastCheck"
import * as Collector from "../src/Collector.js"
import { buildInstanceInfo } from "../src/Instance.js"
import * as InstanceSource from "../src/InstanceSource.js"
import { statLine } from "../src/internal/statLine.js"
import * as ProcReader from "../src/ProcReader.js"
import { TAP_PREFIX, tapNameFor, validateTapName } from "../src/TapName.js"
import * as TapReader from "../src/TapReader.js"

/** Go's GenerateTAPName on the id's UTF-8 bytes, when those 8 bytes are ASCII (else undefined). */
const goTapName = (id: string): string | undefined => {
  const head = Buffer.from(id, "utf8").subarray(0, 8)
  if (head.some((byte) => byte > 0x7f)) return undefined
  return `hype-${head.toString("latin1").replace(/[A-Z]/g, (c) => c.toLowerCase())}`
}

const rejection = (name: string) => {
  const result = validateTapName(name)
  if (Either.isRight(result)) return assert.fail(`${JSON.stringify(name)} was accepted`)
  assert.strictEqual(result.left._tag, "InvalidTapName")
  assert.strictEqual(result.left.name, name)
  return result.left
}

describe("tapNameFor (hype- + the id's first 8 characters, lower-cased)", () => {
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

  it.each([
    ["", "hype-"],
    ["a", "hype-a"],
    ["Q", "hype-q"],
    ["ABCDEFG", "hype-abcdefg"],
    ["web-1", "hype-web-1"],
    ["ABCDEFGHÉ", "hype-abcdefgh"], // the é is byte 9: Go never sees it
    ["abcd1234日本", "hype-abcd1234"]
  ])("ASCII in the first 8 bytes: %j → %j, as Go", (id, expected) => {
    assert.strictEqual(tapNameFor(id), expected)
    assert.strictEqual(tapNameFor(id), goTapName(id))
    assert.deepStrictEqual(validateTapName(expected), Either.right(expected))
  })

  describe("ids not ASCII in their first 8 bytes get a name validateTapName rejects, saying why", () => {
    it.each([
      ["é", "hype-é"],
      ["É", "hype-É"],
      ["abcdéfghij", "hype-abcdéfg"], // é is bytes 5–6: 8 bytes end after g, as in Go
      ["abcdefgé", "hype-abcdefg\ufffd"], // é is bytes 8–9: cut in two
      ["ABCDEFGÉ", "hype-abcdefg\ufffd"],
      ["abcdef日本", "hype-abcdef\ufffd"], // 日 is bytes 7–9
      ["abcde日x", "hype-abcde日"], // 日 is bytes 6–8: whole
      ["a日abcdefgh", "hype-a日abcd"], // 1 + 3 + 4 bytes
      ["😀", "hype-😀"],
      ["😀😀😀", "hype-😀😀"], // 4 + 4 bytes
      ["abcde😀", "hype-abcde\ufffd"], // the emoji is bytes 6–9
      ["\ud800abc", "hype-\ud800abc"] // a lone surrogate (3 bytes once encoded)
    ])("%j → %j", (id, expected) => {
      const name = tapNameFor(id)
      assert.strictEqual(name, expected)
      assert.isUndefined(goTapName(id))
      const error = rejection(name)
      assert.include(error.reason, "not ASCII")
      assert.include(error.reason, "first 8 bytes")
      assert.include(error.message, "invalid TAP name")
    })

    it.prop(
      "any id: Go's name when its first 8 bytes are ASCII, else a rejected name",
      [fc.oneof(fc.string({ unit: "binary", maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 6 }))],
      ([id]) => {
        const expected = goTapName(id)
        const name = tapNameFor(id)
        if (expected !== undefined) {
          assert.strictEqual(name, expected)
          return
        }
        assert.include(rejection(name).reason, "first 8 bytes")
      }
    )

    it.effect("through buildInstanceInfo and the Collector: the VM's network is unavailable, nothing throws", () => {
      const procs = ProcReader.makeMemory()
      procs.set(10, { stat: statLine({ pid: 10, utime: 100, stime: 50 }), statm: "1000 200\n" })
      const taps = TapReader.makeMemory()
      taps.set("hype-abcdefg", { rxBytes: "1", txBytes: "2" }) // what an 8-character cut would have read
      const id = "abcdefgé-0000-4000"
      const source = InstanceSource.makeMemory([buildInstanceInfo(id, "vm", 10, true, 2, 1 << 30)])
      const layer = Collector.layer({ groups: new Set() }).pipe(
        // the seed's files only
        Layer.provide(
          Layer.mergeAll(ProcReader.layerMemory(procs), TapReader.layerMemory(taps), InstanceSource.layerMemory(source))
        )
      )
      return Effect.gen(function* () {
        const { stats } = yield* (yield* Collector.Collector).collectAll
        assert.strictEqual(stats.length, 1)
        const [vm] = stats
        assert.strictEqual(vm.instanceId, id)
        assert.strictEqual(vm.cpuUsec, 1_500_000n)
        assert.isNull(vm.netRxBytes)
        assert.isNull(vm.netTxBytes)
        assert.deepStrictEqual(
          vm.unavailable.map((u) => [u.source, u.reason]),
          [["tap", "invalid_tap_name"]]
        )
        assert.include(vm.unavailable[0].message, "first 8 bytes")
        assert.strictEqual(taps.reads.size, 0)
      }).pipe(Effect.provide(layer))
    })
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
