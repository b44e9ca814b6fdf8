/**
 * Exact decimal parsing of kernel counters from bytes.
 *
 * Counters are returned as `bigint` so values above 2^53 are never rounded. Up to 15 digits fit a
 * double exactly, so the common case accumulates in a number and converts once; longer tokens go
 * through `BigInt(string)`. Values above 2^64 − 1 are rejected: the kernel never prints them.
 *
 * @internal
 */

const U64_MAX = 2n ** 64n - 1n

/**
 * Bytes up to this value separate fields: the kernel writes spaces and a final newline; treating all
 * whitespace and control bytes alike keeps the hot loops at one comparison per byte. @internal
 */
export const SEPARATOR_MAX = 0x20

/** Parses bytes[start, end) as an unsigned decimal; undefined if empty, not all digits, or above u64. @internal */
export const parseUnsigned = (bytes: Uint8Array, start: number, end: number): bigint | undefined => {
  const length = end - start
  if (length <= 0) return undefined
  if (length <= 15) {
    let n = 0
    for (let i = start; i < end; i++) {
      const d = bytes[i] - 0x30
      if (d < 0 || d > 9) return undefined
      n = n * 10 + d
    }
    return BigInt(n)
  }
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

/** Latin-1 bytes of a string, for the text entry points of the parsers (tests, fixtures). @internal */
export const bytesOf = (text: string): Uint8Array => {
  const bytes = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff
  return bytes
}
