/**
 * The synchronous core of NodeProcReader (whose header says how it reads), usable without Effect by
 * tests and benchmarks.
 *
 * @internal
 */
import { InvalidPid, PermissionDenied, ProcessGone, type ProcReadError, ReadFailed } from "@vm-metrics/core/Errors"
import { parseProcIo } from "@vm-metrics/core/ProcIo"
import type { ProcFiles, ProcSample } from "@vm-metrics/core/ProcReader"
import { type ProcStat, parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseProcStatm } from "@vm-metrics/core/ProcStatm"
import { parseProcStatus } from "@vm-metrics/core/ProcStatus"
import { Either } from "effect"
import { type FdBudget, sharedFdBudget } from "./fdBudget.js"
import { type FreshStats, sharedFreshStats } from "./freshStats.js"
import { KeptFile, ReadBuffer } from "./keptFile.js"
import { type MayBeHidden, mayBeHiddenFor } from "./procVisibility.js"
import { SmallFileReader } from "./smallFile.js"
import { RELIST_EVERY, VcpuThreads } from "./vcpuThreads.js"

const PID_MAX = 4_194_304

const errorOf = (pid: number, path: string, code: string, mayBeHidden: MayBeHidden): ProcReadError => {
  switch (code) {
    case "ENOENT":
      // A hidepid /proc shows a live process we may not see as missing: not gone, just not ours to read.
      return mayBeHidden(pid) ? new PermissionDenied({ path }) : new ProcessGone({ pid, path })
    case "ESRCH":
      return new ProcessGone({ pid, path })
    case "EACCES":
    case "EPERM":
      return new PermissionDenied({ path })
    default:
      return new ReadFailed({ path, code })
  }
}

/** What is kept for one pid; the optional files are opened when first requested. */
interface KeptFiles {
  readonly stat: KeptFile
  /** When its stat was last read or taken from discovery (the FreshStats clock). */
  statAt: number
  readonly statm: KeptFile
  status: KeptFile | undefined
  io: KeptFile | undefined
  vcpuThreads: VcpuThreads | undefined
}

const NO_FILES: ProcFiles = {}

/** @internal */
export interface SyncOptions {
  /** Tells a pid missing under the root from a gone one (default: asks the kernel and the mount, see procVisibility). */
  readonly mayBeHidden?: MayBeHidden
  /** List a process's threads every this many samples (internal/vcpuThreads.ts). */
  readonly relistEvery?: number
  /** The fds it may keep (default: the process's shared budget, internal/fdBudget.ts). */
  readonly fdBudget?: FdBudget
  /** Stat lines discovery has just read (default: this process's for the root, internal/freshStats.ts). */
  readonly fresh?: FreshStats
}

/**
 * The synchronous core of the reader, usable without Effect (benchmarks). `mayBeHidden` tells a pid
 * missing under the root from a gone one (default: asks the kernel and the mount, see procVisibility).
 *
 * @category constructors
 */
export const makeSyncProcReader = (procRoot: string, options: SyncOptions = {}) => {
  const mayBeHidden = options.mayBeHidden ?? mayBeHiddenFor(procRoot)
  const relistEvery = options.relistEvery ?? RELIST_EVERY
  const budget = options.fdBudget ?? sharedFdBudget()
  const fresh = options.fresh ?? sharedFreshStats(procRoot)
  const buffer = new ReadBuffer()
  const small = new SmallFileReader()
  const kept = new Map<number, KeptFiles>()
  const taskErrorOf = (pid: number, path: string, code: string) => errorOf(pid, path, code, mayBeHidden)

  const filesOf = (pid: number): KeptFiles => {
    let files = kept.get(pid)
    if (files === undefined) {
      files = {
        stat: new KeptFile(`${procRoot}/${pid}/stat`, "ESRCH", budget),
        statAt: Number.NEGATIVE_INFINITY,
        statm: new KeptFile(`${procRoot}/${pid}/statm`, "ESRCH", budget),
        status: undefined,
        io: undefined,
        vcpuThreads: undefined
      }
      kept.set(pid, files)
    }
    return files
  }

  const release = (pid: number): void => {
    fresh.unsight(pid)
    const files = kept.get(pid)
    if (files === undefined) return
    files.stat.close()
    files.statm.close()
    files.status?.close()
    files.io?.close()
    files.vcpuThreads?.close()
    kept.delete(pid)
  }

  const read = <A>(
    pid: number,
    file: KeptFile,
    parse: (bytes: Uint8Array, length: number) => Either.Either<A, ProcReadError>
  ): Either.Either<A, ProcReadError> => {
    const length = file.read(buffer)
    return typeof length === "string"
      ? Either.left(errorOf(pid, file.path, length, mayBeHidden))
      : parse(buffer.bytes, length)
  }

  /** A pid's stat: the one discovery read moments ago when there is such (see freshStats.ts), else read now. */
  const readStat = (pid: number, files: KeptFiles): Either.Either<ProcStat, ProcReadError> => {
    const offer = fresh.take(pid, files.statAt)
    let stat: Either.Either<ProcStat, ProcReadError>
    if (offer !== undefined) {
      files.statAt = offer.at
      stat = parseProcStat(offer.bytes, offer.length)
    } else {
      files.statAt = fresh.now()
      stat = read(pid, files.stat, parseProcStat)
    }
    // What discovery's next rescan may take instead of reading this pid's stat itself (freshStats.ts).
    fresh.sight(pid, files.statAt, Either.isRight(stat) ? stat.right : undefined)
    return stat
  }

  const sampleOne = (pid: number, wanted: ProcFiles = NO_FILES): ProcSample => {
    if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX) {
      const error = Either.left(new InvalidPid({ pid }))
      return {
        stat: error,
        statm: error,
        status: wanted.status === true ? error : undefined,
        io: wanted.io === true ? error : undefined,
        vcpuThreads: wanted.vcpuThreads === true ? error : undefined
      }
    }
    const files = filesOf(pid)
    const stat = readStat(pid, files)
    const statm = read(pid, files.statm, parseProcStatm)
    let status: ProcSample["status"]
    let io: ProcSample["io"]
    let vcpuThreads: ProcSample["vcpuThreads"]
    if (wanted.status === true) {
      files.status ??= new KeptFile(`${procRoot}/${pid}/status`, "ESRCH", budget)
      status = read(pid, files.status, parseProcStatus)
    }
    if (wanted.io === true) {
      files.io ??= new KeptFile(`${procRoot}/${pid}/io`, "ESRCH", budget)
      io = read(pid, files.io, parseProcIo)
    }
    if (wanted.vcpuThreads === true) {
      files.vcpuThreads ??= new VcpuThreads(`${procRoot}/${pid}/task`, pid, budget, relistEvery)
      // A gone process has no threads: not the last listing's answer, which may be many samples old.
      vcpuThreads =
        Either.isLeft(stat) && stat.left._tag === "ProcessGone"
          ? Either.left(new ProcessGone({ pid, path: `${procRoot}/${pid}/task` }))
          : files.vcpuThreads.sample(buffer, small, taskErrorOf)
    }
    const sample: ProcSample = { stat, statm, status, io, vcpuThreads } // one shape, whatever was requested
    // The process is gone (both reads failed, both fds closed): keep nothing for it. A file read by
    // path (no room in the fd budget) is not open either, but its read succeeded.
    if (Either.isLeft(stat) && Either.isLeft(statm) && !files.stat.isOpen && !files.statm.isOpen) release(pid)
    return sample
  }

  /** One sample per pid, in order: the batch of the ProcReader port. */
  const sample = (pids: ReadonlyArray<number>, wanted: ProcFiles = NO_FILES): Array<ProcSample> => {
    const samples = new Array<ProcSample>(pids.length)
    for (let i = 0; i < pids.length; i++) samples[i] = sampleOne(pids[i], wanted)
    return samples
  }

  const closeAll = (): void => {
    for (const pid of [...kept.keys()]) release(pid)
  }

  return { sampleOne, sample, release, closeAll, openPids: () => kept.size, fdBudget: budget }
}
