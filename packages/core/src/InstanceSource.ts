/**
 * Port: lists the instances to collect. Constructors cover the ways a caller can list: a fixed list, any
 * Effect, a lister of `InstanceData` (TAP names derived from ids) and a manager that already returns
 * `InstanceInfo`. Any failure becomes an `InstanceSourceError`, which the collector reports.
 *
 * @since 0.1.0
 */
import { Cause, Context, Effect, Layer } from "effect"
import { InstanceSourceError, type InstanceSourceErrorKind } from "./Errors.js"
import { fromInstanceData, type InstanceData, type InstanceInfo } from "./Instance.js"

/** How many candidate processes a source ignored since start, by reason (e.g. discovery's `untrusted_uid`). @category models */
export interface IgnoredTotal {
  readonly reason: string
  readonly count: number
}

/** @category tags */
export class InstanceSource extends Context.Tag("@vm-metrics/core/InstanceSource")<
  InstanceSource,
  {
    readonly list: Effect.Effect<ReadonlyArray<InstanceInfo>, InstanceSourceError>
    /** Cumulative counts of what the source chose not to list; the collector copies them into each snapshot. */
    readonly ignoredTotals?: () => ReadonlyArray<IgnoredTotal>
  }
>() {}

/** A readable reason for whatever a source failed with: an Error's message, a string, or its JSON. */
const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause !== "object" || cause === null) return String(cause)
  try {
    return JSON.stringify(cause)
  } catch {
    return String(cause)
  }
}

/** A foreign failure is `unavailable`: its text stays in `reason`, for the local log only. */
const toSourceError = (cause: unknown): InstanceSourceError =>
  cause instanceof InstanceSourceError
    ? cause
    : new InstanceSourceError({ kind: "unavailable", reason: describe(cause), cause })

/** The error kind of an errno code (`ENOENT`, `EACCES`, …), for sources that read files. @category utils */
export const kindOfErrno = (code: string): InstanceSourceErrorKind =>
  code === "ENOENT" || code === "ENOTDIR"
    ? "not_found"
    : code === "EACCES" || code === "EPERM"
      ? "permission_denied"
      : code === "EFBIG"
        ? "too_large"
        : "read_failed"

/** A fixed list. @category constructors */
export const fromList = (instances: ReadonlyArray<InstanceInfo>): Context.Tag.Service<InstanceSource> =>
  InstanceSource.of({ list: Effect.succeed(instances) })

/** Any Effect that lists instances; its failures and defects are wrapped (a source never crashes a scrape). @category constructors */
export const fromEffect = <E, R>(
  list: Effect.Effect<ReadonlyArray<InstanceInfo>, E, R>
): Effect.Effect<Context.Tag.Service<InstanceSource>, never, R> =>
  Effect.map(Effect.context<R>(), (context) =>
    InstanceSource.of({
      list: list.pipe(
        Effect.catchAllCause(
          (cause): Effect.Effect<never, InstanceSourceError> =>
            Cause.isInterruptedOnly(cause) ? Effect.interrupt : Effect.fail(toSourceError(Cause.squash(cause)))
        ),
        Effect.provide(context)
      )
    })
  )

/** A lister of `InstanceData`: TAP names derived from ids. @category constructors */
export const fromLister = <E, R>(
  list: Effect.Effect<ReadonlyArray<InstanceData>, E, R>
): Effect.Effect<Context.Tag.Service<InstanceSource>, never, R> =>
  fromEffect(Effect.map(list, (data) => data.map(fromInstanceData)))

/** A manager: anything that lists ready `InstanceInfo`s of running instances (`listRunningInstancesInfo`). @category constructors */
export const fromManager = <E, R>(manager: {
  readonly listRunningInstancesInfo: Effect.Effect<ReadonlyArray<InstanceInfo>, E, R>
}): Effect.Effect<Context.Tag.Service<InstanceSource>, never, R> => fromEffect(manager.listRunningInstancesInfo)

/** No instances: a host without VMs, or a caller that has no source yet. @category layers */
export const layerEmpty: Layer.Layer<InstanceSource> = Layer.succeed(InstanceSource, fromList([]))

/** @category layers */
export const layerStatic = (instances: ReadonlyArray<InstanceInfo>): Layer.Layer<InstanceSource> =>
  Layer.succeed(InstanceSource, fromList(instances))

/** @category layers */
export const layerEffect = <E, R>(
  list: Effect.Effect<ReadonlyArray<InstanceInfo>, E, R>
): Layer.Layer<InstanceSource, never, R> => Layer.effect(InstanceSource, fromEffect(list))

/** A source tests can change between collections. @category models */
export interface MemoryInstanceSource {
  readonly source: Context.Tag.Service<InstanceSource>
  readonly set: (instances: ReadonlyArray<InstanceInfo>) => void
  /** Make `list` fail (pass undefined to recover). */
  readonly fail: (error: InstanceSourceError | undefined) => void
  readonly calls: () => number
}

/** @category constructors */
export const makeMemory = (initial: ReadonlyArray<InstanceInfo> = []): MemoryInstanceSource => {
  let instances = initial
  let failure: InstanceSourceError | undefined
  let calls = 0
  return {
    source: InstanceSource.of({
      list: Effect.suspend(() => {
        calls++
        return failure === undefined ? Effect.succeed(instances) : Effect.fail(failure)
      })
    }),
    set: (next) => {
      instances = next
    },
    fail: (error) => {
      failure = error
    },
    calls: () => calls
  }
}

/** @category layers */
export const layerMemory = (memory: MemoryInstanceSource): Layer.Layer<InstanceSource> =>
  Layer.succeed(InstanceSource, memory.source)
