/**
 * Pure parser for `/proc/<pid>/stat`.
 *
 * The comm field (2) is in parentheses and may itself hold spaces and parentheses, so the text is
 * split after the LAST `)`. Field numbers below are the 1-based numbers of proc(5). Counters are
 * `bigint` (exact above 2^53, see internal/decimal.ts). At least 13 fields after the paren (up to
 * stime) are required, as in the Go original, so majflt (12) is always there; starttime (22) and
 * guest_time (43) are kept when present.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { excerpt, latin1Bytes, lengthProblem, parseUnsigned, SEPARATOR_MAX } from "./internal/decimal.js"
import { latin1 } from "./internal/latin1.js"

/** @category models */
export interface ProcStat {
  /** Field 2, decoded as Latin-1 (the kernel does not promise UTF-8). */
  readonly comm: string
  /** Field 3: R, S, D, Z, X, … */
  readonly state: string
  /** Field 12, majflt: page faults that needed I/O (a swapping or file-backed guest RAM shows here). */
  readonly majorFaults: bigint
  /** Field 14, clock ticks. */
  readonly utimeTicks: bigint
  /** Field 15, clock ticks. */
  readonly stimeTicks: bigint
  /** Field 22, clock ticks after boot; the process's identity together with the pid. */
  readonly startTimeTicks: bigint | null
  /** Field 43, clock ticks spent running a guest (already inside utime). */
  readonly guestTimeTicks: bigint | null
}

const FILE = "/proc/<pid>/stat"
const CLOSE_PAREN = 0x29
const OPEN_PAREN = 0x28
const MIN_FIELDS = 13

// 0-based indexes of the fields after the comm: field n (1-based) is index n - 3.
const MAJFLT = 9
const UTIME = 11
const STIME = 12
const STARTTIME = 19
const GUEST_TIME = 40

const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

/** Parses the first `length` bytes of a stat file. @category parsers */
export const parseProcStat = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ProcStat, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  if (length === 0) return fail("empty file")
  let close = length - 1
  while (close >= 0 && bytes[close] !== CLOSE_PAREN) close--
  if (close < 0) return fail("no closing paren")
  let open = 0 // a plain loop: Buffer#indexOf is a native call, dearer than the few bytes before "("
  while (open < close && bytes[open] !== OPEN_PAREN) open++
  if (open === close) return fail("no opening paren")
  const comm = latin1(bytes, open + 1, close)

  let state = ""
  let majflt: bigint | undefined
  let utime: bigint | undefined
  let stime: bigint | undefined
  let startTime: bigint | null = null
  let guestTime: bigint | null = null
  let field = 0
  let i = close + 1
  while (i < length && field <= GUEST_TIME) {
    while (i < length && bytes[i] <= SEPARATOR_MAX) i++
    if (i >= length) break
    const start = i
    while (i < length && bytes[i] > SEPARATOR_MAX) i++
    switch (field) {
      case 0:
        state = latin1(bytes, start, i)
        break
      case MAJFLT:
        majflt = parseUnsigned(bytes, start, i)
        if (majflt === undefined) return fail(`majflt is not a number: ${excerpt(bytes, start, i)}`)
        break
      case UTIME:
        utime = parseUnsigned(bytes, start, i)
        if (utime === undefined) return fail(`utime is not a number: ${excerpt(bytes, start, i)}`)
        break
      case STIME:
        stime = parseUnsigned(bytes, start, i)
        if (stime === undefined) return fail(`stime is not a number: ${excerpt(bytes, start, i)}`)
        break
      case STARTTIME:
        startTime = parseUnsigned(bytes, start, i) ?? null
        if (startTime === null) return fail(`starttime is not a number: ${excerpt(bytes, start, i)}`)
        break
      case GUEST_TIME:
        guestTime = parseUnsigned(bytes, start, i) ?? null
        if (guestTime === null) return fail(`guest_time is not a number: ${excerpt(bytes, start, i)}`)
        break
    }
    field++
  }
  // MIN_FIELDS (up to stime, index 12) covers majflt (index 9): all three are set when it is reached
  if (field < MIN_FIELDS || majflt === undefined || utime === undefined || stime === undefined) {
    return fail(`not enough fields after the comm (${field}, need ${MIN_FIELDS})`)
  }
  return Either.right({
    comm,
    state,
    majorFaults: majflt,
    utimeTicks: utime,
    stimeTicks: stime,
    startTimeTicks: startTime,
    guestTimeTicks: guestTime
  })
}

/**
 * The same parser over the file's bytes decoded as Latin-1 (fixtures, in-memory readers, platforms that
 * hand over strings): the result is what `parseProcStat` gives for those bytes, and a character above
 * U+00FF, which no byte decodes to, is a ParseError. @category parsers
 */
export const parseProcStatText = (text: string): Either.Either<ProcStat, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseProcStat(bytes)
}

/** Whether a stat state means the task no longer runs: a zombie (Z) or dead (X). @category utils */
export const isNotRunningState = (state: string): boolean => state === "Z" || state === "X"

/** Whether the state means the hypervisor no longer runs: a zombie (Z) or dead (X) task. @category utils */
export const isNotRunning = (stat: ProcStat): boolean => isNotRunningState(stat.state)
