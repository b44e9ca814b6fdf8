/**
 * `ProcReader` for Linux: keeps `<procRoot>/<pid>/stat` and `statm` open per pid and re-reads them at
 * offset 0 into one reused buffer (internal/keptFile.ts). A kept fd of a process that exited reads
 * ESRCH forever (even after the pid is reused), so on ESRCH the path is opened once more: a reused pid
 * is then read as the new process, whose different starttime the collector reports as `pid_reused`.
 * A pid missing under a `hidepid` /proc may be alive and only hidden from us: it is `PermissionDenied`,
 * not `ProcessGone` (internal/procVisibility.ts).
 * The hot path builds no strings and creates no closures (tsx/esbuild's keepNames makes each closure
 * a costly defineProperty; measured with `pnpm bench`).
 *
 * @since 0.1.0
 */
import { InvalidPid, PermissionDenied, ProcessGone, type ProcReadError, ReadFailed } from "@vm-metrics/core/Errors"
import type { KernelInfo } from "@vm-metrics/core/Kernel"
import { ProcReader, type ProcSample } from "@vm-metrics/core/ProcReader"
import { parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseProcStatm } from "@vm-metrics/core/ProcStatm"
import { Effect, Either, Layer } from "effect"
import { checkRoot, type InvalidRoot, KeptFile, ReadBuffer } from "./internal/keptFile.js"
import { type MayBeHidden, mayBeHiddenFor } from "./internal/procVisibility.js"
import { readKernelInfo } from "./NodeKernel.js"

/** @category models */
export interface Options {
  /** Where the host's /proc is mounted. Default `/proc`. */
  readonly procRoot?: string
  /** Overrides what is read from the kernel (tests). */
  readonly kernel?: KernelInfo
}

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

interface ProcFiles {
  readonly stat: KeptFile
  readonly statm: KeptFile
}

/**
 * The synchronous core of the reader, usable without Effect (benchmarks). `mayBeHidden` tells a pid
 * missing under the root from a gone one (default: asks the kernel and the mount, see procVisibility).
 *
 * @category constructors
 */
export const makeSync = (procRoot: string, mayBeHidden: MayBeHidden = mayBeHiddenFor(procRoot)) => {
  const buffer = new ReadBuffer()
  const kept = new Map<number, ProcFiles>()

  const filesOf = (pid: number): ProcFiles => {
    let files = kept.get(pid)
    if (files === undefined) {
      files = {
        stat: new KeptFile(`${procRoot}/${pid}/stat`, "ESRCH"),
        statm: new KeptFile(`${procRoot}/${pid}/statm`, "ESRCH")
      }
      kept.set(pid, files)
    }
    return files
  }

  const release = (pid: number): void => {
    const files = kept.get(pid)
    if (files === undefined) return
    files.stat.close()
    files.statm.close()
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

  const sampleOne = (pid: number): ProcSample => {
    if (!Number.isSafeInteger(pid) || pid < 1 || pid > PID_MAX) {
      const error = Either.left(new InvalidPid({ pid }))
      return { stat: error, statm: error }
    }
    const files = filesOf(pid)
    const sample = { stat: read(pid, files.stat, parseProcStat), statm: read(pid, files.statm, parseProcStatm) }
    if (!files.stat.isOpen && !files.statm.isOpen) kept.delete(pid)
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
