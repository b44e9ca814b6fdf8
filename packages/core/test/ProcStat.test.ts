import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { statLine } from "../src/internal/statLine.js"
import { isNotRunning, type ProcStat, parseProcStat, parseProcStatText } from "../src/ProcStat.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<ProcStat, ParseError>): ProcStat => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<ProcStat, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${JSON.stringify(String(result.right))}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/stat")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

/**
 * A stat line with `count` fields after the comm in which every field differs: field n (1-based, n ≥ 4)
 * holds 1000 + n, so a parser that reads field 13 or 16 instead of 14 gives a different value.
 */
const distinctLine = (comm: string, count = 50, state = "S"): string => {
  const fields: Array<string> = [state]
  for (let n = 4; n < 3 + count; n++) fields.push(String(1000 + n))
  return `4242 (${comm}) ${fields.join(" ")}\n`
}

describe("parseProcStat", () => {
  describe("fields (numbered as in proc(5))", () => {
    it("majflt is field 12, utime field 14, stime field 15, starttime field 22, guest_time field 43", () => {
      const stat = right(parseProcStatText(distinctLine("qemu-system-x86")))
      assert.strictEqual(stat.comm, "qemu-system-x86")
      assert.strictEqual(stat.state, "S")
      assert.strictEqual(stat.majorFaults, 1012n)
      assert.strictEqual(stat.utimeTicks, 1014n)
      assert.strictEqual(stat.stimeTicks, 1015n)
      assert.strictEqual(stat.startTimeTicks, 1022n)
      assert.strictEqual(stat.guestTimeTicks, 1043n)
    })

    it("reads a real-looking line rendered by statLine", () => {
      const stat = right(
        parseProcStatText(
          statLine({ pid: 77, state: "R", majorFaults: 31, utime: 123, stime: 45, startTime: 6789, guestTime: 12 })
        )
      )
      assert.deepStrictEqual(stat, {
        comm: "qemu-system-x86",
        state: "R",
        majorFaults: 31n,
        utimeTicks: 123n,
        stimeTicks: 45n,
        startTimeTicks: 6789n,
        guestTimeTicks: 12n
      })
    })

    it("reads a line of a real cloud-hypervisor process", () => {
      const line =
        "1234 (cloud-hypervisor) S 1 1234 1234 0 -1 4194560 5188 0 0 0 371 95 0 0 20 0 12 0 2360587 " +
        "1144246272 13468 18446744073709551615 94183004979200 94183008392221 140724462106720 0 0 0 0 4096 " +
        "17642 0 0 0 17 3 0 0 0 290 0 94183008911888 94183009114560 94183022432256 140724462111233 " +
        "140724462111389 140724462111389 140724462112741 0\n"
      const stat = right(parseProcStatText(line))
      assert.strictEqual(stat.comm, "cloud-hypervisor")
      assert.strictEqual(stat.majorFaults, 0n)
      assert.strictEqual(stat.utimeTicks, 371n)
      assert.strictEqual(stat.stimeTicks, 95n)
      assert.strictEqual(stat.startTimeTicks, 2360587n)
      assert.strictEqual(stat.guestTimeTicks, 290n)
    })

    it("exactly 13 fields after the comm succeed (majflt among them), without starttime or guest_time", () => {
      const stat = right(parseProcStatText(distinctLine("vmm", 13)))
      assert.strictEqual(stat.majorFaults, 1012n)
      assert.strictEqual(stat.utimeTicks, 1014n)
      assert.strictEqual(stat.stimeTicks, 1015n)
      assert.isNull(stat.startTimeTicks)
      assert.isNull(stat.guestTimeTicks)
    })

    it("20 fields keep starttime but not guest_time", () => {
      const stat = right(parseProcStatText(distinctLine("vmm", 20)))
      assert.strictEqual(stat.startTimeTicks, 1022n)
      assert.isNull(stat.guestTimeTicks)
    })

    it("12 fields after the comm are a ParseError", () => {
      left(parseProcStatText(distinctLine("vmm", 12)))
    })

    it("only the state after the comm is a ParseError", () => {
      left(parseProcStatText("1 (x) S\n"))
    })

    it("accepts tabs and several spaces between fields", () => {
      const line = distinctLine("vmm").replace(/ /g, " \t ")
      const stat = right(parseProcStatText(line))
      assert.strictEqual(stat.utimeTicks, 1014n)
      assert.strictEqual(stat.stimeTicks, 1015n)
    })
  })

  describe("comm (split after the last ')')", () => {
    it.each(["a) (b c", "vm) (x y", "(", ")", ") S 1 2 3 4 5 6 7 8 9 10 11 12 13", "", "  ", "x)) ((y"])(
      "comm %j",
      (comm) => {
        const stat = right(parseProcStatText(distinctLine(comm)))
        assert.strictEqual(stat.comm, comm)
        assert.strictEqual(stat.state, "S")
        assert.strictEqual(stat.utimeTicks, 1014n)
        assert.strictEqual(stat.stimeTicks, 1015n)
        assert.strictEqual(stat.startTimeTicks, 1022n)
      }
    )

    it("decodes comm bytes as Latin-1", () => {
      const line = bytes(distinctLine("x"))
      const withHighByte = new Uint8Array([...line.subarray(0, 6), 0xe9, ...line.subarray(7)])
      assert.strictEqual(right(parseProcStat(withHighByte)).comm, "\u00e9")
    })
  })

  describe("state", () => {
    it.each(["R", "S", "D", "T", "I"])("%s is running", (state) => {
      assert.isFalse(isNotRunning(right(parseProcStatText(distinctLine("vmm", 50, state)))))
    })

    it.each(["Z", "X"])("%s is not running", (state) => {
      assert.isTrue(isNotRunning(right(parseProcStatText(distinctLine("vmm", 50, state)))))
    })
  })

  describe("malformed input", () => {
    it("an empty file is a ParseError", () => {
      left(parseProcStatText(""))
      left(parseProcStat(new Uint8Array(0)))
    })

    it("a line without a closing paren is a ParseError", () => {
      left(parseProcStatText(distinctLine("vmm").replace(")", "")))
    })

    it("a line without an opening paren is a ParseError", () => {
      const error = left(parseProcStatText(distinctLine("vmm").replace("(", "")))
      assert.include(error.reason, "opening paren")
    })

    it("whitespace only is a ParseError", () => {
      left(parseProcStatText(" \n"))
    })

    it.each([
      ["utime", 14, "12a"],
      ["utime", 14, "-1"],
      ["utime", 14, "+1"],
      ["utime", 14, "1.5"],
      ["stime", 15, "x"],
      ["stime", 15, "1e3"],
      ["starttime", 22, "abc"],
      ["guest_time", 43, "-"],
      ["majflt", 12, "1x"],
      ["majflt", 12, "-3"]
    ] as const)("non-numeric %s (field %i = %j) is a ParseError", (name, field, token) => {
      const tokens = distinctLine("vmm").trimEnd().split(" ")
      // tokens: pid, (comm), state, field 4, ...: field n is token n - 1
      tokens[field - 1] = token
      const error = left(parseProcStatText(`${tokens.join(" ")}\n`))
      assert.include(error.reason, name)
    })

    it("negative values in signed fields that are not read are accepted", () => {
      const tokens = distinctLine("vmm").trimEnd().split(" ")
      tokens[17] = "-100" // field 18, priority
      tokens[18] = "-20" // field 19, nice
      const stat = right(parseProcStatText(`${tokens.join(" ")}\n`))
      assert.strictEqual(stat.utimeTicks, 1014n)
      assert.strictEqual(stat.stimeTicks, 1015n)
    })
  })

  describe("big values are exact bigints", () => {
    it("2^64 − 1 in majflt, utime, stime, starttime and guest_time", () => {
      const line = statLine({
        pid: 1,
        majorFaults: U64_MAX,
        utime: U64_MAX,
        stime: U64_MAX - 1n,
        startTime: U64_MAX - 2n,
        guestTime: U64_MAX
      })
      const stat = right(parseProcStatText(line))
      assert.strictEqual(stat.majorFaults, 18446744073709551615n)
      assert.strictEqual(stat.utimeTicks, 18446744073709551615n)
      assert.strictEqual(stat.stimeTicks, 18446744073709551614n)
      assert.strictEqual(stat.startTimeTicks, 18446744073709551613n)
      assert.strictEqual(stat.guestTimeTicks, 18446744073709551615n)
    })

    it("values above 2^53 are not rounded", () => {
      const stat = right(parseProcStatText(statLine({ pid: 1, utime: 9007199254740993n, stime: 9007199254740995n })))
      assert.strictEqual(stat.utimeTicks, 9007199254740993n)
      assert.strictEqual(stat.stimeTicks, 9007199254740995n)
    })

    it("15 and 16 digit values are exact (both decimal paths)", () => {
      const stat = right(parseProcStatText(statLine({ pid: 1, utime: 999999999999999n, stime: 1000000000000000n })))
      assert.strictEqual(stat.utimeTicks, 999999999999999n)
      assert.strictEqual(stat.stimeTicks, 1000000000000000n)
    })

    it("leading zeros are accepted", () => {
      const tokens = distinctLine("vmm").trimEnd().split(" ")
      tokens[13] = "007" // field 14
      tokens[14] = "0000000000000000042" // field 15, 19 digits
      const stat = right(parseProcStatText(tokens.join(" ")))
      assert.strictEqual(stat.utimeTicks, 7n)
      assert.strictEqual(stat.stimeTicks, 42n)
    })

    it("2^64 is rejected", () => {
      left(parseProcStatText(statLine({ pid: 1, utime: 18446744073709551616n })))
      left(parseProcStatText(statLine({ pid: 1, stime: 18446744073709551616n })))
      left(parseProcStatText(statLine({ pid: 1, startTime: 18446744073709551616n })))
      left(parseProcStatText(statLine({ pid: 1, guestTime: 99999999999999999999n })))
      left(parseProcStatText(statLine({ pid: 1, majorFaults: 18446744073709551616n })))
    })
  })

  describe("length argument", () => {
    it("bytes past length are ignored", () => {
      const line = bytes(distinctLine("vmm"))
      const buffer = new Uint8Array(line.length + 64)
      buffer.set(line)
      buffer.set(bytes(" 999 (junk) 7 7 7 ) 8"), line.length)
      const stat = right(parseProcStat(buffer, line.length))
      assert.strictEqual(stat.comm, "vmm")
      assert.strictEqual(stat.utimeTicks, 1014n)
      assert.strictEqual(stat.guestTimeTicks, 1043n)
    })

    it("a length that cuts the line before stime is a ParseError", () => {
      const text = distinctLine("vmm")
      const cut = text.indexOf(" 1015 ")
      left(parseProcStat(bytes(text), cut))
    })

    it("a length that cuts inside stime parses the digits before the cut", () => {
      const text = distinctLine("vmm", 13)
      const cut = text.indexOf(" 1015") + 3 // " 10"
      const stat = right(parseProcStat(bytes(text), cut))
      assert.strictEqual(stat.stimeTicks, 10n)
    })

    it("length 0 is an empty file even if the buffer has data", () => {
      left(parseProcStat(bytes(distinctLine("vmm")), 0))
    })

    it("a length that ends before the closing paren is a ParseError", () => {
      left(parseProcStat(bytes(distinctLine("vmm")), 7))
    })
  })

  describe("text path = byte path of the Latin-1 bytes", () => {
    /** The line of `distinctLine("vmm")` with field n (1-based) replaced. */
    const withField = (field: number, token: string) => {
      const tokens = distinctLine("vmm").trimEnd().split(" ")
      tokens[field - 1] = token
      return `${tokens.join(" ")}\n`
    }

    it("a fullwidth digit in starttime (26792１6) is a ParseError, not 26792 or a shifted field", () => {
      const error = left(parseProcStatText(withField(22, "26792\uff116")))
      assert.include(error.reason, "not Latin-1")
      assert.include(error.reason, "U+FF11")
    })

    it("U+3000 (ideographic space) is not a field separator", () => {
      const line = distinctLine("vmm").replace(" 1014 ", " 1014\u30001015 ")
      assert.include(left(parseProcStatText(line)).reason, "U+3000")
    })

    it.each([
      ["U+0131, low byte '1'", "\u0131"],
      ["U+0120, low byte ' '", "\u0120"],
      ["U+0129, low byte ')'", "\u0129"],
      ["an emoji", "\u{1f600}"]
    ])("%s in utime is a ParseError", (_, char) => {
      left(parseProcStatText(withField(14, `10${char}`)))
    })

    it("a non-Latin-1 comm is a ParseError too (no byte decodes to it)", () => {
      assert.include(left(parseProcStatText(distinctLine("qemu-\u4e2d"))).reason, "U+4E2D")
    })

    it("Latin-1 characters are the bytes: comm, and \\xb2 is not a digit", () => {
      const line = distinctLine("caf\u00e9\u00ff")
      assert.deepStrictEqual(parseProcStatText(line), parseProcStat(Uint8Array.from(Buffer.from(line, "latin1"))))
      assert.strictEqual(right(parseProcStatText(line)).comm, "caf\u00e9\u00ff")
      left(parseProcStatText(withField(14, "1\u00b2")))
    })

    it.each([-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY])("length %d is a ParseError, not a throw", (length) => {
      assert.include(left(parseProcStat(bytes(distinctLine("vmm")), length)).reason, "outside the buffer")
    })

    it("a length past the end of the buffer is a ParseError, not a throw", () => {
      const line = bytes(distinctLine("vmm"))
      assert.include(left(parseProcStat(line, line.length + 1)).reason, "outside the buffer")
    })
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseProcStatText(text)))
    })

    const statish = fc
      .array(
        fc.oneof(
          fc.constantFrom("(", ")", " ", "\t", "\n", "-", "Z", "R", "18446744073709551616", "0"),
          fc.bigInt({ min: 0n, max: 2n ** 66n }).map(String),
          fc.string()
        ),
        { maxLength: 80 }
      )
      .map((parts) => parts.join(" "))

    it.prop("never throws on stat-like token soup", [statish], ([text]) => {
      assert.isTrue(isParseResult(parseProcStatText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 600 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseProcStat(data)))
      assert.isTrue(isParseResult(parseProcStat(data, n % (data.length + 1))))
    })

    const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
    const comm = fc.oneof(
      fc.string({ maxLength: 32 }),
      fc.string({ unit: fc.constantFrom("a", "Z", "1", " ", "(", ")", "-", "/", ":"), maxLength: 24 })
    )

    it.prop(
      "statLine round-trips through parseProcStatText",
      {
        majorFaults: u64,
        utime: u64,
        stime: u64,
        startTime: u64,
        guestTime: u64,
        comm,
        pid: fc.integer({ min: 1, max: 4194304 })
      },
      ({ majorFaults, utime, stime, startTime, guestTime, comm, pid }) => {
        const stat = right(parseProcStatText(statLine({ pid, comm, majorFaults, utime, stime, startTime, guestTime })))
        assert.strictEqual(stat.comm, comm)
        assert.strictEqual(stat.majorFaults, majorFaults)
        assert.strictEqual(stat.utimeTicks, utime)
        assert.strictEqual(stat.stimeTicks, stime)
        assert.strictEqual(stat.startTimeTicks, startTime)
        assert.strictEqual(stat.guestTimeTicks, guestTime)
      }
    )
  })
})
