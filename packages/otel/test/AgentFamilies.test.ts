/**
 * The agent's own series (VmMetrics `agent`): `<prefix>_metrics_build_info{version,revision,node_version} 1`
 * and the standard process metrics, with HELP, TYPE and units, the same in the Prometheus text, the
 * producer (OTLP) and instruments on a caller's Meter; sampled once per snapshot; a value not read is no
 * series (never 0) and its failure is in `read_errors_total`; without `agent` (a library user) none of
 * them exists on any path.
 */
import { assert, describe, it } from "@effect/vitest"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import type { SelfProcess } from "@vm-metrics/core/SelfProcess"
import { Effect } from "effect"
import { VmMetrics } from "../src/VmMetrics.js"
import { layerFor, makeWorld, parseExposition, vm } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const BUILD = { version: "1.2.3", revision: 'abc"1\\x', nodeVersion: "24.22.3" }
const FULL: SelfProcess = {
  cpuSeconds: 12.34,
  residentMemoryBytes: 56_000_000,
  openFds: 17,
  maxFds: 1024,
  startTimeSeconds: 1_700_000_123.45,
  unavailableTotals: []
}

/** A world with one VM and an agent whose sampler hands out `samples` in turn (the last one repeats). */
const setup = (samples: ReadonlyArray<SelfProcess> = [FULL]) => {
  const world = makeWorld([vm("a", 10)])
  world.setProcess(10, { utime: 5 })
  let calls = 0
  const process = Effect.sync(() => samples[Math.min(calls++, samples.length - 1)])
  return { world, calls: () => calls, layer: layerFor(world, { agent: { build: BUILD, process } }) }
}

const AGENT = [
  ["hypeman_vm_metrics_build_info", "gauge", ""],
  ["process_cpu_seconds_total", "counter", "s"],
  ["process_resident_memory_bytes", "gauge", "By"],
  ["process_open_fds", "gauge", "{file}"],
  ["process_max_fds", "gauge", "{file}"],
  ["process_start_time_seconds", "gauge", "s"]
] as const

const byName = (metrics: ResourceMetrics) =>
  new Map(metrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m] as const))

describe("the agent's own series", () => {
  it.effect("are in the Prometheus text with HELP, TYPE and the sampled values", () => {
    const { layer } = setup()
    return Effect.gen(function* () {
      const { samples, meta } = parseExposition(yield* (yield* VmMetrics).prometheusText)
      for (const [name, type] of AGENT) {
        assert.strictEqual(meta.get(`TYPE ${name}`), type, name)
        assert.isAbove(meta.get(`HELP ${name}`)?.length ?? 0, 20, name)
      }
      assert.strictEqual(
        samples.get('hypeman_vm_metrics_build_info{node_version="24.22.3",revision="abc\\"1\\\\x",version="1.2.3"}'),
        "1"
      )
      assert.strictEqual(samples.get("process_cpu_seconds_total{}"), "12.34")
      assert.strictEqual(samples.get("process_resident_memory_bytes{}"), "56000000")
      assert.strictEqual(samples.get("process_open_fds{}"), "17")
      assert.strictEqual(samples.get("process_max_fds{}"), "1024")
      assert.strictEqual(samples.get("process_start_time_seconds{}"), "1700000123.45")
    }).pipe(Effect.provide(layer))
  })

  it.effect("are sampled once per snapshot: an unchanged snapshot renders the same text", () => {
    const later = { ...FULL, cpuSeconds: 99.5 }
    const { layer, calls } = setup([FULL, later])
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const first = yield* collector.refresh
      const text = yield* metrics.render(first)
      assert.strictEqual(yield* metrics.render(first), text)
      assert.strictEqual(calls(), 1)
      const second = yield* collector.refresh
      const next = parseExposition(yield* metrics.render(second))
      assert.strictEqual(calls(), 2)
      assert.strictEqual(next.samples.get("process_cpu_seconds_total{}"), "99.5")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a value not read is no series (never 0); its failure is counted in read_errors_total", () => {
    const partial: SelfProcess = {
      ...FULL,
      openFds: null,
      maxFds: null,
      unavailableTotals: [{ source: "self_fd", reason: "permission_denied", count: 3 }]
    }
    const { layer } = setup([partial])
    return Effect.gen(function* () {
      const { samples, meta } = parseExposition(yield* (yield* VmMetrics).prometheusText)
      assert.isFalse(meta.has("TYPE process_open_fds"))
      assert.isFalse(meta.has("TYPE process_max_fds"))
      assert.strictEqual(samples.get("process_cpu_seconds_total{}"), "12.34")
      assert.strictEqual(
        samples.get('hypeman_vm_metrics_read_errors_total{reason="permission_denied",source="self_fd"}'),
        "3"
      )
    }).pipe(Effect.provide(layer))
  })

  it.effect("go through the producer (OTLP) with their units and value types", () => {
    const { layer } = setup()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      const data = byName((yield* Effect.promise(() => reader.collect())).resourceMetrics)
      for (const [name, , unit] of AGENT) assert.strictEqual(data.get(name)?.descriptor.unit, unit, name)
      assert.deepStrictEqual(data.get("hypeman_vm_metrics_build_info")?.dataPoints[0]?.attributes, {
        version: "1.2.3",
        revision: 'abc"1\\x',
        node_version: "24.22.3"
      })
      assert.strictEqual(data.get("process_open_fds")?.dataPoints[0]?.value, 17)
      assert.strictEqual(data.get("process_cpu_seconds_total")?.dataPoints[0]?.value, 12.34)
    }).pipe(Effect.provide(layer))
  })

  it.scoped(
    "the text, the producer and instruments on a Meter agree on every name, HELP, TYPE, label and value",
    () => {
      const { layer } = setup()
      return Effect.gen(function* () {
        const metrics = yield* VmMetrics
        const snapshot = yield* Effect.flatMap(Collector, (c) => c.refresh)
        const direct = parseExposition(yield* metrics.render(snapshot))
        const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
        const viaInstruments = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
        yield* metrics.registerOn(new MeterProvider({ readers: [viaInstruments] }).getMeter("x"))
        const viaProducer = new PrometheusExporter({
          preventServerStart: true,
          withoutScopeInfo: true,
          metricProducers: [metrics.producer]
        })
        new MeterProvider({ readers: [viaProducer] })
        const agentOnly = (m: Map<string, string>) =>
          new Map([...m].filter(([k]) => AGENT.some(([name]) => k.startsWith(name) || k.endsWith(` ${name}`))))
        assert.strictEqual(agentOnly(direct.samples).size, AGENT.length)
        for (const exporter of [viaInstruments, viaProducer]) {
          const { resourceMetrics } = yield* Effect.promise(() => exporter.collect())
          const sdk = parseExposition(serializer.serialize(resourceMetrics))
          assert.deepStrictEqual(agentOnly(sdk.samples), agentOnly(direct.samples))
          assert.deepStrictEqual(agentOnly(sdk.meta), agentOnly(direct.meta))
        }
      }).pipe(Effect.provide(layer))
    }
  )

  it.scoped("without `agent` (a library user) no path has any of them", () => {
    const world = makeWorld([vm("a", 10)])
    world.setProcess(10, { utime: 5 })
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const text = yield* metrics.prometheusText
      const producer = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [producer] })
      const instruments = new TestReader()
      yield* metrics.registerOn(new MeterProvider({ readers: [instruments] }).getMeter("x"))
      const names = [
        ...byName((yield* Effect.promise(() => producer.collect())).resourceMetrics).keys(),
        ...byName((yield* Effect.promise(() => instruments.collect())).resourceMetrics).keys()
      ]
      assert.include(names, "hypeman_vm_cpu_seconds_total")
      for (const [name] of AGENT) {
        assert.notInclude(text, name)
        assert.notInclude(names, name)
      }
    }).pipe(Effect.provide(layerFor(world)))
  })
})
