/**
 * Where the server's handlers get their snapshot from, chosen by `--collection`:
 * - `background` (the server's default): a loop collects every `--interval` (spaced: the interval runs
 *   from the end of one collection to the start of the next) and the handlers serve the latest snapshot
 *   without any I/O, so their latency is render time. The loop calls the collector's `collect`, which
 *   reuses a listing younger than its `listMaxAge` (Main: `--discovery-interval`); SIGHUP's `refresh`
 *   lists at once. Before the first snapshot exists a request waits
 *   for the first collection (which the loop has already started) rather than answer without data.
 *   The loop is a fiber of the layer's scope: it stops when the server shuts down.
 * - `on-demand`: the collector's `collectAll` (a snapshot at most its max age old, collected inline by
 *   the request that finds it older), as the library offers it.
 *
 * Either way it keeps the snapshot before the latest one (`history`), for the rates of the stats JSON:
 * in the background every collection of the loop is recorded, on demand every snapshot served.
 *
 * @since 0.1.0
 */
import { Collector, type Snapshot } from "@vm-metrics/core/Collector"
import { Cause, Context, type Duration, Effect, Layer, Option, Schedule } from "effect"
import * as Rates from "./Rates.js"

/** @category constants */
export const modes = ["background", "on-demand"] as const
/** @category models */
export type Mode = (typeof modes)[number]

/** @category tags */
export class Serving extends Context.Tag("@vm-metrics/http/Serving")<
  Serving,
  {
    readonly mode: Mode
    /** The snapshot a handler serves. */
    readonly snapshot: Effect.Effect<Snapshot>
    /** The snapshots before it, for rates. */
    readonly history: Rates.History
    /** In the background: the latest snapshot, read synchronously (FastPath); undefined before the first. */
    readonly latest?: () => Snapshot | undefined
  }
>() {}

/** The collector's `collectAll`, inline. @category layers */
export const layerOnDemand: Layer.Layer<Serving, never, Collector> = Layer.effect(
  Serving,
  Effect.map(Collector, (collector) => {
    const history = Rates.makeHistory()
    return Serving.of({
      mode: "on-demand",
      snapshot: Effect.tap(collector.collectAll, (snapshot) => history.observe(snapshot)),
      history
    })
  })
)

/** A collection now and every `interval` after, in the background; handlers read the latest. @category layers */
export const layerBackground = (interval: Duration.DurationInput): Layer.Layer<Serving, never, Collector> =>
  Layer.scoped(
    Serving,
    Effect.gen(function* () {
      const collector = yield* Collector
      const history = Rates.makeHistory()
      // The collector never fails; should it still, the loop logs and goes on rather than stop serving fresh data.
      yield* collector.collect.pipe(
        Effect.tap((snapshot) => history.observe(snapshot)),
        Effect.catchAllCause((cause) =>
          Effect.logWarning("background collection failed").pipe(Effect.annotateLogs({ cause: Cause.pretty(cause) }))
        ),
        Effect.repeat(Schedule.spaced(interval)),
        Effect.forkScoped
      )
      return Serving.of({
        mode: "background",
        // No snapshot yet: join the first collection (collectAll joins the one in flight).
        snapshot: Effect.flatMap(
          collector.latest,
          Option.match({ onNone: () => collector.collectAll, onSome: Effect.succeed })
        ),
        history,
        latest: () => Option.getOrUndefined(Effect.runSync(collector.latest))
      })
    })
  )

/** @category layers */
export const layer = (mode: Mode, interval: Duration.DurationInput): Layer.Layer<Serving, never, Collector> =>
  mode === "background" ? layerBackground(interval) : layerOnDemand
