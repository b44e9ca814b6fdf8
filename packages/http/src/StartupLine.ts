/**
 * The one log line that says the server is up: the address it listens on (an IPv6 one in brackets), the
 * instance source, how many VMs the first collection found, and the URL of the API docs. Structured too
 * (`address`, `source`, `vms`, `docs`), so that a logfmt or JSON pipeline reads the fields, not the text.
 * A source that could not be listed is said (`source_error`, a warning): "0 VMs found" would hide it; so
 * are hypervisor processes discovery did not list (a warning after it, IgnoredNote.ts).
 *
 * @since 0.1.0
 */
import * as HttpServer from "@effect/platform/HttpServer"
import { Effect, Layer } from "effect"
import * as BuildInfo from "./BuildInfo.js"
import { ignoredNote } from "./IgnoredNote.js"
import { Serving } from "./Serving.js"

/** `host:port`, `[v6]:port`. @category utils */
export const hostPort = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

/** Where a browser on this host reaches a server bound to `host`: the wildcard addresses are loopback to it. */
const reachable = (host: string) => (host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host)

/** The docs URL of a server listening on `host:port`. @category utils */
export const docsUrl = (scheme: "http" | "https", host: string, port: number): string =>
  `${scheme}://${hostPort(reachable(host), port)}/docs`

/** What the line says. @category models */
export interface Facts {
  readonly address: string
  readonly source: string
  readonly vms: number
  readonly docs: string
  /** Why the source could not be listed, when it could not. */
  readonly source_error?: string
}

/** The line's message. @category utils */
export const message = (facts: Facts): string => {
  const found =
    facts.source_error === undefined
      ? `${facts.vms} VM${facts.vms === 1 ? "" : "s"} found`
      : `cannot list the instances (${facts.source_error})`
  return `vm-metrics ${BuildInfo.version} listening on ${facts.address}: source ${facts.source}, ${found}, docs at ${facts.docs}`
}

/**
 * The address to name: the platform reports a server bound to `::` (every IPv6 and IPv4 address) as
 * `0.0.0.0`, which reads as IPv4 only; the host asked for says which it is. @category utils
 */
export const shownHost = (reported: string, requested: string | undefined): string =>
  reported === "0.0.0.0" && requested === "::" ? "::" : reported

/**
 * Logs the line once the server listens and the first snapshot is in (forked: it never holds up the server).
 * @category layers
 */
export const layer = (
  source: string,
  scheme: "http" | "https" = "http",
  /** The host the server was asked to listen on. */
  requestedHost?: string
): Layer.Layer<never, never, HttpServer.HttpServer | Serving> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const server = yield* HttpServer.HttpServer
      const serving = yield* Serving
      if (server.address._tag !== "TcpAddress") return
      const { port } = server.address
      const hostname = shownHost(server.address.hostname, requestedHost)
      const snapshot = yield* serving.snapshot
      const facts: Facts = {
        address: hostPort(hostname, port),
        source,
        vms: snapshot.stats.length,
        docs: docsUrl(scheme, hostname, port),
        ...(snapshot.sourceError === null ? {} : { source_error: snapshot.sourceError.reason })
      }
      const log = facts.source_error === undefined ? Effect.logInfo : Effect.logWarning
      yield* log(message(facts)).pipe(Effect.annotateLogs({ ...facts }))
      const note = ignoredNote(snapshot.sourceIgnored ?? [])
      if (note !== undefined) yield* Effect.logWarning(note)
    }).pipe(Effect.forkScoped)
  )
