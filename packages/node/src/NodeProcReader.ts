/**
 * `ProcReader` for Linux: keeps `<procRoot>/<pid>/stat` and `statm` open per pid and re-reads them at
 * offset 0 into one reused buffer (internal/keptFile.ts). A kept fd of a process that exited reads
 * ESRCH forever (even after the pid is reused), so on ESRCH the path is opened once more: a reused pid
 * is then read as the new process, whose different starttime the collector reports as `pid_reused`.
 * A pid missing under a `hidepid` /proc may be alive and only hidden from us: it is `PermissionDenied`,
 * not `ProcessGone` (internal/procVisibility.ts).
 * A stat that discovery read on the same root moments before (within 200 ms, newer than the reader's
 * own last read, each used once: internal/freshStats.ts) is taken instead of reading the file again.
 * statm is read although stat also shows vsize and rss: on newer kernels (seen on 6.18) statm's
 * resident is the exact sum of the per-CPU RSS counters and stat's rss a cheaper approximation (a
 * stopped process here: 447 pages against 419), so only statm gives the original's number.
 * The hot path builds no strings and creates no closures (tsx/esbuild's keepNames makes each closure
 * a costly defineProperty; measured with `pnpm bench`).
 *
 * @since 0.1.0
 */
import type { KernelInfo } from "@vm-metrics/core/Kernel"
import { ProcReader } from "@vm-metrics/core/ProcReader"
import { Effect, Layer } from "effect"
import { checkRoot, type InvalidRoot } from "./internal/keptFile.js"
import { makeSyncProcReader } from "./internal/syncProcReader.js"
import { readKernelInfo } from "./NodeKernel.js"

/** @category models */
export interface Options {
  /** Where the host's /proc is mounted. Default `/proc`. */
  readonly procRoot?: string
  /** Overrides what is read from the kernel (tests). */
  readonly kernel?: KernelInfo
}

/** Builds the reader; its fds are closed when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const procRoot = yield* checkRoot("procRoot", options.procRoot ?? "/proc")
    const kernel = options.kernel ?? (yield* readKernelInfo({ procRoot }))
    const reader = yield* Effect.acquireRelease(
      Effect.sync(() => makeSyncProcReader(procRoot)),
      (r) => Effect.sync(r.closeAll)
    )
    return ProcReader.of({
      kernel,
      sample: (pids, files) => Effect.sync(() => reader.sample(pids, files)),
      release: (pid) => Effect.sync(() => reader.release(pid)),
      fds: () => ({ kept: reader.fdBudget.kept, byPathTotal: reader.fdBudget.byPath })
    })
  })

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<ProcReader, InvalidRoot> =>
  Layer.scoped(ProcReader, make(options))
