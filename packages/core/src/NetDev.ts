/**
 * Pure parser for `/proc/<pid>/net/dev`: the counters of every interface in the network namespace
 * of a process. A TAP that lives in the VMM's namespace is not in the host's /sys/class/net, but
 * this file of the VMM shows it without entering the namespace.
 *
 * Format (dev_seq_printf_stats): two header lines, then per interface `%6s: ` (the name right-aligned
 * in 6 columns, then a colon and a space) and 16 unsigned numbers: rx bytes packets errs drop fifo
 * frame compressed multicast, tx bytes packets errs drop fifo colls carrier compressed. A name has
 * no whitespace, so it is the first token without its final `:`; a `:` inside it (an old alias form)
 * stays part of the name. Names are 1–15 bytes (IFNAMSIZ − 1), decoded as Latin-1.
 *
 * Counters are the interface's own perspective, like /sys/class/net/<if>/statistics, with one
 * difference: this file's rx drop is rx_dropped + rx_missed_errors. Exact `bigint`s. The two
 * header lines must contain `|`; a blank line is skipped; any other line that is not a name and
 * exactly 16 numbers, or a name seen twice, is a ParseError (a file cut inside a line is one too).
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { excerpt, latin1Bytes, lengthProblem, parseUnsigned, SEPARATOR_MAX } from "./internal/decimal.js"
import { latin1 } from "./internal/latin1.js"

/** @category models */
export interface NetDevInterface {
  readonly name: string
  readonly rxBytes: bigint
  readonly rxPackets: bigint
  readonly rxErrors: bigint
  /** rx_dropped + rx_missed_errors (sysfs keeps them apart). */
  readonly rxDropped: bigint
  readonly txBytes: bigint
  readonly txPackets: bigint
  readonly txErrors: bigint
  readonly txDropped: bigint
}

const FILE = "/proc/<pid>/net/dev"
const NEWLINE = 0x0a
const COLON = 0x3a
const BAR = 0x7c
const COLUMNS = 16
const NAME_MAX = 15
const COLUMN_NAMES = [
  "rx bytes",
  "rx packets",
  "rx errs",
  "rx drop",
  "rx fifo",
  "rx frame",
  "rx compressed",
  "rx multicast",
  "tx bytes",
  "tx packets",
  "tx errs",
  "tx drop",
  "tx fifo",
  "tx colls",
  "tx carrier",
  "tx compressed"
]

/** The columns kept (rx and tx bytes, packets, errs, drop); the others are only checked. */
const KEPT = COLUMN_NAMES.map((_, k) => k % 8 < 4)
/** 19 digits are always below 2^64 − 1 (≈ 1.8 × 10^19). */
const ALWAYS_U64_DIGITS = 19

const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

const notANumber = (line: number, column: number, bytes: Uint8Array, start: number, end: number) =>
  fail(`line ${line}: ${COLUMN_NAMES[column]} is not a number: ${excerpt(bytes, start, end)}`)

/** Whether bytes[start, end) is a u64, without making the bigint of a column we do not keep. */
const isUnsigned = (bytes: Uint8Array, start: number, end: number): boolean => {
  if (end - start > ALWAYS_U64_DIGITS) return parseUnsigned(bytes, start, end) !== undefined
  for (let i = start; i < end; i++) if (bytes[i] < 0x30 || bytes[i] > 0x39) return false
  return true
}

/** The end of the line that starts at `start` (the index of its newline, or `length`). */
const lineEnd = (bytes: Uint8Array, start: number, length: number): number => {
  let i = start
  while (i < length && bytes[i] !== NEWLINE) i++
  return i
}

/** Whether bytes[start, end) holds a `|` (the header lines do, an interface line has none after its name). */
const hasBar = (bytes: Uint8Array, start: number, end: number): boolean => {
  for (let i = start; i < end; i++) if (bytes[i] === BAR) return true
  return false
}

/** Interfaces in file order, keyed by name. Parses the first `length` bytes. @category parsers */
export const parseNetDev = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ReadonlyMap<string, NetDevInterface>, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  if (length === 0) return fail("empty file")
  let i = 0
  for (let header = 1; header <= 2; header++) {
    const end = lineEnd(bytes, i, length)
    if (i > length || !hasBar(bytes, i, end)) return fail(`header line ${header} is missing`)
    i = end + 1
  }
  const interfaces = new Map<string, NetDevInterface>()
  const values: Array<bigint> = new Array(COLUMNS)
  let line = 3
  for (; i < length; line++) {
    const end = lineEnd(bytes, i, length)
    while (i < end && bytes[i] <= SEPARATOR_MAX) i++
    if (i === end) {
      i = end + 1
      continue
    }
    const nameStart = i
    while (i < end && bytes[i] > SEPARATOR_MAX) i++
    if (bytes[i - 1] !== COLON) return fail(`line ${line}: no ':' after the name: ${excerpt(bytes, nameStart, i)}`)
    const nameLength = i - 1 - nameStart
    if (nameLength === 0 || nameLength > NAME_MAX) {
      return fail(`line ${line}: a name of ${nameLength} bytes (1…${NAME_MAX}): ${excerpt(bytes, nameStart, i)}`)
    }
    let count = 0
    for (;;) {
      while (i < end && bytes[i] <= SEPARATOR_MAX) i++
      if (i === end) break
      const start = i
      while (i < end && bytes[i] > SEPARATOR_MAX) i++
      if (count === COLUMNS) return fail(`line ${line}: more than ${COLUMNS} numbers`)
      if (KEPT[count]) {
        const value = parseUnsigned(bytes, start, i)
        if (value === undefined) return notANumber(line, count, bytes, start, i)
        values[count] = value
      } else if (!isUnsigned(bytes, start, i)) {
        return notANumber(line, count, bytes, start, i)
      }
      count++
    }
    if (count < COLUMNS) return fail(`line ${line}: ${count} numbers, need ${COLUMNS}`)
    const name = latin1(bytes, nameStart, nameStart + nameLength)
    if (interfaces.has(name)) {
      return fail(`line ${line}: interface ${excerpt(bytes, nameStart, nameStart + nameLength)} listed twice`)
    }
    interfaces.set(name, {
      name,
      rxBytes: values[0],
      rxPackets: values[1],
      rxErrors: values[2],
      rxDropped: values[3],
      txBytes: values[8],
      txPackets: values[9],
      txErrors: values[10],
      txDropped: values[11]
    })
    i = end + 1
  }
  return Either.right(interfaces)
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseNetDevText = (text: string): Either.Either<ReadonlyMap<string, NetDevInterface>, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseNetDev(bytes)
}
