/**
 * The byte loop shared by the `Key:<blanks>value[<blanks>unit]` files, `/proc/<pid>/status` and
 * `/proc/<pid>/io`: only lines that start with a wanted key are looked at (a status file is ~1.5 KB,
 * we need five of its ~60 lines), the first line of each key counts, and the scan ends as soon as
 * every key is found. A line of a wanted key must hold exactly one unsigned decimal (and the unit,
 * when one is given): anything else is a malformed file, not a missing line.
 *
 * @internal
 */
import { excerpt, parseUnsigned, SEPARATOR_MAX } from "./decimal.js"

const NEWLINE = 0x0a
const COLON = 0x3a

/** Separators inside a line: what SEPARATOR_MAX admits, except the newline that ends it. */
const isBlank = (byte: number): boolean => byte <= SEPARATOR_MAX && byte !== NEWLINE

/** The keys to look for, with their bytes (keys are ASCII). @internal */
export interface KeySet {
  readonly names: ReadonlyArray<string>
  readonly bytes: ReadonlyArray<Uint8Array>
  /** 1 at each byte a key starts with: most lines are dismissed by one lookup. */
  readonly firstBytes: Uint8Array
}

/** @internal */
export const keySet = (names: ReadonlyArray<string>): KeySet => {
  const firstBytes = new Uint8Array(256)
  for (const name of names) firstBytes[name.charCodeAt(0)] = 1
  return { names, bytes: names.map((name) => Uint8Array.from(name, (c) => c.charCodeAt(0))), firstBytes }
}

/** The index of the key whose `Key:` starts the line at `at`, or -1. */
const keyAt = (bytes: Uint8Array, at: number, length: number, keys: KeySet): number => {
  const first = bytes[at]
  for (let k = 0; k < keys.bytes.length; k++) {
    const key = keys.bytes[k]
    if (key[0] !== first || at + key.length >= length || bytes[at + key.length] !== COLON) continue
    let j = 1
    while (j < key.length && bytes[at + j] === key[j]) j++
    if (j === key.length) return k
  }
  return -1
}

/**
 * The value of each key (in the order of `keys`; null when no line starts with `Key:`), or the reason
 * the file is malformed. `unit` is the token that must follow every value (`kB`), or null for none.
 * The caller checks `length` (see decimal.lengthProblem). @internal
 */
export const scanKeyLines = (
  bytes: Uint8Array,
  length: number,
  keys: KeySet,
  unit: string | null
): Array<bigint | null> | string => {
  const values = new Array<bigint | null>(keys.names.length).fill(null)
  let missing = values.length
  let i = 0
  while (i < length && missing > 0) {
    const k = keys.firstBytes[bytes[i]] === 1 ? keyAt(bytes, i, length, keys) : -1
    if (k < 0 || values[k] !== null) {
      while (i < length && bytes[i] !== NEWLINE) i++
      i++
      continue
    }
    const name = keys.names[k]
    i += keys.bytes[k].length + 1
    while (i < length && isBlank(bytes[i])) i++
    const start = i
    while (i < length && bytes[i] > SEPARATOR_MAX) i++
    if (start === i) return `${name} has no value`
    const value = parseUnsigned(bytes, start, i)
    if (value === undefined) return `${name} is not a number: ${excerpt(bytes, start, i)}`
    while (i < length && isBlank(bytes[i])) i++
    if (unit !== null) {
      const unitStart = i
      while (i < length && bytes[i] > SEPARATOR_MAX) i++
      if (!sameText(bytes, unitStart, i, unit)) {
        return `${name} is not in ${unit}: ${unitStart === i ? "no unit" : excerpt(bytes, unitStart, i)}`
      }
      while (i < length && isBlank(bytes[i])) i++
    }
    if (i < length && bytes[i] !== NEWLINE) return `${name} has more than one value: ${excerpt(bytes, start, i + 1)}`
    values[k] = value
    missing--
    i++
  }
  return values
}

const sameText = (bytes: Uint8Array, start: number, end: number, text: string): boolean => {
  if (end - start !== text.length) return false
  for (let i = 0; i < text.length; i++) if (bytes[start + i] !== text.charCodeAt(i)) return false
  return true
}
