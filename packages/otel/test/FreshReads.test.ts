/**
 * A caller's reader gets fresh values with nothing else running: the instruments'
 * callback and the producer ask the collector for a snapshot no older than its max age (1 s here),
 * as the seed's `InitializeOTel` callback collected on every read. In-memory kernel files and the
 * TestClock; the real-process version is packages/http/test/CallerMeter.e2e.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Collector } from "@vm-metrics/core/Collector"
import { Context, Effect, Exit, Layer, Scope, TestClock } from "effect"
import { VmMetrics } from "../src/VmMetrics.js"
import { layerFor, makeWorld, vm } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const read = (reader: MetricReader) => Effect.promise(() => reader.collect()).pipe(Effect.map((r) => r.resourceMetrics))

const cpuOf = (data: ResourceMetrics, id: string) =>
  data.scopeMetrics
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === "hypeman_vm_cpu_seconds_total")
    ?.dataPoints.find((p) => p.attributes.instance_id === id)?.value

const oneVm = () => {
  const world = makeWorld([vm("a", 10)])
  world.setProcess(10, { utime: 100, start: 1234 })
  return world
}

/** A caller's reader: instruments on its own Meter, or a reader given the producer. */
const readers = {
  "instruments on a caller's Meter": (metrics: VmMetrics["Type"]) =>
    Effect.gen(function* () {
      const reader = new TestReader()
      yield* metrics.registerOn(new MeterProvider({ readers: [reader] }).getMeter("control-plane"))
      return reader
    }),
  "a reader given the producer": (metrics: VmMetrics["Type"]) =>
    Effect.sync(() => {
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      return reader
    })
} as const

describe("a caller's reader, with no scrape or push running", () => {
  for (const [what, makeReader] of Object.entries(readers)) {
    it.scoped(`${what}: the first read collects, later reads see new values once the max age has passed`, () => {
      const world = oneVm()
      return Effect.gen(function* () {
        const reader = yield* makeReader(yield* VmMetrics)
        assert.strictEqual(cpuOf(yield* read(reader), "a"), 1) // nothing collected before: the read did it
        world.setProcess(10, { utime: 900, start: 1234 })
        // Within the max age the snapshot is shared, not read again.
        assert.strictEqual(cpuOf(yield* read(reader), "a"), 1)
        assert.strictEqual(world.proc.reads.get(10), 1)
        yield* TestClock.adjust("1001 millis")
        assert.strictEqual(cpuOf(yield* read(reader), "a"), 9)
        assert.strictEqual(world.proc.reads.get(10), 2)
      }).pipe(Effect.provide(layerFor(world)))
    })
  }

  for (const [what, makeReader] of Object.entries(readers)) {
    it.scoped(`${what}: after one collection long ago, a read does not show its frozen value`, () => {
      const world = oneVm()
      return Effect.gen(function* () {
        const reader = yield* makeReader(yield* VmMetrics)
        yield* Effect.flatMap(Collector, (c) => c.refresh) // e.g. one scrape, then none
        world.setProcess(10, { utime: 900, start: 1234 })
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(cpuOf(yield* read(reader), "a"), 9)
      }).pipe(Effect.provide(layerFor(world)))
    })
  }

  it.scoped("concurrent reads of both kinds share one collection", () => {
    const world = oneVm()
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics
      const viaInstruments = yield* readers["instruments on a caller's Meter"](metrics)
      const viaProducer = yield* readers["a reader given the producer"](metrics)
      const [a, b, c] = yield* Effect.promise(() =>
        Promise.all([viaInstruments.collect(), viaProducer.collect(), viaInstruments.collect()])
      )
      for (const result of [a, b, c]) assert.strictEqual(cpuOf(result.resourceMetrics, "a"), 1)
      assert.strictEqual(world.source.calls(), 1)
      assert.strictEqual(world.proc.reads.get(10), 1)
    }).pipe(Effect.provide(layerFor(world)))
  })

  it.live("a reader that outlives the service gets nothing, and is not left waiting", () => {
    const world = oneVm()
    return Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layerFor(world), scope)
      const metrics = Context.get(context, VmMetrics)
      const reader = new TestReader({ metricProducers: [metrics.producer] })
      new MeterProvider({ readers: [reader] })
      assert.strictEqual(cpuOf(yield* read(reader), "a"), 1)
      yield* Scope.close(scope, Exit.void)
      const after = yield* read(reader).pipe(Effect.timeout("10 seconds"))
      assert.isUndefined(cpuOf(after, "a"))
    })
  })
})
