/**
 * The docs UI at `/docs`: Scalar's page (HttpApiScalar, the script inline, no CDN), built on the first
 * request rather than when the server starts. Why: the page's script is 3.4 MB of JavaScript; loaded at
 * start it costs every agent ~16 MB of memory and part of its start-up, while `/docs` is opened rarely.
 *
 * The page is HttpApiScalar's own: its layer is built once, on a router of its own, and that router
 * answers the request.
 *
 * @since 0.1.0
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Effect, Layer } from "effect"

/** Scalar's router for `path`, over the API the server serves. */
const scalarRouter = (path: `/${string}`, api: HttpApi.Api["Type"]) =>
  Effect.gen(function* () {
    const HttpApiScalar = yield* Effect.promise(() => import("@effect/platform/HttpApiScalar"))
    const scalar = HttpApiScalar.layer({ path }).pipe(
      Layer.provideMerge(HttpApiBuilder.Router.Live),
      Layer.provide(Layer.succeed(HttpApi.Api, api))
    )
    // The router holds the handler, not resources: the scope of its construction can close.
    return yield* Effect.scoped(
      Effect.flatMap(Layer.build(scalar), (context) => Effect.provide(HttpApiBuilder.Router.router, context))
    )
  })

/** @category layers */
export const layer = (path: `/${string}` = "/docs") =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const api = yield* HttpApi.Api
      const page = yield* Effect.cached(scalarRouter(path, api))
      yield* router.get(path, Effect.flatten(page))
    })
  )
