/**
 * Pure parser for `/proc/self/auxv`, the ELF auxiliary vector the kernel gave this process: pairs of
 * native words (type, value), ended by AT_NULL. It is where the kernel's page size (AT_PAGESZ) and
 * USER_HZ (AT_CLKTCK) come from without calling sysconf. Words are 8 bytes little-endian (x86_64,
 * aarch64, riscv64); other hosts pass their word size and byte order.
 *
 * @since 0.1.0
 */

/** @category models */
export interface AuxvInfo {
  readonly pageSize: number | undefined
  readonly clockTicks: number | undefined
}

const AT_NULL = 0n
const AT_PAGESZ = 6n
const AT_CLKTCK = 17n
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/**
 * Never throws. A value a `number` cannot hold exactly (above 2^53 − 1) is undefined, as is
 * everything when the word size is neither 4 nor 8. @category parsers
 */
export const parseAuxv = (bytes: Uint8Array, wordSize: 4 | 8 = 8, littleEndian = true): AuxvInfo => {
  let pageSize: number | undefined
  let clockTicks: number | undefined
  if (wordSize !== 4 && wordSize !== 8) return { pageSize, clockTicks }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const word = (offset: number): bigint =>
    wordSize === 8 ? view.getBigUint64(offset, littleEndian) : BigInt(view.getUint32(offset, littleEndian))
  const exact = (value: bigint) => (value <= MAX_SAFE ? Number(value) : undefined)
  for (let offset = 0; offset + 2 * wordSize <= bytes.byteLength; offset += 2 * wordSize) {
    const type = word(offset)
    if (type === AT_NULL) break
    if (type === AT_PAGESZ) pageSize = exact(word(offset + wordSize))
    if (type === AT_CLKTCK) clockTicks = exact(word(offset + wordSize))
  }
  return { pageSize, clockTicks }
}
