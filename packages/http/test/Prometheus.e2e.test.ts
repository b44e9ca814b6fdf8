/**
 * End to end, pull: a real process (and a real TAP as root) → NodeReaders → Collector → VmMetrics →
 * Prometheus text on a real HTTP endpoint → `promtool check metrics` and a real Prometheus scraping it
 * every second; the test then asks Prometheus's query API what it stored.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as PrometheusText from "@vm-metrics/otel/PrometheusText"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { Context, Effect, Layer } from "effect"
import {
  Exporter,
  exporterLayer,
  findPrometheus,
  instantQuery,
  pipelineLayer,
  promtoolCheck,
  request,
  type Series,
  skipReason,
  startPrometheus,
  statCpuSeconds,
  statmRssBytes,
  TestVm,
  TICK_SECONDS,
  tapBytes,
  tapMissing,
  tempDir,
  testVmLayer,
  VM_ID,
  VM_NAME,
  waitFor
} from "./rig.js"

const { prometheus, promtool } = findPrometheus()
const skipPromtool = skipReason(
  promtool === undefined ? "promtool not found on PATH (apt-get install prometheus)" : undefined,
  "promtool end-to-end test"
)
const skipPrometheus = skipReason(
  prometheus === undefined ? "prometheus not found on PATH (apt-get install prometheus)" : undefined,
  "Prometheus end-to-end tests"
)

const JOB = "vm-metrics-e2e"

/** A real Prometheus scraping the rig's exporter every second. */
class PrometheusServer extends Context.Tag("e2e/PrometheusServer")<
  PrometheusServer,
  { readonly base: string; readonly target: string }
>() {}

const prometheusLayer = Layer.scoped(
  PrometheusServer,
  Effect.gen(function* () {
    const exporter = yield* Exporter
    const dir = yield* tempDir("vm-metrics-prom-")
    const target = `127.0.0.1:${exporter.port}`
    const config = path.join(dir, "prom.yml")
    fs.writeFileSync(
      config,
      [
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}",
        `scrape_configs: [{job_name: ${JOB}, metrics_path: /metrics, static_configs: [{targets: ["${target}"]}]}]`,
        ""
      ].join("\n")
    )
    const { base } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
    return { base, target }
  })
)

const rig = prometheusLayer.pipe(
  Layer.provideMerge(exporterLayer),
  Layer.provideMerge(pipelineLayer),
  Layer.provideMerge(testVmLayer("vmmp"))
)

/** Polls an instant query until Prometheus has the series (Prometheus 2.42 starts scraping a new target within ~5 s). */
const queryUntilPresent = (query: string) =>
  Effect.gen(function* () {
    const { base } = yield* PrometheusServer
    return yield* waitFor(`Prometheus to have ${query}`, () => instantQuery(base, query), { timeout: "20 seconds" })
  })

const only = (series: ReadonlyArray<Series>, what: string): Series => {
  assert.lengthOf(series, 1, `${what}: ${JSON.stringify(series)}`)
  return series[0]!
}

describe.skipIf(skipPromtool)("promtool", () => {
  layer(exporterLayer.pipe(Layer.provideMerge(pipelineLayer), Layer.provideMerge(testVmLayer("vmmc"))), {
    excludeTestServices: true,
    timeout: "30 seconds"
  })((it) => {
    it.effect("`promtool check metrics` accepts the /metrics body of the real pipeline", () =>
      Effect.gen(function* () {
        const exporter = yield* Exporter
        const vm = yield* TestVm
        const { status, contentType, body } = yield* Effect.promise(() => request(exporter.url))
        assert.strictEqual(status, 200)
        assert.strictEqual(contentType, PrometheusText.CONTENT_TYPE)
        // The body is the real pipeline's: the child's CPU counter with its own value.
        const cpu = body.match(/^hypeman_vm_cpu_seconds_total\{instance_id="e2e-vm-1",instance_name="web-1"\} (\S+)$/m)
        assert.isNotNull(cpu, body)
        assert.closeTo(Number(cpu![1]), statCpuSeconds(vm.pid), TICK_SECONDS + 1e-9)
        const checked = promtoolCheck(promtool!, body)
        assert.strictEqual(checked.status, 0, `promtool check metrics exited ${checked.status}:\n${checked.output}`)
      })
    )
  })
})

describe.skipIf(skipPrometheus)("Prometheus scraping the exporter", () => {
  layer(rig, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.effect("stores hypeman_vm_cpu_seconds_total with exactly the VM labels and the child's utime+stime", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const { target } = yield* PrometheusServer
        const cpu = only(yield* queryUntilPresent("hypeman_vm_cpu_seconds_total"), "cpu")
        assert.deepStrictEqual(cpu.metric, {
          __name__: "hypeman_vm_cpu_seconds_total",
          instance_id: VM_ID,
          instance_name: VM_NAME,
          job: JOB,
          instance: target
        })
        const stored = Number(cpu.value[1])
        const expected = statCpuSeconds(vm.pid)
        assert.isAbove(expected, 0, "the child burned CPU before sleeping")
        assert.isAtLeast(stored, 0)
        assert.closeTo(stored, expected, TICK_SECONDS + 1e-9, `stored ${stored}, /proc/${vm.pid}/stat ${expected}`)
      })
    )

    it.effect("stores the allocation, RSS, the service gauges and target_info of the pipeline", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const metrics = yield* VmMetrics.VmMetrics
        const vcpus = only(yield* queryUntilPresent(`hypeman_vm_allocated_vcpus{instance_id="${VM_ID}"}`), "vcpus")
        assert.strictEqual(vcpus.value[1], "2")
        assert.strictEqual(vcpus.metric.instance_name, VM_NAME)
        const memory = only(yield* queryUntilPresent("hypeman_vm_allocated_memory_bytes"), "memory")
        assert.strictEqual(memory.value[1], "1073741824")
        const rss = only(yield* queryUntilPresent("hypeman_vm_memory_rss_bytes"), "rss")
        assert.strictEqual(Number(rss.value[1]), statmRssBytes(vm.pid))
        const observed = only(yield* queryUntilPresent("hypeman_vm_metrics_instances_observed"), "observed")
        assert.strictEqual(observed.value[1], "1")
        const running = only(yield* queryUntilPresent(`hypeman_vm_metrics_instances{state="running"}`), "running")
        assert.strictEqual(running.value[1], "1")
        const info = only(yield* queryUntilPresent("target_info"), "target_info")
        assert.strictEqual(info.metric.service_name, "vm-metrics")
        assert.strictEqual(info.metric.service_version, metrics.resource["service.version"])
        assert.strictEqual(info.metric.host_name, metrics.resource["host.name"])
        assert.strictEqual(info.value[1], "1")
        const up = only(yield* queryUntilPresent(`up{job="${JOB}"}`), "up")
        assert.strictEqual(up.value[1], "1")
      })
    )

    it.effect.skipIf(tapMissing)("stores the TAP's byte counters in the VM's perspective (rx = tx_bytes)", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const bytes = tapBytes(vm.tap!)
        assert.isAtLeast(bytes.vmTx, vm.framed.sentByGuest, "the frames the guest sent")
        assert.isAtLeast(bytes.vmRx, vm.framed.receivedByGuest, "the frames the guest received")
        const rx = only(yield* queryUntilPresent("hypeman_vm_network_rx_bytes_total"), "rx")
        const tx = only(yield* queryUntilPresent("hypeman_vm_network_tx_bytes_total"), "tx")
        assert.strictEqual(rx.metric.instance_id, VM_ID)
        assert.strictEqual(tx.metric.instance_id, VM_ID)
        assert.strictEqual(Number(rx.value[1]), bytes.vmRx)
        assert.strictEqual(Number(tx.value[1]), bytes.vmTx)
      })
    )
  })
})
