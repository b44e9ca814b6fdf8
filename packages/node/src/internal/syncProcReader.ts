/**
 * The synchronous core of NodeProcReader (whose header says how it reads), usable without Effect by
 * tests and benchmarks.
 *
 * @internal
 */
import { InvalidPid, PermissionDenied, ProcessGone, type ProcReadError, ReadFailed } from "@vm-metrics/core/Errors"
import type { ProcSample } from "@vm-metrics/core/ProcReader"
import { parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseProcStatm } from "@vm-metrics/core/ProcStatm"
import { Either } from "effect"
import { KeptFile, ReadBuffer } from "./keptFile.js"
import { type MayBeHidden, mayBeHiddenFor } from "./procVisibility.js"

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
export const makeSyncProcReader = (procRoot: string, mayBeHidden: MayBeHidden = mayBeHiddenFor(procRoot)) => {
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
