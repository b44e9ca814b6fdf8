/**
 * Exact decimal parsing of kernel counters from bytes, and the two guards every byte parser shares:
 * text entry points take Latin-1 text, and a `length` must lie within the buffer.
 *
 * Counters are returned as `bigint` so values above 2^53 are never rounded. Up to 15 digits fit a
 * double exactly, so the common case accumulates in a number and converts once; longer tokens go
 * through `BigInt(string)`. Values above 2^64 − 1 are rejected: the kernel never prints them.
 *
 * @internal
 */

const U64_MAX = 2n ** 64n - 1n
/** Significant digits of 2^64 − 1: a longer token (leading zeros aside) is out of range unread. */
const U64_DIGITS = 20

/**
 * Bytes up to this value separate fields: the kernel writes spaces and a final newline; treating all
 * whitespace and control bytes alike keeps the hot loops at one comparison per byte. @internal
 */
export const SEPARATOR_MAX = 0x20

/** Digits a double always holds exactly: up to this many, a value is read as a number. @internal */
export const EXACT_DIGITS = 15

/**
 * bytes[start, end) as a number, for 1 to EXACT_DIGITS bytes; −1 when empty, longer, or not all
 * digits. The common case of parseUnsigned, for a caller that keeps numbers. @internal
 */
export const parseExactUnsigned = (bytes: Uint8Array, start: number, end: number): number => {
  if (end <= start || end - start > EXACT_DIGITS) return -1
  let n = 0
  for (let i = start; i < end; i++) {
    const d = bytes[i] - 0x30
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return n
}

/** Parses bytes[start, end) as an unsigned decimal; undefined if empty, not all digits, or above u64. @internal */
export const parseUnsigned = (bytes: Uint8Array, start: number, end: number): bigint | undefined => {
  const length = end - start
  if (length <= 0) return undefined
  if (length <= EXACT_DIGITS) {
    const n = parseExactUnsigned(bytes, start, end)
    return n < 0 ? undefined : BigInt(n)
  }
  let first = start
  while (first < end - 1 && bytes[first] === 0x30) first++
  if (end - first > U64_DIGITS) return undefined // hostile megabyte tokens never reach BigInt
  let text = ""
  for (let i = start; i < end; i++) {
    const c = bytes[i]
    if (c < 0x30 || c > 0x39) return undefined
    text += String.fromCharCode(c)
  }
  const value = BigInt(text)
  return value > U64_MAX ? undefined : value
}

/** A short printable excerpt of bytes[start, end) for error messages. @internal */
export const excerpt = (bytes: Uint8Array, start: number, end: number): string => {
  let text = ""
  for (let i = start; i < Math.min(end, start + 32); i++) {
    const c = bytes[i]
    text += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?"
  }
  return end - start > 32 ? `${text}…` : text
}

/**
 * Why `length` cannot delimit `bytes` (not an integer in 0…bytes.length), or undefined when it can.
 * Past the end the loops would read `undefined` and turn it into NaN digits. @internal
 */
export const lengthProblem = (bytes: Uint8Array, length: number): string | undefined =>
  Number.isInteger(length) && length >= 0 && length <= bytes.length
    ? undefined
    : `length ${length} is outside the buffer (0…${bytes.length})`

/**
 * The bytes whose Latin-1 decoding is `text`, or the reason there are none: the text entry points
 * take what `readFileSync(path, "latin1")` gives, so every character is one byte and text and bytes
 * parse alike. A character above U+00FF (a fullwidth digit, U+3000) was never a byte of a /proc or
 * /sys file; it is rejected rather than truncated to its low byte or read as a digit. @internal
 */
export const latin1Bytes = (text: string): Uint8Array | string => {
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c > 0xff) {
      const hex = (text.codePointAt(i) ?? c).toString(16).toUpperCase().padStart(4, "0")
      return `not Latin-1 text: U+${hex} at index ${i} (text must be the file's bytes decoded as Latin-1)`
    }
    bytes[i] = c
  }
  return bytes
}
