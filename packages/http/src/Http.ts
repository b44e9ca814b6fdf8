/**
 * The handlers of the API, over the core Collector and the otel VmMetrics service. Stats come from
 * the collector's shared snapshot (at most its max age old), so `/instances`, `/instances/{id}/stats`
 * and `/metrics` agree. JSON bodies with counters are typed by StatsJson's schemas and written by ExactJson (exact integers). A failed
 * listing is reported by kind and position only: the source's reason (paths, what it read) stays in the
 * collector's log.
 *
 * @since 0.1.0
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Collector } from "@vm-metrics/core/Collector"
import { CONTENT_TYPE } from "@vm-metrics/otel/PrometheusText"
import { VmMetrics } from "@vm-metrics/otel/VmMetrics"
import { Effect, Either, Layer } from "effect"
import { Ambiguous, NotFound, VmMetricsApi } from "./Api.js"
import { lookup } from "./Lookup.js"
import { listJson, statsJson } from "./StatsJson.js"

const json = (body: string) => HttpServerResponse.text(body, { contentType: "application/json" })

const InstancesLive = HttpApiBuilder.group(VmMetricsApi, "instances", (handlers) =>
  Effect.gen(function* () {
    const collector = yield* Collector
    return handlers
      .handle("stats", ({ path }) =>
        Effect.flatMap(collector.collectAll, (snapshot) =>
          Either.match(lookup(snapshot.stats, path.id), {
            onRight: (vm): Effect.Effect<HttpServerResponse.HttpServerResponse, NotFound | Ambiguous> =>
              Effect.succeed(json(statsJson(vm))),
            onLeft: (failure) =>
              failure._tag === "NotFound"
                ? Effect.fail(new NotFound({ code: "not_found", message: "resource not found" }))
                : Effect.fail(new Ambiguous({ code: "ambiguous", message: "multiple resources match, use full ID" }))
          })
        )
      )
      .handle("list", () => Effect.map(collector.collectAll, (snapshot) => json(listJson(snapshot))))
  })
)

const MetricsLive = HttpApiBuilder.group(VmMetricsApi, "metrics", (handlers) =>
  Effect.gen(function* () {
    const metrics = yield* VmMetrics
    return handlers.handle("metrics", () =>
      Effect.map(metrics.prometheusText, (text) => HttpServerResponse.text(text, { contentType: CONTENT_TYPE }))
    )
  })
)

const HealthLive = HttpApiBuilder.group(VmMetricsApi, "health", (handlers) =>
  handlers.handle("healthz", () => Effect.succeed({ status: "ok" as const }))
)

/** The API with its handlers; needs a Collector and VmMetrics. @category layers */
export const ApiLive = HttpApiBuilder.api(VmMetricsApi).pipe(Layer.provide([InstancesLive, MetricsLive, HealthLive]))
