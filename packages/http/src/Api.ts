/**
 * The HTTP API as a description (no handlers): what the OpenAPI document and the typed client see.
 * Error bodies are `{"code": …, "message": …}` as in the original, and 409 is declared this time.
 *
 * @since 0.1.0
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { CONTENT_TYPE } from "@vm-metrics/otel/PrometheusText"
import { Schema } from "effect"
import { InstanceList, InstanceStats } from "./StatsJson.js"

/** @category errors */
export class NotFound extends Schema.Class<NotFound>("NotFound")({
  code: Schema.Literal("not_found"),
  message: Schema.String
}) {}

/** @category errors */
export class Ambiguous extends Schema.Class<Ambiguous>("Ambiguous")({
  code: Schema.Literal("ambiguous"),
  message: Schema.String
}) {}

/** @category errors */
export class BadRequest extends Schema.Class<BadRequest>("BadRequest")({
  code: Schema.Literal("bad_request"),
  message: Schema.String
}) {}

/** @category errors */
export class Unauthorized extends Schema.Class<Unauthorized>("Unauthorized")({
  code: Schema.Literal("unauthorized"),
  message: Schema.String
}) {}

/** The path segment that names an instance: an id, a name or an id prefix. @category schemas */
export const InstanceRef = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)).annotations({
  description: "Instance id, name, or unique id prefix"
})

const id = HttpApiSchema.param("id", InstanceRef)

/** @category groups */
export class InstancesGroup extends HttpApiGroup.make("instances")
  .add(
    HttpApiEndpoint.get("stats")`/instances/${id}/stats`
      .addSuccess(InstanceStats)
      .addError(NotFound, { status: 404 })
      .addError(Ambiguous, { status: 409 })
      .annotate(OpenApi.Summary, "Current resource use of one instance")
  )
  .add(
    HttpApiEndpoint.get("list", "/instances")
      .addSuccess(InstanceList)
      .annotate(OpenApi.Summary, "Every listed instance with its current resource use")
  ) {}

/** @category groups */
export class MetricsGroup extends HttpApiGroup.make("metrics", { topLevel: true }).add(
  HttpApiEndpoint.get("metrics", "/metrics")
    .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: CONTENT_TYPE })))
    .annotate(OpenApi.Summary, "Prometheus text exposition")
) {}

/** @category groups */
export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true }).add(
  HttpApiEndpoint.get("healthz", "/healthz")
    .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
    .annotate(OpenApi.Summary, "Liveness; never needs a token")
) {}

/** @category api */
export class VmMetricsApi extends HttpApi.make("vm-metrics")
  .add(InstancesGroup)
  .add(MetricsGroup)
  .add(HealthGroup)
  .addError(BadRequest, { status: 400 })
  .addError(Unauthorized, { status: 401 })
  .annotate(OpenApi.Title, "vm-metrics")
  .annotate(
    OpenApi.Description,
    "Host-side resource use of virtual machines. When a token is configured, every path but /healthz needs `Authorization: Bearer <token>`."
  ) {}
