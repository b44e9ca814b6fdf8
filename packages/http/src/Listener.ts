/**
 * The listening socket: a bounded node:http server (node:https with TLS credentials; see Connections and
 * Tls) listening on host:port, drained
 * within the grace period on shutdown. A failure to listen is a `ListenError` naming the address and
 * the cause (`EADDRINUSE`, `EADDRNOTAVAIL`, `ENOTFOUND`, `EACCES`…), said in one line by the CLI.
 *
 * @since 0.1.0
 */
import type * as http from "node:http"
import type * as tls from "node:tls"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Data, Effect, Layer } from "effect"
import * as Connections from "./Connections.js"
import * as FastPath from "./FastPath.js"
import * as Tls from "./Tls.js"

/** The server could not listen on `address`. @category errors */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly address: string
  readonly code: string
  readonly detail: string
}> {
  override get message() {
    return `cannot listen on ${this.address}: ${this.detail} (${this.code})`
  }
}

/** @category models */
export interface Options {
  readonly host: string
  readonly port: number
  readonly limits: Connections.Limits
  /** Serve HTTPS with these (Tls); absent: plain HTTP. */
  readonly tls?: Tls.Credentials | undefined
}

class NodeServer extends Context.Tag("@vm-metrics/http/Listener/NodeServer")<NodeServer, http.Server>() {}

/** What Node says of a listen error, without the code it starts or ends with. */
const describe = (cause: unknown): { readonly code: string; readonly detail: string } => {
  const error = cause as NodeJS.ErrnoException | undefined
  const code = typeof error?.code === "string" ? error.code : "UNKNOWN"
  const known: Record<string, string> = {
    EADDRINUSE: "the address is already in use",
    EADDRNOTAVAIL: "the address is not one of this host's",
    EACCES: "permission denied",
    ENOTFOUND: "no such host",
    EAI_AGAIN: "the host name cannot be resolved now"
  }
  return { code, detail: known[code] ?? (typeof error?.message === "string" ? error.message : String(cause)) }
}

/** @category layers */
export const layer = (options: Options) => {
  const address = options.host.includes(":") ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`
  const listen = Layer.unwrapEffect(
    Effect.map(NodeServer, (server) => NodeHttpServer.layer(() => server, { host: options.host, port: options.port }))
  ).pipe(Layer.mapError((error) => new ListenError({ address, ...describe(error.cause) })))
  // Built after the listener, so released before it: Node's close() alone waits for every connection,
  // and a client holding a half-sent request would keep the process from ever ending.
  const drain = Layer.scopedDiscard(
    Effect.gen(function* () {
      yield* HttpServer.HttpServer
      const server = yield* NodeServer
      yield* Effect.addFinalizer(() => Effect.sync(() => Connections.drain(server, options.limits.shutdownGraceMs)))
      // With TLS, SIGHUP reads the certificate and key again (a renewal without a restart).
      if (options.tls !== undefined) yield* Tls.reloadOnHangup(server as unknown as tls.Server, options.tls)
    })
  )
  // Installed before the platform attaches its request listener (FastPath offers requests ahead of it).
  const fastPath = Layer.effect(FastPath.FastPath, Effect.map(NodeServer, FastPath.install))
  return drain.pipe(
    Layer.provideMerge(listen),
    Layer.provideMerge(fastPath),
    Layer.provide(Layer.sync(NodeServer, () => Connections.makeServer(options.limits, options.tls)))
  )
}
