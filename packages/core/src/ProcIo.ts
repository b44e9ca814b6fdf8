/**
 * Pure parser for `/proc/<pid>/io`: lines `<name>: <value>`. read_bytes and write_bytes are the
 * storage I/O the process caused (what its disks cost the host, page cache hits excluded); rchar
 * and wchar are all bytes passed through read/write-like calls (sockets, pipes and cache included).
 *
 * The kernel prints every line in one go, so a missing line is a ParseError naming it, like a
 * malformed one. Counters are exact `bigint`s; the first line of each name counts.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { latin1Bytes, lengthProblem } from "./internal/decimal.js"
import { keySet, scanKeyLines } from "./internal/keyLines.js"

/** @category models */
export interface ProcIo {
  /** rchar: bytes read through read(2)-like calls, from any file or socket. */
  readonly rchar: bigint
  /** wchar: bytes written through write(2)-like calls. */
  readonly wchar: bigint
  /** read_bytes: bytes fetched from storage on the process's behalf. */
  readonly readBytes: bigint
  /** write_bytes: bytes the process caused to be sent to storage (dirtied page cache included). */
  readonly writeBytes: bigint
}

const FILE = "/proc/<pid>/io"
const KEYS = keySet(["rchar", "wchar", "read_bytes", "write_bytes"])

const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

/** Parses the first `length` bytes of an io file. @category parsers */
export const parseProcIo = (bytes: Uint8Array, length: number = bytes.length): Either.Either<ProcIo, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  if (length === 0) return fail("empty file")
  const values = scanKeyLines(bytes, length, KEYS, null)
  if (typeof values === "string") return fail(values)
  const [rchar, wchar, readBytes, writeBytes] = values
  if (rchar === null || wchar === null || readBytes === null || writeBytes === null) {
    const missing = KEYS.names.filter((_, k) => values[k] === null)
    return fail(`no ${missing.join(", ")} line`)
  }
  return Either.right({ rchar, wchar, readBytes, writeBytes })
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseProcIoText = (text: string): Either.Either<ProcIo, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseProcIo(bytes)
}
