/**
 * `TapReader` for Linux: keeps `<sysRoot>/class/net/<tap>/statistics/{rx,tx}_bytes` open per TAP and
 * re-reads them at offset 0 (the sysfs path walk costs ~10× the read). A name is validated when first
 * seen, before it becomes part of a path. A kept fd of a deleted TAP reads ENODEV forever, even after
 * a TAP of that name is created again, so on ENODEV the path is opened once more (internal/keptFile.ts).
 *
 * @since 0.1.0
 */
import { TapReader } from "@vm-metrics/core/TapReader"
import { Effect, Layer } from "effect"
import { checkRoot, type InvalidRoot } from "./internal/keptFile.js"
import { makeSyncTapReader } from "./internal/syncTapReader.js"

/** @category models */
export interface Options {
  /** Where the host's /sys is mounted. Default `/sys`. */
  readonly sysRoot?: string
}

/** Builds the reader; its fds are closed when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.map(
    Effect.acquireRelease(Effect.map(checkRoot("sysRoot", options.sysRoot ?? "/sys"), makeSyncTapReader), (r) =>
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
