/**
 * The collector (the Go original's `Manager`). It lists instances, reads their kernel files through the
 * ports and keeps the latest snapshot that the HTTP API and the metric exporters read.
 *
 * - One instance's failed read never fails a collection; it is recorded as unavailable and counted.
 * - A failing InstanceSource is reported in the snapshot (`sourceError`) and counted; the last good
 *   listing is read again meanwhile, so running VMs do not vanish from the scrape. The failure is
 *   logged when it starts and when its reason changes, and its end once (not every collection: a
 *   broken file would log once a second until fixed); the count tells how often it failed.
 * - Concurrent callers share one in-flight collection, and a snapshot younger than `maxAge` is reused.
 * - Kept resources (open fds) are released when an instance leaves the listing or changes pid/TAP.
 * - Only the enabled metric groups' files are read (option `groups`, MetricGroup.ts); the values of
 *   the others are null.
 * - `getInstanceStats` shares this state: its unavailable reads are counted in the totals, it moves
 *   an instance's epoch on, and what it opens for an unlisted instance is released by the next
 *   collection.
 *
 * - With `listMaxAge`, a collection reuses a listing younger than that and reads the listed VMs
 *   again; a new one shows up with the next listing. `refresh` always lists. The default (0) lists on
 *   every collection.
 * - A VM found newly exited (not exited in the last snapshot) makes that collection list again, so a
 *   source that lists live processes only drops it at once: after a reused listing, and after one made
 *   just before, which may be a moment behind the processes (discovery takes the reader's last sight of
 *   a process, up to 1.5 s old, for a read of its own). Once per VM that exits.
 *
 * Reads run synchronously in chunks (default 32 VMs, ~1–2 ms at ~40 µs/VM) and the collection gives
 * the host's event loop a turn between chunks (`yieldToHost`), so a server answers requests while a
 * large host is collected. `Effect.yieldNow()` is not such a turn: Effect's default scheduler resumes
 * the fiber in a microtask, so no I/O callback runs in between (measured: no setImmediate callback and
 * no HTTP request ran across 20 yieldNow-separated chunks). Core has no host APIs, so the default yield
 * goes through Effect's timer scheduler (a `setTimeout(0)` macrotask in any JS runtime, ≥ 1 ms in
 * Node); a Node caller passes a setImmediate one (node's EventLoop.ts), which costs no wait. Per-VM
 * work is plain code, not an Effect per VM (measured: an Effect per VM adds 3–8 %, an `Effect.try` per
 * file 34–48 %).
 *
 * @since 0.1.0
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  FiberId,
  Layer,
  Option,
  Ref,
  Scheduler,
  type Scope
} from "effect"
import type { InstanceSourceError } from "./Errors.js"
import { type InstanceInfo, tapsOf } from "./Instance.js"
import { type IgnoredTotal, InstanceSource } from "./InstanceSource.js"
import { buildVmStats, countUnavailable, type Identities, type UnavailableCounts } from "./internal/buildVmStats.js"
import { netGroupsOf } from "./internal/netStats.js"
import { procGroupsOf } from "./internal/procStats.js"
import { defaultGroups, type MetricGroup } from "./MetricGroup.js"
import { ProcReader, type ReaderFds } from "./ProcReader.js"
import { validateTapName } from "./TapName.js"
import { TapReader, type TapRequest, type TapSample, tapKey } from "./TapReader.js"
import type { ReadSource, VmStats } from "./VmStats.js"

/** Cumulative count of values that could not be read, by source and reason. @category models */
export interface UnavailableTotal {
  readonly source: ReadSource
  readonly reason: string
  readonly count: number
}

/** The result of one collection over all listed instances. @category models */
export interface Snapshot {
  /** 1 for the first collection, +1 for each one after it. */
  readonly sequence: number
  readonly sampledAtMs: number
  readonly durationMs: number
  /** In source order. */
  readonly stats: ReadonlyArray<VmStats>
  /** Set when the source failed this time; `stats` then come from the last good listing. */
  readonly sourceError: InstanceSourceError | null
  /** How many times the source has failed since start. */
  readonly sourceErrorsTotal: number
  /** What the source chose not to list since start, by reason (InstanceSource `ignoredTotals`). */
  readonly sourceIgnored?: ReadonlyArray<IgnoredTotal>
  readonly unavailableTotals: ReadonlyArray<UnavailableTotal>
  /** The readers' kept fds and reads by path after this collection (ProcReader `fds`), when it keeps fds. */
  readonly readerFds?: ReaderFds
}

/** @category tags */
export class Collector extends Context.Tag("@vm-metrics/core/Collector")<
  Collector,
  {
    /** Reads one instance now (the Go original's `GetInstanceStats`). Never fails: see `unavailable`. */
    readonly getInstanceStats: (info: InstanceInfo) => Effect.Effect<VmStats>
    /** A snapshot no older than `maxAge`, shared with concurrent callers (the Go original's `CollectAll`). */
    readonly collectAll: Effect.Effect<Snapshot>
    /**
     * A new collection (joining one already in flight), whatever the age of the last one, that lists
     * the instances again (SIGHUP): a collection in flight that reuses its listing is awaited first.
     */
    readonly refresh: Effect.Effect<Snapshot>
    /**
     * A new collection (joining one already in flight), whatever the age of the last one, reusing a
     * listing younger than `listMaxAge`: what a collection loop calls.
     */
    readonly collect: Effect.Effect<Snapshot>
    /** The last completed snapshot without any I/O: for metric callbacks. */
    readonly latest: Effect.Effect<Option.Option<Snapshot>>
  }
>() {}

/** @category models */
export interface Options {
  /** How long a snapshot is reused by `collectAll`. Default 1 second. */
  readonly maxAge?: Duration.DurationInput
  /** VMs read per synchronous step. Default 32. */
  readonly chunkSize?: number
  /** Gives the host's event loop a turn between chunks. Default: a yield through Effect's timer scheduler. */
  readonly yieldToHost?: Effect.Effect<void>
  /** How long a listing is reused by `collect` and `collectAll` (`refresh` always lists). Default 0: every collection lists. */
  readonly listMaxAge?: Duration.DurationInput
  /** The metric groups read (MetricGroup.ts); the files of the others are never opened. Default `defaultGroups`. */
  readonly groups?: ReadonlySet<MetricGroup>
  /**
   * Whether a failing source is logged (when it starts failing, when its reason changes, when it lists
   * again). Default true; off for a caller that reports `sourceError` itself (a CLI that exits with it).
   */
  readonly logSourceFailures?: boolean
}

/** Whether a VM is exited in `stats` that was not in the previous snapshot. */
const exitedSince = (previous: Snapshot | undefined, stats: ReadonlyArray<VmStats>): boolean => {
  // Loops, not some() with an arrow: a callback made per collection is compiled again and again.
  let anyExited = false
  for (let i = 0; i < stats.length && !anyExited; i++) anyExited = stats[i].state === "exited"
  if (!anyExited) return false
  const before = new Map<string, VmStats["state"]>()
  for (const vm of previous?.stats ?? []) before.set(vm.instanceId, vm.state)
  for (const vm of stats) if (vm.state === "exited" && before.get(vm.instanceId) !== "exited") return true
  return false
}

/** An instance's NICs as the readers are asked for them (Collector's `asksOf`). */
interface Asks {
  readonly names: ReadonlyArray<string>
  /** Per name: the answer to an invalid one (never asked of the reader), else undefined. */
  readonly invalid: ReadonlyArray<TapSample | undefined>
  /** The valid names' requests, in order, and the keys the collector holds their resources under. */
  readonly requests: ReadonlyArray<TapRequest>
  readonly keys: ReadonlyArray<string>
}

/** An invalid name is answered here, once, and never reaches the reader. */
const asksFor = (info: InstanceInfo): Asks => {
  const pid = info.hypervisorPid
  const names = tapsOf(info)
  const invalid: Array<TapSample | undefined> = []
  const requests: Array<TapRequest> = []
  for (const name of names) {
    const valid = validateTapName(name)
    if (Either.isLeft(valid)) invalid.push({ via: "sysfs", counters: Either.left(valid.left) })
    else {
      invalid.push(undefined)
      requests.push(pid === undefined ? { name } : { name, pid })
    }
  }
  return { names, invalid, requests, keys: requests.map(tapKey) }
}

interface CacheState {
  readonly latest: Snapshot | undefined
  readonly inflight: Deferred.Deferred<Snapshot> | undefined
  /** Whether the collection in flight lists the instances (a refresh started it). */
  readonly inflightLists: boolean
}

/**
 * What a caller of collectAll/collect/refresh does: reuse a snapshot, join a collection, start one, or
 * (a refresh finding a collection in flight that reuses its listing) wait for it to end and decide again.
 */
type Decision =
  | { readonly _tag: "Reuse"; readonly snapshot: Snapshot }
  | { readonly _tag: "Join" | "Start" | "After"; readonly deferred: Deferred.Deferred<Snapshot> }

/** A macrotask turn in any JS runtime (setTimeout 0), not a microtask as `Effect.yieldNow()` alone. */
const timerYield: Effect.Effect<void> = Effect.yieldNow().pipe(Effect.withScheduler(Scheduler.timer(0)))

const chunksOf = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const chunks: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size))
  return chunks
}

/** Builds the collector; its in-flight collections live in the given scope. @category constructors */
export const make = (
  options: Options = {}
): Effect.Effect<Context.Tag.Service<Collector>, never, Scope.Scope | InstanceSource | ProcReader | TapReader> =>
  Effect.gen(function* () {
    const source = yield* InstanceSource
    const proc = yield* ProcReader
    const taps = yield* TapReader
    const scope = yield* Effect.scope
    const maxAgeMs = Duration.toMillis(Duration.decode(options.maxAge ?? "1 second"))
    const chunkSize = Math.max(1, options.chunkSize ?? 32)
    const yieldToHost = options.yieldToHost ?? timerYield
    const listMaxAgeMs = Duration.toMillis(Duration.decode(options.listMaxAge ?? 0))
    const logSourceFailures = options.logSourceFailures ?? true
    const netGroups = netGroupsOf(options.groups ?? defaultGroups)
    const procGroups = procGroupsOf(options.groups ?? defaultGroups)

    const identities: Identities = new Map()
    const unavailableCounts: UnavailableCounts = new Map()
    // What each kept resource was last used by: a collection number. Whatever a full collection did
    // not touch is released after it, without building sets of the listing on every collection.
    let generation = 0
    const heldPids = new Map<number, number>()
    /** By tapKey: the TAP (name + the pid whose netns may hold it) and the collection that last read it. */
    const heldTaps = new Map<string, { readonly tap: TapRequest; used: number }>()
    let lastGoodListing: ReadonlyArray<InstanceInfo> = []
    /** When `lastGoodListing` was listed; a failed listing leaves it, so the next collection lists again. */
    let listedAtMs: number | undefined
    let sourceErrorsTotal = 0
    /** The reason of the failure logged last, while the source keeps failing; undefined once it lists. */
    let loggedSourceReason: string | undefined
    /** Failed listings since the source last listed. */
    let failedListings = 0
    let sequence = 0

    /**
     * What each listed instance asks of the readers, worked out once per InstanceInfo object: a reused
     * listing (and discovery, which hands back the same object for a known process) then builds no
     * names, requests or keys per collection, and validates no TAP name again.
     */
    const asked = new WeakMap<InstanceInfo, Asks>()
    const asksOf = (info: InstanceInfo): Asks => {
      let asks = asked.get(info)
      if (asks === undefined) {
        asks = asksFor(info)
        asked.set(info, asks)
      }
      return asks
    }

    /** Whether any listed instance has a NIC to read (a loop: see exitedSince). */
    const anyNics = (infos: ReadonlyArray<InstanceInfo>): boolean => {
      for (let i = 0; i < infos.length; i++) if (asksOf(infos[i]).names.length > 0) return true
      return false
    }

    /**
     * Reads a chunk of instances: one batched call per port, then plain per-VM code. `collection`: the
     * collection the chunk belongs to, whose chunks share what the TAP reader read for it (a net/dev);
     * undefined for a read of its own (`getInstanceStats`), which must not be given that collection's counters.
     */
    const sampleChunk = (infos: ReadonlyArray<InstanceInfo>, sampledAtMs: number, collection: number | undefined) =>
      Effect.gen(function* () {
        const pids: Array<number> = []
        // Every valid NIC of every VM (asksFor answers the invalid ones).
        const requests: Array<TapRequest> = []
        const keys: Array<string> = []
        const chunkAsks = new Array<Asks>(infos.length)
        for (let i = 0; i < infos.length; i++) {
          const info = infos[i]
          if (info.hypervisorPid !== undefined) pids.push(info.hypervisorPid)
          const asks = asksOf(info)
          chunkAsks[i] = asks
          for (let k = 0; k < asks.requests.length; k++) {
            requests.push(asks.requests[k])
            keys.push(asks.keys[k])
          }
        }
        const procSamples = yield* proc.sample(pids, procGroups.files)
        const tapSamples = yield* taps.sample(requests, netGroups.wanted, collection)
        for (const pid of pids) heldPids.set(pid, generation)
        for (let r = 0; r < requests.length; r++) {
          const held = heldTaps.get(keys[r])
          if (held === undefined) heldTaps.set(keys[r], { tap: requests[r], used: generation })
          else held.used = generation
        }
        const stats = new Array<VmStats>(infos.length)
        let p = 0
        let t = 0
        for (let i = 0; i < infos.length; i++) {
          const info = infos[i]
          const procSample = info.hypervisorPid === undefined ? undefined : procSamples[p++]
          const { names, invalid } = chunkAsks[i]
          const vmTaps = new Array<TapSample>(names.length)
          for (let k = 0; k < names.length; k++) vmTaps[k] = invalid[k] ?? tapSamples[t++]
          const vm = buildVmStats(
            info,
            names,
            procSample,
            vmTaps,
            netGroups,
            procGroups,
            proc.kernel,
            identities,
            generation,
            sampledAtMs
          )
          countUnavailable(unavailableCounts, vm)
          stats[i] = vm
        }
        return stats
      })

    /** Forgets identities and releases fds of whatever this collection did not touch. */
    const prune = Effect.gen(function* () {
      // Over keys(), neither entries (an array per VM and collection) nor forEach (an arrow made per
      // collection, which V8 compiles again after each major GC drops the last one's code).
      for (const id of identities.keys()) if (identities.get(id)?.seen !== generation) identities.delete(id)
      const stalePids: Array<number> = []
      for (const pid of heldPids.keys()) if (heldPids.get(pid) !== generation) stalePids.push(pid)
      for (const pid of stalePids) {
        heldPids.delete(pid)
        yield* proc.release(pid)
      }
      const staleTaps: Array<TapRequest> = []
      for (const key of heldTaps.keys()) {
        const held = heldTaps.get(key)
        if (held !== undefined && held.used !== generation) {
          heldTaps.delete(key)
          staleTaps.push(held.tap)
        }
      }
      for (const tap of staleTaps) yield* taps.release(tap)
    })

    const totals = (): ReadonlyArray<UnavailableTotal> =>
      Array.from(unavailableCounts, ([key, count]) => {
        const [source, reason] = key.split("\u0000") as [ReadSource, string]
        return { source, reason, count }
      })

    const collectFresh = Effect.gen(function* () {
      const startedNs = yield* Clock.currentTimeNanos
      const sampledAtMs = yield* Clock.currentTimeMillis
      generation++
      // A refresh started this collection, or the listing is due.
      const lists =
        (yield* Ref.get(cache)).inflightLists || listedAtMs === undefined || sampledAtMs - listedAtMs >= listMaxAgeMs
      const listing = lists ? yield* Effect.either(source.list) : Either.right(lastGoodListing)
      let sourceError: InstanceSourceError | null = null
      if (Either.isRight(listing)) {
        lastGoodListing = listing.right
        if (lists) listedAtMs = sampledAtMs
        if (lists && loggedSourceReason !== undefined) {
          if (logSourceFailures)
            yield* Effect.logInfo("instance source lists again").pipe(
              Effect.annotateLogs({ failed_listings: failedListings, instances: listing.right.length })
            )
          loggedSourceReason = undefined
        }
      } else {
        sourceError = listing.left
        sourceErrorsTotal++
        failedListings = loggedSourceReason === undefined ? 1 : failedListings + 1
        if (sourceError.reason !== loggedSourceReason) {
          loggedSourceReason = sourceError.reason
          if (logSourceFailures)
            yield* Effect.logWarning(
              "instance source failed; reading the last good listing (logged again when the reason changes)"
            ).pipe(Effect.annotateLogs({ reason: sourceError.reason, instances: lastGoodListing.length }))
        }
      }
      const infos = lastGoodListing
      let stats: Array<VmStats> = []
      const chunks = chunksOf(infos, chunkSize)
      // The reads the chunks share (the host's net/dev: ~3–5 ms at 1,000 TAPs) as a step of their own.
      const prepare = taps.prepare
      const prepared = prepare !== undefined && anyNics(infos)
      if (prepared) yield* prepare(generation)
      for (let c = 0; c < chunks.length; c++) {
        if (c > 0 || prepared) yield* yieldToHost
        for (const vm of yield* sampleChunk(chunks[c], sampledAtMs, generation)) stats.push(vm)
      }
      // A listing with a VM that exited since the last snapshot is stale (discovery lists live processes
      // only; one made just now may rest on the reader's sight of a process from the last collection):
      // list now, so a VM that is gone leaves the snapshot at once, not a listing later.
      if (exitedSince((yield* Ref.get(cache)).latest, stats)) {
        const relisted = yield* Effect.either(source.list)
        if (Either.isRight(relisted)) {
          lastGoodListing = relisted.right
          listedAtMs = sampledAtMs
          const listed = new Set(relisted.right.map((info) => info.id))
          stats = stats.filter((vm) => listed.has(vm.instanceId))
        }
      }
      yield* prune
      const endedNs = yield* Clock.currentTimeNanos
      sequence++
      return {
        sequence,
        sampledAtMs,
        durationMs: Number(endedNs - startedNs) / 1e6,
        stats,
        sourceError,
        sourceErrorsTotal,
        sourceIgnored: source.ignoredTotals?.() ?? [],
        unavailableTotals: totals(),
        ...(proc.fds === undefined ? {} : { readerFds: proc.fds() })
      } satisfies Snapshot
    })

    const cache = yield* Ref.make<CacheState>({ latest: undefined, inflight: undefined, inflightLists: false })

    /** Clears the in-flight mark and publishes the outcome to everyone waiting on it. */
    const publish = (deferred: Deferred.Deferred<Snapshot>, exit: Exit.Exit<Snapshot>) =>
      Ref.update(cache, (state) => ({
        latest: Exit.isSuccess(exit) ? exit.value : state.latest,
        inflight: undefined,
        inflightLists: false
      })).pipe(Effect.zipRight(Deferred.done(deferred, exit)))

    /** One collection, run in the collector's scope so that no caller's interruption can orphan it. */
    const run = (deferred: Deferred.Deferred<Snapshot>) =>
      collectFresh.pipe(
        Effect.exit,
        Effect.flatMap((exit) => publish(deferred, exit)),
        Effect.onInterrupt(() => publish(deferred, Exit.interrupt(FiberId.none))),
        Effect.interruptible
      )

    // Deciding, marking in flight and forking happen uninterruptibly: a caller interrupted in between
    // would otherwise leave an in-flight mark that nothing ever completes.
    const collect = (reuseWithinMs: number, relist: boolean): Effect.Effect<Snapshot> =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const fresh = yield* Deferred.make<Snapshot>()
          const decision = yield* Ref.modify(cache, (state): [Decision, CacheState] => {
            if (state.latest !== undefined && now - state.latest.sampledAtMs < reuseWithinMs) {
              return [{ _tag: "Reuse", snapshot: state.latest }, state]
            }
            if (state.inflight !== undefined) {
              const tag = relist && !state.inflightLists ? "After" : "Join"
              return [{ _tag: tag, deferred: state.inflight }, state]
            }
            return [
              { _tag: "Start", deferred: fresh },
              { ...state, inflight: fresh, inflightLists: relist }
            ]
          })
          if (decision._tag === "Reuse") return decision.snapshot
          if (decision._tag === "After") {
            yield* restore(Effect.exit(Deferred.await(decision.deferred)))
            return yield* restore(collect(reuseWithinMs, relist))
          }
          if (decision._tag === "Start") yield* Effect.forkIn(run(fresh), scope)
          return yield* restore(Deferred.await(decision.deferred))
        })
      )

    const getInstanceStats = (info: InstanceInfo) =>
      Effect.gen(function* () {
        const sampledAtMs = yield* Clock.currentTimeMillis
        const [vm] = yield* sampleChunk([info], sampledAtMs, undefined)
        return vm
      })

    return Collector.of({
      getInstanceStats,
      collectAll: collect(maxAgeMs, false),
      refresh: collect(0, true),
      collect: collect(0, false),
      latest: Effect.map(Ref.get(cache), (state) => Option.fromNullable(state.latest))
    })
  })

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<Collector, never, InstanceSource | ProcReader | TapReader> =>
  Layer.scoped(Collector, make(options))
