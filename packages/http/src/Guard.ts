/**
 * What every request passes before the API: no query parameters (no endpoint takes any, so junk is a
 * 400, not silently ignored), the optional bearer token (everything but `/healthz`; compared in
 * constant time over SHA-256 digests so neither content nor length leaks), and a JSON 404 for paths
 * no route matches. Every refusal is a JSON `{"code","message"}` body.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { type HttpApp, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Cause, Effect, Option, Redacted } from "effect"

const refuse = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  HttpServerResponse.unsafeJson({ code, message }, { status, headers })

const digest = (text: string) => createHash("sha256").update(text).digest()

/** Whether `presented` equals `expected`, in time independent of both. @category auth */
export const tokensMatch = (presented: string, expected: string): boolean =>
  timingSafeEqual(digest(presented), digest(expected))

const bearerOf = (header: string | undefined): string | undefined => {
  const match = header === undefined ? null : /^Bearer[ ]+(\S+)[ ]*$/i.exec(header)
  return match?.[1]
}

/** @category middleware */
export const guard =
  (token: Option.Option<Redacted.Redacted<string>>) =>
  (app: HttpApp.Default): HttpApp.Default =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const queryAt = request.url.indexOf("?")
      if (queryAt >= 0 && queryAt < request.url.length - 1) {
        return refuse(400, "bad_request", "query parameters are not supported")
      }
      const path = queryAt >= 0 ? request.url.slice(0, queryAt) : request.url
      if (Option.isSome(token) && path !== "/healthz") {
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
          if (Option.exists(failure, (error) => (error as { _tag?: string })?._tag === "RouteNotFound")) {
            return Effect.succeed(refuse(404, "not_found", "no such path"))
          }
          // Declared errors (404/409/400 bodies) are encoded by the API after this middleware.
          if (Option.isSome(failure)) return Effect.failCause(cause)
          return Effect.as(Effect.logError("request failed", cause), refuse(500, "internal_error", "internal error"))
        })
      )
    })
