/**
 * `TapReader` for Linux: keeps `<sysRoot>/class/net/<tap>/statistics/{rx,tx}_bytes` open per TAP and
 * re-reads them at offset 0 (the sysfs path walk costs ~10× the read). A name is validated when first
 * seen, before it becomes part of a path. A kept fd of a deleted TAP reads ENODEV forever, even after
 * a TAP of that name is created again, so on ENODEV the path is opened once more (internal/keptFile.ts).
 *
 * @since 0.1.0
 */
import { PermissionDenied, ReadFailed, TapMissing, type TapReadError } from "@vm-metrics/core/Errors"
import { parseSysfsCounter } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import { type TapCounters, TapReader } from "@vm-metrics/core/TapReader"
import { Effect, Either, Layer } from "effect"
import { checkRoot, type InvalidRoot, KeptFile, ReadBuffer } from "./internal/keptFile.js"

/** @category models */
export interface Options {
  /** Where the host's /sys is mounted. Default `/sys`. */
  readonly sysRoot?: string
}

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
export const makeSync = (sysRoot: string) => {
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

/** Builds the reader; its fds are closed when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.map(
    Effect.acquireRelease(Effect.map(checkRoot("sysRoot", options.sysRoot ?? "/sys"), makeSync), (r) =>
      Effect.sync(r.closeAll)
    ),
    (reader) =>
      TapReader.of({
        sample: (names) => Effect.sync(() => names.map(reader.sampleOne)),
        release: (name) => Effect.sync(() => reader.release(name))
      })
  )

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<TapReader, InvalidRoot> =>
  Layer.scoped(TapReader, make(options))
