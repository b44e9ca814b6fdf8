/**
 * The counts of hypervisor processes discovery did not trust go from the
 * InstanceSource through the snapshot into every export path: Prometheus text, the producer and the
 * instruments on a caller's Meter, under the configured prefix.
 */
import { assert, describe, it } from "@effect/vitest"
import { MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import * as Collector from "@vm-metrics/core/Collector"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { Effect, Layer } from "effect"
import * as VmMetrics from "../src/VmMetrics.js"
import { makeWorld, parseExposition, vm } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const ignored = [
  { reason: "untrusted_uid", count: 2 },
  { reason: "untrusted_exe", count: 1 },
  { reason: "unverifiable", count: 0 }
]

const layerWithIgnored = (prefix: string) => {
  const world = makeWorld([vm("a", 100)])
  world.setProcess(100, { utime: 5 })
  const source = Layer.succeed(InstanceSource, { ...world.source.source, ignoredTotals: () => ignored })
  const collector = Collector.layer({ maxAge: "1 second" }).pipe(
    Layer.provide(Layer.mergeAll(source, ProcReader.layerMemory(world.proc), TapReader.layerMemory(world.taps)))
  )
  return VmMetrics.layer({ metrics: { prefix } }).pipe(Layer.provideMerge(collector))
}

const pointsIn = (metrics: ResourceMetrics, name: string) =>
  metrics.scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric) => metric.dataPoints.map((p) => [String(p.attributes.reason), Number(p.value)] as const))
    .sort()

const expected = ignored.map((t) => [t.reason, t.count] as const).sort()

describe("…_discovery_ignored_total{reason}", () => {
  it.effect("is in the Prometheus text under the prefix, as a counter", () =>
    Effect.gen(function* () {
      yield* Effect.flatMap(Collector.Collector, (c) => c.refresh)
      const { samples, meta } = parseExposition(yield* (yield* VmMetrics.VmMetrics).prometheusText)
      const name = "acme_vm_metrics_discovery_ignored_total"
      assert.strictEqual(meta.get(`TYPE ${name}`), "counter")
      for (const { reason, count } of ignored)
        assert.strictEqual(samples.get(`${name}{reason="${reason}"}`), String(count))
    }).pipe(Effect.provide(layerWithIgnored("acme_vm")))
  )

  it.effect("is exported by the producer", () =>
    Effect.gen(function* () {
      const reader = new TestReader({ metricProducers: [(yield* VmMetrics.VmMetrics).producer] })
      new MeterProvider({ readers: [reader] })
      const { resourceMetrics } = yield* Effect.promise(() => reader.collect())
      assert.deepStrictEqual(pointsIn(resourceMetrics, "hypeman_vm_metrics_discovery_ignored_total"), expected)
    }).pipe(Effect.provide(layerWithIgnored("hypeman_vm")))
  )

  it.scoped("is observed by the instruments on a caller's Meter", () =>
    Effect.gen(function* () {
      const reader = new TestReader()
      yield* (yield* VmMetrics.VmMetrics).registerOn(new MeterProvider({ readers: [reader] }).getMeter("control-plane"))
      const { resourceMetrics } = yield* Effect.promise(() => reader.collect())
      assert.deepStrictEqual(pointsIn(resourceMetrics, "hypeman_vm_metrics_discovery_ignored_total"), expected)
    }).pipe(Effect.provide(layerWithIgnored("hypeman_vm")))
  )
})
