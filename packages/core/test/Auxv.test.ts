import { assert, describe, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import { parseAuxv } from "../src/Auxv.js"

const AT_NULL = 0
const AT_PHDR = 3
const AT_PAGESZ = 6
const AT_HWCAP = 16
const AT_CLKTCK = 17

/** Encodes (type, value) pairs as 64-bit little-endian words. */
const auxv64 = (pairs: ReadonlyArray<readonly [number | bigint, number | bigint]>): Uint8Array => {
  const bytes = new Uint8Array(pairs.length * 16)
  const view = new DataView(bytes.buffer)
  pairs.forEach(([type, value], i) => {
    view.setBigUint64(i * 16, BigInt(type), true)
    view.setBigUint64(i * 16 + 8, BigInt(value), true)
  })
  return bytes
}

/** Encodes (type, value) pairs as 32-bit little-endian words. */
const auxv32 = (pairs: ReadonlyArray<readonly [number, number]>): Uint8Array => {
  const bytes = new Uint8Array(pairs.length * 8)
  const view = new DataView(bytes.buffer)
  pairs.forEach(([type, value], i) => {
    view.setUint32(i * 8, type, true)
    view.setUint32(i * 8 + 4, value, true)
  })
  return bytes
}

describe("parseAuxv", () => {
  it("finds AT_PAGESZ and AT_CLKTCK among other entries", () => {
    const data = auxv64([
      [AT_HWCAP, 0xbfebfbffn],
      [AT_PAGESZ, 4096],
      [AT_PHDR, 0x5555_5555_4040n],
      [AT_CLKTCK, 100],
      [AT_NULL, 0]
    ])
    assert.deepStrictEqual(parseAuxv(data), { pageSize: 4096, clockTicks: 100 })
  })

  it("reads other values than the fallbacks (16 KiB pages, 250 Hz)", () => {
    assert.deepStrictEqual(
      parseAuxv(
        auxv64([
          [AT_CLKTCK, 250],
          [AT_PAGESZ, 16384],
          [AT_NULL, 0]
        ])
      ),
      { pageSize: 16384, clockTicks: 250 }
    )
  })

  it("stops at AT_NULL", () => {
    const data = auxv64([
      [AT_PAGESZ, 4096],
      [AT_NULL, 0],
      [AT_CLKTCK, 100],
      [AT_PAGESZ, 65536]
    ])
    assert.deepStrictEqual(parseAuxv(data), { pageSize: 4096, clockTicks: undefined })
  })

  it("missing entries are undefined", () => {
    assert.deepStrictEqual(
      parseAuxv(
        auxv64([
          [AT_HWCAP, 1],
          [AT_NULL, 0]
        ])
      ),
      {
        pageSize: undefined,
        clockTicks: undefined
      }
    )
    assert.deepStrictEqual(parseAuxv(new Uint8Array(0)), { pageSize: undefined, clockTicks: undefined })
  })

  it("works without a trailing AT_NULL", () => {
    assert.deepStrictEqual(parseAuxv(auxv64([[AT_CLKTCK, 100]])), { pageSize: undefined, clockTicks: 100 })
  })

  it("truncated input: a partial pair is ignored and nothing throws", () => {
    const full = auxv64([
      [AT_PAGESZ, 4096],
      [AT_CLKTCK, 100],
      [AT_NULL, 0]
    ])
    // the second pair cut in its value word
    assert.deepStrictEqual(parseAuxv(full.subarray(0, 16 + 12)), { pageSize: 4096, clockTicks: undefined })
    // the first pair cut in its type word
    assert.deepStrictEqual(parseAuxv(full.subarray(0, 5)), { pageSize: undefined, clockTicks: undefined })
    // cut exactly after the first pair
    assert.deepStrictEqual(parseAuxv(full.subarray(0, 16)), { pageSize: 4096, clockTicks: undefined })
  })

  it("honours the byte offset of a subarray view", () => {
    const data = auxv64([
      [AT_PAGESZ, 65536],
      [AT_CLKTCK, 1000],
      [AT_NULL, 0]
    ])
    const padded = new Uint8Array(data.length + 3)
    padded.set(data, 3)
    assert.deepStrictEqual(parseAuxv(padded.subarray(3)), { pageSize: 65536, clockTicks: 1000 })
  })

  it("32-bit words", () => {
    const data = auxv32([
      [AT_HWCAP, 7],
      [AT_PAGESZ, 4096],
      [AT_CLKTCK, 100],
      [AT_NULL, 0]
    ])
    assert.deepStrictEqual(parseAuxv(data, 4), { pageSize: 4096, clockTicks: 100 })
    // the 64-bit reading of the same bytes does not find them
    assert.notDeepEqual(parseAuxv(data, 8), { pageSize: 4096, clockTicks: 100 })
  })

  it("big-endian words when asked", () => {
    const bytes = new Uint8Array(48)
    const view = new DataView(bytes.buffer)
    view.setBigUint64(0, BigInt(AT_PAGESZ), false)
    view.setBigUint64(8, 65536n, false)
    view.setBigUint64(16, BigInt(AT_CLKTCK), false)
    view.setBigUint64(24, 100n, false)
    assert.deepStrictEqual(parseAuxv(bytes, 8, false), { pageSize: 65536, clockTicks: 100 })
    assert.deepStrictEqual(parseAuxv(bytes, 8), { pageSize: undefined, clockTicks: undefined })
  })

  it("a value a number cannot hold exactly is undefined, not rounded", () => {
    const data = auxv64([
      [AT_PAGESZ, 2n ** 53n + 1n],
      [AT_CLKTCK, 2n ** 64n - 1n],
      [AT_NULL, 0]
    ])
    assert.deepStrictEqual(parseAuxv(data), { pageSize: undefined, clockTicks: undefined })
    const largestExact = auxv64([
      [AT_PAGESZ, 2n ** 53n - 1n],
      [AT_NULL, 0]
    ])
    assert.deepStrictEqual(parseAuxv(largestExact), { pageSize: 2 ** 53 - 1, clockTicks: undefined })
  })

  it("a word size other than 4 or 8 gives nothing instead of misreading (or looping, for 0)", () => {
    const data = auxv32([
      [AT_PAGESZ, 4096],
      [AT_CLKTCK, 100],
      [AT_NULL, 0]
    ])
    assert.deepStrictEqual(parseAuxv(data, 3 as 4), { pageSize: undefined, clockTicks: undefined })
    assert.deepStrictEqual(parseAuxv(data, 0 as 4), { pageSize: undefined, clockTicks: undefined })
  })

  it.prop("never throws on random bytes", [fc.uint8Array({ maxLength: 256 })], ([data]) => {
    const info = parseAuxv(data)
    assert.isTrue(info.pageSize === undefined || Number.isFinite(info.pageSize))
    assert.isTrue(info.clockTicks === undefined || Number.isFinite(info.clockTicks))
  })

  it.prop(
    "finds the values wherever they are in the vector",
    [
      fc.array(fc.tuple(fc.integer({ min: 18, max: 64 }), fc.nat()), { maxLength: 20 }),
      fc.nat({ max: 20 }),
      fc.nat({ max: 20 }),
      fc.constantFrom(4096, 16384, 65536),
      fc.constantFrom(100, 250, 300, 1000)
    ],
    ([others, i, j, pageSize, clockTicks]) => {
      const pairs: Array<readonly [number, number]> = [...others]
      pairs.splice(Math.min(i, pairs.length), 0, [AT_PAGESZ, pageSize])
      pairs.splice(Math.min(j, pairs.length), 0, [AT_CLKTCK, clockTicks])
      pairs.push([AT_NULL, 0])
      assert.deepStrictEqual(parseAuxv(auxv64(pairs)), { pageSize, clockTicks })
    }
  )
})
