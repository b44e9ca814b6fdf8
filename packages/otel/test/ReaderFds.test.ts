/**
 * The readers' fd budget (kept fds, reads by path) goes from the ProcReader through the snapshot into
 * the Prometheus text; a reader that keeps no fds (no `fds`) exports neither family.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { Effect, Layer } from "effect"
import * as VmMetrics from "../src/VmMetrics.js"
import { makeWorld, parseExposition, vm } from "./fixtures.js"

const layerWith = (fds: ProcReader.ReaderFds | undefined) => {
  const world = makeWorld([vm("a", 100)])
  world.setProcess(100, { utime: 5 })
  const proc = Layer.succeed(ProcReader.ProcReader, {
    ...world.proc.reader,
    ...(fds === undefined ? {} : { fds: () => fds })
  })
  const collector = Collector.layer({ maxAge: "1 second" }).pipe(
    Layer.provide(Layer.mergeAll(InstanceSource.layerMemory(world.source), proc, TapReader.layerMemory(world.taps)))
  )
  return VmMetrics.layer({ metrics: { prefix: "hypeman_vm" } }).pipe(Layer.provideMerge(collector))
}

const exposition = Effect.gen(function* () {
  yield* Effect.flatMap(Collector.Collector, (c) => c.refresh)
  return parseExposition(yield* (yield* VmMetrics.VmMetrics).prometheusText)
})

describe("…_kept_fds and …_reads_by_path_total", () => {
  it.effect("are in the Prometheus text: a gauge and a counter", () =>
    Effect.gen(function* () {
      const { samples, meta } = yield* exposition
      assert.strictEqual(meta.get("TYPE hypeman_vm_metrics_kept_fds"), "gauge")
      assert.strictEqual(samples.get("hypeman_vm_metrics_kept_fds{}"), "812")
      assert.strictEqual(meta.get("TYPE hypeman_vm_metrics_reads_by_path_total"), "counter")
      assert.strictEqual(samples.get("hypeman_vm_metrics_reads_by_path_total{}"), "35")
    }).pipe(Effect.provide(layerWith({ kept: 812, byPathTotal: 35 })))
  )

  it.effect("are absent when the reader keeps no fds", () =>
    Effect.gen(function* () {
      const { samples } = yield* exposition
      assert.isFalse(samples.has("hypeman_vm_metrics_kept_fds{}"))
      assert.isFalse(samples.has("hypeman_vm_metrics_reads_by_path_total{}"))
      assert.isTrue(samples.has("hypeman_vm_metrics_source_errors_total{}"))
    }).pipe(Effect.provide(layerWith(undefined)))
  )
})
