import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { parseSchedstat, parseSchedstatText, type Schedstat } from "../src/Schedstat.js"
import { nodeTasks, qemuDebugThreadsTasks } from "./fixtures/proc.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<Schedstat, ParseError>): Schedstat => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<Schedstat, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${JSON.stringify(result.right, String)}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/task/<tid>/schedstat")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

describe("parseSchedstat (run ns, wait ns, timeslices)", () => {
  it("the vCPU threads of a real QEMU 7.2 (CPU 0/TCG … CPU 2/TCG)", () => {
    const vcpus = qemuDebugThreadsTasks.filter((task) => task.comm.startsWith("CPU "))
    assert.deepStrictEqual(
      vcpus.map((task) => right(parseSchedstatText(task.schedstat))),
      [
        { runNs: 793558n, waitNs: 916630n, timeslices: 8n },
        { runNs: 742280n, waitNs: 1351174n, timeslices: 6n },
        { runNs: 802643n, waitNs: 1876874n, timeslices: 6n }
      ]
    )
  })

  it("every thread of a real node process", () => {
    const parsed = nodeTasks.map((task) => right(parseSchedstat(bytes(task.schedstat))))
    assert.strictEqual(parsed.length, 12)
    assert.deepStrictEqual(parsed[0], { runNs: 154984243n, waitNs: 522312n, timeslices: 22n })
    assert.deepStrictEqual(parsed[1], { runNs: 577617n, waitNs: 0n, timeslices: 1n })
  })

  it("a kernel without schedstats prints 0 0 0", () => {
    assert.deepStrictEqual(right(parseSchedstatText("0 0 0\n")), { runNs: 0n, waitNs: 0n, timeslices: 0n })
  })

  it("tabs, several spaces, no newline; fields after the third are not validated", () => {
    assert.deepStrictEqual(right(parseSchedstatText(" 1\t\t2  3")), { runNs: 1n, waitNs: 2n, timeslices: 3n })
    assert.deepStrictEqual(right(parseSchedstatText("1 2 3 x y\n")), { runNs: 1n, waitNs: 2n, timeslices: 3n })
  })

  it("2^64 − 1 and values above 2^53 are exact; 2^64 is a ParseError", () => {
    assert.deepStrictEqual(right(parseSchedstatText(`${U64_MAX} 9007199254740993 ${U64_MAX}\n`)), {
      runNs: U64_MAX,
      waitNs: 9007199254740993n,
      timeslices: U64_MAX
    })
    assert.include(left(parseSchedstatText("1 18446744073709551616 3\n")).reason, "wait time")
  })

  it.each(["", "\n", "1\n", "1 2\n", "1 2 "])("fewer than 3 fields (%j) is a ParseError", (text) => {
    assert.include(left(parseSchedstatText(text)).reason, "not enough fields")
  })

  it.each([
    ["x 2 3", "run time"],
    ["-1 2 3", "run time"],
    ["1 2.5 3", "wait time"],
    ["1 2 0x3", "timeslices"],
    ["1 2 3\u00b2", "timeslices"]
  ])("%j is a ParseError naming the field", (text, field) => {
    assert.include(left(parseSchedstatText(text)).reason, field)
  })

  it("the length argument is honoured: a cut file is a ParseError or the digits before the cut", () => {
    const data = bytes("154984243 522312 22\n")
    assert.deepStrictEqual(right(parseSchedstat(data, 19)), { runNs: 154984243n, waitNs: 522312n, timeslices: 22n })
    assert.deepStrictEqual(right(parseSchedstat(data, 18)), { runNs: 154984243n, waitNs: 522312n, timeslices: 2n })
    left(parseSchedstat(data, 17))
    left(parseSchedstat(data, 0))
  })

  it.each([-1, 0.5, Number.NaN, 100])("length %d outside the buffer is a ParseError, not a throw", (length) => {
    assert.include(left(parseSchedstat(bytes("1 2 3\n"), length)).reason, "outside the buffer")
  })

  it("non-Latin-1 text is a ParseError", () => {
    assert.include(left(parseSchedstatText("1\u30002 3\n")).reason, "U+3000")
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseSchedstatText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 80 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseSchedstat(data)))
      assert.isTrue(isParseResult(parseSchedstat(data, n % (data.length + 1))))
    })

    const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
    const space = fc.string({ unit: fc.constantFrom(" ", "\t", "\n"), minLength: 1, maxLength: 3 })
    it.prop("any three u64 values round-trip", [u64, u64, u64, space], ([runNs, waitNs, timeslices, sep]) => {
      assert.deepStrictEqual(right(parseSchedstatText(`${runNs}${sep}${waitNs}${sep}${timeslices}\n`)), {
        runNs,
        waitNs,
        timeslices
      })
    })
  })
})
