/**
 * Turns one instance's raw reads into a `VmStats`: unit conversion, the VM-perspective swap, the
 * zombie rule, unavailability bookkeeping, the pinned process identity (a reused pid is never read
 * as the VM) and the series epoch (a new process, or a kernel counter that went down). Pure apart from the
 * `Identities` map it is handed.
 *
 * @internal
 */
import { Either } from "effect"
import { type ProcReadError, type ReadError, reasonOf } from "../Errors.js"
import type { InstanceInfo } from "../Instance.js"
import type { KernelInfo } from "../Kernel.js"
import type { ProcSample } from "../ProcReader.js"
import { isNotRunning } from "../ProcStat.js"
import type { TapSample } from "../TapReader.js"
import { noGroupValues, type ReadSource, type Unavailable, type VmState, type VmStats } from "../VmStats.js"
import { type NetGroups, type NetMemory, netWentDown, readNet, rememberNet } from "./netStats.js"
import { type ProcGroups, type ProcMemory, procWentDown, readProc, rememberProc } from "./procStats.js"
import { ticksToUsec } from "./ticks.js"

/**
 * What the collector remembers of an instance between readings: the pinned process identity (the
 * first reading's pid + start time, or the start time the source gave), the series (epoch, and its
 * start when a counter went down) and the last counter values of that series.
 */
interface Identity {
  /** The pid the identity is pinned to; null until the source names one. */
  pid: number | null
  /** Its start time; null until read (or given by the source). */
  startTicks: bigint | null
  epoch: number
  /** Set when a counter went down under the same process: the new series starts here. */
  seriesStartMs: number | null
  /** The last time this instance was sampled, and when it was last listed (a collection number). */
  sampledAtMs: number
  seen: number
  cpuUsec: bigint | null
  guestUsec: bigint | null
  /** The network counters of the series, per NIC and summed (netStats.ts). */
  net: NetMemory | null
  /** The process counters of the series (procStats.ts). */
  proc: ProcMemory | null
  /** The last resident and virtual sizes read (gauges: not reset with the series), for `kept`. */
  rss: bigint | null
  vms: bigint | null
  /** processStartTimeMs, worked out once per process: from `startTimeTicks` under `startTimeKernel`. */
  startTimeMs: number | null
  startTimeTicks: bigint | null
  startTimeKernel: KernelInfo | null
}

/** Per-instance process identity, kept across collections by the collector. @internal */
export type Identities = Map<string, Identity>

/** Counts of unavailable values by "source\0reason", cumulative. @internal */
export type UnavailableCounts = Map<string, number>

/** The largest value a uint64 (the kernel's counters, and OTLP's widest integer) can hold. */
const UINT64_MAX = 18_446_744_073_709_551_615n

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

const pidReused = (source: ReadSource, pid: number, pinned: bigint, found: bigint | null): Unavailable => ({
  source,
  reason: "pid_reused",
  message: `pid ${pid} now belongs to another process (start time ${found ?? "unknown"}, expected ${pinned})`
})

const outOfRange = (what: string, pages: bigint, pageSize: number): Unavailable => ({
  source: "statm",
  reason: "out_of_range",
  message: `${what} of ${pages} pages × ${pageSize} bytes exceeds 2^64 − 1`
})

const isGone = (error: ProcReadError) => error._tag === "ProcessGone"

/**
 * value × unit exactly: in doubles while the product is a safe integer (a rounded Number(value) above
 * 2^53 always fails that test), else in bigint. The caller checks the result against uint64.
 */
const times = (value: bigint, unit: number): bigint => {
  const product = Number(value) * unit
  return product <= Number.MAX_SAFE_INTEGER ? BigInt(product) : value * BigInt(unit)
}

/**
 * The last reading's value when the new one equals it: an idle VM's numbers are then no new objects
 * (a bigint is one), and the snapshot holds none made in this collection that V8 would promote.
 */
const kept = (now: bigint | null, before: bigint | null | undefined): bigint | null =>
  now !== null && now === before ? before : now

/** Whether a counter went down since the last reading of its series (a null on either side is no evidence). */
const wentDown = (now: bigint | null, before: bigint | null): boolean => now !== null && before !== null && now < before

/** The identity of an instance, made on its first reading; moved to a new epoch when the source names another process. */
const identityOf = (identities: Identities, info: InstanceInfo, generation: number): Identity => {
  const pid = info.hypervisorPid ?? null
  const expected = info.hypervisorStartTicks === undefined ? null : BigInt(info.hypervisorStartTicks)
  let identity = identities.get(info.id)
  if (identity === undefined) {
    identity = {
      pid,
      startTicks: expected,
      epoch: 0,
      seriesStartMs: null,
      sampledAtMs: 0,
      seen: generation,
      cpuUsec: null,
      guestUsec: null,
      net: null,
      proc: null,
      rss: null,
      vms: null,
      startTimeMs: null,
      startTimeTicks: null,
      startTimeKernel: null
    }
    identities.set(info.id, identity)
    return identity
  }
  identity.seen = generation
  if (pid === null) return identity // no process now: keep the pin, a later pid tells whether it restarted
  const restarted =
    (identity.pid !== null && identity.pid !== pid) ||
    (expected !== null && identity.startTicks !== null && expected !== identity.startTicks)
  if (restarted) {
    // Another process (a restart): a new series, whose counters start over from the process start.
    identity.epoch++
    identity.seriesStartMs = null
    identity.cpuUsec = null
    identity.guestUsec = null
    identity.net = null
    identity.proc = null
    identity.startTicks = expected
  }
  identity.pid = pid
  return identity
}

/**
 * The wall-clock start (boot time + start ticks) of the identity's pinned process, worked out once per
 * process: a double made per VM and collection lives as long as its snapshot, which V8 promotes.
 */
const startTimeMsOf = (identity: Identity, kernel: KernelInfo): number | null => {
  if (identity.startTimeKernel !== kernel || identity.startTimeTicks !== identity.startTicks) {
    identity.startTimeKernel = kernel
    identity.startTimeTicks = identity.startTicks
    // A double of ms, exact to well below a ms for any real uptime (start ticks stay far below 2^53).
    identity.startTimeMs =
      identity.startTicks === null || kernel.bootTimeMs === null
        ? null
        : kernel.bootTimeMs + (Number(identity.startTicks) * 1000) / kernel.clockTicksPerSecond
  }
  return identity.startTimeMs
}

/**
 * What buildVmStats appends unavailable values to, emptied into the VmStats it builds: most VMs have
 * none, and share one empty array instead of each keeping its own.
 */
const pending: Array<Unavailable> = []
const NONE_UNAVAILABLE: ReadonlyArray<Unavailable> = Object.freeze([])

/** @internal */
export const buildVmStats = (
  info: InstanceInfo,
  /** `tapsOf(info)`. */
  names: ReadonlyArray<string>,
  proc: ProcSample | undefined,
  /** One per name, in that order. */
  taps: ReadonlyArray<TapSample>,
  netGroups: NetGroups,
  procGroups: ProcGroups,
  kernel: KernelInfo,
  identities: Identities,
  generation: number,
  sampledAtMs: number
): VmStats => {
  const unavailable = pending
  unavailable.length = 0 // a build that threw midway leaves nothing behind
  const pid = info.hypervisorPid ?? null
  const identity = identityOf(identities, info, generation)
  let state: VmState = "no-process"
  let cpuUsec: bigint | null = null
  let guestUsec: bigint | null = null
  let rss: bigint | null = null
  let vms: bigint | null = null
  let startTicks: bigint | null = null
  /** Why the pid is not the VM's process now: its network namespace is then not the VM's either. */
  let pidProblem: string | undefined

  if (pid !== null && proc !== undefined) {
    const { stat, statm } = proc
    const found = Either.isRight(stat) ? stat.right.startTimeTicks : null
    if (identity.startTicks !== null && found !== null && found !== identity.startTicks) {
      // Same pid, another start time: not our process. Its values are never reported as the VM's.
      state = "exited"
      pidProblem = "pid_reused"
      unavailable.push(
        pidReused("stat", pid, identity.startTicks, found),
        pidReused("statm", pid, identity.startTicks, found)
      )
    } else if (Either.isRight(stat) && isNotRunning(stat.right)) {
      state = "exited"
      pidProblem = "not_running"
      unavailable.push(notRunning("stat", pid), notRunning("statm", pid))
    } else {
      const gone = Either.isLeft(stat) && isGone(stat.left) && Either.isLeft(statm) && isGone(statm.left)
      const anyRead = Either.isRight(stat) || Either.isRight(statm)
      state = gone ? "exited" : anyRead ? "running" : "unknown"
      if (gone) pidProblem = "process_gone"
      if (Either.isRight(stat)) {
        const s = stat.right
        const hz = kernel.clockTicksPerSecond
        cpuUsec = ticksToUsec(s.utimeTicks + s.stimeTicks, hz)
        guestUsec = s.guestTimeTicks === null ? null : ticksToUsec(s.guestTimeTicks, hz)
        if (identity.startTicks === null) identity.startTicks = found // the first reading pins the process
        // The pinned value when it is this one (it is, unless none was read): no new bigint kept per collection.
        startTicks = found === null ? null : identity.startTicks
      } else {
        unavailable.push(unavailableOf("stat", stat.left))
      }
      if (Either.isRight(statm)) {
        const pageSize = kernel.pageSize
        rss = times(statm.right.rssPages, pageSize)
        vms = times(statm.right.vmsPages, pageSize)
        if (rss > UINT64_MAX) {
          unavailable.push(outOfRange("resident", statm.right.rssPages, pageSize))
          rss = null
        }
        if (vms > UINT64_MAX) {
          unavailable.push(outOfRange("size", statm.right.vmsPages, pageSize))
          vms = null
        }
      } else {
        unavailable.push(unavailableOf("statm", statm.left))
      }
    }
  }

  // Every NIC, VM perspective (the TAP's tx is what the VM received); sums null unless every NIC read.
  const net = readNet(names, taps, pidProblem, unavailable)
  const procValues = readProc(
    pid,
    proc,
    pidProblem === "pid_reused" || pidProblem === "not_running" ? pidProblem : undefined,
    procGroups,
    kernel,
    unavailable
  )

  // A kernel counter that went down under the same process (a TAP deleted and created again) starts
  // a new series. Its counts were all made after the previous sample, so that is where it starts.
  if (
    wentDown(cpuUsec, identity.cpuUsec) ||
    wentDown(guestUsec, identity.guestUsec) ||
    netWentDown(identity.net, net) ||
    procWentDown(identity.proc, procValues, proc)
  ) {
    identity.epoch++
    identity.seriesStartMs = identity.sampledAtMs
  }
  cpuUsec = kept(cpuUsec, identity.cpuUsec)
  guestUsec = kept(guestUsec, identity.guestUsec)
  rss = kept(rss, identity.rss)
  vms = kept(vms, identity.vms)
  const netRxBytes = kept(net.sums[0], identity.net?.sums[0])
  const netTxBytes = kept(net.sums[1], identity.net?.sums[1])
  if (cpuUsec !== null) identity.cpuUsec = cpuUsec
  if (guestUsec !== null) identity.guestUsec = guestUsec
  if (rss !== null) identity.rss = rss
  if (vms !== null) identity.vms = vms
  identity.net = rememberNet(identity.net, net)
  identity.proc = rememberProc(identity.proc, procValues, proc)
  identity.sampledAtMs = sampledAtMs

  const processStartTimeMs = startTicks === null ? null : startTimeMsOf(identity, kernel)
  return {
    instanceId: info.id,
    instanceName: info.name,
    state,
    pid,
    tapDevice: info.tapDevice ?? null,
    processStartTicks: startTicks,
    processStartTimeMs,
    seriesStartTimeMs: identity.seriesStartMs ?? processStartTimeMs,
    epoch: identity.epoch,
    sampledAtMs,
    cpuUsec,
    guestUsec,
    memoryRssBytes: rss,
    memoryVmsBytes: vms,
    netRxBytes,
    netTxBytes,
    allocatedVcpus: info.allocatedVcpus,
    allocatedMemoryBytes: info.allocatedMemoryBytes,
    unavailable: unavailable.length === 0 ? NONE_UNAVAILABLE : unavailable.splice(0),
    // Every field written out, in noGroupValues' order (the JSON's): spreads of three objects made
    // two of them per VM and collection only to copy them.
    systemUsec: procValues.systemUsec,
    cpuDelayNs: procValues.cpuDelayNs,
    majorFaults: procValues.majorFaults,
    memoryAnonBytes: procValues.memoryAnonBytes,
    memoryFileBytes: procValues.memoryFileBytes,
    memoryShmemBytes: procValues.memoryShmemBytes,
    memorySwapBytes: procValues.memorySwapBytes,
    memoryHugetlbBytes: procValues.memoryHugetlbBytes,
    diskReadBytes: procValues.diskReadBytes,
    diskWriteBytes: procValues.diskWriteBytes,
    netRxPackets: netGroups.packets ? net.sums[2] : null,
    netTxPackets: netGroups.packets ? net.sums[3] : null,
    netRxErrors: netGroups.packets ? net.sums[4] : null,
    netTxErrors: netGroups.packets ? net.sums[5] : null,
    netRxDropped: netGroups.dropped ? net.sums[6] : null,
    netTxDropped: netGroups.dropped ? net.sums[7] : null,
    vcpus: procValues.vcpus,
    interfaces: netGroups.interfaces ? net.nics : noGroupValues.interfaces
  }
}

/** Adds a VmStats' unavailable values to the running totals. @internal */
export const countUnavailable = (counts: UnavailableCounts, stats: VmStats): void => {
  for (const u of stats.unavailable) {
    const key = `${u.source}\u0000${u.reason}`
    counts.set(key, (counts.get(key) ?? 0) + 1)
  }
}
