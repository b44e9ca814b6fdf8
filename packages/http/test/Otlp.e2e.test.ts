/**
 * End to end, push: a real process (and a real TAP as root) → NodeReaders → Collector → VmMetrics →
 * OtlpPush (OTLP/HTTP protobuf) → a real VictoriaMetrics; the test asks VictoriaMetrics' query API
 * what it stored (the exporter's own success is not trusted on its own). Then a push to a dead
 * endpoint: it reports false, fails nothing, and the pull path still answers.
 */
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as OtlpPush from "@vm-metrics/otel/OtlpPush"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import {
  freePort,
  skipReason,
  startServer,
  statCpuSeconds,
  statmRssBytes,
  TICK_SECONDS,
  tapBytes,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { Context, Effect, HashMap, Layer, Logger, Option } from "effect"
import {
  findVictoriaMetrics,
  instantQuery,
  pipelineLayer,
  request,
  type Series,
  TestVm,
  tapMissing,
  testVmLayer,
  VM_ID,
  VM_NAME
} from "./rig.js"

const victoriaMetrics = findVictoriaMetrics()
const skipVictoriaMetrics = skipReason(
  victoriaMetrics === undefined
    ? "victoria-metrics not found (run `bash .ci/victoria-metrics.sh`, or set VICTORIA_METRICS_BIN)"
    : undefined,
  "OTLP end-to-end tests"
)

/** A real VictoriaMetrics: OTLP/protobuf in at /opentelemetry/v1/metrics, Prometheus query API out. */
class VictoriaMetrics extends Context.Tag("e2e/VictoriaMetrics")<
  VictoriaMetrics,
  { readonly base: string; readonly otlpUrl: string }
>() {}

const victoriaMetricsLayer = Layer.scoped(
  VictoriaMetrics,
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-victoria-")
    const port = yield* freePort
    const server = yield* startServer("victoria-metrics", victoriaMetrics!, [
      `-httpListenAddr=127.0.0.1:${port}`,
      `-storageDataPath=${path.join(dir, "data")}`,
      "-search.latencyOffset=0s",
      "-retentionPeriod=1d"
    ])
    const base = `http://127.0.0.1:${port}`
    yield* waitFor(
      "VictoriaMetrics /health",
      async () => {
        const { status, body } = await request(`${base}/health`)
        return status === 200 && body.trim() === "OK" ? true : undefined
      },
      { timeout: "15 seconds", gone: server.gone, details: server.output }
    )
    yield* Effect.log(`${victoriaMetrics} ready at ${base}`)
    return { base, otlpUrl: `${base}/opentelemetry/v1/metrics` }
  })
)

const rig = victoriaMetricsLayer.pipe(Layer.provideMerge(pipelineLayer), Layer.provideMerge(testVmLayer("vmmo")))

/** Flushes VictoriaMetrics' in-memory buffers and polls an instant query until it has the series. */
const stored = (query: string) =>
  Effect.gen(function* () {
    const { base } = yield* VictoriaMetrics
    return yield* waitFor(
      `VictoriaMetrics to have ${query}`,
      async () => {
        await request(`${base}/internal/force_flush`)
        return instantQuery(base, query)
      },
      { timeout: "20 seconds" }
    )
  })

const only = (series: ReadonlyArray<Series>, what: string): Series => {
  assert.lengthOf(series, 1, `${what}: ${JSON.stringify(series)}`)
  return series[0]!
}

describe.skipIf(skipVictoriaMetrics)("OTLP push into VictoriaMetrics", () => {
  layer(rig, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.scoped(
      "pushOnce delivers the pipeline's series; VictoriaMetrics stores the child's real values and labels",
      () =>
        Effect.gen(function* () {
          const vm = yield* TestVm
          const metrics = yield* VmMetrics.VmMetrics
          const { otlpUrl } = yield* VictoriaMetrics
          const { pushOnce } = yield* OtlpPush.make({ url: otlpUrl, interval: "1 hour", timeout: "5 seconds" })
          assert.isTrue(yield* pushOnce)

          const cpu = only(yield* stored("hypeman_vm_cpu_seconds_total"), "cpu")
          // The two VM labels plus the OTel resource as labels; VictoriaMetrics 1.112 keeps OTel's dotted
          // names (`service.name`), with -opentelemetry.usePrometheusNaming it would write `service_name`.
          const labels = Object.fromEntries(
            Object.entries(cpu.metric).map(([name, value]) => [name.replace(/\./g, "_"), value])
          )
          assert.deepStrictEqual(labels, {
            __name__: "hypeman_vm_cpu_seconds_total",
            instance_id: VM_ID,
            instance_name: VM_NAME,
            service_name: "vm-metrics",
            service_version: metrics.resource["service.version"],
            service_instance_id: metrics.resource["service.instance.id"],
            host_name: metrics.resource["host.name"]
          })
          const expected = statCpuSeconds(vm.pid)
          assert.isAbove(expected, 0, "the child burned CPU before sleeping")
          assert.closeTo(Number(cpu.value[1]), expected, 2 * TICK_SECONDS, `stored ${cpu.value[1]}, stat ${expected}`)

          const memory = only(yield* stored("hypeman_vm_allocated_memory_bytes"), "memory")
          assert.strictEqual(memory.metric.instance_id, VM_ID)
          assert.strictEqual(memory.metric.instance_name, VM_NAME)
          assert.strictEqual(memory.value[1], "1073741824")
          const vcpus = only(yield* stored("hypeman_vm_allocated_vcpus"), "vcpus")
          assert.strictEqual(vcpus.value[1], "2")
          const rss = only(yield* stored("hypeman_vm_memory_rss_bytes"), "rss")
          assert.strictEqual(Number(rss.value[1]), statmRssBytes(vm.pid))
          const observed = only(yield* stored("hypeman_vm_metrics_instances_observed"), "observed")
          assert.strictEqual(observed.value[1], "1")
        })
    )

    it.scoped.skipIf(tapMissing)("VictoriaMetrics stores the TAP's byte counters in the VM's perspective", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const { otlpUrl } = yield* VictoriaMetrics
        const { pushOnce } = yield* OtlpPush.make({ url: otlpUrl, interval: "1 hour", timeout: "5 seconds" })
        assert.isTrue(yield* pushOnce)
        const bytes = tapBytes(vm.tap!)
        assert.isAtLeast(bytes.vmTx, vm.framed.sentByGuest, "the frames the guest sent")
        assert.isAtLeast(bytes.vmRx, vm.framed.receivedByGuest, "the frames the guest received")
        const rx = only(yield* stored("hypeman_vm_network_rx_bytes_total"), "rx")
        const tx = only(yield* stored("hypeman_vm_network_tx_bytes_total"), "tx")
        assert.strictEqual(rx.metric.instance_id, VM_ID)
        assert.strictEqual(tx.metric.instance_id, VM_ID)
        assert.strictEqual(Number(rx.value[1]), bytes.vmRx)
        assert.strictEqual(Number(tx.value[1]), bytes.vmTx)
      })
    )

    it.scoped("a push to a dead endpoint returns false without failing, and the pull path still works", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const metrics = yield* VmMetrics.VmMetrics
        const deadPort = yield* freePort
        const { pushOnce } = yield* OtlpPush.make({
          url: `http://127.0.0.1:${deadPort}/opentelemetry/v1/metrics`,
          interval: "1 hour",
          timeout: "3 seconds"
        })
        const warnings: Array<string> = []
        const logger = Logger.make(({ logLevel, message, annotations }) => {
          const reason = Option.getOrElse(HashMap.get(annotations, "reason"), () => "")
          warnings.push(`${logLevel.label} ${String(message)} reason=${String(reason)}`)
        })
        const pushed = yield* Effect.exit(pushOnce.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
        assert.isTrue(pushed._tag === "Success", `pushOnce must not fail or die: ${String(pushed)}`)
        assert.strictEqual(pushed._tag === "Success" ? pushed.value : undefined, false)
        // One line saying why: the error's message, not a stack trace.
        assert.deepStrictEqual(warnings, [
          `WARN OTLP push failed; trying again next interval reason=connect ECONNREFUSED 127.0.0.1:${deadPort}`
        ])

        const text = yield* metrics.prometheusText
        const cpu = text.match(/^hypeman_vm_cpu_seconds_total\{instance_id="e2e-vm-1",instance_name="web-1"\} (\S+)$/m)
        assert.isNotNull(cpu, text)
        assert.closeTo(Number(cpu![1]), statCpuSeconds(vm.pid), TICK_SECONDS + 1e-9)
      })
    )
  })
})
