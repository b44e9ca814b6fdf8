/**
 * `TapReader` for Linux: keeps `<sysRoot>/class/net/<tap>/statistics/{rx,tx}_bytes` open per TAP and
 * re-reads them at offset 0 (the sysfs path walk costs ~10× the read). Every name is validated
 * before it becomes part of a path. A kept fd of a deleted TAP reads ENODEV forever, even after a TAP
 * of that name is created again, so ENODEV drops the fds and the path is opened once more.
 *
 * @since 0.1.0
 */
import { PermissionDenied, ReadFailed, TapMissing, type TapReadError } from "@vm-metrics/core/Errors"
import { parseSysfsCounter } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import { type TapCounters, TapReader } from "@vm-metrics/core/TapReader"
import { Effect, Either, Layer } from "effect"
import { checkRoot, closeQuietly, errnoOf, type InvalidRoot, openReadOnly, ReadBuffer } from "./internal/keptFile.js"

/** @category models */
export interface Options {
  /** Where the host's /sys is mounted. Default `/sys`. */
  readonly sysRoot?: string
}

type Counter = "rx_bytes" | "tx_bytes"

/** Built only on open or error, never per read (see NodeProcReader). */
const pathOf = (sysRoot: string, name: string, counter: Counter) => `${sysRoot}/class/net/${name}/statistics/${counter}`

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

/** The synchronous core of the reader, usable without Effect (benchmarks). @category constructors */
export const makeSync = (sysRoot: string) => {
  const buffer = new ReadBuffer()
  const kept = new Map<string, { rx_bytes: number; tx_bytes: number }>()

  const release = (name: string): void => {
    const entry = kept.get(name)
    if (entry === undefined) return
    if (entry.rx_bytes >= 0) closeQuietly(entry.rx_bytes)
    if (entry.tx_bytes >= 0) closeQuietly(entry.tx_bytes)
    kept.delete(name)
  }

  const read = (
    name: string,
    entry: { rx_bytes: number; tx_bytes: number },
    counter: Counter
  ): Either.Either<bigint, TapReadError> => {
    for (let attempt = 0; attempt < 2; attempt++) {
      const wasKept = entry[counter] >= 0
      if (!wasKept) {
        const opened = openReadOnly(pathOf(sysRoot, name, counter))
        if (typeof opened === "string") return Either.left(errorOf(name, pathOf(sysRoot, name, counter), opened))
        entry[counter] = opened
      }
      try {
        return parseSysfsCounter(buffer.bytes, buffer.readAt0(entry[counter]), counter)
      } catch (error) {
        closeQuietly(entry[counter])
        entry[counter] = -1
        const code = errnoOf(error)
        // The TAP was deleted (and maybe created again): try the path once more.
        if (!(wasKept && code === "ENODEV")) return Either.left(errorOf(name, pathOf(sysRoot, name, counter), code))
      }
    }
    return Either.left(new TapMissing({ tap: name, path: pathOf(sysRoot, name, counter) }))
  }

  const sampleOne = (name: string): Either.Either<TapCounters, TapReadError> => {
    let entry = kept.get(name)
    if (entry === undefined) {
      // Validated once, when first seen: a kept name was valid.
      const valid = validateTapName(name)
      if (Either.isLeft(valid)) return Either.left(valid.left)
      entry = { rx_bytes: -1, tx_bytes: -1 }
      kept.set(name, entry)
    }
    const rx = read(name, entry, "rx_bytes")
    if (Either.isLeft(rx)) {
      release(name)
      return Either.left(rx.left)
    }
    const tx = read(name, entry, "tx_bytes")
    if (Either.isLeft(tx)) {
      release(name)
      return Either.left(tx.left)
    }
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
