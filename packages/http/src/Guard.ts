/**
 * What every request passes before the API, and the one shape of every refusal: a JSON
 * `{"code","message"}` body.
 *
 * - A malformed request target (a `%` not followed by two hex digits, or escapes that are not UTF-8) is a
 *   400. Query parameters are otherwise ignored: no endpoint takes any, and scrapers add their own
 *   (Prometheus's `params:`).
 * - The optional bearer token: everything but `/healthz` (Api's `openPaths`), the `openPaths` given (the
 *   docs page) and `/metrics` with `metricsWithoutAuth`,
 *   compared in constant time over SHA-256 digests so neither content nor length leaks.
 * - A path that no route has is a 404; a path served with other methods is a 405 with `Allow` (HEAD goes
 *   with every GET, as the router answers HEAD with the GET route).
 * - A path parameter the API's schema rejects (an id longer than 256 characters) is a 400 `bad_request`,
 *   not the platform's `HttpApiDecodeError` body.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApp from "@effect/platform/HttpApp"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Cause, Effect, Option, Redacted } from "effect"
import { openPaths, VmMetricsApi } from "./Api.js"

const refuse = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson({ code, message }, { status, headers })

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Whether `presented` equals `expected`, in time independent of both. @category auth */
export const tokensMatch = (presented: string, expected: string): boolean =>
  timingSafeEqual(digest(presented), digest(expected))

/** The token of an `Authorization: Bearer …` header, or undefined. @category auth */
export const bearerOf = (header: string | undefined): string | undefined => {
  const match = header === undefined ? null : /^Bearer[ ]+(\S+)[ ]*$/i.exec(header)
  return match?.[1]
}

/** Whether a request target percent-decodes to UTF-8 text (path and query alike). @category parsing */
export const isWellFormedTarget = (url: string): boolean => {
  try {
    decodeURIComponent(url)
    return true
  } catch {
    return false
  }
}

/** A route the server answers: a method and a path where `:name` is one non-empty segment. @category routes */
export interface Route {
  readonly method: string
  readonly path: string
}

/** The API's endpoints, plus GET routes served beside it (the OpenAPI document, the docs UI). @category routes */
export const routesOf = (extraGetPaths: ReadonlyArray<string>): ReadonlyArray<Route> => {
  const routes: Array<Route> = extraGetPaths.map((path) => ({ method: "GET", path }))
  HttpApi.reflect(VmMetricsApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint }) => {
      routes.push({ method: endpoint.method, path: endpoint.path })
    }
  })
  return routes
}

// Matched like the router does: case-insensitive, a trailing slash ignored.
const segmentsOf = (path: string) =>
  path
    .replace(/(.)\/$/, "$1")
    .toLowerCase()
    .split("/")

/**
 * The methods some route serves `path` with (HEAD with every GET), in a stable order; empty when no
 * route has this path. `path` is decoded like the router decodes it (`%2F` stays inside a segment).
 * @category routes
 */
export const allowedMethods = (routes: ReadonlyArray<Route>, path: string): ReadonlyArray<string> => {
  const wanted = segmentsOf(path)
  const methods = new Set<string>()
  for (const route of routes) {
    const pattern = segmentsOf(route.path)
    const matches =
      pattern.length === wanted.length &&
      pattern.every((part, i) => (part.startsWith(":") ? wanted[i] !== "" : part === wanted[i]))
    if (matches) {
      methods.add(route.method)
      if (route.method === "GET") methods.add("HEAD")
    }
  }
  return [...methods].sort()
}

/** @category models */
export interface GuardOptions {
  /** Serve `/metrics` without the token (a Prometheus without credentials); the rest still needs it. */
  readonly metricsWithoutAuth?: boolean
  /** GET routes served beside the API (for 405 versus 404), e.g. `/openapi.json` and `/docs`. */
  readonly extraGetPaths?: ReadonlyArray<string>
  /** Paths served without the token besides Api's `openPaths`, e.g. the docs page (it holds no data). */
  readonly openPaths?: ReadonlyArray<string>
}

const tagOf = (error: unknown) => (error as { _tag?: unknown } | null)?._tag

/** The message for parameters that failed to decode, by their schema names; never the values (the client's input). */
const invalidParameters = (names: ReadonlyArray<string>): string =>
  names.length === 0
    ? "the request does not match the API"
    : `invalid ${names.join(", ")} (see the OpenAPI document: an id is 1 to 256 characters)`

/** The schema names of the parameters that failed to decode, as `invalidParameters` says them. */
const decodeFailureMessage = (error: unknown): string => {
  const issues = (error as { issues?: ReadonlyArray<{ path?: ReadonlyArray<unknown> }> }).issues ?? []
  return invalidParameters([
    ...new Set(issues.map((issue) => (issue.path ?? []).map(String).join(".")).filter((n) => n !== ""))
  ])
}

/** @category middleware */
export const guard =
  (token: Option.Option<Redacted.Redacted<string>>, options: GuardOptions = {}) =>
  (app: HttpApp.Default): HttpApp.Default => {
    const routes = routesOf(options.extraGetPaths ?? [])
    const open = new Set([
      ...openPaths,
      ...(options.openPaths ?? []),
      ...(options.metricsWithoutAuth === true ? ["/metrics"] : [])
    ])
    return Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!isWellFormedTarget(request.url)) {
        return refuse(400, "bad_request", "malformed request target: invalid percent-encoding")
      }
      const queryAt = request.url.indexOf("?")
      const path = queryAt >= 0 ? request.url.slice(0, queryAt) : request.url
      if (Option.isSome(token) && !open.has(path)) {
        const presented = bearerOf(request.headers.authorization)
        if (presented === undefined || !tokensMatch(presented, Redacted.value(token.value))) {
          return refuse(401, "unauthorized", "a valid bearer token is required", {
            "www-authenticate": 'Bearer realm="vm-metrics"'
          })
        }
      }
      return yield* app.pipe(
        Effect.catchAllCause((cause) => {
          const failure = Cause.failureOption(cause)
          const tag = Option.map(failure, tagOf)
          if (Option.contains(tag, "RouteNotFound")) {
            const allowed = allowedMethods(routes, decodeURI(path))
            // A route's shape and method, yet not routed: a parameter beyond the router's maxParamLength
            // (Server.ts), an id far over the schema's 256 characters. Not a 405 naming the method asked.
            if (allowed.includes(request.method)) {
              return Effect.succeed(refuse(400, "bad_request", invalidParameters(["id"])))
            }
            return Effect.succeed(
              allowed.length === 0
                ? refuse(404, "not_found", "no such path")
                : refuse(
                    405,
                    "method_not_allowed",
                    `${request.method} is not allowed here; use ${allowed.join(", ")}`,
                    {
                      allow: allowed.join(", ")
                    }
                  )
            )
          }
          if (Option.contains(tag, "HttpApiDecodeError")) {
            return Effect.succeed(refuse(400, "bad_request", decodeFailureMessage(Option.getOrUndefined(failure))))
          }
          // Declared errors (404/409 bodies) are encoded by the API after this middleware.
          if (Option.isSome(failure)) return Effect.failCause(cause)
          return Effect.as(Effect.logError("request failed", cause), refuse(500, "internal_error", "internal error"))
        })
      )
    })
  }
