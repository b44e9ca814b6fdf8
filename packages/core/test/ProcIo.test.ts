import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { type ProcIo, parseProcIo, parseProcIoText } from "../src/ProcIo.js"
import { ioCat, ioNode, ioQemu } from "./fixtures/proc.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

const right = (result: Either.Either<ProcIo, ParseError>): ProcIo => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<ProcIo, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${JSON.stringify(result.right, String)}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/io")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

/** An io file as the kernel prints it (proc_pid_io_accounting), every value distinct. */
const io = (values: Partial<Record<string, string>> = {}): string =>
  [
    ["rchar", "320790"],
    ["wchar", "24"],
    ["syscr", "72"],
    ["syscw", "3"],
    ["read_bytes", "4096"],
    ["write_bytes", "1060864"],
    ["cancelled_write_bytes", "8192"]
  ]
    .map(([name, value]) => (name in values ? (values[name] ?? "") : `${name}: ${value}\n`))
    .join("")

describe("parseProcIo", () => {
  describe("real files of this host (Linux 6.18)", () => {
    it("cat", () => {
      assert.deepStrictEqual(right(parseProcIoText(ioCat)), { rchar: 6976n, wchar: 0n, readBytes: 0n, writeBytes: 0n })
    })

    it("QEMU 7.2: read_bytes 1585152", () => {
      assert.deepStrictEqual(right(parseProcIoText(ioQemu)), {
        rchar: 320792n,
        wchar: 24n,
        readBytes: 1585152n,
        writeBytes: 0n
      })
    })

    it("node after writing 1 MiB and fsync: write_bytes ≥ 1 MiB", () => {
      const parsed = right(parseProcIo(bytes(ioNode)))
      assert.deepStrictEqual(parsed, { rchar: 257506n, wchar: 1050078n, readBytes: 69632n, writeBytes: 1060864n })
      assert.isTrue(parsed.writeBytes >= 1048576n)
    })
  })

  it("each value comes from its own line (syscr/syscw and cancelled_write_bytes are not read)", () => {
    assert.deepStrictEqual(right(parseProcIoText(io())), {
      rchar: 320790n,
      wchar: 24n,
      readBytes: 4096n,
      writeBytes: 1060864n
    })
  })

  it("lines in any order, with tabs or no space, CRLF, no final newline", () => {
    const text = "write_bytes:\t4\r\nsyscr: 9\nread_bytes:3\nwchar:  2  \nrchar: 1"
    assert.deepStrictEqual(right(parseProcIoText(text)), { rchar: 1n, wchar: 2n, readBytes: 3n, writeBytes: 4n })
  })

  it("a name must start the line and be followed by its colon (cancelled_write_bytes is not write_bytes)", () => {
    const text = "rchar: 1\nwchar: 2\nread_bytes: 3\ncancelled_write_bytes: 99\n write_bytes: 98\nwrite_bytes: 4\n"
    assert.strictEqual(right(parseProcIoText(text)).writeBytes, 4n)
  })

  it("the first line of a name counts", () => {
    const text = io({ read_bytes: "read_bytes: 5\nread_bytes: 6\n" })
    assert.strictEqual(right(parseProcIoText(text)).readBytes, 5n)
  })

  it.each(["rchar", "wchar", "read_bytes", "write_bytes"])("a missing %s line is a ParseError naming it", (name) => {
    const error = left(parseProcIoText(io({ [name]: "" })))
    assert.strictEqual(error.reason, `no ${name} line`)
  })

  it("several missing lines are all named", () => {
    assert.strictEqual(left(parseProcIoText("rchar: 1\nsyscr: 2\n")).reason, "no wchar, read_bytes, write_bytes line")
  })

  it("an empty file is a ParseError", () => {
    assert.strictEqual(left(parseProcIoText("")).reason, "empty file")
  })

  it.each([
    ["read_bytes: \n", "read_bytes has no value"],
    ["read_bytes: x\n", "read_bytes is not a number"],
    ["read_bytes: -1\n", "read_bytes is not a number"],
    ["read_bytes: 12 kB\n", "read_bytes has more than one value"],
    ["read_bytes: 1 2\n", "read_bytes has more than one value"],
    ["read_bytes: 1\u00b2\n", "read_bytes is not a number"],
    ["read_bytes: 18446744073709551616\n", "read_bytes is not a number"]
  ])("%j is a ParseError naming the line", (line, reason) => {
    assert.include(left(parseProcIoText(io({ read_bytes: line }))).reason, reason)
  })

  it("2^64 − 1 and values above 2^53 are exact", () => {
    const text = io({ rchar: `rchar: ${U64_MAX}\n`, write_bytes: "write_bytes: 9007199254740993\n" })
    const parsed = right(parseProcIoText(text))
    assert.strictEqual(parsed.rchar, U64_MAX)
    assert.strictEqual(parsed.writeBytes, 9007199254740993n)
  })

  it("a file cut before write_bytes is a ParseError naming it; cut inside it, the digits before the cut", () => {
    const text = io()
    const at = text.indexOf("write_bytes: 1060864")
    assert.strictEqual(left(parseProcIo(bytes(text), at)).reason, "no write_bytes line")
    assert.strictEqual(left(parseProcIo(bytes(text), at + "write_bytes:".length)).reason, "write_bytes has no value")
    assert.strictEqual(right(parseProcIo(bytes(text), at + "write_bytes: 106".length)).writeBytes, 106n)
  })

  it.each([-1, 1.5, Number.NaN, 10_000])("length %d outside the buffer is a ParseError, not a throw", (length) => {
    assert.include(left(parseProcIo(bytes(io()), length)).reason, "outside the buffer")
  })

  it("non-Latin-1 text is a ParseError", () => {
    assert.include(left(parseProcIoText(io({ wchar: "wchar: \u0661\n" }))).reason, "U+0661")
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseProcIoText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 300 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseProcIo(data)))
      assert.isTrue(isParseResult(parseProcIo(data, n % (data.length + 1))))
    })

    const u64 = fc.bigInt({ min: 0n, max: U64_MAX })
    it.prop("any four u64 values round-trip", [u64, u64, u64, u64], ([rchar, wchar, readBytes, writeBytes]) => {
      const text = io({
        rchar: `rchar: ${rchar}\n`,
        wchar: `wchar: ${wchar}\n`,
        read_bytes: `read_bytes: ${readBytes}\n`,
        write_bytes: `write_bytes: ${writeBytes}\n`
      })
      assert.deepStrictEqual(right(parseProcIoText(text)), { rchar, wchar, readBytes, writeBytes })
    })
  })
})
