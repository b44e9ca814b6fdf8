/**
 * End to end, a control plane's own MeterProvider (issue 8, item 1): no server, no scrape, no push.
 * A real busy process stands in for the hypervisor (in-memory instance source, real Linux readers).
 * Two reads of the caller's reader, more than the max age apart, must both collect: the CPU they
 * show grows, and each lies between what the kernel showed just before and just after that read.
 */

import { assert, describe, it } from "@effect/vitest"
import { MeterProvider, MetricReader, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { spawnChild, statCpuSeconds, stopChild, TICK_SECONDS, waitFor } from "@vm-metrics/testing"
import { Effect, Layer } from "effect"
import * as Main from "../src/Main.js"

class CallerReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const MAX_AGE_MS = 1000

const cpuOf = (data: ResourceMetrics): number | undefined => {
  const point = data.scopeMetrics
    .flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === "hypeman_vm_cpu_seconds_total")
    ?.dataPoints.find((p) => p.attributes.instance_id === "busy-vm")
  return point?.value as number | undefined
}

/** Reads the caller's reader, with the kernel's own CPU figure just before and just after. */
const readBetween = (reader: MetricReader, pid: number) =>
  Effect.promise(async () => {
    const before = statCpuSeconds(pid)
    const { resourceMetrics } = await reader.collect()
    const after = statCpuSeconds(pid)
    return { before, value: cpuOf(resourceMetrics), after }
  })

describe("a caller's MeterProvider, with nothing else running", () => {
  it.scopedLive(
    "instruments and producer: two reads seconds apart show the busy process's CPU growing",
    () =>
      Effect.gen(function* () {
        const child = yield* Effect.acquireRelease(
          Effect.sync(() => spawnChild("while :; do :; done")),
          (c) => Effect.promise(() => stopChild(c))
        )
        const source = InstanceSource.layerMemory(
          InstanceSource.makeMemory([
            {
              id: "busy-vm",
              name: "busy",
              hypervisorPid: child.pid,
              allocatedVcpus: 1,
              allocatedMemoryBytes: 1024 * 1024 * 1024
            }
          ])
        )
        const pipeline = Main.layerPipeline({ maxAge: `${MAX_AGE_MS} millis` }, { source }).pipe(Layer.orDie)
        yield* Effect.gen(function* () {
          const metrics = yield* VmMetrics.VmMetrics
          const viaInstruments = new CallerReader()
          yield* metrics.registerOn(new MeterProvider({ readers: [viaInstruments] }).getMeter("control-plane"))
          const viaProducer = new CallerReader({ metricProducers: [metrics.producer] })
          new MeterProvider({ readers: [viaProducer] })

          const first = yield* readBetween(viaInstruments, child.pid)
          const firstProduced = yield* readBetween(viaProducer, child.pid)
          const startedMs = Date.now()
          for (const reading of [first, firstProduced]) {
            assert.isDefined(reading.value, "the first read collected")
          }
          // Bounded wait: more than the max age, and until the kernel shows the child burned more CPU.
          yield* waitFor(
            "the busy child to burn a few more clock ticks",
            async () =>
              Date.now() - startedMs > 1.5 * MAX_AGE_MS &&
              statCpuSeconds(child.pid) >= Math.max(first.after, firstProduced.after) + 3 * TICK_SECONDS
                ? true
                : undefined,
            { timeout: "60 seconds" }
          )
          const second = yield* readBetween(viaInstruments, child.pid)
          const secondProduced = yield* readBetween(viaProducer, child.pid)

          for (const [a, b] of [
            [first, second],
            [firstProduced, secondProduced]
          ] as const) {
            assert.isAbove(b.value!, a.value!, "the CPU the caller sees grows")
          }
          // Each value was collected during its round of reads (the producer's read may share the
          // instruments' collection): between the kernel's figures around the round.
          for (const [instruments, producer] of [
            [first, firstProduced],
            [second, secondProduced]
          ] as const) {
            for (const reading of [instruments, producer]) {
              assert.isAtLeast(reading.value!, instruments.before - 1e-9)
              assert.isAtMost(reading.value!, producer.after + 1e-9)
            }
          }
        }).pipe(Effect.provide(pipeline))
      }),
    90_000
  )
})
