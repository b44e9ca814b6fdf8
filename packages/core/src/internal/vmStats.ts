/**
 * Turns one instance's raw reads into a `VmStats`: unit conversion, the VM-perspective swap, the
 * zombie rule, unavailability bookkeeping and the process-identity epoch. Pure apart from the
 * `Identities` map it is handed.
 *
 * @internal
 */
import { Either } from "effect"
import { type ProcReadError, type ReadError, reasonOf, type TapReadError } from "../Errors.js"
import type { InstanceInfo } from "../Instance.js"
import type { KernelInfo } from "../Kernel.js"
import type { ProcSample } from "../ProcReader.js"
import { isNotRunning } from "../ProcStat.js"
import type { TapCounters } from "../TapReader.js"
import type { ReadSource, Unavailable, VmState, VmStats } from "../VmStats.js"

/** The process seen last for an instance, how many processes came before it, and when it was last listed. @internal */
interface Identity {
  readonly pid: number
  readonly startTicks: bigint
  readonly epoch: number
  seen: number
}

/** Per-instance process identity, kept across collections by the collector. @internal */
export type Identities = Map<string, Identity>

/** Counts of unavailable values by "source\0reason", cumulative. @internal */
export type UnavailableCounts = Map<string, number>

const unavailableOf = (source: ReadSource, error: ReadError): Unavailable => ({
  source,
  reason: reasonOf(error),
  message: error.message
})

const notRunning = (source: ReadSource, pid: number): Unavailable => ({
  source,
  reason: "not_running",
  message: `process ${pid} is a zombie`
})

/** The epoch of this (pid, starttime): a new one whenever another process takes the instance's place. */
const epochOf = (identities: Identities, id: string, pid: number, startTicks: bigint, generation: number): number => {
  const known = identities.get(id)
  if (known !== undefined && known.pid === pid && known.startTicks === startTicks) {
    known.seen = generation
    return known.epoch
  }
  const epoch = known === undefined ? 0 : known.epoch + 1
  identities.set(id, { pid, startTicks, epoch, seen: generation })
  return epoch
}

const isGone = (error: ProcReadError) => error._tag === "ProcessGone"

/**
 * ⌊ticks × 10^6 / hz⌋ exactly. In doubles (fewer bigint allocations on the hot path) when hz divides
 * 10^6 (USER_HZ is 100 on Linux) and the product stays below 2^53, so the quotient is exact; else in bigint.
 */
const ticksToUsec = (ticks: bigint, hz: number): bigint =>
  ticks < 9_007_199_254n && 1_000_000 % hz === 0
    ? BigInt((Number(ticks) * 1_000_000) / hz)
    : (ticks * 1_000_000n) / BigInt(hz)

/** value × unit exactly: in doubles while the product is a safe integer, else in bigint. */
const times = (value: bigint, unit: number): bigint => {
  const product = Number(value) * unit
  return product <= Number.MAX_SAFE_INTEGER ? BigInt(product) : value * BigInt(unit)
}

/** @internal */
export const buildVmStats = (
  info: InstanceInfo,
  proc: ProcSample | undefined,
  tap: Either.Either<TapCounters, TapReadError> | undefined,
  kernel: KernelInfo,
  identities: Identities,
  generation: number,
  sampledAtMs: number
): VmStats => {
  const unavailable: Array<Unavailable> = []
  const pid = info.hypervisorPid ?? null
  let state: VmState = "no-process"
  let cpuUsec: bigint | null = null
  let guestUsec: bigint | null = null
  let rss: bigint | null = null
  let vms: bigint | null = null
  let startTicks: bigint | null = null
  const known = identities.get(info.id)
  let epoch = 0
  if (known !== undefined) {
    known.seen = generation
    epoch = known.epoch
  }

  if (pid !== null && proc !== undefined) {
    const { stat, statm } = proc
    if (Either.isRight(stat) && isNotRunning(stat.right)) {
      state = "exited"
      unavailable.push(notRunning("stat", pid), notRunning("statm", pid))
    } else {
      const gone = Either.isLeft(stat) && isGone(stat.left) && Either.isLeft(statm) && isGone(statm.left)
      const anyRead = Either.isRight(stat) || Either.isRight(statm)
      state = gone ? "exited" : anyRead ? "running" : "unknown"
      if (Either.isRight(stat)) {
        const s = stat.right
        const hz = kernel.clockTicksPerSecond
        cpuUsec = ticksToUsec(s.utimeTicks + s.stimeTicks, hz)
        guestUsec = s.guestTimeTicks === null ? null : ticksToUsec(s.guestTimeTicks, hz)
        startTicks = s.startTimeTicks
        if (startTicks !== null) epoch = epochOf(identities, info.id, pid, startTicks, generation)
      } else {
        unavailable.push(unavailableOf("stat", stat.left))
      }
      if (Either.isRight(statm)) {
        rss = times(statm.right.rssPages, kernel.pageSize)
        vms = times(statm.right.vmsPages, kernel.pageSize)
      } else {
        unavailable.push(unavailableOf("statm", statm.left))
      }
    }
  }

  let netRx: bigint | null = null
  let netTx: bigint | null = null
  if (tap !== undefined) {
    if (Either.isRight(tap)) {
      // The TAP's tx is what the host sent into the VM: the VM received it.
      netRx = tap.right.txBytes
      netTx = tap.right.rxBytes
    } else {
      unavailable.push(unavailableOf("tap", tap.left))
    }
  }

  const processStartTimeMs =
    startTicks === null || kernel.bootTimeMs === null
      ? null
      : kernel.bootTimeMs + (Number(startTicks) * 1000) / kernel.clockTicksPerSecond
  return {
    instanceId: info.id,
    instanceName: info.name,
    state,
    pid,
    tapDevice: info.tapDevice ?? null,
    processStartTicks: startTicks,
    processStartTimeMs,
    seriesStartTimeMs: processStartTimeMs,
    epoch,
    sampledAtMs,
    cpuUsec,
    guestUsec,
    memoryRssBytes: rss,
    memoryVmsBytes: vms,
    netRxBytes: netRx,
    netTxBytes: netTx,
    allocatedVcpus: info.allocatedVcpus,
    allocatedMemoryBytes: info.allocatedMemoryBytes,
    unavailable
  }
}

/** Adds a VmStats' unavailable values to the running totals. @internal */
export const countUnavailable = (counts: UnavailableCounts, stats: VmStats): void => {
  for (const u of stats.unavailable) {
    const key = `${u.source}\u0000${u.reason}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
}
