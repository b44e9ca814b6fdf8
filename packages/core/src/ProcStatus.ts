/**
 * Pure parser for the memory breakdown of `/proc/<pid>/status`: RssAnon, RssFile, RssShmem, VmSwap
 * and HugetlbPages, each a line `<Name>:\t   1234 kB`. statm's RSS alone hides where guest RAM is:
 * swapped out, in a shared memfd, or on hugetlbfs (which is not in RSS at all).
 *
 * Values are bytes (kB × 1024) as exact `bigint`s. A line that is absent (kernel threads have none,
 * older kernels lack some) gives null; a present line that does not hold one number and `kB` is a
 * ParseError. A product above 2^64 − 1 gives null too, and the line is listed in `outOfRange`, so
 * the caller reports it with reason `out_of_range` as it does for statm's pages × page size.
 *
 * Only lines starting with those names are looked at, the first of each counts, and the scan stops
 * once all five are seen (internal/keyLines.ts).
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { latin1Bytes, lengthProblem } from "./internal/decimal.js"
import { keySet, scanKeyLines } from "./internal/keyLines.js"

/** The status lines read, named as in the file. @category models */
export type ProcStatusLine = "RssAnon" | "RssFile" | "RssShmem" | "VmSwap" | "HugetlbPages"

/** @category models */
export interface ProcStatus {
  /** RssAnon: resident anonymous memory (guest RAM backed by anonymous memory). */
  readonly rssAnonBytes: bigint | null
  /** RssFile: resident file mappings (binary, libraries, file-backed guest RAM). */
  readonly rssFileBytes: bigint | null
  /** RssShmem: resident shared memory (shmem, memfd and tmpfs-backed guest RAM). */
  readonly rssShmemBytes: bigint | null
  /** VmSwap: anonymous memory swapped out. */
  readonly swapBytes: bigint | null
  /** HugetlbPages: hugetlbfs pages mapped, not counted in any Rss line. */
  readonly hugetlbBytes: bigint | null
  /** Lines present whose bytes exceed 2^64 − 1: their value above is null (reason `out_of_range`). */
  readonly outOfRange: ReadonlyArray<ProcStatusLine>
}

const FILE = "/proc/<pid>/status"
const LINES: ReadonlyArray<ProcStatusLine> = ["RssAnon", "RssFile", "RssShmem", "VmSwap", "HugetlbPages"]
const KEYS = keySet(LINES)
const U64_MAX = 2n ** 64n - 1n

const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

/** Line k's kB in bytes; null when absent, or when above 2^64 − 1 (then the line joins outOfRange). */
const bytesOf = (kilobytes: ReadonlyArray<bigint | null>, k: number, outOfRange: Array<ProcStatusLine>) => {
  const kB = kilobytes[k]
  if (kB === null) return null
  const value = kB * 1024n
  if (value <= U64_MAX) return value
  outOfRange.push(LINES[k])
  return null
}

/** Parses the first `length` bytes of a status file. @category parsers */
export const parseProcStatus = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ProcStatus, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  if (length === 0) return fail("empty file")
  const kilobytes = scanKeyLines(bytes, length, KEYS, "kB")
  if (typeof kilobytes === "string") return fail(kilobytes)
  const outOfRange: Array<ProcStatusLine> = []
  return Either.right({
    rssAnonBytes: bytesOf(kilobytes, 0, outOfRange),
    rssFileBytes: bytesOf(kilobytes, 1, outOfRange),
    rssShmemBytes: bytesOf(kilobytes, 2, outOfRange),
    swapBytes: bytesOf(kilobytes, 3, outOfRange),
    hugetlbBytes: bytesOf(kilobytes, 4, outOfRange),
    outOfRange
  })
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseProcStatusText = (text: string): Either.Either<ProcStatus, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseProcStatus(bytes)
}
