/**
 * Optional OTLP push (OTLP/HTTP, protobuf) of the same series as `/metrics`, on its own schedule.
 *
 * The first push goes out at start, then one every interval. Each asks the collector for a snapshot
 * (shared with scrapes within its max age), collects it through an SDK reader fed by the VmMetrics
 * producer, and exports it. A failed push is logged and
 * tried again on the next tick; it never touches the pull path. The endpoint and headers come from
 * options, else the OTel exporter reads the standard `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_EXPORTER_OTLP_HEADERS`. The interval comes from options only;
 * `layerConfig` reads `OTEL_METRIC_EXPORT_INTERVAL` (ms), a bad value being a ConfigError, not a defect.
 *
 * The push has a MeterProvider of its own: the Prometheus text is rendered straight from the snapshot
 * (PrometheusText.ts), so there is no SDK Prometheus reader to sit beside; both read the same snapshots.
 *
 * @since 0.1.0
 */
import { ExportResultCode } from "@opentelemetry/core"
import { OTLPMetricExporter } from "@opentelemetry/exporter-metrics-otlp-proto"
import { resourceFromAttributes } from "@opentelemetry/resources"
import { MeterProvider, MetricReader, type PushMetricExporter, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import { Config, type ConfigError, Duration, Effect, Layer, Option, Schedule } from "effect"
import { VmMetrics } from "./VmMetrics.js"

/** @category models */
export interface Options {
  /** Full metrics URL, e.g. `http://127.0.0.1:4318/v1/metrics`. Default: from OTEL_* env, else the OTLP default. */
  readonly url?: string
  readonly headers?: Readonly<Record<string, string>>
  /** Default 60 s (`layerConfig`: OTEL_METRIC_EXPORT_INTERVAL). */
  readonly interval?: Duration.DurationInput
  /** Per export. Default 10 s. */
  readonly timeout?: Duration.DurationInput
  /** Tests and other transports; default the OTLP/HTTP protobuf exporter. */
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

/** The interval from OTEL_METRIC_EXPORT_INTERVAL (milliseconds), if set. @category config */
export const intervalConfig = Config.option(Config.integer("OTEL_METRIC_EXPORT_INTERVAL"))

/** Starts pushing; stops (after a final shutdown of the exporter) when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const collector = yield* Collector
    const metrics = yield* VmMetrics
    const interval = Duration.decode(options.interval ?? Duration.seconds(60))
    const timeout = Duration.decode(options.timeout ?? "10 seconds")
    const exporter =
      options.exporter ??
      new OTLPMetricExporter({
        ...(options.url === undefined ? {} : { url: options.url }),
        ...(options.headers === undefined ? {} : { headers: { ...options.headers } }),
        timeoutMillis: Duration.toMillis(timeout)
      })
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
        Effect.as(Effect.logWarning("OTLP push failed; trying again next interval", cause), false)
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
