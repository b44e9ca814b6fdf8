/**
 * `TapReader` for Linux: keeps `<sysRoot>/class/net/<tap>/statistics/<counter>` open per TAP (bytes
 * always; packets, errors and dropped only when wanted, each opened when first wanted) and re-reads
 * them at offset 0 (the sysfs path walk costs ~10× the read). A name is validated when first seen,
 * before it becomes part of a path. A kept fd of a deleted TAP reads ENODEV forever, even after a TAP
 * of that name is created again, so on ENODEV the path is opened once more (internal/keptFile.ts).
 *
 * While the agent's own network namespace is the one `<sysRoot>/class/net` shows (checked at first
 * use and at a low rate: internal/hostNetDev.ts), the host's TAPs are read instead from one read of
 * `<procRoot>/self/net/dev` per collection (shared by its chunks: `sample`'s `collection`): the same kernel counters, without 2–8 sysfs files per TAP (and
 * without their fds). A call without a collection (one VM read alone) reads its TAPs' sysfs files: for a
 * few TAPs fewer reads than the host's whole net/dev. `via` stays "sysfs": it names the namespace (the one sysfs shows), so a NIC's
 * series keeps its labels whichever file the numbers came from. In a pod without hostNetwork, whose
 * namespace is not the host's, sysfs is read as before.
 *
 * A TAP the host's sysfs does not have, of a VM whose hypervisor pid is known, is looked up in
 * `<procRoot>/<pid>/net/dev`: the interfaces of that process's network namespace, readable without
 * entering it (`via: "netns"`). Only the VM's own pid is used, and the file is parsed once per batch
 * for all of its TAPs; a TAP found there is looked for there first from then on (no failing sysfs
 * open per read), and in sysfs again once it is gone from there. A name that exists both in the
 * host's namespace and in the VMM's is read from the host's.
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
  /** Where the host's /proc is mounted (for TAPs in a VMM's network namespace). Default `/proc`. */
  readonly procRoot?: string
  /**
   * Read the host's TAPs from the agent's own net/dev when it is the namespace sysfs shows. Default
   * true; false: always the sysfs counter files.
   */
  readonly selfNetDev?: boolean
}

/** Builds the reader; its fds are closed when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.zipWith(
        checkRoot("sysRoot", options.sysRoot ?? "/sys"),
        checkRoot("procRoot", options.procRoot ?? "/proc"),
        (sysRoot, procRoot) =>
          makeSyncTapReader(sysRoot, procRoot, undefined, {
            ...(options.selfNetDev === undefined ? {} : { selfNetDev: options.selfNetDev })
          })
      ),
      (r) => Effect.sync(r.closeAll)
    ),
    (reader) =>
      TapReader.of({
        sample: (taps, wanted, collection) => Effect.sync(() => reader.sample(taps, wanted, collection)),
        release: (tap) => Effect.sync(() => reader.release(tap)),
        prepare: (collection) => Effect.sync(() => reader.prepare(collection))
      })
  )

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<TapReader, InvalidRoot> =>
  Layer.scoped(TapReader, make(options))
