/**
 * Zero-config `InstanceSource`: finds hypervisor processes (QEMU, Cloud Hypervisor, Firecracker) in
 * `<procRoot>` and derives each one's `InstanceInfo` from its command line (HypervisorCmdline.ts).
 *
 * The collector lists every second or so, so a scan must be cheap on a host with thousands of
 * processes. It is incremental (internal/processScanner.ts): what each process is — comm, command
 * line, derived info, executable verdict — is read once, when its pid first shows up, and
 * remembered with a kept fd (on its comm; on its stat for a hypervisor). That fd belongs to the
 * process, not to the pid number: once it is reaped it reads ESRCH, so a pid reused between two scans
 * is read afresh, as an exec() into another program is (another comm). A steady-state scan is then one
 * listing of `<procRoot>` plus one `pread` per process; a hypervisor whose stat shows a zombie is no
 * longer listed. That stat read is offered to this process's proc reader on the same root
 * (internal/freshStats.ts): the collection that follows the scan takes it instead of reading the file
 * again. The other way, a hypervisor the reader saw running moments before (its own stat, ≤ 1.5 s old,
 * the same start time and comm) is not read by the scan at all. A hypervisor's status (its uids) and cmdline are read again every `recheck` (30 s),
 * which is when a setuid() or an exec() into the same program with other arguments is seen. Pids gone
 * from the listing are forgotten and their fds closed; so are all of them when the layer is released.
 * - a process that vanishes between the listing and its reads is skipped; so is a zombie (empty
 *   cmdline).
 *
 * A Firecracker `--config-file` is read through `<procRoot>/<pid>/root/…` (absolute) or
 * `<procRoot>/<pid>/cwd/…` (relative), so a jailed Firecracker's chroot is honoured and nothing
 * outside /proc is named; paths with `..` or NUL are refused, the last component must be a regular
 * file (no symlink, no FIFO) and at most 1 MiB. A missing or bad config means defaults, not failure.
 *
 * Only hypervisor processes that ProcessTrust.ts vouches for are listed: all uids root or in
 * `trustedUids`, and an executable that only root or trusted users could have put there. The others
 * are ignored and counted by reason (`ignoredTotals`, once per process), so that another local user
 * cannot pose as a VM: a new process, on a new pid or a reused one, is judged in full before it is
 * listed. The uids are judged again at every re-check (setuid() may change them); the executable once
 * per process and command line.
 *
 * A scan runs in steps of `stepSize` pids (default 64, ~1 ms) with a turn of the event loop between
 * them (EventLoop.ts): one listing of `<procRoot>` (a single readdir), then the per-pid reads sliced,
 * so a server answers its requests during a scan of a large host. Scans run one at a time.
 *
 * Only an unlistable `<procRoot>` fails the listing (`InstanceSourceError`). The result is sorted by
 * id (then pid), so its order is stable. Ids must be unique (each is a series in /metrics and a REST
 * resource): processes that derive the same id (two QEMUs with one `-name` and no `-uuid`) are told
 * apart as `<id>-pid<pid>`.
 *
 * @since 0.1.0
 */

import { InstanceSourceError } from "@vm-metrics/core/Errors"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { type Context, Duration, Effect, Layer, type Scope } from "effect"
import { yieldToEventLoop } from "./EventLoop.js"
import { softLimitOfSelf } from "./internal/fdBudget.js"
import { sharedFreshStats } from "./internal/freshStats.js"
import { checkRoot } from "./internal/keptFile.js"
import { keptCommFdsFor, makeScanner, type Scanner } from "./internal/processScanner.js"

/** @category models */
export interface Options {
  /** Where the host's /proc is mounted. Default `/proc`. */
  readonly procRoot?: string
  /** Uids besides root whose hypervisor processes are trusted (e.g. libvirt-qemu's). Default none. */
  readonly trustedUids?: ReadonlyArray<number>
  /** Pids read per synchronous step of a scan. Default 64. */
  readonly stepSize?: number
  /** How often a known hypervisor's uids and command line are read again. Default 30 seconds. */
  readonly recheck?: Duration.DurationInput
}

/** One scan in steps, an event-loop turn between them. */
const scanInSteps = (scanner: Scanner, stepSize: number) =>
  Effect.gen(function* () {
    const inSteps = yield* scanner.begin()
    while (inSteps.step(stepSize)) yield* yieldToEventLoop
    return inSteps.finish()
  })

/**
 * Builds the source; an invalid `procRoot` makes every listing fail with the reason. The kept fds are
 * closed when the scope closes.
 *
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Context.Tag.Service<InstanceSource>, never, Scope.Scope> =>
  checkRoot("procRoot", options.procRoot ?? "/proc").pipe(
    Effect.flatMap((procRoot) =>
      Effect.acquireRelease(
        Effect.sync(() =>
          makeScanner(procRoot, options.trustedUids, {
            keptCommFds: keptCommFdsFor(softLimitOfSelf()),
            fresh: sharedFreshStats(procRoot),
            ...(options.recheck === undefined ? {} : { recheckMs: Duration.toMillis(options.recheck) })
          })
        ),
        (scanner) => Effect.sync(scanner.close)
      )
    ),
    Effect.flatMap((scanner) =>
      Effect.map(Effect.makeSemaphore(1), (oneAtATime) =>
        InstanceSource.of({
          list: oneAtATime.withPermits(1)(scanInSteps(scanner, Math.max(1, options.stepSize ?? 64))),
          ignoredTotals: scanner.ignoredTotals
        })
      )
    ),
    Effect.catchAll((invalid) =>
      Effect.succeed(
        InstanceSource.of({
          list: Effect.fail(new InstanceSourceError({ kind: "invalid_config", reason: invalid.message }))
        })
      )
    )
  )

/** Lists the hypervisor processes under `procRoot` (default `/proc`). @category layers */
export const layer = (options: Options = {}): Layer.Layer<InstanceSource> => Layer.scoped(InstanceSource, make(options))
