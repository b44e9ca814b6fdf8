import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { type ProcStatus, parseProcStatus, parseProcStatusText } from "../src/ProcStatus.js"
import { statusCat, statusKthreadd, statusNode, statusQemu } from "./fixtures/proc.js"

const U64_MAX = 18446744073709551615n
const KiB = 1024n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<ProcStatus, ParseError>): ProcStatus => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<ProcStatus, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${JSON.stringify(result.right, String)}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/status")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

const none: ProcStatus = {
  rssAnonBytes: null,
  rssFileBytes: null,
  rssShmemBytes: null,
  swapBytes: null,
  hugetlbBytes: null,
  outOfRange: []
}

/** A status file around the five lines, as the kernel orders them, each value distinct. */
const status = (lines: Partial<Record<string, string>> = {}): string => {
  const line = (name: string, value: string) => (lines[name] === undefined ? `${name}:\t${value}\n` : lines[name])
  return (
    "Name:\tqemu-system-x86\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nUid:\t0\t0\t0\t0\n" +
    "VmPeak:\t 1482992 kB\nVmSize:\t 1481612 kB\nVmRSS:\t   37044 kB\n" +
    line("RssAnon", "   15396 kB") +
    line("RssFile", "   21648 kB") +
    line("RssShmem", "     111 kB") +
    "VmData:\t 1174528 kB\nVmPTE:\t     228 kB\n" +
    line("VmSwap", "    2048 kB") +
    line("HugetlbPages", " 2097152 kB") +
    "CoreDumping:\t0\nThreads:\t5\nSigQ:\t0/96367\nCpus_allowed_list:\t0-1\n"
  )
}

describe("parseProcStatus (memory breakdown, kB → bytes)", () => {
  describe("real files of this host (Linux 6.18)", () => {
    it("cat: RssAnon 112 kB, RssFile 1660 kB, the rest 0", () => {
      assert.deepStrictEqual(right(parseProcStatusText(statusCat)), {
        rssAnonBytes: 112n * KiB,
        rssFileBytes: 1660n * KiB,
        rssShmemBytes: 0n,
        swapBytes: 0n,
        hugetlbBytes: 0n,
        outOfRange: []
      })
    })

    it("QEMU 7.2 (TCG, 64 MiB guest, paused)", () => {
      assert.deepStrictEqual(right(parseProcStatusText(statusQemu)), {
        rssAnonBytes: 15392n * KiB,
        rssFileBytes: 21808n * KiB,
        rssShmemBytes: 0n,
        swapBytes: 0n,
        hugetlbBytes: 0n,
        outOfRange: []
      })
    })

    it("node", () => {
      const parsed = right(parseProcStatusText(statusNode))
      assert.strictEqual(parsed.rssAnonBytes, 15984n * KiB)
      assert.strictEqual(parsed.rssFileBytes, 38436n * KiB)
    })

    it("kthreadd, a kernel thread, has none of the lines: all null, not 0", () => {
      assert.deepStrictEqual(right(parseProcStatusText(statusKthreadd)), none)
    })

    it("the byte path gives the same as the text path", () => {
      assert.deepStrictEqual(parseProcStatus(bytes(statusQemu)), parseProcStatusText(statusQemu))
    })
  })

  describe("lines", () => {
    it("each of the five lines is read from its own name", () => {
      assert.deepStrictEqual(right(parseProcStatusText(status())), {
        rssAnonBytes: 15396n * KiB,
        rssFileBytes: 21648n * KiB,
        rssShmemBytes: 111n * KiB,
        swapBytes: 2048n * KiB,
        hugetlbBytes: 2097152n * KiB,
        outOfRange: []
      })
    })

    it.each([
      ["RssAnon", "rssAnonBytes"],
      ["RssFile", "rssFileBytes"],
      ["RssShmem", "rssShmemBytes"],
      ["VmSwap", "swapBytes"],
      ["HugetlbPages", "hugetlbBytes"]
    ] as const)("without a %s line, %s is null and the others are read", (name, field) => {
      const parsed = right(parseProcStatusText(status({ [name]: "" })))
      assert.isNull(parsed[field])
      const present = Object.entries(parsed).filter(([key, value]) => key !== "outOfRange" && value !== null)
      assert.strictEqual(present.length, 4)
    })

    it("lines in any order, with spaces or tabs, and a CR before the newline", () => {
      const text = "HugetlbPages: 4 kB\nName:\tx\nVmSwap:\t\t3\tkB\r\nRssShmem:   2  kB  \nRssFile:1 kB\nRssAnon:\t0 kB"
      assert.deepStrictEqual(right(parseProcStatusText(text)), {
        rssAnonBytes: 0n,
        rssFileBytes: 1024n,
        rssShmemBytes: 2048n,
        swapBytes: 3072n,
        hugetlbBytes: 4096n,
        outOfRange: []
      })
    })

    it("only a line that starts with the exact name and a colon counts", () => {
      const text =
        " RssAnon:\t1 kB\nRssAnonX:\t2 kB\nRssAnon :\t3 kB\nrssanon:\t4 kB\nVmSwapped:\t5 kB\nRssAnon:\t6 kB\n"
      assert.deepStrictEqual(right(parseProcStatusText(text)), { ...none, rssAnonBytes: 6n * KiB })
    })

    it("the first line of a name counts; a later duplicate, even malformed, is not read", () => {
      const text = status({ RssAnon: "RssAnon:\t 1 kB\nRssAnon:\t 2 kB\nRssAnon:\tjunk\n" })
      assert.strictEqual(right(parseProcStatusText(text)).rssAnonBytes, 1024n)
    })

    it("after the five lines nothing is looked at", () => {
      const text = `${status()}RssAnon:\tjunk\n\u00ff\u0000garbage`
      assert.strictEqual(right(parseProcStatusText(text)).rssAnonBytes, 15396n * KiB)
    })

    it("a Name line with bytes above 0x7f (a Latin-1 comm) is skipped like any other", () => {
      const data = bytes(status())
      data[6] = 0xe9 // inside "qemu-system-x86"
      data[7] = 0xff
      assert.strictEqual(right(parseProcStatus(data)).swapBytes, 2048n * KiB)
    })

    it("a file with none of the lines (but not empty) is all null", () => {
      assert.deepStrictEqual(right(parseProcStatusText("Name:\tx\n")), none)
      assert.deepStrictEqual(right(parseProcStatusText("\n")), none)
    })
  })

  describe("malformed", () => {
    it("an empty file is a ParseError", () => {
      assert.strictEqual(left(parseProcStatusText("")).reason, "empty file")
      left(parseProcStatus(new Uint8Array(0)))
    })

    it.each([
      ["no value", "RssFile:\t kB\n", "RssFile is not a number"],
      ["no value at all", "RssFile:\n", "RssFile has no value"],
      ["no unit", "RssFile:\t 12\n", "RssFile is not in kB"],
      ["another unit", "RssFile:\t 12 MB\n", "RssFile is not in kB"],
      ["the unit glued to the number", "RssFile:\t 12kB\n", "RssFile is not a number"],
      ["a negative value", "RssFile:\t -12 kB\n", "RssFile is not a number"],
      ["a hex value", "RssFile:\t 0x12 kB\n", "RssFile is not a number"],
      ["a decimal point", "RssFile:\t 1.5 kB\n", "RssFile is not a number"],
      ["two values", "RssFile:\t 12 13 kB\n", "RssFile is not in kB"],
      ["a token after the unit", "RssFile:\t 12 kB x\n", "RssFile has more than one value"],
      ["a byte above 0x7f in the value", "RssFile:\t 1\u00b2 kB\n", "RssFile is not a number"],
      ["a no-break space as separator", "RssFile:\t\u00a012 kB\n", "RssFile is not a number"]
    ])("%s is a ParseError naming the line", (_, line, reason) => {
      assert.include(left(parseProcStatusText(status({ RssFile: line }))).reason, reason)
    })

    it("a file cut inside a value line is a ParseError (truncated read)", () => {
      const text = status()
      const at = text.indexOf("RssFile:\t   21648 kB")
      left(parseProcStatus(bytes(text), at + "RssFile:\t   21648".length))
      left(parseProcStatus(bytes(text), at + "RssFile:\t  ".length))
      left(parseProcStatus(bytes(text), at + "RssFile:".length))
    })

    it("a file cut after a value's unit keeps it; lines after the cut are null", () => {
      const text = status()
      const at = text.indexOf("RssFile:\t   21648 kB") + "RssFile:\t   21648 kB".length
      assert.deepStrictEqual(right(parseProcStatus(bytes(text), at)), {
        ...none,
        rssAnonBytes: 15396n * KiB,
        rssFileBytes: 21648n * KiB
      })
    })

    it("a cut inside a name is no line (RssF is not RssFile)", () => {
      const text = status()
      const at = text.indexOf("RssFile:") + 4
      assert.isNull(right(parseProcStatus(bytes(text), at)).rssFileBytes)
    })

    it.each([-1, 0.5, Number.NaN, 100_000])("length %d outside the buffer is a ParseError, not a throw", (length) => {
      assert.include(left(parseProcStatus(bytes(status()), length)).reason, "outside the buffer")
    })

    it("non-Latin-1 text is a ParseError: a fullwidth digit is no digit", () => {
      assert.include(left(parseProcStatusText(status({ VmSwap: "VmSwap:\t 2\uff11 kB\n" }))).reason, "U+FF11")
    })
  })

  describe("big values", () => {
    const MAX_KB = U64_MAX / 1024n // 2^54 − 1: the largest kB whose bytes fit in 64 bits

    it("kB × 1024 up to 2^64 − 1024 is exact", () => {
      const parsed = right(parseProcStatusText(status({ VmSwap: `VmSwap:\t${MAX_KB} kB\n` })))
      assert.strictEqual(parsed.swapBytes, 18446744073709550592n)
      assert.deepStrictEqual(parsed.outOfRange, [])
    })

    it("values above 2^53 are not rounded", () => {
      const parsed = right(parseProcStatusText(status({ RssAnon: "RssAnon:\t9007199254740993 kB\n" })))
      assert.strictEqual(parsed.rssAnonBytes, 9007199254740993n * 1024n)
    })

    it.each([
      ["2^54 kB (2^64 bytes)", MAX_KB + 1n],
      ["2^64 − 1 kB", U64_MAX]
    ])("%s is null and listed in outOfRange, the others are read", (_, kB) => {
      const parsed = right(
        parseProcStatusText(status({ RssShmem: `RssShmem:\t${kB} kB\n`, HugetlbPages: `HugetlbPages:\t${kB} kB\n` }))
      )
      assert.isNull(parsed.rssShmemBytes)
      assert.isNull(parsed.hugetlbBytes)
      assert.deepStrictEqual(parsed.outOfRange, ["RssShmem", "HugetlbPages"])
      assert.strictEqual(parsed.rssAnonBytes, 15396n * KiB)
    })

    it("2^64 kB is not a number (the kernel never prints it): a ParseError", () => {
      assert.include(
        left(parseProcStatusText(status({ RssAnon: "RssAnon:\t18446744073709551616 kB\n" }))).reason,
        "RssAnon is not a number"
      )
    })
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseProcStatusText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 400 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseProcStatus(data)))
      assert.isTrue(isParseResult(parseProcStatus(data, n % (data.length + 1))))
    })

    it.prop(
      "any kB value up to 2^54 − 1 gives kB × 1024 bytes",
      [fc.bigInt({ min: 0n, max: U64_MAX / 1024n }), fc.constantFrom(" ", "\t", "   ")],
      ([kB, space]) => {
        const parsed = right(parseProcStatusText(status({ VmSwap: `VmSwap:${space}${kB}${space}kB\n` })))
        assert.strictEqual(parsed.swapBytes, kB * 1024n)
      }
    )
  })
})
