/**
 * `vm-metrics top`: a live view, one row per VM, refreshed every interval, like top / virt-top.
 * Reads the local host through the collector, or a remote server's `GET /instances` (`--url`, with
 * the bearer token). Keys: c/m/n/a change the sort, q (or Ctrl-C) quits. A failed refresh shows the
 * error and keeps the last rows.
 *
 * @since 0.1.0
 */
import { Collector } from "@vm-metrics/core/Collector"
import { cpuSeconds, type VmStats } from "@vm-metrics/core/VmStats"
import { Clock, Data, Duration, Effect, Option, Queue, Redacted } from "effect"
import { rows as rowsOf, type Sample, type SortKey, screen, sortKeys, type VmSample } from "./TopModel.js"

/** @category errors */
export class TopSourceError extends Data.TaggedError("TopSourceError")<{ readonly message: string }> {}

/** Where samples come from. @category models */
export interface TopSource {
  readonly label: string
  readonly sample: Effect.Effect<Sample, TopSourceError>
}

const fromStats = (vm: VmStats): VmSample => ({
  id: vm.instanceId,
  name: vm.instanceName,
  state: vm.state,
  epoch: vm.epoch,
  processStart: vm.processStartTimeMs === null ? null : String(vm.processStartTimeMs),
  cpuSeconds: cpuSeconds(vm),
  rssBytes: vm.memoryRssBytes === null ? null : Number(vm.memoryRssBytes),
  allocatedMemoryBytes: vm.allocatedMemoryBytes,
  vcpus: vm.allocatedVcpus,
  rxBytes: vm.netRxBytes === null ? null : Number(vm.netRxBytes),
  txBytes: vm.netTxBytes === null ? null : Number(vm.netTxBytes)
})

/** This host, through the collector (each refresh is a new collection). @category sources */
export const local = Effect.map(Collector, (collector) => ({
  label: "this host",
  sample: Effect.map(collector.refresh, (snapshot) => ({
    atMs: snapshot.sampledAtMs,
    vms: snapshot.stats.map(fromStats)
  }))
}))

const numberOrNull = (v: unknown) => (typeof v === "number" ? v : null)

/** A server's `GET /instances`. @category sources */
export const remote = (url: string, token: Option.Option<Redacted.Redacted<string>>): TopSource => ({
  label: url,
  sample: Effect.tryPromise({
    try: async (signal) => {
      const headers: Record<string, string> = Option.match(token, {
        onNone: () => ({}),
        onSome: (t) => ({ authorization: `Bearer ${Redacted.value(t)}` })
      })
      const response = await fetch(new URL("/instances", url), { headers, signal })
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`)
      const body = (await response.json()) as { instances: ReadonlyArray<Record<string, unknown>> }
      return {
        atMs: Date.now(),
        vms: body.instances.map((vm) => ({
          id: String(vm.instance_id),
          name: String(vm.instance_name),
          state: String(vm.state ?? "unknown"),
          epoch: numberOrNull(vm.epoch) ?? 0,
          processStart: typeof vm.process_start_time === "string" ? vm.process_start_time : null,
          cpuSeconds: numberOrNull(vm.cpu_seconds),
          rssBytes: numberOrNull(vm.memory_rss_bytes),
          allocatedMemoryBytes: numberOrNull(vm.allocated_memory_bytes) ?? 0,
          vcpus: numberOrNull(vm.allocated_vcpus) ?? 0,
          rxBytes: numberOrNull(vm.network_rx_bytes),
          txBytes: numberOrNull(vm.network_tx_bytes)
        }))
      }
    },
    catch: (error) =>
      new TopSourceError({ message: `${url}: ${error instanceof Error ? error.message : String(error)}` })
  }).pipe(
    Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new TopSourceError({ message: `${url}: timed out` }) })
  )
})

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
