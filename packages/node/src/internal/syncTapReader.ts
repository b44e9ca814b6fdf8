/**
 * The synchronous core of NodeTapReader (whose header says how it reads), usable without Effect by
 * tests and benchmarks.
 *
 * @internal
 */
import { PermissionDenied, ReadFailed, TapMissing, type TapReadError } from "@vm-metrics/core/Errors"
import { parseSysfsCounter } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import type { TapCounters } from "@vm-metrics/core/TapReader"
import { Either } from "effect"
import { KeptFile, ReadBuffer } from "./keptFile.js"

const errorOf = (tap: string, path: string, code: string): TapReadError => {
  switch (code) {
    case "ENOENT":
    case "ENODEV":
    case "ENXIO":
      return new TapMissing({ tap, path })
    case "EACCES":
    case "EPERM":
      return new PermissionDenied({ path })
    default:
      return new ReadFailed({ path, code })
  }
}

interface TapFiles {
  readonly rx: KeptFile
  readonly tx: KeptFile
}

/** The synchronous core of the reader, usable without Effect (benchmarks). @category constructors */
export const makeSyncTapReader = (sysRoot: string) => {
  const buffer = new ReadBuffer()
  const kept = new Map<string, TapFiles>()

  const release = (name: string): void => {
    const files = kept.get(name)
    if (files === undefined) return
    files.rx.close()
    files.tx.close()
    kept.delete(name)
  }

  /** A missing or broken TAP keeps nothing open. */
  const dropAfter = (name: string, error: TapReadError): Either.Either<never, TapReadError> => {
    release(name)
    return Either.left(error)
  }

  const read = (name: string, file: KeptFile, counter: string): Either.Either<bigint, TapReadError> => {
    const length = file.read(buffer)
    return typeof length === "string"
      ? Either.left(errorOf(name, file.path, length))
      : parseSysfsCounter(buffer.bytes, length, counter)
  }

  const sampleOne = (name: string): Either.Either<TapCounters, TapReadError> => {
    let files = kept.get(name)
    if (files === undefined) {
      const valid = validateTapName(name)
      if (Either.isLeft(valid)) return Either.left(valid.left)
      const statistics = `${sysRoot}/class/net/${name}/statistics`
      files = {
        rx: new KeptFile(`${statistics}/rx_bytes`, "ENODEV"),
        tx: new KeptFile(`${statistics}/tx_bytes`, "ENODEV")
      }
      kept.set(name, files)
    }
    const rx = read(name, files.rx, "rx_bytes")
    if (Either.isLeft(rx)) return dropAfter(name, rx.left)
    const tx = read(name, files.tx, "tx_bytes")
    if (Either.isLeft(tx)) return dropAfter(name, tx.left)
    return Either.right({ rxBytes: rx.right, txBytes: tx.right })
  }

  const closeAll = (): void => {
    for (const name of [...kept.keys()]) release(name)
  }

  return { sampleOne, release, closeAll, openTaps: () => kept.size }
}
