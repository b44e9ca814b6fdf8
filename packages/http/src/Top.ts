/**
 * `vm-metrics top`: a live view, one row per VM, refreshed every interval, like top / virt-top.
 * Reads the local host through the collector, or a remote server's `GET /instances` (`--url`, with
 * the bearer token) through the API's typed client: both become the API's body, then a TopModel
 * sample. Keys: c/s/m/n/a change the sort, q (or Ctrl-C) quits. A failed refresh shows the error and
 * keeps the last rows; a failed listing (the source's, here or on the server) is said on the same
 * line while the rows are the last good listing's. It draws on the terminal's alternate screen,
 * fitted to its size (no line wraps), and redraws at once when the terminal is resized.
 *
 * @since 0.1.0
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Collector } from "@vm-metrics/core/Collector"
import { Clock, Data, Duration, Effect, Option, Queue, type Redacted } from "effect"
import { VmMetricsApi } from "./Api.js"
import * as ExactJson from "./ExactJson.js"
import * as Rates from "./Rates.js"
import { type InstanceStats, statsBody } from "./StatsJson.js"
import { rows as rowsOf, type Sample, type SortKey, screen, sortKeys, type VmSample } from "./TopModel.js"

/** @category errors */
export class TopSourceError extends Data.TaggedError("TopSourceError")<{ readonly message: string }> {}

/** Where samples come from. @category models */
export interface TopSource {
  readonly label: string
  readonly sample: Effect.Effect<Sample, TopSourceError>
}

/** One VM as the API's body gives it (the local collector's stats go through the same body). */
const sampleOf = (vm: InstanceStats): VmSample => ({
  id: vm.instance_id,
  name: vm.instance_name,
  state: vm.state,
  epoch: vm.epoch,
  processStart: vm.process_start_time,
  cpuSeconds: vm.cpu_seconds,
  rssBytes: vm.memory_rss_bytes === null ? null : Number(vm.memory_rss_bytes),
  allocatedMemoryBytes: Number(vm.allocated_memory_bytes),
  vcpus: vm.allocated_vcpus,
  rxBytes: vm.network_rx_bytes === null ? null : Number(vm.network_rx_bytes),
  txBytes: vm.network_tx_bytes === null ? null : Number(vm.network_tx_bytes),
  cpuDelayRatio: vm.cpu_delay_ratio,
  swapBytes: vm.memory_swap_bytes === null ? null : Number(vm.memory_swap_bytes)
})

/**
 * This host, through the collector (each refresh is a new collection; the rates of the body, the delay
 * ratio, are against the refresh before). @category sources
 */
export const local = Effect.map(Collector, (collector) => {
  const history = Rates.makeHistory()
  return {
    label: "this host",
    sample: Effect.map(collector.refresh, (snapshot) => ({
      atMs: snapshot.sampledAtMs,
      vms: snapshot.stats.map((vm) => sampleOf(statsBody(vm, history.previous(snapshot, vm.instanceId)))),
      ...(snapshot.sourceError === null
        ? {}
        : { sourceError: `the instance source failed, showing the last good listing: ${snapshot.sourceError.reason}` })
    }))
  }
})

/**
 * Bodies with every integer a double cannot hold quoted first: the API client parses with `JSON.parse`,
 * which would round them, and `Int64` decodes the digits exactly.
 */
const exactIntegers = HttpClient.transformResponse(
  Effect.flatMap((response: HttpClientResponse.HttpClientResponse) =>
    Effect.map(response.text, (text) =>
      HttpClientResponse.fromWeb(
        response.request,
        new Response(ExactJson.quoteLargeIntegers(text), { status: response.status, headers: response.headers })
      )
    )
  )
)

/** Node's codes for a certificate it cannot verify (self-signed, unknown issuer, another name, expired). */
const CERTIFICATE_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/

/**
 * Why a request got no answer: the errno code down its cause chain (fetch's "fetch failed" holds the
 * socket's error), else the innermost message (fetch's own refusals, such as "bad port").
 */
const whyNoAnswer = (cause: unknown): string | undefined => {
  let innermost: string | undefined
  for (let at = cause, depth = 0; typeof at === "object" && at !== null && depth < 5; depth++) {
    const { code, message } = at as { readonly code?: unknown; readonly message?: unknown }
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) return code
    if (typeof code === "string" && CERTIFICATE_CODES.test(code) && typeof message === "string")
      return `${message}: trust the server's CA with NODE_EXTRA_CA_CERTS=<its PEM file>`
    if (typeof message === "string") innermost = message
    at = (at as { readonly cause?: unknown }).cause
  }
  return innermost
}

/**
 * What went wrong with a refresh, in words: the server's own error (its code), an answer that is not
 * the API's (another server at that URL), or no answer (the socket's error code).
 */
const failureText = (error: {
  readonly _tag?: string
  readonly message: string
  readonly code?: string
  readonly reason?: string
  readonly response?: { readonly status: number }
  readonly cause?: unknown
}): string => {
  if (error.code !== undefined) return `${error.code}: ${error.message}`
  if (error._tag === "ResponseError" && error.response !== undefined)
    return `HTTP ${error.response.status}, not an answer of the vm-metrics API (is this its URL?)`
  if (error._tag === "RequestError") return `no answer (${whyNoAnswer(error.cause) ?? error.reason ?? "unknown"})`
  if (error._tag === "ParseError") return "the answer is not the vm-metrics API's /instances body (is this its URL?)"
  return error.message
}

/**
 * The API's typed client for a server at `url`: the bearer token on every request, integers exact.
 * @category sources
 */
export const client = (url: string, token: Option.Option<Redacted.Redacted<string>>) =>
  HttpApiClient.make(VmMetricsApi, {
    baseUrl: url,
    transformClient: (client) =>
      exactIntegers(
        Option.match(token, {
          onNone: () => client,
          onSome: (t) => HttpClient.mapRequest(client, HttpClientRequest.bearerToken(t))
        })
      )
  })

/** A server's failed listing, as far as it tells a client (its log has the reason). */
const remoteSourceError = (error: {
  readonly kind: string
  readonly line: number | null
  readonly column: number | null
}) => {
  const where =
    error.line === null ? "" : ` at line ${error.line}${error.column === null ? "" : `, column ${error.column}`}`
  return `the server's instance source failed (${error.kind}${where}), showing its last good listing; its log says why`
}

/** A server's `GET /instances`, through the API's typed client. @category sources */
export const remote = (url: string, token: Option.Option<Redacted.Redacted<string>>): Effect.Effect<TopSource> =>
  Effect.map(client(url, token), (api) => ({
    label: url,
    sample: api.instances.list().pipe(
      Effect.flatMap((body) =>
        Effect.map(Clock.currentTimeMillis, (atMs) => ({
          atMs,
          vms: body.instances.map(sampleOf),
          ...(body.source_error === null ? {} : { sourceError: remoteSourceError(body.source_error) })
        }))
      ),
      Effect.mapError((error) => new TopSourceError({ message: `${url}: ${failureText(error)}` })),
      Effect.timeoutFail({
        duration: "5 seconds",
        onTimeout: () => new TopSourceError({ message: `${url}: timed out` })
      })
    )
  })).pipe(Effect.provide(FetchHttpClient.layer))

const CLEAR = "\x1b[H\x1b[2J"
/** The terminal's alternate screen (like top, less, vim): the shell's screen comes back on exit. */
const ENTER_ALTERNATE_SCREEN = "\x1b[?1049h"
const LEAVE_ALTERNATE_SCREEN = "\x1b[?1049l"
const HIDE_CURSOR = "\x1b[?25l"
const SHOW_CURSOR = "\x1b[?25h"

/** What wakes the loop besides its timer: a key, or the terminal changing size. */
type Event = { readonly _tag: "Key"; readonly key: string } | { readonly _tag: "Resize" }

/**
 * Raw-mode keys from stdin and the terminal's resizes (stdout's 'resize', which Node emits on SIGWINCH)
 * into a queue; the alternate screen is entered at start and left, the terminal restored, when the scope
 * closes: on q, on Ctrl-C, on a signal and on an error alike.
 */
const terminal = Effect.gen(function* () {
  const events = yield* Queue.unbounded<Event>()
  const onData = (data: Buffer) => {
    for (const key of data.toString("utf8")) Queue.unsafeOffer(events, { _tag: "Key", key })
  }
  const onResize = () => {
    Queue.unsafeOffer(events, { _tag: "Resize" })
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      if (process.stdin.isTTY) process.stdin.setRawMode(true)
      process.stdin.on("data", onData)
      process.stdin.resume()
      process.stdout.on("resize", onResize)
      process.stdout.write(ENTER_ALTERNATE_SCREEN + HIDE_CURSOR)
    }),
    () =>
      Effect.sync(() => {
        process.stdout.off("resize", onResize)
        process.stdin.off("data", onData)
        if (process.stdin.isTTY) process.stdin.setRawMode(false)
        process.stdin.pause()
        process.stdout.write(SHOW_CURSOR + LEAVE_ALTERNATE_SCREEN)
      })
  )
  return events
})

/** The terminal's size now (none when stdout is not a terminal: nothing is cut). */
const terminalSize = () =>
  process.stdout.isTTY && process.stdout.columns > 0
    ? { width: process.stdout.columns, height: process.stdout.rows }
    : {}

/** Runs until q or Ctrl-C. @category commands */
export const run = (source: TopSource, interval: Duration.Duration) =>
  Effect.scoped(
    Effect.gen(function* () {
      const events = yield* terminal
      let sort: SortKey = "cpu"
      let previous: Sample | undefined
      let current: ReturnType<typeof rowsOf> = []
      let error: string | undefined
      let nextAt = 0
      // The size is read on every draw, so a resize redraws to the new size at once.
      const draw = Effect.sync(() =>
        process.stdout.write(
          CLEAR +
            screen(current, {
              sort,
              source: source.label,
              at: new Date(),
              ...terminalSize(),
              ...(error === undefined ? {} : { error })
            })
        )
      )
      for (;;) {
        const now = yield* Clock.currentTimeMillis
        if (now >= nextAt) {
          nextAt = now + Duration.toMillis(interval)
          const sample = yield* Effect.either(source.sample)
          if (sample._tag === "Right") {
            current = rowsOf(previous, sample.right)
            previous = sample.right
            error = sample.right.sourceError
          } else {
            error = sample.left.message
          }
          yield* draw
        }
        const wait = Math.max(0, nextAt - (yield* Clock.currentTimeMillis))
        const event = yield* Queue.take(events).pipe(Effect.timeout(Duration.millis(wait)), Effect.option)
        if (Option.isNone(event)) continue
        if (event.value._tag === "Resize") {
          yield* draw
          continue
        }
        const key = event.value.key
        if (key === "q" || key === "\u0003") return
        const chosen = sortKeys[key as keyof typeof sortKeys]
        if (chosen !== undefined) {
          sort = chosen
          yield* draw
        }
      }
    })
  )
