/**
 * What the agent's own process costs, as the standard Prometheus process metrics report it
 * (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
 * `process_max_fds`, `process_start_time_seconds`): the model and the pure conversion from the parsed
 * /proc files. Reading them is a platform's job (node: SelfProcess). A value that could not be read is
 * null (no series), never 0, and its failure is counted in `unavailableTotals`.
 *
 * @since 0.1.0
 */
import type { KernelInfo } from "./Kernel.js"
import type { ProcStat } from "./ProcStat.js"
import type { ProcStatm } from "./ProcStatm.js"

/** The files a sample reads, as `read_errors_total` names them. @category models */
export type SelfSource = "self_stat" | "self_statm" | "self_fd" | "self_limits"

/** Cumulative failed reads of one file, by reason. @category models */
export interface SelfUnavailableTotal {
  readonly source: SelfSource
  readonly reason: string
  readonly count: number
}

/** @category models */
export interface SelfProcess {
  /** utime + stime, in seconds. */
  readonly cpuSeconds: number | null
  /** Resident set size (statm resident × page size), in bytes. */
  readonly residentMemoryBytes: number | null
  /** Entries of /proc/self/fd (the listing's own fd included, as other exporters count it). */
  readonly openFds: number | null
  /** The open-files soft limit; null when unlimited or unreadable. */
  readonly maxFds: number | null
  /** When the process started (boot time + starttime), Unix seconds; null without a boot time. */
  readonly startTimeSeconds: number | null
  /** Failed reads since start, by file and reason. */
  readonly unavailableTotals: ReadonlyArray<SelfUnavailableTotal>
}

/** CPU seconds of a parsed stat: (utime + stime) / USER_HZ. @category constructors */
export const cpuSecondsOf = (stat: ProcStat, kernel: KernelInfo): number =>
  Number(stat.utimeTicks + stat.stimeTicks) / kernel.clockTicksPerSecond

/** The start time of a parsed stat in Unix seconds, or null without starttime or boot time. @category constructors */
export const startTimeSecondsOf = (stat: ProcStat, kernel: KernelInfo): number | null =>
  stat.startTimeTicks === null || kernel.bootTimeMs === null
    ? null
    : kernel.bootTimeMs / 1000 + Number(stat.startTimeTicks) / kernel.clockTicksPerSecond

/** Resident bytes of a parsed statm. @category constructors */
export const residentBytesOf = (statm: ProcStatm, kernel: KernelInfo): number =>
  Number(statm.rssPages) * kernel.pageSize
