/**
 * Bounded connections for the HTTP server. Node holds every socket a client opens, for as long as the
 * client likes: a flood of idle connections used up the process's file descriptors, and then the
 * collector could not open /proc files and /healthz failed. So:
 *
 * - a connection must send a complete request head within `headersTimeout` (Node enforces that only
 *   once a request has begun; a connection that never sends a byte is closed here), the whole request
 *   within `requestTimeout`, and an idle keep-alive connection is closed after `keepAliveTimeout`;
 * - at most `maxConnections` are open: a new connection beyond that closes the oldest idle one (no
 *   request in progress), so a probe still gets through a flood of idle sockets; when every one is
 *   busy the new one is closed;
 * - `maxConnections` may use at most half of the file-descriptor soft limit: the other half is the
 *   collector's (four kept-open files per VM) and Node's own;
 * - on shutdown idle connections are closed at once and the rest after `shutdownGrace`.
 *
 * With TLS credentials the server is a node:https one (see Tls): the bounds apply to the TCP connections
 * (a TLS handshake is part of the time a connection has to send its request head).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type { Socket } from "node:net"
import { Either } from "effect"
import * as Tls from "./Tls.js"

/** @category models */
export interface Limits {
  readonly headersTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  readonly maxConnections: number
  readonly shutdownGraceMs: number
}

/** @category constants */
export const defaults: Limits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 512,
  shutdownGraceMs: 5_000
}

/** The soft "Max open files" of /proc/self/limits; null when unlimited or unknown. @category parsers */
export const parseFdSoftLimit = (limits: string): number | null => {
  const match = /^Max open files\s+(\S+)/m.exec(limits)
  if (match === null || match[1] === "unlimited") return null
  const value = Number(match[1])
  return Number.isSafeInteger(value) && value > 0 ? value : null
}

/** This process's file-descriptor soft limit (null when unlimited or unreadable). */
export const fdSoftLimit = (): number | null => {
  try {
    return parseFdSoftLimit(fs.readFileSync("/proc/self/limits", "utf8"))
  } catch {
    return null
  }
}

/** The most connections a soft limit allows: half of it, the other half is left to the collector. */
export const ceiling = (softLimit: number | null): number =>
  softLimit === null ? Number.MAX_SAFE_INTEGER : Math.floor(softLimit / 2)

/**
 * The max to use: a configured one above the ceiling is refused (a message for the user), the default
 * is clamped to it (`clamped` says so, to be logged).
 * @category constructors
 */
export const chooseMax = (
  configured: number | undefined,
  softLimit: number | null
): Either.Either<{ readonly max: number; readonly clamped: boolean }, string> => {
  const most = ceiling(softLimit)
  if (configured === undefined) {
    const max = Math.min(defaults.maxConnections, most)
    return max < 1
      ? Either.left(`the file descriptor limit (${softLimit}) is too low to serve`)
      : Either.right({ max, clamped: max < defaults.maxConnections })
  }
  if (!Number.isSafeInteger(configured) || configured < 1)
    return Either.left(`--max-connections must be a positive integer, got ${configured}`)
  if (configured > most)
    return Either.left(
      `--max-connections ${configured} leaves too few file descriptors for the collector: the soft limit is ${softLimit}, use at most ${most} (half of it) or raise the limit (ulimit -n, LimitNOFILE=)`
    )
  return Either.right({ max: configured, clamped: false })
}

/** Per socket: is a request in progress, and has one ever been received. */
interface SocketState {
  busy: boolean
  firstRequest: NodeJS.Timeout | undefined
}

/** A request's socket is the TLS socket over the TCP one: both have the same peer address and port. */
const peerOf = (socket: Socket) => `${socket.remoteAddress}|${socket.remotePort}`

/**
 * A node:http server (node:https with `tls`) with the timeouts and the connection bound of `limits` (not
 * listening yet).
 */
export const makeServer = (limits: Limits, tls?: Tls.Credentials): http.Server => {
  const options: http.ServerOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often Node checks the two request timeouts; a fraction of the shorter one.
    connectionsCheckingInterval: Math.min(1000, Math.max(100, Math.floor(limits.headersTimeoutMs / 4)))
  }
  const server: http.Server =
    tls === undefined ? http.createServer(options) : https.createServer({ ...options, cert: tls.cert, key: tls.key })
  if (tls !== undefined) Tls.refusePlainHttp(server)
  // Insertion order is age: the first idle entry is the oldest idle connection.
  const sockets = new Map<Socket, SocketState>()
  const byPeer = new Map<string, SocketState>()

  const evictOldestIdle = (except: Socket): boolean => {
    for (const [socket, state] of sockets) {
      if (socket !== except && !state.busy) {
        socket.destroy()
        return true
      }
    }
    return false
  }

  server.on("connection", (socket: Socket) => {
    const state: SocketState = {
      busy: false,
      // Node's headersTimeout starts with the first byte of a request; this covers a silent connection.
      firstRequest: setTimeout(() => socket.destroy(), limits.headersTimeoutMs).unref()
    }
    sockets.set(socket, state)
    const peer = peerOf(socket)
    if (tls !== undefined) byPeer.set(peer, state)
    socket.once("close", () => {
      clearTimeout(state.firstRequest)
      sockets.delete(socket)
      if (byPeer.get(peer) === state) byPeer.delete(peer)
    })
    if (sockets.size > limits.maxConnections && !evictOldestIdle(socket)) socket.destroy()
  })

  server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    const state = sockets.get(request.socket as Socket) ?? byPeer.get(peerOf(request.socket as Socket))
    if (state === undefined) return
    clearTimeout(state.firstRequest)
    state.busy = true
    response.once("close", () => {
      state.busy = false
    })
    if (server.listenerCount("request") === 1) answerStarting(response)
  })

  return server
}

/**
 * The socket listens before the app's handler is attached (the platform listens first, then serves): a
 * request in between would otherwise get no answer until the request timeout. It gets a 503 instead.
 */
const answerStarting = (response: http.ServerResponse): void => {
  const body = JSON.stringify({ code: "starting", message: "the server is starting; retry in a second" })
  response.writeHead(503, { "content-type": "application/json", "retry-after": "1", connection: "close" })
  response.end(body)
}

/** Closes idle connections now and every other one after the grace period (the timer keeps nothing alive). */
export const drain = (server: http.Server, graceMs: number): void => {
  server.closeIdleConnections()
  setTimeout(() => server.closeAllConnections(), graceMs).unref()
}
