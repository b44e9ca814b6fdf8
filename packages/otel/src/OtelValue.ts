/**
 * Which values the OTel export can carry exactly, and a count of those it cannot.
 *
 * The OTel JS SDK carries every data point value as a JS `number`, and OTLP/protobuf writes an INT
 * point as an `sfixed64`. So an integer value is exact over OTel only when it is a double exactly
 * (every integer up to 2^53, above that only some) and inside int64 (below 2^63). Anything else
 * would arrive as something else: `Number(2n ** 64n - 1n)` is 2^64, which the encoder writes as 0 (a
 * fake counter reset); 2^63 + 4096 is written as a negative number; 2^53 + 1 is rounded. Such a
 * value is left out of that export and counted (`reason="out_of_range"`); the Prometheus text, which
 * writes exact decimals, still carries it.
 *
 * DOUBLE families (CPU seconds, the ratio) are doubles by definition: any finite value goes out.
 *
 * @since 0.1.0
 */

/** Why a value was left out of an OTel export. @category models */
export type DropReason = "out_of_range"

/** A cumulative count of values left out of OTel exports. @category models */
export interface Dropped {
  readonly metric: string
  readonly reason: DropReason
  readonly count: number
}

const INT64_MAX = 2n ** 63n - 1n
const INT64_MIN = -(2n ** 63n)
const TWO_63 = 2 ** 63

/**
 * The value as the number OTel would carry, or null when it cannot carry it exactly: an integer
 * family's value outside int64 or not exactly a double, or a value that is not finite.
 *
 * @category utils
 */
export const toOtelNumber = (integer: boolean, value: number | bigint): number | null => {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return null
    if (!integer) return value
    return Number.isInteger(value) && value >= -TWO_63 && value < TWO_63 ? value : null
  }
  const number = Number(value)
  if (!integer) return Number.isFinite(number) ? number : null
  return value >= INT64_MIN && value <= INT64_MAX && BigInt(number) === value ? number : null
}

/** Counts dropped values per metric; shared by every OTel export path of one VmMetrics. @category models */
export interface DropCounter {
  readonly count: (metric: string, reason: DropReason) => void
  /** Totals since start, in the order metrics were first dropped. */
  readonly totals: () => ReadonlyArray<Dropped>
}

/** @category constructors */
export const makeDropCounter = (): DropCounter => {
  const counts = new Map<string, Dropped>()
  return {
    count: (metric, reason) => {
      const key = `${metric}\u0000${reason}`
      counts.set(key, { metric, reason, count: (counts.get(key)?.count ?? 0) + 1 })
    },
    totals: () => [...counts.values()]
  }
}
