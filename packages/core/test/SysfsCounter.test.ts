import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { parseSysfsCounter, parseSysfsCounterText } from "../src/SysfsCounter.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<bigint, ParseError>): bigint => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<bigint, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${result.right}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

describe("parseSysfsCounter", () => {
  it.each([
    ["0\n", 0n],
    ["123456\n", 123456n],
    ["123456", 123456n],
    ["  42 \t\n", 42n],
    ["\n7\n\n", 7n],
    ["18446744073709551615\n", U64_MAX],
    ["9007199254740993\n", 9007199254740993n],
    ["000012", 12n]
  ] as const)("%j → %s", (text, expected) => {
    assert.strictEqual(right(parseSysfsCounterText(text)), expected)
  })

  it.each(["", "\n", " \t \n"])("empty file %j is a ParseError", (text) => {
    assert.strictEqual(left(parseSysfsCounterText(text)).reason, "empty file")
  })

  it.each(["-1\n", "abc\n", "12 34\n", "0x10", "1.0", "1e3", "+5", "18446744073709551616\n", "12\u00003"])(
    "%j is a ParseError",
    (text) => {
      assert.include(left(parseSysfsCounterText(text)).reason, "not a number")
    }
  )

  it("names the file in the error", () => {
    assert.strictEqual(left(parseSysfsCounterText("x", "tx_bytes")).file, "tx_bytes")
    assert.strictEqual(left(parseSysfsCounter(bytes(""), 0, "rx_bytes")).file, "rx_bytes")
    assert.strictEqual(left(parseSysfsCounterText("x")).file, "sysfs counter")
  })

  it("the length argument is honoured", () => {
    const data = bytes("1234\ngarbage")
    assert.strictEqual(right(parseSysfsCounter(data, 5)), 1234n)
    assert.strictEqual(right(parseSysfsCounter(data, 2)), 12n)
    left(parseSysfsCounter(data))
    left(parseSysfsCounter(data, 0))
  })

  describe("text path = byte path of the Latin-1 bytes", () => {
    it.each([
      ["26792\uff116\n", "U+FF11"],
      ["\u3000 42\n", "U+3000"],
      ["42\u3000\n", "U+3000"],
      ["1\u01312\n", "U+0131"],
      ["\u{1d7cf}\n", "U+1D7CF"]
    ])("%j is a ParseError naming %s", (text, code) => {
      const error = left(parseSysfsCounterText(text, "rx_bytes"))
      assert.strictEqual(error.file, "rx_bytes")
      assert.include(error.reason, code)
    })

    it.each([
      ["one past the end", 5],
      ["far past the end", 1000],
      ["negative", -1],
      ["fractional", 2.5],
      ["NaN", Number.NaN],
      ["infinite", Number.POSITIVE_INFINITY]
    ])("an out-of-contract length (%s) is a ParseError, not a RangeError", (_, length) => {
      const error = left(parseSysfsCounter(bytes("1234"), length, "tx_bytes"))
      assert.strictEqual(error.file, "tx_bytes")
      assert.include(error.reason, "outside the buffer")
    })

    it("a buffer of 2 000 digits is out of range, not parsed", () => {
      assert.include(left(parseSysfsCounterText("9".repeat(2000))).reason, "not a number")
      assert.strictEqual(right(parseSysfsCounterText(`${"0".repeat(2000)}42`)), 42n)
    })
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseSysfsCounterText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 64 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseSysfsCounter(data)))
      assert.isTrue(isParseResult(parseSysfsCounter(data, n % (data.length + 1))))
    })

    const space = fc.string({ unit: fc.constantFrom(" ", "\t", "\n", "\r"), maxLength: 3 })

    it.prop(
      "every u64 with surrounding whitespace is exact",
      [fc.bigInt({ min: 0n, max: U64_MAX }), space, space],
      ([value, before, after]) => {
        assert.strictEqual(right(parseSysfsCounterText(`${before}${value}${after}`)), value)
      }
    )

    it.prop("every value above 2^64 − 1 is rejected", [fc.bigInt({ min: U64_MAX + 1n, max: 2n ** 80n })], ([value]) => {
      left(parseSysfsCounterText(`${value}\n`))
    })

    it.prop("every negative value is rejected", [fc.bigInt({ min: -(2n ** 64n), max: -1n })], ([value]) => {
      left(parseSysfsCounterText(`${value}\n`))
    })
  })
})
