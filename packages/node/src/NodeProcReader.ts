/**
 * `ProcReader` for Linux: keeps `<procRoot>/<pid>/stat` and `statm` open per pid and re-reads them at
 * offset 0 into one reused buffer. A kept fd of a process that exited reads ESRCH forever (even after
 * the pid is reused), so on ESRCH the fds are dropped and the path is opened once more: a reused pid
 * is then read as the new process, whose different starttime the collector turns into a new epoch.
 *
 * @since 0.1.0
 */
import { InvalidPid, PermissionDenied, ProcessGone, type ProcReadError, ReadFailed } from "@vm-metrics/core/Errors"
import type { KernelInfo } from "@vm-metrics/core/Kernel"
import { ProcReader, type ProcSample } from "@vm-metrics/core/ProcReader"
import { parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseProcStatm } from "@vm-metrics/core/ProcStatm"
import { Effect, Either, Layer } from "effect"
import { checkRoot, closeQuietly, errnoOf, type InvalidRoot, openReadOnly, ReadBuffer } from "./internal/keptFile.js"
import { readKernelInfo } from "./NodeKernel.js"

/** @category models */
export interface Options {
  /** Where the host's /proc is mounted. Default `/proc`. */
  readonly procRoot?: string
  /** Overrides what is read from the kernel (tests). */
  readonly kernel?: KernelInfo
}

type FileName = "stat" | "statm"

const PID_MAX = 4_194_304

/**
 * Paths are built only when a file is opened or an error is reported, never per read; the hot path
 * also creates no closures (tsx/esbuild's keepNames makes each one a costly defineProperty).
 */
const pathOf = (procRoot: string, pid: number, name: FileName) => `${procRoot}/${pid}/${name}`

const errorOf = (pid: number, path: string, code: string): ProcReadError => {
  switch (code) {
    case "ENOENT":
    case "ESRCH":
      return new ProcessGone({ pid, path })
    case "EACCES":
    case "EPERM":
      return new PermissionDenied({ path })
    default:
      return new ReadFailed({ path, code })
  }
}

/** The synchronous core of the reader, usable without Effect (benchmarks). @category constructors */
export const makeSync = (procRoot: string) => {
  const buffer = new ReadBuffer()
  const kept = new Map<number, { stat: number; statm: number }>()

  const fds = (pid: number) => {
    let entry = kept.get(pid)
    if (entry === undefined) {
      entry = { stat: -1, statm: -1 }
      kept.set(pid, entry)
    }
    return entry
  }

  const release = (pid: number): void => {
    const entry = kept.get(pid)
    if (entry === undefined) return
    if (entry.stat >= 0) closeQuietly(entry.stat)
    if (entry.statm >= 0) closeQuietly(entry.statm)
    kept.delete(pid)
  }

  /** Reads one file of one pid: kept fd first, then one fresh open if the kept one is stale. */
  const read = <A>(
    pid: number,
    name: FileName,
    parse: (bytes: Uint8Array, length: number) => Either.Either<A, ProcReadError>
  ): Either.Either<A, ProcReadError> => {
    const entry = fds(pid)
    for (let attempt = 0; attempt < 2; attempt++) {
      const wasKept = entry[name] >= 0
      if (!wasKept) {
        const opened = openReadOnly(pathOf(procRoot, pid, name))
        if (typeof opened === "string") return Either.left(errorOf(pid, pathOf(procRoot, pid, name), opened))
        entry[name] = opened
      }
      try {
        return parse(buffer.bytes, buffer.readAt0(entry[name]))
      } catch (error) {
        closeQuietly(entry[name])
        entry[name] = -1
        const code = errnoOf(error)
        // A stale kept fd (the process it belonged to exited): try the path once more.
        if (!(wasKept && code === "ESRCH")) return Either.left(errorOf(pid, pathOf(procRoot, pid, name), code))
      }
    }
    return Either.left(new ProcessGone({ pid, path: pathOf(procRoot, pid, name) }))
  }

  const sampleOne = (pid: number): ProcSample => {
    if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX) {
      const error = Either.left(new InvalidPid({ pid }))
      return { stat: error, statm: error }
    }
    const sample = { stat: read(pid, "stat", parseProcStat), statm: read(pid, "statm", parseProcStatm) }
    const entry = kept.get(pid)
    if (entry !== undefined && entry.stat < 0 && entry.statm < 0) kept.delete(pid)
    return sample
  }

  const closeAll = (): void => {
    for (const pid of [...kept.keys()]) release(pid)
  }

  return { sampleOne, release, closeAll, openPids: () => kept.size }
}

/** Builds the reader; its fds are closed when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const procRoot = yield* checkRoot("procRoot", options.procRoot ?? "/proc")
    const kernel = options.kernel ?? (yield* readKernelInfo({ procRoot }))
    const reader = yield* Effect.acquireRelease(
      Effect.sync(() => makeSync(procRoot)),
      (r) => Effect.sync(r.closeAll)
    )
    return ProcReader.of({
      kernel,
      sample: (pids) => Effect.sync(() => pids.map(reader.sampleOne)),
      release: (pid) => Effect.sync(() => reader.release(pid))
    })
  })

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<ProcReader, InvalidRoot> =>
  Layer.scoped(ProcReader, make(options))
