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

const AT_NULL = 0
const AT_PAGESZ = 6
const AT_CLKTCK = 17

/** @category parsers */
export const parseAuxv = (bytes: Uint8Array, wordSize: 4 | 8 = 8, littleEndian = true): AuxvInfo => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const word = (offset: number) =>
    wordSize === 8 ? Number(view.getBigUint64(offset, littleEndian)) : view.getUint32(offset, littleEndian)
  let pageSize: number | undefined
  let clockTicks: number | undefined
  for (let offset = 0; offset + 2 * wordSize <= bytes.byteLength; offset += 2 * wordSize) {
    const type = word(offset)
    if (type === AT_NULL) break
    if (type === AT_PAGESZ) pageSize = word(offset + wordSize)
    if (type === AT_CLKTCK) clockTicks = word(offset + wordSize)
  }
  return { pageSize, clockTicks }
}
