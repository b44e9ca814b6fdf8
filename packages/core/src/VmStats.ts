/**
 * One VM's resource use at one instant: the Go original's `VMStats`, plus identity and time.
 *
 * Deviation from the Go original, on purpose: a value that could not be read is `null` and listed
 * in `unavailable` with its reason, never 0 (a 0 on a counter is a fake reset to Prometheus). A VM
 * with no process has `state: "no-process"` and null usage; a VM without network has null rx/tx.
 * Kernel-derived numbers are exact `bigint`s, never above 2^64 − 1 for memory (a statm product beyond
 * that is null with reason `out_of_range`). A pid that now belongs to another process (another start
 * time) is `exited` with reason `pid_reused`: its values are never reported as the VM's.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { Pid } from "./Instance.js"

/** Which kernel file a value comes from. @category schemas */
export const ReadSource = Schema.Literal("stat", "statm", "tap", "status", "io", "tasks", "schedstat", "netdev")
/** @category models */
export type ReadSource = typeof ReadSource.Type

/** A value we could not read this time, and why. @category schemas */
export const Unavailable = Schema.Struct({
  source: ReadSource,
  /**
   * Low-cardinality label: process_gone, not_running, pid_reused, permission_denied, tap_missing,
   * parse_error, out_of_range, …
   */
  reason: Schema.String,
  message: Schema.String
})
/** @category models */
export type Unavailable = typeof Unavailable.Type

/**
 * - `running`: the hypervisor process exists and is not a zombie;
 * - `exited`: a pid was given but the process is gone, a zombie, or the pid now belongs to another
 *   process (`pid_reused`);
 * - `no-process`: no pid was given;
 * - `unknown`: the process could not be inspected (permission denied, or hidden by a `hidepid` /proc
 *   while it is alive): never read as exited.
 *
 * @category schemas
 */
export const VmState = Schema.Literal("running", "exited", "no-process", "unknown")
/** @category models */
export type VmState = typeof VmState.Type

const Counter = Schema.NullOr(Schema.BigIntFromSelf)

/**
 * One vCPU thread's scheduler counters (group `vcpu`), from `/proc/<pid>/task/<tid>/schedstat`.
 *
 * @category schemas
 */
export const VcpuStats = Schema.Struct({
  /** The vCPU index the thread's name gives (`CPU <n>/KVM`, `vcpu<n>`, `fc_vcpu <n>`). */
  vcpu: Schema.Int,
  tid: Schema.Int,
  /** Nanoseconds the thread spent on a CPU. */
  runNs: Schema.BigIntFromSelf,
  /** Nanoseconds it was runnable but waited for a CPU: the host-side steal. */
  delayNs: Schema.BigIntFromSelf,
  /**
   * Start (ms since the epoch) of this vCPU's series: the VM's series start while the thread is the
   * first one seen for this index, else when another thread took the index over (its counters start
   * from 0 again). Null when neither is known.
   */
  seriesStartTimeMs: Schema.NullOr(Schema.Number)
})
/** @category models */
export type VcpuStats = typeof VcpuStats.Type

/** How a NIC's counters were read: the host's sysfs, or the VMM's `/proc/<pid>/net/dev` (another netns). @category schemas */
export const NicVia = Schema.Literal("sysfs", "netns")
/** @category models */
export type NicVia = typeof NicVia.Type

/**
 * One NIC (TAP) of the VM (group `interfaces`), from the VM's perspective: rx is what the VM
 * received, the TAP's tx.
 *
 * @category schemas
 */
export const NicStats = Schema.Struct({
  name: Schema.String,
  via: NicVia,
  rxBytes: Counter,
  txBytes: Counter,
  rxPackets: Counter,
  txPackets: Counter,
  rxErrors: Counter,
  txErrors: Counter,
  rxDropped: Counter,
  txDropped: Counter
})
/** @category models */
export type NicStats = typeof NicStats.Type

/** @category schemas */
export const VmStats = Schema.Struct({
  instanceId: Schema.String,
  instanceName: Schema.String,
  state: VmState,
  pid: Schema.NullOr(Pid),
  tapDevice: Schema.NullOr(Schema.String),
  /** Field 22 of stat: with the pid, the identity of the hypervisor process. */
  processStartTicks: Counter,
  /** The same as wall-clock milliseconds (boot time + start ticks), when boot time is known. */
  processStartTimeMs: Schema.NullOr(Schema.Number),
  /**
   * Wall-clock start (ms since the epoch) of the current series of this VM's cumulative counters: the
   * process start time, or, when a kernel counter went down under the same process (a TAP deleted and
   * created again), the time of the last sample before the drop. Null when neither is known. OTLP
   * exports it as the cumulative start time, so a counter never goes down within one start time.
   */
  seriesStartTimeMs: Schema.NullOr(Schema.Number),
  /**
   * 0 for the first series seen for this instance; +1 each time another process takes its place or a
   * kernel counter went down (a new series).
   */
  epoch: Schema.Int,
  /** When this sample was taken, in ms since the epoch. */
  sampledAtMs: Schema.Number,
  /** utime + stime of the hypervisor process (all threads), µs. */
  cpuUsec: Counter,
  /** guest_time (inside cpuUsec), µs. */
  guestUsec: Counter,
  memoryRssBytes: Counter,
  memoryVmsBytes: Counter,
  /** Bytes the VM received = the TAP's tx_bytes. */
  netRxBytes: Counter,
  /** Bytes the VM sent = the TAP's rx_bytes. */
  netTxBytes: Counter,
  allocatedVcpus: Schema.Int,
  allocatedMemoryBytes: Schema.Int,
  unavailable: Schema.Array(Unavailable),
  // The metric groups' values (MetricGroup.ts): null when the group is off, or when the value could
  // not be read (then listed in `unavailable`).
  /** Group `cpu`: stime of the hypervisor process (inside cpuUsec), µs. */
  systemUsec: Counter,
  /** Group `cpu`: the sum of the vCPU threads' run-queue wait (schedstat field 2), ns. */
  cpuDelayNs: Counter,
  /** Group `packets`: major page faults of the process (stat field 12). */
  majorFaults: Counter,
  /** Group `memory`: `/proc/<pid>/status` RssAnon, bytes. */
  memoryAnonBytes: Counter,
  /** Group `memory`: RssFile, bytes. */
  memoryFileBytes: Counter,
  /** Group `memory`: RssShmem, bytes. */
  memoryShmemBytes: Counter,
  /** Group `memory`: VmSwap, bytes. */
  memorySwapBytes: Counter,
  /** Group `memory`: HugetlbPages, bytes (not in any RSS). */
  memoryHugetlbBytes: Counter,
  /** Group `disk`: `/proc/<pid>/io` read_bytes. */
  diskReadBytes: Counter,
  /** Group `disk`: `/proc/<pid>/io` write_bytes. */
  diskWriteBytes: Counter,
  /** Group `packets`: packets the VM received, over its NICs (the TAPs' tx). */
  netRxPackets: Counter,
  /** Group `packets`: packets the VM sent (the TAPs' rx). */
  netTxPackets: Counter,
  /** Group `packets`: receive errors from the VM's perspective (the TAPs' tx_errors). */
  netRxErrors: Counter,
  /** Group `packets`: send errors from the VM's perspective (the TAPs' rx_errors). */
  netTxErrors: Counter,
  /** Group `network`: packets dropped on the way into the VM (the TAPs' tx_dropped: guest backpressure). */
  netRxDropped: Counter,
  /** Group `network`: packets from the VM dropped by the host (the TAPs' rx_dropped). */
  netTxDropped: Counter,
  /** Group `vcpu`: one entry per vCPU thread, by vCPU index; empty when off or not found. */
  vcpus: Schema.Array(VcpuStats),
  /** Group `interfaces`: one entry per NIC, in the instance's order; empty when off. */
  interfaces: Schema.Array(NicStats)
})
/** @category models */
export type VmStats = typeof VmStats.Type

/** The metric groups' fields of a VmStats when no group is read (null, empty arrays). @category constants */
export const noGroupValues = {
  systemUsec: null,
  cpuDelayNs: null,
  majorFaults: null,
  memoryAnonBytes: null,
  memoryFileBytes: null,
  memoryShmemBytes: null,
  memorySwapBytes: null,
  memoryHugetlbBytes: null,
  diskReadBytes: null,
  diskWriteBytes: null,
  netRxPackets: null,
  netTxPackets: null,
  netRxErrors: null,
  netTxErrors: null,
  netRxDropped: null,
  netTxDropped: null,
  vcpus: [],
  interfaces: []
} as const satisfies Partial<VmStats>

/**
 * CPU time in seconds (1 500 000 µs → 1.5), null when unavailable. A double: the nearest one to the
 * exact quotient while cpuUsec < 2^53 (285 years of CPU); beyond that, within one double rounding. Use
 * `cpuUsec` where exactness matters.
 *
 * @category getters
 */
export const cpuSeconds = (stats: Pick<VmStats, "cpuUsec">): number | null =>
  stats.cpuUsec === null ? null : Number(stats.cpuUsec) / 1e6

/**
 * RSS / allocated memory; null when allocated ≤ 0 or RSS is unavailable; may exceed 1. A ratio is a
 * double (RSS above 2^53 bytes, 8 PiB, is rounded to 53 bits first, a relative error below 10^-15).
 *
 * @category getters
 */
export const memoryUtilizationRatio = (
  stats: Pick<VmStats, "memoryRssBytes" | "allocatedMemoryBytes">
): number | null =>
  stats.allocatedMemoryBytes <= 0 || stats.memoryRssBytes === null
    ? null
    : Number(stats.memoryRssBytes) / stats.allocatedMemoryBytes
