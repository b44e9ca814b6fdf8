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
 * `parseNetDev` gives a Map of objects; `NetDevTable` is the same parse into a table a reader fills
 * again on every read (the agent reads the host's net/dev, one line per TAP, every collection).
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import {
  excerpt,
  latin1Bytes,
  lengthProblem,
  parseExactUnsigned,
  parseUnsigned,
  SEPARATOR_MAX
} from "./internal/decimal.js"
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

const notANumber = (line: number, column: number, bytes: Uint8Array, start: number, end: number): string =>
  `line ${line}: ${COLUMN_NAMES[column]} is not a number: ${excerpt(bytes, start, end)}`

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

/** The counters a table keeps, in the order of its columns. @category models */
export type NetDevCounter = Exclude<keyof NetDevInterface, "name">

/** Column of each kept counter in a table row (file order: the rx four, then the tx four). */
const COLUMN_OF: Readonly<Record<NetDevCounter, number>> = {
  rxBytes: 0,
  rxPackets: 1,
  rxErrors: 2,
  rxDropped: 3,
  txBytes: 4,
  txPackets: 5,
  txErrors: 6,
  txDropped: 7
}
const KEPT_COLUMNS = 8
/** Counters below 2^53 are kept as doubles (exact there), the others apart as bigint. */
const EXACT_LIMIT = 2n ** 53n

/**
 * The interfaces of one net/dev read, as a table filled again in place by every read (`fill`): a
 * reader that parses the file every second keeps no object per interface alive from one read to the
 * next (those objects outlived V8's young generation and were promoted, ~300 bytes per interface and
 * read). Counters are kept as doubles while exact (below 2^53), larger ones apart as `bigint`;
 * `counter` gives the exact `bigint` either way. A name is decoded again only when its bytes differ
 * from the name the same row had before. The validation is `parseNetDev`'s (which is built on it).
 *
 * @category models
 * @since 0.1.0
 */
export class NetDevTable {
  #size = 0
  #names: Array<string> = []
  #rows = new Map<string, number>()
  #values = new Float64Array(0)
  /** Counters of 2^53 and above, by index into `#values` (which holds NaN there). */
  readonly #large = new Map<number, bigint>()

  /** Interfaces in the last good read (0 after a failed one). */
  get size(): number {
    return this.#size
  }

  /** The row of an interface, or undefined when the last read did not list it. */
  row(name: string): number | undefined {
    return this.#rows.get(name)
  }

  /** The name of a row (0 ≤ row < size), in file order. */
  nameAt(row: number): string {
    return this.#names[row]
  }

  /** A counter of a row, exact. */
  counter(row: number, counter: NetDevCounter): bigint {
    const index = row * KEPT_COLUMNS + COLUMN_OF[counter]
    const value = this.#values[index]
    return Number.isNaN(value) ? (this.#large.get(index) as bigint) : BigInt(value)
  }

  /** Every row as a NetDevInterface, keyed by name, in file order. */
  toMap(): Map<string, NetDevInterface> {
    const interfaces = new Map<string, NetDevInterface>()
    for (let row = 0; row < this.#size; row++) {
      const name = this.#names[row]
      interfaces.set(name, {
        name,
        rxBytes: this.counter(row, "rxBytes"),
        rxPackets: this.counter(row, "rxPackets"),
        rxErrors: this.counter(row, "rxErrors"),
        rxDropped: this.counter(row, "rxDropped"),
        txBytes: this.counter(row, "txBytes"),
        txPackets: this.counter(row, "txPackets"),
        txErrors: this.counter(row, "txErrors"),
        txDropped: this.counter(row, "txDropped")
      })
    }
    return interfaces
  }

  /**
   * Parses the first `length` bytes into this table (see the module header for the format). On a
   * ParseError the table is left empty (size 0) and the error returned.
   */
  fill(bytes: Uint8Array, length: number = bytes.length): ParseError | undefined {
    const problem = this.#parse(bytes, length)
    if (problem === undefined) return undefined
    this.#size = 0
    this.#names = []
    this.#rows = new Map()
    this.#large.clear()
    return new ParseError({ file: FILE, reason: problem })
  }

  /** The reason the bytes are not a net/dev file, or undefined once the table holds them. */
  #parse(bytes: Uint8Array, length: number): string | undefined {
    const badLength = lengthProblem(bytes, length)
    if (badLength !== undefined) return badLength
    if (length === 0) return "empty file"
    let i = 0
    for (let header = 1; header <= 2; header++) {
      const end = lineEnd(bytes, i, length)
      if (i > length || !hasBar(bytes, i, end)) return `header line ${header} is missing`
      i = end + 1
    }
    if (this.#large.size > 0) this.#large.clear()
    const before = this.#size
    let fresh: Map<string, number> | undefined
    let row = 0
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
      if (bytes[i - 1] !== COLON) return `line ${line}: no ':' after the name: ${excerpt(bytes, nameStart, i)}`
      const nameLength = i - 1 - nameStart
      if (nameLength === 0 || nameLength > NAME_MAX) {
        return `line ${line}: a name of ${nameLength} bytes (1…${NAME_MAX}): ${excerpt(bytes, nameStart, i)}`
      }
      this.#reserve(row + 1)
      const base = row * KEPT_COLUMNS
      let count = 0
      let kept = 0
      for (;;) {
        while (i < end && bytes[i] <= SEPARATOR_MAX) i++
        if (i === end) break
        const start = i
        while (i < end && bytes[i] > SEPARATOR_MAX) i++
        if (count === COLUMNS) return `line ${line}: more than ${COLUMNS} numbers`
        if (KEPT[count]) {
          const index = base + kept++
          const small = parseExactUnsigned(bytes, start, i)
          if (small >= 0) this.#values[index] = small
          else {
            const value = parseUnsigned(bytes, start, i)
            if (value === undefined) return notANumber(line, count, bytes, start, i)
            this.#store(index, value)
          }
        } else if (!isUnsigned(bytes, start, i)) {
          return notANumber(line, count, bytes, start, i)
        }
        count++
      }
      if (count < COLUMNS) return `line ${line}: ${count} numbers, need ${COLUMNS}`
      const nameEnd = nameStart + nameLength
      const same = row < before && isName(this.#names[row], bytes, nameStart, nameEnd)
      if (!same) this.#names[row] = latin1(bytes, nameStart, nameEnd)
      // Rows before the first new name are the last good read's (which had no name twice): only
      // from there on is a name checked and indexed afresh.
      if (fresh === undefined && !same) {
        fresh = new Map()
        for (let r = 0; r < row; r++) fresh.set(this.#names[r], r)
      }
      if (fresh !== undefined) {
        const name = this.#names[row]
        if (fresh.has(name)) {
          return `line ${line}: interface ${excerpt(bytes, nameStart, nameEnd)} listed twice`
        }
        fresh.set(name, row)
      }
      row++
      i = end + 1
    }
    if (fresh !== undefined) this.#rows = fresh
    else for (let r = row; r < before; r++) this.#rows.delete(this.#names[r]) // fewer rows, none new
    this.#size = row
    this.#names.length = row
    return undefined
  }

  #store(index: number, value: bigint): void {
    if (value < EXACT_LIMIT) this.#values[index] = Number(value)
    else {
      this.#values[index] = Number.NaN
      this.#large.set(index, value)
    }
  }

  /** Room for `rows` rows (grown by doubling, never shrunk: the row count moves little). */
  #reserve(rows: number): void {
    if (this.#values.length >= rows * KEPT_COLUMNS) return
    const values = new Float64Array(Math.max(rows, (this.#values.length / KEPT_COLUMNS) * 2, 16) * KEPT_COLUMNS)
    values.set(this.#values)
    this.#values = values
  }
}

/** Whether bytes[start, end) decode (Latin-1) to `name`, without making a string. */
const isName = (name: string, bytes: Uint8Array, start: number, end: number): boolean => {
  if (name.length !== end - start) return false
  for (let i = start; i < end; i++) if (name.charCodeAt(i - start) !== bytes[i]) return false
  return true
}

/** Interfaces in file order, keyed by name. Parses the first `length` bytes. @category parsers */
export const parseNetDev = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ReadonlyMap<string, NetDevInterface>, ParseError> => {
  const table = new NetDevTable()
  const error = table.fill(bytes, length)
  return error === undefined ? Either.right(table.toMap()) : Either.left(error)
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseNetDevText = (text: string): Either.Either<ReadonlyMap<string, NetDevInterface>, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseNetDev(bytes)
}
