/**
 * Bytes as Latin-1 text (each byte one UTF-16 code unit), in one string allocation: a name or comm
 * decoded per file per collection. Concatenating a character at a time made a string per byte (~390
 * bytes of garbage for a 15-byte comm, measured); `fromCharCode.apply` over a subarray allocated the
 * view (~250 bytes). Short runs go through a scratch array of their exact length instead.
 *
 * @internal
 */

/** Runs up to this long use a scratch array; longer ones are decoded in slices of it. */
const SCRATCH_MAX = 64

const scratch: ReadonlyArray<Array<number>> = Array.from({ length: SCRATCH_MAX + 1 }, (_, n) => new Array(n).fill(0))

const short = (bytes: Uint8Array, start: number, end: number): string => {
  const codes = scratch[end - start]
  for (let i = start; i < end; i++) codes[i - start] = bytes[i]
  return String.fromCharCode.apply(null, codes)
}

/** `bytes[start, end)` as Latin-1 text. @internal */
export const latin1 = (bytes: Uint8Array, start: number, end: number): string => {
  if (end - start <= SCRATCH_MAX) return short(bytes, start, end)
  let text = ""
  for (let i = start; i < end; i += SCRATCH_MAX) text += short(bytes, i, Math.min(end, i + SCRATCH_MAX))
  return text
}
