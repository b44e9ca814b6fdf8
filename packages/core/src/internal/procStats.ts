/**
 * The process part of a VmStats' metric groups: system time and major faults (from the stat the seed
 * reads anyway), the memory breakdown (`status`), disk bytes (`io`) and the vCPU threads' run and
 * wait time (`task/<tid>/schedstat`).
 *
 * - A value whose group is off is null (vcpus empty); its file was not read.
 * - A value that could not be read is null and listed in `unavailable` once per source; a pid that is
 *   not the VM's process (reused, zombie) gives every requested file that reason, like stat and statm.
 * - cpuDelayNs is the sum of the vCPU threads' wait: null when any vCPU thread could not be read (a
 *   partial sum would go down once it is back). A kernel without schedstat accounting prints `0 0 0`
 *   for every thread: when every vCPU thread reads 0 run time and 0 timeslices, the values are null
 *   with reason `schedstat_disabled`, never 0 (a vCPU thread that exists has run: it named itself or
 *   waited for its first vCPU run).
 * - Series: systemUsec, majorFaults, cpuDelayNs and the disk bytes going down under the same process
 *   start a new series of the VM (the caller moves its epoch); so does a change of the set of vCPU
 *   threads that cpuDelayNs sums (a replaced thread's counters start over). Each vCPU's own series
 *   starts when its thread did (the thread's start time), so a replaced thread starts its own.
 *
 * @internal
 */
import { Either } from "effect"
import { type ReadError, reasonOf } from "../Errors.js"
import type { KernelInfo } from "../Kernel.js"
import { type MetricGroup, needs } from "../MetricGroup.js"
import type { ProcFiles, ProcSample } from "../ProcReader.js"
import type { ProcStatusLine } from "../ProcStatus.js"
import type { ReadSource, Unavailable, VcpuStats } from "../VmStats.js"
import { ticksToUsec } from "./ticks.js"

/** Which process values the enabled groups show, and the files they need read. @internal */
export interface ProcGroups {
  readonly files: ProcFiles
  readonly cpu: boolean
  readonly vcpu: boolean
  readonly memory: boolean
  readonly disk: boolean
  readonly packets: boolean
  /** Whether any of these groups is on: else nothing beyond the original's stat and statm is built. */
  readonly any: boolean
}

/** @internal */
export const procGroupsOf = (groups: ReadonlySet<MetricGroup>): ProcGroups => {
  const cpu = groups.has("cpu")
  const vcpu = groups.has("vcpu")
  const memory = groups.has("memory")
  const disk = groups.has("disk")
  const packets = groups.has("packets")
  const { status, io, vcpuThreads } = needs(groups)
  return {
    files: { status, io, vcpuThreads },
    cpu,
    vcpu,
    memory,
    disk,
    packets,
    any: cpu || vcpu || memory || disk || packets
  }
}

/** The process values of one reading (the VmStats fields of the same names). @internal */
export interface ProcValues {
  readonly systemUsec: bigint | null
  readonly majorFaults: bigint | null
  readonly cpuDelayNs: bigint | null
  readonly memoryAnonBytes: bigint | null
  readonly memoryFileBytes: bigint | null
  readonly memoryShmemBytes: bigint | null
  readonly memorySwapBytes: bigint | null
  readonly memoryHugetlbBytes: bigint | null
  readonly diskReadBytes: bigint | null
  readonly diskWriteBytes: bigint | null
  readonly vcpus: ReadonlyArray<VcpuStats>
}

/** The last counter values of a series, and the vCPU threads cpuDelayNs summed. @internal */
export interface ProcMemory {
  readonly counters: ReadonlyArray<bigint | null>
  readonly vcpuTids: string | null
}

const none: ProcValues = {
  systemUsec: null,
  majorFaults: null,
  cpuDelayNs: null,
  memoryAnonBytes: null,
  memoryFileBytes: null,
  memoryShmemBytes: null,
  memorySwapBytes: null,
  memoryHugetlbBytes: null,
  diskReadBytes: null,
  diskWriteBytes: null,
  vcpus: []
}

const unavailableOf = (source: ReadSource, error: ReadError): Unavailable => ({
  source,
  reason: reasonOf(error),
  message: error.message
})

const NO_VCPU_MESSAGES: Record<string, string> = {
  vcpu_threads_unnamed:
    "the hypervisor's threads carry its own name, so its vCPU threads cannot be told apart (QEMU: add debug-threads=on to -name)",
  no_vcpu_threads: "no thread of the hypervisor process is named as a vCPU thread"
}

const STATUS_LINES: Record<ProcStatusLine, string> = {
  RssAnon: "memoryAnonBytes",
  RssFile: "memoryFileBytes",
  RssShmem: "memoryShmemBytes",
  VmSwap: "memorySwapBytes",
  HugetlbPages: "memoryHugetlbBytes"
}

/**
 * The process values of a reading. `pidProblem` is set when the pid is not the VM's process now
 * (`pid_reused`, `not_running`): then nothing of it is the VM's, and each requested file is listed
 * with that reason. @internal
 */
export const readProc = (
  pid: number | null,
  proc: ProcSample | undefined,
  pidProblem: "pid_reused" | "not_running" | undefined,
  groups: ProcGroups,
  kernel: KernelInfo,
  unavailable: Array<Unavailable>
): ProcValues => {
  // No group reads a process file beyond stat and statm (the original's set): nothing to build.
  if (pid === null || proc === undefined || !groups.any) return none
  if (pidProblem !== undefined) {
    const message =
      pidProblem === "pid_reused" ? `pid ${pid} now belongs to another process` : `process ${pid} is a zombie`
    if (proc.status !== undefined) unavailable.push({ source: "status", reason: pidProblem, message })
    if (proc.io !== undefined) unavailable.push({ source: "io", reason: pidProblem, message })
    if (proc.vcpuThreads !== undefined) unavailable.push({ source: "tasks", reason: pidProblem, message })
    return none
  }
  const stat = Either.isRight(proc.stat) ? proc.stat.right : undefined
  let values: {
    -readonly [K in keyof ProcValues]: ProcValues[K]
  } = { ...none }
  if (groups.cpu && stat !== undefined) values.systemUsec = ticksToUsec(stat.stimeTicks, kernel.clockTicksPerSecond)
  if (groups.packets && stat !== undefined) values.majorFaults = stat.majorFaults

  if (groups.memory && proc.status !== undefined) {
    if (Either.isRight(proc.status)) {
      const s = proc.status.right
      values = {
        ...values,
        memoryAnonBytes: s.rssAnonBytes,
        memoryFileBytes: s.rssFileBytes,
        memoryShmemBytes: s.rssShmemBytes,
        memorySwapBytes: s.swapBytes,
        memoryHugetlbBytes: s.hugetlbBytes
      }
      for (const line of s.outOfRange) {
        unavailable.push({
          source: "status",
          reason: "out_of_range",
          message: `${line} (${STATUS_LINES[line]}) in kB × 1024 exceeds 2^64 − 1`
        })
      }
    } else {
      unavailable.push(unavailableOf("status", proc.status.left))
    }
  }

  if (groups.disk && proc.io !== undefined) {
    if (Either.isRight(proc.io)) {
      values.diskReadBytes = proc.io.right.readBytes
      values.diskWriteBytes = proc.io.right.writeBytes
    } else {
      unavailable.push(unavailableOf("io", proc.io.left))
    }
  }

  if ((groups.cpu || groups.vcpu) && proc.vcpuThreads !== undefined) {
    const threads = proc.vcpuThreads
    if (Either.isLeft(threads)) {
      const error = threads.left
      unavailable.push(
        typeof error === "string"
          ? { source: "tasks", reason: error, message: NO_VCPU_MESSAGES[error] ?? error }
          : unavailableOf("tasks", error)
      )
    } else {
      const vcpus: Array<VcpuStats> = []
      let delay: bigint | null = 0n
      let neverRan = true
      for (const thread of threads.right) {
        if (Either.isLeft(thread.schedstat)) {
          unavailable.push(unavailableOf("schedstat", thread.schedstat.left))
          delay = null
          continue
        }
        const { runNs, waitNs, timeslices } = thread.schedstat.right
        if (runNs !== 0n || timeslices !== 0n) neverRan = false
        if (delay !== null) delay += waitNs
        vcpus.push({
          vcpu: thread.vcpu,
          tid: thread.tid,
          runNs,
          delayNs: waitNs,
          seriesStartTimeMs:
            thread.startTicks === null || kernel.bootTimeMs === null
              ? null
              : kernel.bootTimeMs + (Number(thread.startTicks) * 1000) / kernel.clockTicksPerSecond
        })
      }
      if (vcpus.length > 0 && neverRan) {
        unavailable.push({
          source: "schedstat",
          reason: "schedstat_disabled",
          message: "every vCPU thread reads 0 0 0 from schedstat: the kernel keeps no scheduler statistics"
        })
      } else {
        if (groups.cpu) values.cpuDelayNs = delay
        if (groups.vcpu) values.vcpus = vcpus
      }
    }
  }
  return values
}

/** The memory of a series that has read no process counter yet. */
const noMemory: ProcMemory = { counters: [null, null, null, null, null], vcpuTids: null }

/** The counters checked for going down, in a fixed order. */
const countersOf = (values: ProcValues): ReadonlyArray<bigint | null> => [
  values.systemUsec,
  values.majorFaults,
  values.cpuDelayNs,
  values.diskReadBytes,
  values.diskWriteBytes
]

/** The vCPU threads cpuDelayNs is the sum of, as a comparable key; null when it is null. */
const vcpuTidsOf = (values: ProcValues, proc: ProcSample | undefined): string | null => {
  if (values.cpuDelayNs === null || proc?.vcpuThreads === undefined || Either.isLeft(proc.vcpuThreads)) return null
  return proc.vcpuThreads.right.map((thread) => thread.tid).join(",")
}

/**
 * Whether this reading starts a new series: a counter went down, or cpuDelayNs now sums other
 * threads (a null on either side is no evidence). @internal
 */
export const procWentDown = (before: ProcMemory | null, values: ProcValues, proc: ProcSample | undefined): boolean => {
  if (before === null || values === none) return false // none: every counter null, no evidence
  const now = countersOf(values)
  for (let i = 0; i < now.length; i++) {
    const a = before.counters[i]
    const b = now[i]
    if (a !== null && b !== null && b < a) return true
  }
  const tids = vcpuTidsOf(values, proc)
  return tids !== null && before.vcpuTids !== null && tids !== before.vcpuTids
}

/** The series' last values after this reading (a null keeps the one before). @internal */
export const rememberProc = (
  before: ProcMemory | null,
  values: ProcValues,
  proc: ProcSample | undefined
): ProcMemory => {
  // none changes nothing: the memory stays as it is, kept across readings instead of rebuilt each time.
  if (values === none) return before ?? noMemory
  const now = countersOf(values)
  return {
    counters: now.map((value, i) => value ?? before?.counters[i] ?? null),
    vcpuTids: vcpuTidsOf(values, proc) ?? before?.vcpuTids ?? null
  }
}
