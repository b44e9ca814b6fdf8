/**
 * Rates of one VM between two snapshots, for the stats JSON (and so `top`): CPU cores, the vCPU delay
 * ratio (the host-side steal), network bytes and packets per second.
 *
 * A rate needs the same series in both samples (same instance and epoch: a new process or a counter
 * that went down moves the epoch on), both values read, time that went forward and a counter that did
 * not go down; otherwise it is null, never negative and never made up from one sample.
 *
 * `cpu_delay_ratio` is the vCPU threads' run-queue wait per vCPU-second: Δ delay / (Δt × vCPUs), where
 * vCPUs is the number of vCPU threads read (group `vcpu`), else the allocated vCPUs. 0.1 means each vCPU
 * waited 10 % of the time for a host CPU.
 *
 * `History` keeps the snapshot before the latest one, so a handler can find a VM's previous sample.
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import type { VmStats } from "@vm-metrics/core/VmStats"

/** @category models */
export interface VmRates {
  /** CPU seconds per second of the hypervisor process (all threads). */
  readonly cpuCores: number | null
  /** vCPU run-queue wait per vCPU-second (0 to 1). */
  readonly cpuDelayRatio: number | null
  readonly networkRxBytesPerSecond: number | null
  readonly networkTxBytesPerSecond: number | null
  readonly networkRxPacketsPerSecond: number | null
  readonly networkTxPacketsPerSecond: number | null
}

/** @category constants */
export const none: VmRates = {
  cpuCores: null,
  cpuDelayRatio: null,
  networkRxBytesPerSecond: null,
  networkTxBytesPerSecond: null,
  networkRxPacketsPerSecond: null,
  networkTxPacketsPerSecond: null
}

/** Δ counter ÷ `unit` per second (1e6 for µs, 1e9 for ns); null unless both are read and it did not go down. */
const perSecond = (before: bigint | null, after: bigint | null, seconds: number, unit = 1): number | null =>
  before === null || after === null || after < before ? null : Number(after - before) / unit / seconds

/** The vCPUs a delay is divided by: the threads read, else the allocated count; null when neither is known. */
const vcpuCount = (vm: VmStats): number | null =>
  vm.vcpus.length > 0 ? vm.vcpus.length : vm.allocatedVcpus > 0 ? vm.allocatedVcpus : null

/** The rates of `current` since `previous` (its sample in an earlier snapshot). @category constructors */
export const between = (previous: VmStats | undefined, current: VmStats): VmRates => {
  if (
    previous === undefined ||
    previous.instanceId !== current.instanceId ||
    previous.epoch !== current.epoch ||
    current.sampledAtMs <= previous.sampledAtMs
  )
    return none
  const seconds = (current.sampledAtMs - previous.sampledAtMs) / 1000
  const vcpus = vcpuCount(current)
  const delayPerSecond = perSecond(previous.cpuDelayNs, current.cpuDelayNs, seconds, 1e9)
  return {
    cpuCores: perSecond(previous.cpuUsec, current.cpuUsec, seconds, 1e6),
    cpuDelayRatio: delayPerSecond === null || vcpus === null ? null : delayPerSecond / vcpus,
    networkRxBytesPerSecond: perSecond(previous.netRxBytes, current.netRxBytes, seconds),
    networkTxBytesPerSecond: perSecond(previous.netTxBytes, current.netTxBytes, seconds),
    networkRxPacketsPerSecond: perSecond(previous.netRxPackets, current.netRxPackets, seconds),
    networkTxPacketsPerSecond: perSecond(previous.netTxPackets, current.netTxPackets, seconds)
  }
}

/** The last two snapshots seen, to find a VM's previous sample. @category models */
export interface History {
  /** Records a snapshot newer than the latest recorded one (older or the same are ignored). */
  readonly observe: (snapshot: Snapshot) => void
  /** The instance's sample in the snapshot recorded before `snapshot`, when `snapshot` is the latest. */
  readonly previous: (snapshot: Snapshot, instanceId: string) => VmStats | undefined
}

/** @category constructors */
export const makeHistory = (): History => {
  let latest: Snapshot | undefined
  let before: Snapshot | undefined
  let index: Map<string, VmStats> | undefined
  const observe = (snapshot: Snapshot) => {
    if (latest !== undefined && snapshot.sequence <= latest.sequence) return
    before = latest
    latest = snapshot
    index = undefined
  }
  return {
    observe,
    previous: (snapshot, instanceId) => {
      observe(snapshot)
      if (snapshot !== latest || before === undefined) return undefined
      index ??= new Map(before.stats.map((vm) => [vm.instanceId, vm]))
      return index.get(instanceId)
    }
  }
}
