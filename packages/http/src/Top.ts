/**
 * `vm-metrics top`: a live view, one row per VM, refreshed every interval, like top / virt-top.
 * Reads the local host through the collector, or a remote server's `GET /instances` (`--url`, with
 * the bearer token) through the API's typed client: both become the API's body, then a TopModel sample. Keys: c/s/m/n/a change the sort, q (or Ctrl-C) quits. A failed refresh shows the
 * error and keeps the last rows.
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
      vms: snapshot.stats.map((vm) => sampleOf(statsBody(vm, history.previous(snapshot, vm.instanceId))))
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

/** What a failed request says: the API's `{code, message}`, else the client's own message. */
const failureText = (error: { readonly message: string; readonly code?: string }) =>
  error.code === undefined ? error.message : `${error.code}: ${error.message}`

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

/** A server's `GET /instances`, through the API's typed client. @category sources */
export const remote = (url: string, token: Option.Option<Redacted.Redacted<string>>): Effect.Effect<TopSource> =>
  Effect.map(client(url, token), (api) => ({
    label: url,
    sample: api.instances.list().pipe(
      Effect.flatMap((body) =>
        Effect.map(Clock.currentTimeMillis, (atMs) => ({ atMs, vms: body.instances.map(sampleOf) }))
      ),
      Effect.mapError((error) => new TopSourceError({ message: `${url}: ${failureText(error)}` })),
      Effect.timeoutFail({
        duration: "5 seconds",
        onTimeout: () => new TopSourceError({ message: `${url}: timed out` })
      })
    )
  })).pipe(Effect.provide(FetchHttpClient.layer))

const CLEAR = "\x1b[H\x1b[2J"

/** Raw-mode keys from stdin into a queue, restored when the scope closes. */
const keyboard = Effect.gen(function* () {
  const keys = yield* Queue.unbounded<string>()
  const onData = (data: Buffer) => {
    for (const key of data.toString("utf8")) Queue.unsafeOffer(keys, key)
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      if (process.stdin.isTTY) process.stdin.setRawMode(true)
      process.stdin.on("data", onData)
      process.stdin.resume()
      process.stdout.write("\x1b[?25l") // hide the cursor
    }),
    () =>
      Effect.sync(() => {
        process.stdin.off("data", onData)
        if (process.stdin.isTTY) process.stdin.setRawMode(false)
        process.stdin.pause()
        process.stdout.write("\x1b[?25h\n")
      })
  )
  return keys
})

/** Runs until q or Ctrl-C. @category commands */
export const run = (source: TopSource, interval: Duration.Duration) =>
  Effect.scoped(
    Effect.gen(function* () {
      const keys = yield* keyboard
      let sort: SortKey = "cpu"
      let previous: Sample | undefined
      let current: ReturnType<typeof rowsOf> = []
      let error: string | undefined
      let nextAt = 0
      const draw = Effect.sync(() =>
        process.stdout.write(
          CLEAR +
            screen(current, { sort, source: source.label, at: new Date(), ...(error === undefined ? {} : { error }) })
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
            error = undefined
          } else {
            error = sample.left.message
          }
          yield* draw
        }
        const wait = Math.max(0, nextAt - (yield* Clock.currentTimeMillis))
        const key = yield* Queue.take(keys).pipe(Effect.timeout(Duration.millis(wait)), Effect.option)
        if (Option.isNone(key)) continue
        if (key.value === "q" || key.value === "\u0003") return
        const chosen = sortKeys[key.value as keyof typeof sortKeys]
        if (chosen !== undefined) {
          sort = chosen
          yield* draw
        }
      }
    })
  )
