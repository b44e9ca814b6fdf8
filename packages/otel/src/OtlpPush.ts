/**
 * Optional OTLP push of the same series as `/metrics`, on its own schedule, over OTLP/HTTP with protobuf
 * (the default) or JSON, or over OTLP/gRPC (`protocol`; MetricsExporter.ts reads it from the environment).
 * Only the chosen protocol's exporter is loaded.
 *
 * The first push goes out at start, then one every interval. Each asks the collector for a snapshot
 * (shared with scrapes within its max age), collects it through an SDK reader fed by the VmMetrics
 * producer, and exports it. A failed push is logged and
 * tried again on the next tick; it never touches the pull path. The endpoint and headers come from
 * options, else the OTel exporter reads the standard `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318/v1/metrics` over HTTP,
 * `http://localhost:4317` over gRPC) and `OTEL_EXPORTER_OTLP_HEADERS`. The interval comes from options only;
 * `layerConfig` reads `OTEL_METRIC_EXPORT_INTERVAL` (ms), a bad value being a ConfigError, not a defect.
 *
 * The push has a MeterProvider of its own: the Prometheus text is rendered straight from the snapshot
 * (PrometheusText.ts), so there is no SDK Prometheus reader to sit beside; both read the same snapshots.
 *
 * @since 0.1.0
 */
import { ExportResultCode } from "@opentelemetry/core"
import { resourceFromAttributes } from "@opentelemetry/resources"
import { MeterProvider, MetricReader, type PushMetricExporter, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import { Cause, Config, type ConfigError, Duration, Effect, Layer, Option, Schedule } from "effect"
import type { Protocol } from "./MetricsExporter.js"
import { VmMetrics } from "./VmMetrics.js"

/** @category models */
export interface Options {
  /** Full metrics URL, e.g. `http://127.0.0.1:4318/v1/metrics` (gRPC: `http://127.0.0.1:4317`). Default: from OTEL_* env, else the OTLP default. */
  readonly url?: string
  /** HTTP headers of the push (the HTTP protocols; over gRPC, OTEL_EXPORTER_OTLP_HEADERS gives the metadata). */
  readonly headers?: Readonly<Record<string, string>>
  /** Default `http/protobuf`. */
  readonly protocol?: Protocol
  /** Default 60 s (`layerConfig`: OTEL_METRIC_EXPORT_INTERVAL). */
  readonly interval?: Duration.DurationInput
  /** Per export. Default 10 s. */
  readonly timeout?: Duration.DurationInput
  /** Tests and other transports; default the OTel exporter of `protocol`. */
  readonly exporter?: PushMetricExporter
}

/** A reader whose collections we start ourselves (right after a fresh snapshot), not on a timer. */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const exportOnce = (exporter: PushMetricExporter, metrics: ResourceMetrics) =>
  Effect.async<void, Error>((resume) => {
    exporter.export(metrics, (result) =>
      resume(
        result.code === ExportResultCode.SUCCESS
          ? Effect.void
          : Effect.fail(result.error ?? new Error("OTLP export failed"))
      )
    )
  })

/**
 * A CommonJS package's exports: Node (and the test runner) give them as named exports and as `default`;
 * the bundle's split chunk of a CommonJS package gives only `default`.
 */
const commonJs = <M>(namespace: M): M => {
  const exports = (namespace as { readonly default?: unknown }).default
  return typeof exports === "object" && exports !== null ? (exports as M) : namespace
}

/** The OTel exporter of the protocol asked for, its package loaded only now. */
const exporterFor = async (options: Options, timeout: Duration.Duration): Promise<PushMetricExporter> => {
  const common = {
    ...(options.url === undefined ? {} : { url: options.url }),
    timeoutMillis: Duration.toMillis(timeout)
  }
  const http = { ...common, ...(options.headers === undefined ? {} : { headers: { ...options.headers } }) }
  switch (options.protocol ?? "http/protobuf") {
    case "http/protobuf":
      return new (commonJs(await import("@opentelemetry/exporter-metrics-otlp-proto")).OTLPMetricExporter)(http)
    case "http/json":
      return new (commonJs(await import("@opentelemetry/exporter-metrics-otlp-http")).OTLPMetricExporter)(http)
    case "grpc":
      return new (commonJs(await import("@opentelemetry/exporter-metrics-otlp-grpc")).OTLPMetricExporter)(common)
  }
}

/** The interval from OTEL_METRIC_EXPORT_INTERVAL (milliseconds), if set. @category config */
export const intervalConfig = Config.option(Config.integer("OTEL_METRIC_EXPORT_INTERVAL"))

/** What went wrong, in one line: the error's message, not its stack (a refused connection is no program error). */
const reasonOf = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ").trim()
}

/** Starts pushing; stops (after a final shutdown of the exporter) when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const collector = yield* Collector
    const metrics = yield* VmMetrics
    const interval = Duration.decode(options.interval ?? Duration.seconds(60))
    const timeout = Duration.decode(options.timeout ?? "10 seconds")
    const exporter = options.exporter ?? (yield* Effect.promise(() => exporterFor(options, timeout)))
    const reader = new OnDemandReader({ metricProducers: [metrics.producer] })
    // The provider binds the reader (and gives it the resource); shutting it down shuts the exporter.
    yield* Effect.acquireRelease(
      Effect.sync(() => new MeterProvider({ resource: resourceFromAttributes(metrics.resource), readers: [reader] })),
      (provider) => Effect.promise(() => Promise.all([provider.shutdown(), exporter.shutdown()]).catch(() => undefined))
    )

    /** One push; never fails: a failure is logged and the next tick tries again. */
    const pushOnce = Effect.gen(function* () {
      yield* collector.collectAll
      const { resourceMetrics } = yield* Effect.promise(() => reader.collect())
      yield* exportOnce(exporter, resourceMetrics).pipe(
        Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error("OTLP export timed out") })
      )
    }).pipe(
      Effect.as(true),
      Effect.catchAllCause((cause) =>
        Effect.as(
          Effect.logWarning("OTLP push failed; trying again next interval").pipe(
            Effect.annotateLogs({ reason: reasonOf(cause) })
          ),
          false
        )
      )
    )

    yield* Effect.forkScoped(Effect.repeat(pushOnce, Schedule.spaced(interval)))
    return { pushOnce }
  })

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<never, never, Collector | VmMetrics> =>
  Layer.scopedDiscard(make(options))

/** The interval from OTEL_METRIC_EXPORT_INTERVAL when the options give none. @category layers */
export const layerConfig = (
  options: Options = {}
): Layer.Layer<never, ConfigError.ConfigError, Collector | VmMetrics> =>
  Layer.unwrapEffect(
    Effect.map(intervalConfig, (fromEnv) =>
      layer({
        ...options,
        interval: options.interval ?? Option.getOrElse(Option.map(fromEnv, Duration.millis), () => "60 seconds")
      })
    )
  )
