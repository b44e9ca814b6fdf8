/**
 * The composition root: the one place the product's layer graph is built, from an AppConfig.
 * `layerCollect`: source → readers → collector; `layerOneInstance`: the source and a collector for
 * reading one instance (`stats <id>`); `layerPipeline`: … → metrics (→ OTLP push);
 * `layerApp`: the pipeline behind the HTTP app without a socket (with the collection loop of
 * `--collection background`, see Serving); `layerServe`: the whole server.
 * The CLI, the tests and the bench all build through these. A caller may swap the instance source or
 * the readers (`Ports`), e.g. in-memory ones in a test; a field of the config left out takes the
 * table's default (AppConfig.defaults).
 *
 * @since 0.1.0
 */
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceSource } from "@vm-metrics/core/InstanceSource"
import type { ProcReader } from "@vm-metrics/core/ProcReader"
import type { TapReader } from "@vm-metrics/core/TapReader"
import * as EventLoop from "@vm-metrics/node/EventLoop"
import * as NodeReaders from "@vm-metrics/node/NodeReaders"
import * as SelfProcess from "@vm-metrics/node/SelfProcess"
import type * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { Duration, Effect, Layer, Option, Runtime } from "effect"
import { type AppConfig, type CollectConfig, defaults, type PipelineConfig, UsageError } from "./AppConfig.js"
import * as BuildInfo from "./BuildInfo.js"
import type * as ServerModule from "./Server.js"
import * as Serving from "./Serving.js"
import * as Sources from "./Sources.js"

/** Replacements for the source and readers the config would choose. @category models */
export interface Ports<ES = never, ER = never> {
  readonly source?: Layer.Layer<InstanceSource, ES>
  readonly readers?: Layer.Layer<ProcReader | TapReader, ER>
}

const asUsage = (error: { readonly message: string }) => new UsageError({ message: error.message })

// The metrics export and the HTTP server are imported by the layers that need them: `list` and `stats`
// build only the collector, and load neither (a CLI that answers at once).
const importMetrics: Effect.Effect<typeof VmMetrics> = Effect.promise(() => import("@vm-metrics/otel/VmMetrics"))
const importServer: Effect.Effect<typeof ServerModule> = Effect.promise(() => import("./Server.js"))

/** The instance source the config names. @category layers */
export const layerSource = (config: Partial<CollectConfig> = {}): Layer.Layer<InstanceSource, UsageError> => {
  const c = { ...defaults, ...config }
  return Sources.layer({
    kind: c.source,
    procRoot: c.procRoot,
    instancesFile: c.instancesFile,
    libvirtRunDir: c.libvirtRunDir,
    discoveryUids: c.discoveryUids
  }).pipe(Layer.mapError(asUsage))
}

/** The kernel readers under the config's /proc and /sys. @category layers */
export const layerReaders = (config: Partial<CollectConfig> = {}): Layer.Layer<ProcReader | TapReader, UsageError> =>
  NodeReaders.layer({
    procRoot: config.procRoot ?? defaults.procRoot,
    sysRoot: config.sysRoot ?? defaults.sysRoot
  }).pipe(Layer.mapError(asUsage))

/**
 * Source → readers → collector. The collector gives Node's event loop a turn between its chunks
 * (EventLoop.ts), and reuses discovery's listing for `discoveryInterval` (the rescan of /proc is the
 * costly part of a collection); a source given in `ports` is listed on every collection.
 *
 * @category layers
 */
export const layerCollect = <ES = never, ER = never>(
  config: Partial<CollectConfig> = {},
  ports: Ports<ES, ER> = {},
  /** A one-shot command that reports a failing source itself: the collector does not log it too. */
  reportsSourceItself = false
): Layer.Layer<Collector.Collector, UsageError | ES | ER> => {
  const readers: Layer.Layer<ProcReader | TapReader, UsageError | ER> = ports.readers ?? layerReaders(config)
  const source: Layer.Layer<InstanceSource, UsageError | ES> = ports.source ?? layerSource(config)
  const discovers = ports.source === undefined && (config.source ?? defaults.source) === "discovery"
  return Collector.layer({
    maxAge: config.maxAge ?? defaults.maxAge,
    groups: config.groups ?? defaults.groups,
    yieldToHost: EventLoop.yieldToEventLoop,
    listMaxAge: discovers ? (config.discoveryInterval ?? defaults.discoveryInterval) : 0,
    logSourceFailures: !reportsSourceItself
  }).pipe(Layer.provide(Layer.merge(readers, source)))
}

/**
 * What `stats <id>` needs to read one instance: the source, to find it, and a collector to read it
 * with (`getInstanceStats`, which reads that VM's files alone: its TAPs from their own sysfs files).
 *
 * @category layers
 */
export const layerOneInstance = (
  config: Partial<CollectConfig> = {}
): Layer.Layer<Collector.Collector | InstanceSource, UsageError> =>
  Collector.layer({ groups: config.groups ?? defaults.groups, yieldToHost: EventLoop.yieldToEventLoop }).pipe(
    Layer.provide(layerReaders(config)),
    Layer.provideMerge(layerSource(config))
  )

/**
 * Source → readers → collector → metrics (with the agent's own series: build info, process metrics of
 * /proc/self), and the OTLP push when `otlp` is on. @category layers
 */
export const layerPipeline = <ES = never, ER = never>(
  config: Partial<PipelineConfig> = {},
  ports: Ports<ES, ER> = {}
): Layer.Layer<Collector.Collector | VmMetrics.VmMetrics, UsageError | ES | ER> => {
  const metrics = Layer.unwrapEffect(
    Effect.map(Effect.all([importMetrics, SelfProcess.make()]), ([VmMetrics, selfProcess]) =>
      VmMetrics.layer({
        // The groups exported are the groups collected.
        metrics: { ...(config.metrics ?? defaults.metrics), groups: config.groups ?? defaults.groups },
        resource: config.resource ?? defaults.resource,
        agent: {
          build: { version: BuildInfo.version, revision: BuildInfo.revision, nodeVersion: BuildInfo.nodeVersion },
          process: selfProcess
        }
      })
    )
  ).pipe(Layer.mapError(asUsage), Layer.provideMerge(layerCollect(config, ports)))
  return config.otlp === true
    ? // The OTel SDK and the OTLP exporter are loaded only when the push is on (a fast `--help`, `list`, `stats`).
      Layer.unwrapEffect(
        Effect.map(
          Effect.promise(() => import("@vm-metrics/otel/OtlpPush")),
          (OtlpPush) =>
            OtlpPush.layer({
              interval: config.otlpInterval ?? defaults.otlpInterval,
              protocol: config.otlpProtocol ?? defaults.otlpProtocol
            })
        )
      ).pipe(Layer.provideMerge(metrics))
    : metrics
}

/** SIGHUP lists the instances again now (the file source re-reads a changed file); it never ends the server. */
const reloadOnHangup = Layer.scopedDiscard(
  Effect.gen(function* () {
    const collector = yield* Collector.Collector
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const onHangup = () => {
      runFork(Effect.zipRight(Effect.logInfo("SIGHUP: listing the instances again"), collector.refresh))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHangup)),
      () => Effect.sync(() => process.off("SIGHUP", onHangup))
    )
  })
)

/**
 * With the background loop, the collector's max age is at least twice the interval: the OTel paths
 * (`collectAll`: the push, a caller's Meter) then reuse the loop's snapshot instead of collecting again
 * whenever they read it just after it turned `maxAge` old.
 */
const servedConfig = (config: Partial<AppConfig>): Partial<AppConfig> => {
  if ((config.collection ?? defaults.collection) !== "background") return config
  const maxAge = Duration.decode(config.maxAge ?? defaults.maxAge)
  const twice = Duration.times(Duration.decode(config.interval ?? defaults.interval), 2)
  return { ...config, maxAge: Duration.max(maxAge, twice) }
}

/** The pipeline and what the handlers serve from it (Serving: background loop or on demand). */
const layerServed = <ES, ER>(config: Partial<AppConfig>, ports: Ports<ES, ER>) =>
  Layer.provideMerge(
    Serving.layer(config.collection ?? defaults.collection, config.interval ?? defaults.interval),
    layerPipeline(servedConfig(config), ports)
  )

/** The HTTP app over the pipeline, without a socket: tests provide `NodeHttpServer.layerTest`. @category layers */
export const layerApp = <ES = never, ER = never>(config: Partial<AppConfig> = {}, ports: Ports<ES, ER> = {}) =>
  Layer.unwrapEffect(
    Effect.map(importServer, (Server) =>
      Server.layerApp(config.authToken ?? defaults.authToken, {
        metricsWithoutAuth: config.metricsWithoutAuth ?? defaults.metricsWithoutAuth,
        source: ports.source === undefined ? (config.source ?? defaults.source) : "custom"
      })
    )
  ).pipe(Layer.provideMerge(layerServed(config, ports)))

/** The connections note, logged once the pipeline is built: after any bad option it could still reject. */
const announceConnections = (note: AppConfig["connectionsNote"]) =>
  Layer.effectDiscard(
    Option.match(note, {
      onNone: () => Effect.void,
      onSome: ({ message, warning }) => (warning ? Effect.logWarning(message) : Effect.logInfo(message))
    })
  )

/** The whole server: pipeline, HTTP listener, SIGHUP reload. @category layers */
export const layerServe = <ES = never, ER = never>(config: Partial<AppConfig> = {}, ports: Ports<ES, ER> = {}) => {
  const c = { ...defaults, ...config }
  return Layer.mergeAll(
    announceConnections(c.connectionsNote),
    Layer.unwrapEffect(
      Effect.map(importServer, (Server) =>
        Server.layer({
          host: c.host,
          port: c.port,
          authToken: c.authToken,
          limits: c.limits,
          metricsWithoutAuth: c.metricsWithoutAuth,
          source: c.source,
          tls: Option.getOrUndefined(c.tls)
        })
      )
    ),
    reloadOnHangup
  ).pipe(Layer.provide(layerServed(config, ports)))
}
