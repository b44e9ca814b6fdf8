/**
 * Clock ticks (USER_HZ, as /proc reports CPU times) to microseconds, exactly.
 *
 * @internal
 */

/**
 * ⌊ticks × 10^6 / hz⌋ exactly. In doubles (fewer bigint allocations on the hot path) when hz divides
 * 10^6 (USER_HZ is 100 on Linux) and the product stays below 2^53, so the quotient is exact; else in bigint.
 *
 * @internal
 */
export const ticksToUsec = (ticks: bigint, hz: number): bigint =>
  ticks < 9_007_199_254n && 1_000_000 % hz === 0
    ? BigInt((Number(ticks) * 1_000_000) / hz)
    : (ticks * 1_000_000n) / BigInt(hz)
