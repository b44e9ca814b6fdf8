/**
 * The HTTP server: the API, `/openapi.json`, a docs UI at `/docs` (Scalar, served inline, no CDN),
 * behind the Guard, on Node's http server. Binds 127.0.0.1:9464 by default.
 *
 * @since 0.1.0
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import { Effect, Layer, type Option, type Redacted } from "effect"
import * as Connections from "./Connections.js"
import { guard } from "./Guard.js"
import { ApiLive } from "./Http.js"
import * as Listener from "./Listener.js"

/** @category models */
export interface Options {
  readonly host: string
  readonly port: number
  readonly authToken: Option.Option<Redacted.Redacted<string>>
  /** Timeouts, the connection bound and the shutdown grace; default Connections.defaults. */
  readonly limits?: Connections.Limits
  /** Serve /metrics without the token (a Prometheus without credentials); default false. */
  readonly metricsWithoutAuth?: boolean
}

/** @category constants */
export const defaults = { host: "127.0.0.1", port: 9464 } as const

/** The docs UI (a large inline script) is imported when a server is built, not by every CLI command. */
const importDocs = Effect.promise(() => import("@effect/platform/HttpApiScalar"))

type Docs = Effect.Effect.Success<typeof importDocs>

const appWithDocs = (docs: Docs, authToken: Options["authToken"], access: Pick<Options, "metricsWithoutAuth">) =>
  HttpApiBuilder.serve().pipe(
    // An API-level middleware wraps the router (docs and OpenAPI included) before errors are turned
    // into responses; a server-level one would only see a response already sent.
    Layer.provide(
      HttpApiBuilder.middleware(
        guard(authToken, {
          metricsWithoutAuth: access.metricsWithoutAuth ?? false,
          extraGetPaths: ["/docs", "/openapi.json"]
        })
      )
    ),
    Layer.provide(docs.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive),
    // The router's default (100) would make ids of 101-256 characters "no such path"; the schema bounds them.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 1024 }))
  )

/** Everything but the socket: tests provide `NodeHttpServer.layerTest`. @category layers */
export const layerApp = (authToken: Options["authToken"], access: Pick<Options, "metricsWithoutAuth"> = {}) =>
  Layer.unwrapEffect(Effect.map(importDocs, (docs) => appWithDocs(docs, authToken, access)))

/**
 * The docs module is imported before the listener is built, so the socket listens only once the app is
 * a few synchronous steps from being attached (Connections answers 503 in between). @category layers
 */
export const layer = (options: Options) =>
  Layer.unwrapEffect(
    Effect.map(importDocs, (docs) =>
      appWithDocs(docs, options.authToken, options).pipe(
        HttpServer.withLogAddress,
        Layer.provide(
          Listener.layer({ host: options.host, port: options.port, limits: options.limits ?? Connections.defaults })
        )
      )
    )
  )
