/**
 * The HTTP API as a description (no handlers): what the OpenAPI document and the typed client see.
 * Every error body is `{"code": …, "message": …}` as in the original (409 is declared this time); the
 * platform's own `HttpApiDecodeError` body never reaches a client (the Guard turns it into a 400
 * `bad_request`), so the document does not list it either.
 *
 * The bearer token is declared as the `bearer` security scheme, required by every operation but those
 * of `openPaths` (the Guard reads the same list). It is added by a transform of the document, not by an
 * HttpApiMiddleware: the Guard is one app-level middleware (it also covers /docs, /openapi.json and the
 * 404/405 of paths no route has), which a per-group middleware could not replace.
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import { CONTENT_TYPE } from "@vm-metrics/otel/PrometheusText"
import { Schema } from "effect"
import * as BuildInfo from "./BuildInfo.js"
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

/** A method the path is not served with; the `Allow` header lists those it is. @category errors */
export class MethodNotAllowed extends Schema.Class<MethodNotAllowed>("MethodNotAllowed")({
  code: Schema.Literal("method_not_allowed"),
  message: Schema.String
}) {}

/** An unexpected failure of the server (details only in its log). @category errors */
export class InternalError extends Schema.Class<InternalError>("InternalError")({
  code: Schema.Literal("internal_error"),
  message: Schema.String
}) {}

/** The path segment that names an instance: an id, a name or an id prefix. @category schemas */
export const InstanceRef = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(256)).annotations({
  description: "Instance id, name, or unique id prefix"
})

const id = HttpApiSchema.param("id", InstanceRef)

/** The paths served without the token, whatever is configured (the Guard and the document). @category constants */
export const openPaths: ReadonlyArray<string> = ["/healthz"]

/** The name of the token's security scheme in the document. @category constants */
export const SECURITY_SCHEME = "bearer"

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
  )
  .annotate(OpenApi.Description, "The listed virtual machines and their current resource use, as JSON") {}

/** @category groups */
export class MetricsGroup extends HttpApiGroup.make("metrics", { topLevel: true })
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(Schema.String.pipe(HttpApiSchema.withEncoding({ kind: "Text", contentType: CONTENT_TYPE })))
      .annotate(
        OpenApi.Summary,
        "Prometheus text exposition; needs the token when one is set, unless --metrics-without-auth"
      )
  )
  .annotate(OpenApi.Description, "Every metric of every instance, for Prometheus") {}

/** @category groups */
export class HealthGroup extends HttpApiGroup.make("health", { topLevel: true })
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "Liveness; never needs a token")
  )
  .annotate(OpenApi.Description, "Whether the server answers (a liveness probe)") {}

const DECODE_ERROR = "HttpApiDecodeError"
const BAD_REQUEST_REF = { $ref: "#/components/schemas/BadRequest" }

/**
 * The generated document with the platform's decode error replaced by our `BadRequest` (which the Guard
 * answers instead), so the 400 of every operation is the one `{"code","message"}` shape.
 */
const withoutDecodeError = (spec: Record<string, any>): Record<string, any> => {
  const isDecodeRef = (schema: any) => schema?.$ref === `#/components/schemas/${DECODE_ERROR}`
  for (const item of Object.values<Record<string, any>>(spec.paths ?? {})) {
    for (const operation of Object.values<any>(item)) {
      const bad = operation?.responses?.["400"]
      if (bad === undefined) continue
      bad.description = "Malformed request: invalid percent-encoding, or an id longer than 256 characters"
      for (const media of Object.values<any>(bad.content ?? {})) {
        const schema = media.schema
        if (isDecodeRef(schema) || schema?.anyOf?.some(isDecodeRef)) media.schema = BAD_REQUEST_REF
      }
    }
  }
  if (spec.components?.schemas !== undefined) {
    delete spec.components.schemas[DECODE_ERROR]
    withoutUnusedSchemas(spec)
  }
  return spec
}

/** Removes the component schemas nothing refers to any more (the decode error's `Issue`, its `PropertyKey`). */
const withoutUnusedSchemas = (spec: Record<string, any>): void => {
  const schemas: Record<string, unknown> = spec.components.schemas
  for (let removed = true; removed; ) {
    removed = false
    const text = JSON.stringify(spec)
    for (const name of Object.keys(schemas)) {
      if (!text.includes(`"#/components/schemas/${name}"`)) {
        delete schemas[name]
        removed = true
      }
    }
  }
}

/**
 * The bearer scheme, required by every operation but those of `openPaths`; an open operation has no 401
 * (the API-level error is declared on every endpoint).
 */
const withSecurity = (spec: Record<string, any>): Record<string, any> => {
  spec.components = { ...spec.components, securitySchemes: { ...spec.components?.securitySchemes } }
  spec.components.securitySchemes[SECURITY_SCHEME] = {
    type: "http",
    scheme: "bearer",
    description:
      "The token of --auth-token-file or VM_METRICS_AUTH_TOKEN, as `Authorization: Bearer <token>`. A server started without a token needs none."
  }
  for (const [path, item] of Object.entries<Record<string, any>>(spec.paths ?? {})) {
    const open = openPaths.includes(path)
    for (const operation of Object.values<any>(item)) {
      operation.security = open ? [] : [{ [SECURITY_SCHEME]: [] }]
      if (open) delete operation.responses?.["401"]
    }
  }
  return spec
}

/** @category api */
export class VmMetricsApi extends HttpApi.make("vm-metrics")
  .add(InstancesGroup)
  .add(MetricsGroup)
  .add(HealthGroup)
  .addError(BadRequest, { status: 400 })
  .addError(Unauthorized, { status: 401 })
  .addError(InternalError, { status: 500 })
  .annotate(OpenApi.Title, "vm-metrics")
  .annotate(OpenApi.Version, BuildInfo.version)
  .annotate(OpenApi.License, { name: "MIT", url: "https://opensource.org/license/mit" })
  // Relative: the agent that serves the document, by whatever address, scheme (HTTP or HTTPS) and port it was reached.
  .annotate(OpenApi.Servers, [{ url: "/", description: "this agent" }])
  .annotate(
    OpenApi.Description,
    [
      "Host-side resource use of virtual machines. When a token is configured, every path but /healthz (and",
      "/metrics when the server runs with --metrics-without-auth) needs `Authorization: Bearer <token>`.",
      'Query parameters are ignored. Every error body is `{"code", "message"}`: 400 bad_request, 401',
      "unauthorized, 404 not_found (also for a path no route has), 405 method_not_allowed (with an `Allow`",
      "header; HEAD is served wherever GET is), 409 ambiguous, 500 internal_error."
    ].join(" ")
  )
  .annotate(OpenApi.Transform, (spec) => withSecurity(withoutDecodeError(spec))) {}
