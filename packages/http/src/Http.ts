/**
 * The handlers of the API, over the core Collector and the otel VmMetrics service. Stats come from
 * one shared snapshot, so `/instances`, `/instances/{id}/stats` and `/metrics` agree: the latest of the
 * background loop when Serving is provided in background mode (Main's server), else the collector's
 * (at most its max age old). The bodies of `/metrics` and `/instances` are encoded once per snapshot
 * and reused, gzip-compressed for a client that accepts it (EncodedBody). JSON bodies with counters are typed by StatsJson's schemas and written by ExactJson (exact integers). A failed
 * listing is reported by kind and position only: the source's reason (paths, what it read) stays in the
 * collector's log.
 *
 * @since 0.1.0
 */
import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Collector, type Snapshot } from "@vm-metrics/core/Collector"
import { CONTENT_TYPE } from "@vm-metrics/otel/PrometheusText"
import { VmMetrics } from "@vm-metrics/otel/VmMetrics"
import { Effect, Either, Layer, Option } from "effect"
import { Ambiguous, type InstancesGroup, NotFound, VmMetricsApi } from "./Api.js"
import * as EncodedBody from "./EncodedBody.js"
import { lookup } from "./Lookup.js"
import * as Rates from "./Rates.js"
import { Serving } from "./Serving.js"
import { listJson, statsJson } from "./StatsJson.js"

const json = (body: string) => HttpServerResponse.text(body, { contentType: "application/json" })

/** The snapshot to serve and the history of snapshots: Serving's when provided, else over the collector's collectAll. */
const snapshotSource = Effect.gen(function* () {
  const serving = yield* Effect.serviceOption(Serving)
  if (Option.isSome(serving)) return { current: serving.value.snapshot, history: serving.value.history }
  const history = Rates.makeHistory()
  const current = Effect.tap((yield* Collector).collectAll, (snapshot) => history.observe(snapshot))
  return { current, history }
})

/** A cached body, as gzip when the request accepts it; either way it varies by Accept-Encoding. */
const encodedResponse = (body: EncodedBody.Encoded, contentType: string) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    EncodedBody.acceptsGzip(request.headers["accept-encoding"])
      ? HttpServerResponse.uint8Array(body.gzip(), {
          contentType,
          headers: { "content-encoding": "gzip", vary: "Accept-Encoding" }
        })
      : HttpServerResponse.uint8Array(body.plain, { contentType, headers: { vary: "Accept-Encoding" } })
  )

/**
 * The handlers of `InstancesGroup` (`/instances`, `/instances/{id}/stats`) for any HttpApi that adds it,
 * e.g. a control plane's own API next to its own groups; needs a Collector. The platform keys a group's
 * handlers by the API's id, which only the types see: at run time the routes are those of the group in `api`.
 *
 * @category layers
 */
export const layerInstances = <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups | typeof InstancesGroup, E, R>
): Layer.Layer<HttpApiGroup.ApiGroup<ApiId, "instances">, never, Collector> =>
  HttpApiBuilder.group(api as unknown as typeof VmMetricsApi, "instances", (handlers) =>
    Effect.gen(function* () {
      const { current, history } = yield* snapshotSource
      const listBody = EncodedBody.makeCache((snapshot: Snapshot) =>
        listJson(snapshot, (vm) => history.previous(snapshot, vm.instanceId))
      )
      return handlers
        .handle("stats", ({ path }) =>
          Effect.flatMap(current, (snapshot) =>
            Either.match(lookup(snapshot.stats, path.id), {
              onRight: (vm): Effect.Effect<HttpServerResponse.HttpServerResponse, NotFound | Ambiguous> =>
                Effect.succeed(json(statsJson(vm, history.previous(snapshot, vm.instanceId)))),
              onLeft: (failure) =>
                failure._tag === "NotFound"
                  ? Effect.fail(new NotFound({ code: "not_found", message: "resource not found" }))
                  : Effect.fail(new Ambiguous({ code: "ambiguous", message: "multiple resources match, use full ID" }))
            })
          )
        )
        .handle("list", () =>
          Effect.flatMap(current, (snapshot) => encodedResponse(listBody(snapshot), "application/json"))
        )
    })
  ) as unknown as Layer.Layer<HttpApiGroup.ApiGroup<ApiId, "instances">, never, Collector>

const InstancesLive = layerInstances(VmMetricsApi)

const MetricsLive = HttpApiBuilder.group(VmMetricsApi, "metrics", (handlers) =>
  Effect.gen(function* () {
    const metrics = yield* VmMetrics
    const { current } = yield* snapshotSource
    // By the rendered bytes: VmMetrics.renderBytes gives back the same array for the same snapshot and counts.
    const metricsBody = EncodedBody.makeBytesCache()
    return handlers.handle("metrics", () =>
      Effect.flatMap(current, (snapshot) =>
        Effect.flatMap(metrics.renderBytes(snapshot), (bytes) => encodedResponse(metricsBody(bytes), CONTENT_TYPE))
      )
    )
  })
)

const HealthLive = HttpApiBuilder.group(VmMetricsApi, "health", (handlers) =>
  handlers.handle("healthz", () => Effect.succeed({ status: "ok" as const }))
)

/** The API with its handlers; needs a Collector and VmMetrics. @category layers */
export const ApiLive = HttpApiBuilder.api(VmMetricsApi).pipe(Layer.provide([InstancesLive, MetricsLive, HealthLive]))
