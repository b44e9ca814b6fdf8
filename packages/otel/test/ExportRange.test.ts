/**
 * Values at the edges of uint64, export side: TAP counters and statm sizes near
 * 2^53, 2^63 and 2^64 go through the real collector (in-memory readers with crafted kernel text)
 * into every export path. Whatever an OTel path exports must be the true value, exactly; what OTel
 * cannot carry is left out and counted; the Prometheus text keeps every value as an exact decimal.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as zlib from "node:zlib"
import { assert, describe, it } from "@effect/vitest"
import { MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import { Effect } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import * as OtlpPush from "../src/OtlpPush.js"
import { VmMetrics } from "../src/VmMetrics.js"
import { layerFor, makeWorld, parseExposition, vm, type World } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** One VM per value: its TAP's byte counters (both ways) are at it; `exact`: OTel can carry it exactly. */
const TAP_VALUES: ReadonlyArray<readonly [value: bigint, exact: boolean]> = [
  [2n ** 53n - 1n, true],
  [2n ** 53n, true],
  [2n ** 53n + 1n, false], // not a double: would be rounded
  [2n ** 63n - 1024n, true], // the largest double below 2^63
  [2n ** 63n - 1n, false], // not a double (rounds to 2^63)
  [2n ** 63n + 4096n, false], // a double but not an int64: was exported as a negative number
  [2n ** 64n - 1n, false] // rounds to 2^64: was exported as 0, a fake counter reset
]
const IDS = TAP_VALUES.map((_, i) => `vm${i}`)

/** statm sizes (pages of 4096 bytes) of some of those VMs; the others keep the fixture's 100 pages. */
const STATM = new Map<string, readonly [pages: bigint, exact: boolean]>([
  ["vm0", [2n ** 41n, true]], // 2^53 bytes
  ["vm1", [2n ** 51n - 1n, true]], // 2^63 − 4096 bytes: a double and an int64
  ["vm2", [2n ** 51n, false]], // 2^63 bytes
  ["vm3", [2n ** 52n - 1n, false]] // 2^64 − 4096 bytes
])

const RX = "hypeman_vm_network_rx_bytes_total"
const TX = "hypeman_vm_network_tx_bytes_total"
const RSS = "hypeman_vm_memory_rss_bytes"
const VMS = "hypeman_vm_memory_vms_bytes"
const INTEGER_SERIES = [RX, TX, RSS, VMS]
const DROPPED = "hypeman_vm_metrics_export_dropped_total"

const edgeWorld = (): World => {
  const world = makeWorld(IDS.map((id, i) => vm(id, 100 + i, { tapDevice: `t-${id}` })))
  IDS.forEach((id, i) => {
    const pid = 100 + i
    const pages = STATM.get(id)?.[0] ?? 100n
    world.proc.set(pid, {
      stat: statLine({ pid, utime: 1, stime: 0, startTime: 1000 }),
      statm: `${pages} ${pages} 0 0 0 0 0\n`
    })
    world.setTap(`t-${id}`, TAP_VALUES[i]![0], TAP_VALUES[i]![0])
  })
  return world
}

/** The true value of a per-VM integer series, and whether OTel can carry it. */
const truth = (metric: string, id: string): { readonly value: bigint; readonly exact: boolean } => {
  if (metric === RX || metric === TX) {
    const [value, exact] = TAP_VALUES[IDS.indexOf(id)]!
    return { value, exact }
  }
  const [pages, exact] = STATM.get(id) ?? [100n, true]
  return { value: pages * 4096n, exact }
}

/** How many values of a metric one export leaves out. */
const droppedOf = (metric: string) => IDS.filter((id) => !truth(metric, id).exact).length

/** Every per-VM integer point of an SDK collection: [metric, instance_id, value]. */
const sdkPoints = (metrics: ResourceMetrics) =>
  metrics.scopeMetrics
    .flatMap((s) => s.metrics)
    .filter((m) => INTEGER_SERIES.includes(m.descriptor.name))
    .flatMap((m) =>
      m.dataPoints.map((p) => [m.descriptor.name, String(p.attributes.instance_id), p.value as number] as const)
    )

const droppedIn = (metrics: ResourceMetrics) =>
  new Map(
    metrics.scopeMetrics
      .flatMap((s) => s.metrics)
      .filter((m) => m.descriptor.name === DROPPED)
      .flatMap((m) => m.dataPoints.map((p) => [`${p.attributes.metric}/${p.attributes.reason}`, p.value] as const))
  )

/** Each exported value is the true one; exactly the carriable ones are there. */
const assertExact = (points: ReadonlyArray<readonly [string, string, number | bigint]>) => {
  for (const [metric, id, value] of points) {
    const expected = truth(metric, id)
    assert.isTrue(expected.exact, `${metric}{${id}} must not be exported, got ${value}`)
    assert.strictEqual(BigInt(value), expected.value, `${metric}{${id}}`)
  }
  for (const metric of INTEGER_SERIES) {
    const ids = new Set(points.filter(([m]) => m === metric).map(([, id]) => id))
    for (const id of IDS) assert.strictEqual(ids.has(id), truth(metric, id).exact, `${metric}{${id}} exported?`)
  }
}

describe("values at the edges of uint64", () => {
  it.effect("the producer exports only exact values and counts what it leaves out", () => {
    const world = edgeWorld()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      yield* Effect.flatMap(Collector, (c) => c.refresh)
      const first = (yield* Effect.promise(() => reader.collect())).resourceMetrics
      assertExact(sdkPoints(first))
      const dropped = droppedIn(first)
      for (const metric of INTEGER_SERIES) {
        assert.strictEqual(dropped.get(`${metric}/out_of_range`), droppedOf(metric), metric)
      }
      // Counted per export: a second collection leaves the same values out again.
      const second = (yield* Effect.promise(() => reader.collect())).resourceMetrics
      assertExact(sdkPoints(second))
      assert.strictEqual(droppedIn(second).get(`${RX}/out_of_range`), 2 * droppedOf(RX))
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.scoped("instruments on a caller's Meter observe only exact values and count what they leave out", () => {
    const world = edgeWorld()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader()
      yield* metrics.registerOn(new MeterProvider({ readers: [reader] }).getMeter("control-plane"))
      yield* Effect.flatMap(Collector, (c) => c.refresh)
      const first = (yield* Effect.promise(() => reader.collect())).resourceMetrics
      assertExact(sdkPoints(first))
      for (const metric of INTEGER_SERIES) {
        assert.strictEqual(droppedIn(first).get(`${metric}/out_of_range`), droppedOf(metric), metric)
      }
      // Again, through the SDK's cumulative bookkeeping (which merges in doubles): still exact.
      const second = (yield* Effect.promise(() => reader.collect())).resourceMetrics
      assertExact(sdkPoints(second))
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("the Prometheus text keeps every value as an exact decimal and shows the drop count", () => {
    const world = edgeWorld()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      yield* Effect.promise(() => reader.collect())
      const { samples, meta } = parseExposition(yield* metrics.prometheusText)
      for (const metric of INTEGER_SERIES) {
        for (const id of IDS) {
          const sample = samples.get(`${metric}{instance_id="${id}",instance_name="name-${id}"}`)
          assert.strictEqual(sample, String(truth(metric, id).value), `${metric}{${id}}`)
        }
      }
      assert.strictEqual(meta.get(`TYPE ${DROPPED}`), "counter")
      assert.strictEqual(samples.get(`${DROPPED}{metric="${RX}",reason="out_of_range"}`), String(droppedOf(RX)))
      assert.strictEqual(samples.get(`${DROPPED}{metric="${VMS}",reason="out_of_range"}`), String(droppedOf(VMS)))
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.scoped("OTLP/protobuf on the wire: every as_int is the true value (no 0, no negative)", () => {
    const world = edgeWorld()
    return Effect.gen(function* () {
      const receiver = yield* otlpReceiver
      const { pushOnce } = yield* OtlpPush.make({ url: receiver.url, interval: "1 hour", timeout: "10 seconds" })
      assert.isTrue(yield* pushOnce)
      assert.isAbove(receiver.bodies.length, 0)
      for (const body of receiver.bodies) {
        const points = decodeIntPoints(body)
        assert.isAbove(points.length, 10)
        assertExact(points.filter(([metric]) => INTEGER_SERIES.includes(metric)))
        const dropped = points.filter(([metric]) => metric === DROPPED)
        assert.isAbove(dropped.length, 0, "the drop counter went out over OTLP too")
      }
    }).pipe(Effect.provide(layerFor(world)))
  })
})

// ---------------------------------------------------------------------------------------------------
// A loopback OTLP/HTTP receiver and just enough protobuf to read the INT points back.

const otlpReceiver = Effect.acquireRelease(
  Effect.async<{ server: http.Server; url: string; bodies: Array<Uint8Array> }>((resume) => {
    const bodies: Array<Uint8Array> = []
    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        const raw = Buffer.concat(chunks)
        bodies.push(new Uint8Array(req.headers["content-encoding"] === "gzip" ? zlib.gunzipSync(raw) : raw))
        res.writeHead(200, { "content-type": "application/x-protobuf" })
        res.end()
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ server, url: `http://127.0.0.1:${port}/v1/metrics`, bodies }))
    })
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

interface Field {
  readonly no: number
  readonly data: Uint8Array
}

const varint = (buf: Uint8Array, start: number): [bigint, number] => {
  let result = 0n
  let shift = 0n
  let pos = start
  for (;;) {
    const byte = buf[pos++]!
    result |= BigInt(byte & 0x7f) << shift
    shift += 7n
    if ((byte & 0x80) === 0) return [result, pos]
  }
}

/** The fields of one message (varints are skipped: nothing read here is one). */
const fieldsOf = (buf: Uint8Array): Array<Field> => {
  const fields: Array<Field> = []
  let pos = 0
  while (pos < buf.length) {
    const [tag, next] = varint(buf, pos)
    pos = next
    const no = Number(tag >> 3n)
    const wire = Number(tag & 7n)
    if (wire === 0) {
      pos = varint(buf, pos)[1]
    } else if (wire === 1 || wire === 5) {
      const size = wire === 1 ? 8 : 4
      fields.push({ no, data: buf.subarray(pos, pos + size) })
      pos += size
    } else if (wire === 2) {
      const [length, at] = varint(buf, pos)
      fields.push({ no, data: buf.subarray(at, at + Number(length)) })
      pos = at + Number(length)
    } else {
      throw new Error(`wire type ${wire}`)
    }
  }
  return fields
}

const sub = (buf: Uint8Array, no: number) => fieldsOf(buf).filter((f) => f.no === no)
const text = (data: Uint8Array) => new TextDecoder().decode(data)

/** ExportMetricsServiceRequest → [metric name, instance_id (or "metric=…"), as_int] for every INT point. */
const decodeIntPoints = (body: Uint8Array): Array<[string, string, bigint]> => {
  const out: Array<[string, string, bigint]> = []
  for (const resourceMetrics of sub(body, 1))
    for (const scopeMetrics of sub(resourceMetrics.data, 2))
      for (const metric of sub(scopeMetrics.data, 2)) {
        const name = text(sub(metric.data, 1)[0]!.data)
        // gauge = 5, sum = 7; their data_points = 1
        for (const container of [...sub(metric.data, 5), ...sub(metric.data, 7)])
          for (const point of sub(container.data, 1)) {
            const asInt = sub(point.data, 6)[0]
            if (asInt === undefined) continue
            const attributes = new Map(
              sub(point.data, 7).map((kv) => [
                text(sub(kv.data, 1)[0]!.data),
                text(sub(sub(kv.data, 2)[0]!.data, 1)[0]?.data ?? new Uint8Array())
              ])
            )
            const value = new DataView(asInt.data.buffer, asInt.data.byteOffset, 8).getBigInt64(0, true)
            out.push([name, attributes.get("instance_id") ?? `metric=${attributes.get("metric")}`, value])
          }
      }
  return out
}
