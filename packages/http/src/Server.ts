/**
 * The HTTP server: the API, `/openapi.json`, a docs UI at `/docs` (Docs: Scalar, built on first use),
 * a landing page at `/` (Landing), behind the Guard, on Node's http server. Binds 127.0.0.1:9464 by default.
 *
 * @since 0.1.0
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpRouter from "@effect/platform/HttpRouter"
import { Layer, type Option, type Redacted } from "effect"
import * as Connections from "./Connections.js"
import * as Docs from "./Docs.js"
import * as FastPath from "./FastPath.js"
import { guard } from "./Guard.js"
import { ApiLive } from "./Http.js"
import * as Landing from "./Landing.js"
import * as Listener from "./Listener.js"
import * as StartupLine from "./StartupLine.js"
import type * as Tls from "./Tls.js"

/** @category models */
export interface Options {
  readonly host: string
  readonly port: number
  readonly authToken: Option.Option<Redacted.Redacted<string>>
  /** Timeouts, the connection bound and the shutdown grace; default Connections.defaults. */
  readonly limits?: Connections.Limits
  /** Serve /metrics without the token (a Prometheus without credentials); default false. */
  readonly metricsWithoutAuth?: boolean
  /** The instance source, named in the start-up line (StartupLine) and on the landing page; default "unknown". */
  readonly source?: string
  /** Serve HTTPS with these (Tls); absent: plain HTTP. */
  readonly tls?: Tls.Credentials | undefined
}

/** @category constants */
export const defaults = { host: "127.0.0.1", port: 9464 } as const

/** Everything but the socket: tests provide `NodeHttpServer.layerTest`. @category layers */
export const layerApp = (
  authToken: Options["authToken"],
  access: Pick<Options, "metricsWithoutAuth" | "source"> = {}
) =>
  HttpApiBuilder.serve().pipe(
    // An API-level middleware wraps the router (docs and OpenAPI included) before errors are turned
    // into responses; a server-level one would only see a response already sent.
    Layer.provide(
      HttpApiBuilder.middleware(
        guard(authToken, {
          metricsWithoutAuth: access.metricsWithoutAuth ?? false,
          extraGetPaths: ["/", "/docs", "/openapi.json"],
          // The docs page holds no data: it asks for the token and fetches /openapi.json with it.
          openPaths: ["/docs"]
        })
      )
    ),
    Layer.provide(Docs.layer("/docs")),
    // The landing page, beside the API like the docs (HTML, not in the OpenAPI document).
    Layer.provide(Landing.layer(access.source ?? "unknown")),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive),
    // The router's default (100) would make ids of 101-256 characters "no such path"; the schema bounds them.
    Layer.provide(HttpRouter.setRouterConfig({ maxParamLength: 1024 })),
    // No span per request: nothing here exports traces, and the platform's span (the URL parsed, every
    // header copied into attributes) was a quarter of a millisecond of every answer.
    (app) => HttpMiddleware.withTracerDisabledWhen(app, () => true)
  )

/** @category layers */
export const layer = (options: Options) =>
  layerApp(options.authToken, options).pipe(
    (app) =>
      Layer.mergeAll(
        app,
        StartupLine.layer(options.source ?? "unknown", options.tls === undefined ? "http" : "https", options.host),
        FastPath.layerStats(options.authToken)
      ),
    Layer.provide(
      Listener.layer({
        host: options.host,
        port: options.port,
        limits: options.limits ?? Connections.defaults,
        tls: options.tls
      })
    )
  )
