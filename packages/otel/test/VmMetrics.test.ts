import { assert, describe, it } from "@effect/vitest"
import { type HrTime, ValueType } from "@opentelemetry/api"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { DataPointType, MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import { ParseError } from "@vm-metrics/core/Errors"
import { Effect, Layer, TestClock } from "effect"
import * as LabelBudget from "../src/LabelBudget.js"
import { hrTime } from "../src/OtelData.js"
import * as VmMetricsModule from "../src/VmMetrics.js"
import { VmMetrics } from "../src/VmMetrics.js"
import { GiB, kernel, layerFor, makeWorld, parseExposition, vm } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const collectFrom = (reader: MetricReader) =>
  Effect.promise(() => reader.collect()).pipe(Effect.map((r) => r.resourceMetrics))

/** metric name → its data, across all scopes. */
const byName = (metrics: ResourceMetrics) =>
  new Map(metrics.scopeMetrics.flatMap((s) => s.metrics).map((m) => [m.descriptor.name, m] as const))

const PER_VM = [
  ["hypeman_vm_cpu_seconds_total", "counter", "s", ValueType.DOUBLE],
  ["hypeman_vm_allocated_vcpus", "gauge", "{vcpu}", ValueType.INT],
  ["hypeman_vm_memory_rss_bytes", "gauge", "By", ValueType.INT],
  ["hypeman_vm_memory_vms_bytes", "gauge", "By", ValueType.INT],
  ["hypeman_vm_allocated_memory_bytes", "gauge", "By", ValueType.INT],
  ["hypeman_vm_network_rx_bytes_total", "counter", "By", ValueType.INT],
  ["hypeman_vm_network_tx_bytes_total", "counter", "By", ValueType.INT],
  ["hypeman_vm_memory_utilization_ratio", "gauge", "1", ValueType.DOUBLE]
] as const

const twoVms = () => {
  const world = makeWorld([vm("a", 10), vm("b", 20, { allocatedMemoryBytes: 0, allocatedVcpus: 4 })])
  world.setProcess(10, { utime: 150, stime: 50, rss: 25_000, vms: 100_000, start: 1234 })
  world.setProcess(20, { utime: 7, rss: 10, vms: 20 })
  world.setTap("hype-a", 1000, 3000)
  world.setTap("hype-b", 5, 6)
  return world
}

describe("instruments on a caller's Meter (in-memory reader)", () => {
  it.scoped("export every per-VM metric with its exact name, kind, unit and labels", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader()
      const provider = new MeterProvider({ readers: [reader] })
      yield* metrics.registerOn(provider.getMeter("control-plane"))
      yield* Effect.flatMap(Collector, (c) => c.refresh)
      const data = byName(yield* collectFrom(reader))
      for (const [name, kind, unit, valueType] of PER_VM) {
        const metric = data.get(name)
        assert.isDefined(metric, name)
        assert.strictEqual(metric!.descriptor.unit, unit, name)
        assert.strictEqual(metric!.descriptor.valueType, valueType, name)
        if (kind === "counter") {
          assert.strictEqual(metric!.dataPointType, DataPointType.SUM, name)
          assert.isTrue(metric!.dataPointType === DataPointType.SUM && metric!.isMonotonic, name)
        } else {
          assert.strictEqual(metric!.dataPointType, DataPointType.GAUGE, name)
        }
        for (const point of metric!.dataPoints) {
          assert.deepStrictEqual(Object.keys(point.attributes).sort(), ["instance_id", "instance_name"], name)
        }
      }
      const value = (name: string, id: string) =>
        data.get(name)!.dataPoints.find((p) => p.attributes.instance_id === id)?.value
      assert.strictEqual(value("hypeman_vm_cpu_seconds_total", "a"), 2) // 200 ticks at 100 Hz
      assert.strictEqual(value("hypeman_vm_memory_rss_bytes", "a"), 25_000 * 4096)
      assert.strictEqual(value("hypeman_vm_memory_vms_bytes", "a"), 100_000 * 4096)
      assert.strictEqual(value("hypeman_vm_allocated_memory_bytes", "a"), GiB)
      assert.strictEqual(value("hypeman_vm_allocated_vcpus", "b"), 4)
      assert.strictEqual(value("hypeman_vm_network_rx_bytes_total", "a"), 3000) // VM rx = TAP tx
      assert.strictEqual(value("hypeman_vm_network_tx_bytes_total", "a"), 1000)
      assert.closeTo(value("hypeman_vm_memory_utilization_ratio", "a") as number, (25_000 * 4096) / GiB, 1e-12)
      // The ratio only where allocated memory > 0.
      assert.isUndefined(value("hypeman_vm_memory_utilization_ratio", "b"))
      const observed = data.get("hypeman_vm_metrics_instances_observed")!
      assert.deepStrictEqual(
        observed.dataPoints.map((p) => [p.attributes, p.value]),
        [[{}, 2]]
      )
      assert.strictEqual(data.get("hypeman_vm_metrics_label_budget_exceeded_total")!.dataPoints[0]!.value, 0)
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.scoped("the ratio can be switched off, and the prefix changed", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader()
      yield* metrics.registerOn(new MeterProvider({ readers: [reader] }).getMeter("m"))
      yield* Effect.flatMap(Collector, (c) => c.refresh)
      const names = [...byName(yield* collectFrom(reader)).keys()]
      assert.notInclude(names, "acme_vm_memory_utilization_ratio")
      assert.include(names, "acme_vm_cpu_seconds_total")
      assert.include(names, "acme_vm_metrics_instances_observed")
      assert.isFalse(names.some((n) => n.startsWith("hypeman_")))
      const text = yield* metrics.prometheusText
      assert.notInclude(text, "utilization_ratio")
    }).pipe(Effect.provide(layerFor(world, { metrics: { prefix: "acme_vm", utilizationRatio: false } })))
  })

  it.effect("layerRegisterOn observes while the layer lives and stops when it is released", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const reader = new TestReader()
      const meter = new MeterProvider({ readers: [reader] }).getMeter("cp")
      const cpuOfA = (data: ResourceMetrics) =>
        byName(data)
          .get("hypeman_vm_cpu_seconds_total")
          ?.dataPoints.find((p) => p.attributes.instance_id === "a")?.value
      yield* Effect.scoped(
        Effect.gen(function* () {
          const collector = yield* Collector
          yield* collector.refresh
          assert.strictEqual(cpuOfA(yield* collectFrom(reader)), 2)
          world.setProcess(10, { utime: 500, start: 1234 })
          yield* collector.refresh
          assert.strictEqual(cpuOfA(yield* collectFrom(reader)), 5)
          world.setProcess(10, { utime: 900, start: 1234 })
          yield* collector.refresh
        }).pipe(Effect.provide(VmMetricsModule.layerRegisterOn(meter).pipe(Layer.provideMerge(layerFor(world)))))
      )
      // Released: the callback no longer runs, so the new 9 s is never observed. (The OTel JS SDK
      // keeps re-exporting the last cumulative value of an attribute set it has seen.)
      assert.strictEqual(cpuOfA(yield* collectFrom(reader)), 5)
    })
  })

  it.effect("a prefix that is not a Prometheus name and a budget ≤ 0 are typed errors", () =>
    Effect.gen(function* () {
      for (const metrics of [{ prefix: "9bad" }, { prefix: "a-b" }, { labelBudget: 0 }, { labelBudget: -3 }]) {
        const error = yield* Effect.flip(
          Effect.scoped(Effect.asVoid(VmMetrics.pipe(Effect.provide(layerFor(makeWorld(), { metrics })))))
        )
        assert.strictEqual(error._tag, "InvalidMetricOption")
      }
    })
  )
})

describe("what is and is not exported", () => {
  it.effect("a failed read produces no sample, never a 0; the read error is counted", () => {
    const world = twoVms()
    world.proc.set(10, {
      stat: new ParseError({ file: "/proc/10/stat", reason: "garbled" }),
      statm: "1000 100 0 0 0 0 0\n"
    })
    world.taps.remove("hype-a")
    return Effect.gen(function* () {
      const { samples } = parseExposition(yield* Effect.flatMap(VmMetrics, (m) => m.prometheusText))
      assert.isFalse(samples.has('hypeman_vm_cpu_seconds_total{instance_id="a",instance_name="name-a"}'))
      assert.isFalse(samples.has('hypeman_vm_network_rx_bytes_total{instance_id="a",instance_name="name-a"}'))
      assert.strictEqual(samples.get('hypeman_vm_memory_rss_bytes{instance_id="a",instance_name="name-a"}'), "409600")
      assert.strictEqual(samples.get('hypeman_vm_cpu_seconds_total{instance_id="b",instance_name="name-b"}'), "0.07")
      assert.strictEqual(samples.get('hypeman_vm_metrics_read_errors_total{reason="parse_error",source="stat"}'), "1")
      assert.strictEqual(samples.get('hypeman_vm_metrics_read_errors_total{reason="tap_missing",source="tap"}'), "1")
      assert.strictEqual(samples.get('hypeman_vm_metrics_instances{state="running"}'), "2")
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("the snapshot's time is exported, so a consumer can tell stale series", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      yield* TestClock.adjust("1234500 millis")
      const { samples } = parseExposition(yield* Effect.flatMap(VmMetrics, (m) => m.prometheusText))
      assert.strictEqual(samples.get("hypeman_vm_metrics_last_collection_timestamp_seconds{}"), "1234.5")
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("a VM that disappears stops being exported on the next collection", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const first = parseExposition(yield* Effect.flatMap(collector.refresh, metrics.render)).samples
      assert.isTrue(first.has('hypeman_vm_allocated_vcpus{instance_id="b",instance_name="name-b"}'))
      world.source.set([vm("a", 10)])
      const second = parseExposition(yield* Effect.flatMap(collector.refresh, metrics.render)).samples
      assert.isFalse([...second.keys()].some((k) => k.includes('instance_id="b"')))
      assert.isTrue(second.has('hypeman_vm_allocated_vcpus{instance_id="a",instance_name="name-a"}'))
      assert.strictEqual(second.get("hypeman_vm_metrics_instances_observed{}"), "1")
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("label values are escaped; counters above 2^53 stay exact in the text", () => {
    const world = makeWorld([vm("x", 10, { name: 'we"ird\\name\nline' })])
    world.setProcess(10, { utime: 1 })
    world.setTap("hype-x", 18446744073709551615n, 9007199254740993n)
    return Effect.gen(function* () {
      const text = yield* Effect.flatMap(VmMetrics, (m) => m.prometheusText)
      assert.include(text, 'instance_name="we\\"ird\\\\name\\nline"')
      assert.include(
        text,
        'hypeman_vm_network_tx_bytes_total{instance_id="x",instance_name="we\\"ird\\\\name\\nline"} 18446744073709551615\n'
      )
      assert.include(text, 'hypeman_vm_network_rx_bytes_total{instance_id="x"')
      assert.include(text, "} 9007199254740993\n")
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("the bytes sent are the text's UTF-8, names beyond ASCII included; the same array when asked again", () => {
    const world = makeWorld([vm("ü", 10, { name: "vm-é→😀" }), vm("b", 20)])
    world.setProcess(10, { utime: 250, rss: 3 })
    world.setProcess(20, { utime: 1 })
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const snapshot = yield* Effect.flatMap(Collector, (c) => c.refresh)
      const bytes = yield* metrics.renderBytes(snapshot)
      const text = yield* metrics.render(snapshot)
      assert.deepStrictEqual(bytes, new TextEncoder().encode(text))
      assert.strictEqual(yield* metrics.renderBytes(snapshot), bytes, "rendered once per snapshot")
      assert.include(text, 'hypeman_vm_cpu_seconds_total{instance_id="ü",instance_name="vm-é→😀"} 2.5\n')
      assert.include(text, 'hypeman_vm_memory_rss_bytes{instance_id="ü",instance_name="vm-é→😀"} 12288\n')
    }).pipe(Effect.provide(layerFor(world)))
  })
})

describe("label budget guardrail (more instances than the budget is over)", () => {
  it.effect("one WARN on entering, one INFO on leaving, the counter counts entries only", () => {
    const world = makeWorld([vm("a", 10), vm("b", 20)])
    world.setProcess(10, { utime: 1 })
    world.setProcess(20, { utime: 1 })
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const scrape = Effect.flatMap(collector.refresh, metrics.render).pipe(
        Effect.map((t) => parseExposition(t).samples)
      )
      const counter = "hypeman_vm_metrics_label_budget_exceeded_total{}"
      assert.strictEqual((yield* scrape).get(counter), "1") // 2 > 1: over
      assert.strictEqual((yield* scrape).get(counter), "1") // still over: nothing new
      world.source.set([vm("a", 10)])
      assert.strictEqual((yield* scrape).get(counter), "1") // recovered: not counted
      world.source.set([vm("a", 10), vm("b", 20)])
      assert.strictEqual((yield* scrape).get(counter), "2") // over again
      const budgetLogs = world.logs.filter((l) => l.message.startsWith("vm metrics label budget"))
      assert.deepStrictEqual(budgetLogs, [
        { level: "WARN", message: "vm metrics label budget exceeded" },
        { level: "INFO", message: "vm metrics label budget recovered" },
        { level: "WARN", message: "vm metrics label budget exceeded" }
      ])
    }).pipe(Effect.provide(layerFor(world, { metrics: { labelBudget: 1 } })))
  })

  it("the budget setter ignores values ≤ 0", () => {
    const budget = LabelBudget.make(1)
    budget.setBudget(0)
    budget.setBudget(-5)
    assert.strictEqual(budget.budget(), 1)
    budget.setBudget(5)
    assert.strictEqual(budget.budget(), 5)
  })

  it.effect("the default budget is 200: exactly 200 instances is not over, 201 is", () => {
    const instances = Array.from({ length: 201 }, (_, i) => vm(`v${i}`, 100 + i, { tapDevice: undefined as never }))
    const untapped = instances.map(({ tapDevice: _, ...rest }) => rest)
    const world = makeWorld(untapped.slice(0, 200))
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const { samples } = parseExposition(yield* metrics.prometheusText)
      assert.strictEqual(samples.get("hypeman_vm_metrics_label_budget_exceeded_total{}"), "0")
      assert.strictEqual(samples.get("hypeman_vm_metrics_instances_observed{}"), "200")
      world.source.set(untapped)
      const over = parseExposition(yield* Effect.flatMap(collector.refresh, metrics.render)).samples
      assert.strictEqual(over.get("hypeman_vm_metrics_label_budget_exceeded_total{}"), "1")
      assert.strictEqual(over.get("hypeman_vm_metrics_instances_observed{}"), "201")
    }).pipe(Effect.provide(layerFor(world)))
  })
})

describe("the OTel producer (OTLP path)", () => {
  it.effect("counters start at the hypervisor process's start time; a restarted VMM shows a new one", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      const startOf = (data: Map<string, any>) =>
        data.get("hypeman_vm_cpu_seconds_total").dataPoints.find((p: any) => p.attributes.instance_id === "a")
          .startTime as HrTime
      yield* collector.refresh
      const before = startOf(byName(yield* collectFrom(reader)))
      assert.deepStrictEqual(before, hrTime(kernel.bootTimeMs + 1234 * 10)) // start ticks × 10 ms after boot
      // A restart: the source names the new process (pid 11), with a lower counter and a later start.
      world.setProcess(11, { utime: 3, start: 9999 })
      world.source.set([vm("a", 11), vm("b", 20, { allocatedMemoryBytes: 0, allocatedVcpus: 4 })])
      yield* collector.refresh
      const after = byName(yield* collectFrom(reader))
      assert.deepStrictEqual(startOf(after), hrTime(kernel.bootTimeMs + 9999 * 10))
      const point = after.get("hypeman_vm_cpu_seconds_total")!.dataPoints.find((p) => p.attributes.instance_id === "a")
      assert.strictEqual(point!.value, 0.03)
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("a TAP recreated under the same process: its counter goes down with a new start time", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      const rxOfA = (data: ResourceMetrics) =>
        byName(data)
          .get("hypeman_vm_network_rx_bytes_total")!
          .dataPoints.find((p) => p.attributes.instance_id === "a")!
      const firstSampleMs = kernel.bootTimeMs + 100_000
      yield* TestClock.adjust(`${firstSampleMs} millis`)
      yield* collector.refresh
      const before = rxOfA(yield* collectFrom(reader))
      assert.strictEqual(before.value, 3000)
      assert.deepStrictEqual(before.startTime, hrTime(kernel.bootTimeMs + 1234 * 10)) // the process start
      yield* TestClock.adjust("5 seconds")
      world.setTap("hype-a", 7, 20) // deleted and created again: counters from 0
      yield* collector.refresh
      const after = rxOfA(yield* collectFrom(reader))
      assert.strictEqual(after.value, 20)
      // A new series: it starts after the last sample of the old one, never with the old start time.
      assert.deepStrictEqual(after.startTime, hrTime(firstSampleMs))
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("a VM that disappears is gone from the producer's next collection", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const collector = yield* Collector
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      const ids = (data: ResourceMetrics) =>
        byName(data)
          .get("hypeman_vm_allocated_vcpus")!
          .dataPoints.map((p) => p.attributes.instance_id)
      yield* collector.refresh
      assert.deepStrictEqual(ids(yield* collectFrom(reader)), ["a", "b"])
      world.source.set([vm("b", 20, { allocatedMemoryBytes: 0, allocatedVcpus: 4 })])
      yield* collector.refresh
      assert.deepStrictEqual(ids(yield* collectFrom(reader)), ["b"])
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("one collection serves both the Prometheus text and the OTLP reader", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      yield* metrics.prometheusText
      yield* Effect.flatMap(Collector, (c) => c.collectAll) // what a push does first
      const data = byName(yield* collectFrom(reader))
      assert.strictEqual(world.source.calls(), 1)
      assert.strictEqual(world.proc.reads.get(10), 1)
      assert.strictEqual(data.get("hypeman_vm_allocated_vcpus")!.dataPoints.length, 2)
    }).pipe(Effect.provide(layerFor(world)))
  })
})

describe("Prometheus text: the direct renderer and the OTel SDK agree", () => {
  it.scoped("on every name, HELP, TYPE, label and value (instruments and producer paths)", () => {
    const world = twoVms()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const snapshot = yield* Effect.flatMap(Collector, (c) => c.refresh)
      const direct = parseExposition(yield* metrics.render(snapshot))
      const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)

      // 1. Observable instruments on a MeterProvider read by the SDK's PrometheusExporter.
      const viaInstruments = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
      const provider = new MeterProvider({ readers: [viaInstruments] })
      yield* metrics.registerOn(provider.getMeter("x"))
      // 2. The producer behind a second exporter.
      const viaProducer = new PrometheusExporter({
        preventServerStart: true,
        withoutScopeInfo: true,
        metricProducers: [metrics.producer]
      })
      new MeterProvider({ readers: [viaProducer] })

      for (const exporter of [viaInstruments, viaProducer]) {
        const { resourceMetrics } = yield* Effect.promise(() => exporter.collect())
        const sdk = parseExposition(serializer.serialize(resourceMetrics))
        const withoutTarget = (m: Map<string, string>) => new Map([...m].filter(([k]) => !k.startsWith("target_info")))
        assert.deepStrictEqual(withoutTarget(sdk.samples), withoutTarget(direct.samples))
        for (const [key, value] of direct.meta)
          if (!key.endsWith(" target_info")) assert.strictEqual(sdk.meta.get(key), value, key)
        assert.isAbove(direct.samples.size, 20)
      }
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.effect("target_info carries the resource attributes", () =>
    Effect.gen(function* () {
      const text = yield* Effect.flatMap(VmMetrics, (m) => m.prometheusText)
      assert.match(
        text,
        /^target_info\{service_name="vm-metrics",service_version="0\.1\.0",service_instance_id="host-7",host_name="host-7",dc="west"\} 1$/m
      )
    }).pipe(Effect.provide(layerFor(makeWorld(), { resource: { hostName: "host-7", attributes: { dc: "west" } } })))
  )
})
