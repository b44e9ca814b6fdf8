/**
 * Port: reads the hypervisor processes' `/proc/<pid>/stat` and `/proc/<pid>/statm`, and on request
 * the metric groups' files: `status` (memory breakdown), `io` (disk bytes) and the vCPU threads
 * (`task/<tid>/comm` to find them, `task/<tid>/schedstat` for their run and wait time).
 *
 * The port is batched on purpose: `sample` takes every pid of a collection and returns one result
 * per pid, each file as its own `Either`, so a reader can run one tight synchronous loop (measured:
 * one Effect per file adds 34–48 %, one per batch adds ~5 %). It never fails as a whole. A file that
 * was not requested is not read, and its field is absent from the sample.
 *
 * @since 0.1.0
 */
import { Context, Effect, Either, Layer } from "effect"
import { ProcessGone, type ProcReadError } from "./Errors.js"
import { fallbackKernelInfo, type KernelInfo } from "./Kernel.js"
import { type ProcIo, parseProcIoText } from "./ProcIo.js"
import { type ProcStat, parseProcStatText } from "./ProcStat.js"
import { type ProcStatm, parseProcStatmText } from "./ProcStatm.js"
import { type ProcStatus, parseProcStatusText } from "./ProcStatus.js"
import { parseSchedstatText, type Schedstat } from "./Schedstat.js"
import { findVcpuThreads, type NoVcpuThreads } from "./VcpuThread.js"

/** Which files beyond stat and statm to read (MetricGroup.needs gives them for a set of groups). @category models */
export interface ProcFiles {
  readonly status?: boolean
  readonly io?: boolean
  /** Find the vCPU threads and read their schedstat. */
  readonly vcpuThreads?: boolean
}

/** One vCPU thread of a process, as last listed, and its schedstat read now. @category models */
export interface VcpuThreadSample {
  readonly tid: number
  readonly vcpu: number
  /** The thread's start time (its `task/<tid>/stat` field 22, clock ticks after boot), when read. */
  readonly startTicks: bigint | null
  readonly schedstat: Either.Either<Schedstat, ProcReadError>
}

/**
 * Why a process's vCPU threads could not be listed: the task listing failed, or no thread is named
 * as a vCPU (see VcpuThread.NoVcpuThreads). @category models
 */
export type VcpuThreadsError = ProcReadError | NoVcpuThreads

/**
 * The files of one pid, each read and parsed independently; the optional ones are undefined unless
 * requested (readers may write them as undefined: one object shape for every sample). @category models
 */
export interface ProcSample {
  readonly stat: Either.Either<ProcStat, ProcReadError>
  readonly statm: Either.Either<ProcStatm, ProcReadError>
  readonly status?: Either.Either<ProcStatus, ProcReadError> | undefined
  readonly io?: Either.Either<ProcIo, ProcReadError> | undefined
  /** The vCPU threads by vCPU index (one thread per index), or why there are none. */
  readonly vcpuThreads?: Either.Either<ReadonlyArray<VcpuThreadSample>, VcpuThreadsError> | undefined
}

/** @category tags */
export class ProcReader extends Context.Tag("@vm-metrics/core/ProcReader")<
  ProcReader,
  {
    readonly kernel: KernelInfo
    /** One sample per pid, in the same order; `files` says what to read beyond stat and statm. */
    readonly sample: (pids: ReadonlyArray<number>, files?: ProcFiles) => Effect.Effect<ReadonlyArray<ProcSample>>
    /** The collector no longer needs this pid: drop whatever is kept for it (open fds, its threads). */
    readonly release: (pid: number) => Effect.Effect<void>
    /** The readers' fd budget now (proc and TAP readers share it); absent when the reader keeps no fds. */
    readonly fds?: () => ReaderFds
  }
>() {}

/** What the readers' fd budget holds and how often it had no room. @category models */
export interface ReaderFds {
  /** Files kept open now, re-read at offset 0. */
  readonly kept: number
  /** Files read by path (open, read, close) since start: the budget had no room, or the fd limit was met. */
  readonly byPathTotal: number
}

/** A thread of an in-memory process. @category models */
export interface MemoryTask {
  readonly tid: number
  readonly comm: string
  readonly startTicks?: bigint
  readonly schedstat: string | ProcReadError
}

/** What an in-memory process looks like: the text of each file, or the error its read gives. @category models */
export interface MemoryProcess {
  readonly stat: string | ProcReadError
  readonly statm: string | ProcReadError
  /** Absent: the read fails as if the process had no such file (ProcessGone). */
  readonly status?: string | ProcReadError
  readonly io?: string | ProcReadError
  /** The threads (the main thread's comm is the one whose tid is the pid), or the listing's error. */
  readonly tasks?: ReadonlyArray<MemoryTask> | ProcReadError
}

/** The files the in-memory reader counts reads of. @category models */
export type MemoryFile = "stat" | "statm" | "status" | "io" | "tasks" | "schedstat"

/** An in-memory ProcReader for tests and for platforms without /proc. @category models */
export interface MemoryProcReader {
  readonly reader: Context.Tag.Service<ProcReader>
  readonly set: (pid: number, process: MemoryProcess) => void
  readonly remove: (pid: number) => void
  /** How many times each pid was sampled. */
  readonly reads: ReadonlyMap<number, number>
  /** How many times a file of a pid was read (`schedstat`: once per vCPU thread). */
  readonly fileReads: (pid: number, file: MemoryFile) => number
  readonly released: ReadonlySet<number>
}

/** @category constructors */
export const makeMemory = (kernel: KernelInfo = fallbackKernelInfo): MemoryProcReader => {
  const processes = new Map<number, MemoryProcess>()
  const reads = new Map<number, number>()
  const fileCounts = new Map<string, number>()
  const released = new Set<number>()
  const count = (pid: number, name: MemoryFile) => {
    const key = `${pid}/${name}`
    fileCounts.set(key, (fileCounts.get(key) ?? 0) + 1)
  }
  const gone = (pid: number, name: string) => new ProcessGone({ pid, path: `/proc/${pid}/${name}` })
  const file = <A>(
    pid: number,
    name: "stat" | "statm" | "status" | "io",
    parse: (text: string) => Either.Either<A, ProcReadError>
  ) => {
    count(pid, name)
    const content = processes.get(pid)?.[name]
    if (content === undefined) return Either.left(gone(pid, name))
    return typeof content === "string" ? parse(content) : Either.left(content)
  }
  const vcpuThreads = (pid: number): Either.Either<ReadonlyArray<VcpuThreadSample>, VcpuThreadsError> => {
    count(pid, "tasks")
    const tasks = processes.get(pid)?.tasks
    if (tasks === undefined) return Either.left(gone(pid, "task"))
    if (!Array.isArray(tasks)) return Either.left(tasks as ProcReadError)
    const list = tasks as ReadonlyArray<MemoryTask>
    const mainComm = list.find((task) => task.tid === pid)?.comm ?? ""
    return Either.map(findVcpuThreads(mainComm, list), (found) => {
      const byIndex = new Map<number, VcpuThreadSample>()
      for (const { tid, vcpu } of found) {
        if (byIndex.has(vcpu)) continue // the first thread of an index counts, as in the node reader
        const task = list.find((t) => t.tid === tid)
        if (task === undefined) continue
        count(pid, "schedstat")
        byIndex.set(vcpu, {
          tid,
          vcpu,
          startTicks: task.startTicks ?? null,
          schedstat:
            typeof task.schedstat === "string" ? parseSchedstatText(task.schedstat) : Either.left(task.schedstat)
        })
      }
      return [...byIndex.values()]
    })
  }
  const sampleOne = (pid: number, files: ProcFiles): ProcSample => {
    reads.set(pid, (reads.get(pid) ?? 0) + 1)
    released.delete(pid)
    return {
      stat: file(pid, "stat", parseProcStatText),
      statm: file(pid, "statm", parseProcStatmText),
      ...(files.status === true ? { status: file(pid, "status", parseProcStatusText) } : {}),
      ...(files.io === true ? { io: file(pid, "io", parseProcIoText) } : {}),
      ...(files.vcpuThreads === true ? { vcpuThreads: vcpuThreads(pid) } : {})
    }
  }
  return {
    reader: ProcReader.of({
      kernel,
      sample: (pids, files = {}) => Effect.sync(() => pids.map((pid) => sampleOne(pid, files))),
      release: (pid) => Effect.sync(() => void released.add(pid))
    }),
    set: (pid, process) => void processes.set(pid, process),
    remove: (pid) => void processes.delete(pid),
    reads,
    fileReads: (pid, name) => fileCounts.get(`${pid}/${name}`) ?? 0,
    released
  }
}

/** @category layers */
export const layerMemory = (memory: MemoryProcReader): Layer.Layer<ProcReader> =>
  Layer.succeed(ProcReader, memory.reader)
