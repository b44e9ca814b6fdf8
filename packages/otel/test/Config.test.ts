import { assert, describe, it } from "@effect/vitest"
import * as MetricGroup from "@vm-metrics/core/MetricGroup"
import { ConfigProvider, Effect, Exit, Layer } from "effect"
import * as MetricOptions from "../src/MetricOptions.js"
import * as OtlpPush from "../src/OtlpPush.js"
import * as ResourceAttributes from "../src/ResourceAttributes.js"
import * as VmMetrics from "../src/VmMetrics.js"
import { layerFor, makeWorld } from "./fixtures.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("configuration from the environment", () => {
  it.effect("metric options: defaults, then VM_METRICS_* overrides; bad values are errors", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* MetricOptions.config.pipe(withEnv({})), MetricOptions.defaults)
      const set = yield* MetricOptions.config.pipe(
        withEnv({
          VM_METRICS_METRIC_PREFIX: "acme_vm",
          VM_METRICS_UTILIZATION_RATIO: "false",
          VM_METRICS_LABEL_BUDGET: "50",
          VM_METRICS_SERIES_BUDGET: "900"
        })
      )
      assert.deepStrictEqual(set, {
        prefix: "acme_vm",
        utilizationRatio: false,
        labelBudget: 50,
        seriesBudget: 900,
        groups: MetricGroup.defaultGroups
      })
      const groups = yield* MetricOptions.config.pipe(
        withEnv({ VM_METRICS_COLLECT: "vcpu, packets", VM_METRICS_NO_COLLECT: "disk" })
      )
      assert.deepStrictEqual(groups.groups, new Set(["cpu", "memory", "network", "vcpu", "packets"]))
      const unknown = yield* Effect.flip(MetricOptions.config.pipe(withEnv({ VM_METRICS_COLLECT: "vcpus" })))
      assert.include(String(unknown), "VM_METRICS_COLLECT")
      assert.include(String(unknown), "cpu, memory, disk, network, packets, vcpu, interfaces")
      const bad = yield* Effect.flip(MetricOptions.config.pipe(withEnv({ VM_METRICS_LABEL_BUDGET: "many" })))
      assert.strictEqual(bad._tag, "ConfigError")
      assert.include(String(bad), "VM_METRICS_LABEL_BUDGET")
      const zero = yield* Effect.flip(MetricOptions.make({ labelBudget: 0 }))
      assert.strictEqual(zero.option, "labelBudget")
      const noSeries = yield* Effect.flip(MetricOptions.make({ seriesBudget: 0 }))
      assert.strictEqual(noSeries.option, "seriesBudget")
    })
  )

  it.effect("resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, explicit options win", () =>
    Effect.gen(function* () {
      const fromEnv = yield* ResourceAttributes.fromConfig({ hostName: "h1" }).pipe(
        withEnv({ OTEL_SERVICE_NAME: "vmm-host", OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod,team=a%2Cb" })
      )
      assert.deepStrictEqual(fromEnv, {
        "service.name": "vmm-host",
        "service.version": ResourceAttributes.VERSION,
        "service.instance.id": "h1",
        "host.name": "h1",
        "deployment.environment": "prod",
        team: "a,b"
      })
      const explicit = yield* ResourceAttributes.fromConfig({ serviceName: "mine", hostName: "h2" }).pipe(
        withEnv({ OTEL_SERVICE_NAME: "vmm-host" })
      )
      assert.strictEqual(explicit["service.name"], "mine")
      const hostFromEnv = yield* ResourceAttributes.fromConfig().pipe(
        withEnv({ OTEL_RESOURCE_ATTRIBUTES: "host.name=host-a" })
      )
      assert.strictEqual(hostFromEnv["host.name"], "host-a")
      assert.strictEqual(hostFromEnv["service.instance.id"], "host-a")
      const defaults = yield* ResourceAttributes.fromConfig({ hostName: "h3" }).pipe(withEnv({}))
      assert.strictEqual(defaults["service.name"], "vm-metrics")
    })
  )

  it.effect("make and layer take their options as given; only layerConfig reads the environment", () =>
    Effect.gen(function* () {
      const env = withEnv({ OTEL_SERVICE_NAME: "from-env", VM_METRICS_METRIC_PREFIX: "env_vm" })
      const world = makeWorld()
      const given = yield* Effect.flatMap(VmMetrics.VmMetrics, (m) =>
        Effect.map(m.prometheusText, (text) => [m.resource, text] as const)
      ).pipe(Effect.provide(layerFor(world, { resource: { hostName: "h1" } })), env)
      assert.strictEqual(given[0]["service.name"], "vm-metrics")
      assert.match(given[1], /^hypeman_vm_/m)
      assert.notMatch(given[1], /^env_vm_/m)
      const fromEnv = yield* Effect.flatMap(VmMetrics.VmMetrics, (m) =>
        Effect.map(m.prometheusText, (text) => [m.resource, text] as const)
      ).pipe(
        Effect.provide(VmMetrics.layerConfig({ resource: { hostName: "h1" } }).pipe(Layer.provide(layerFor(world)))),
        env
      )
      assert.strictEqual(fromEnv[0]["service.name"], "from-env")
      assert.strictEqual(fromEnv[0]["host.name"], "h1")
      assert.match(fromEnv[1], /^env_vm_/m)
    })
  )

  it.effect("OtlpPush.layerConfig: a bad OTEL_METRIC_EXPORT_INTERVAL is a ConfigError, not a defect", () =>
    Effect.gen(function* () {
      const world = makeWorld()
      const push = OtlpPush.layerConfig({ url: "http://127.0.0.1:9/v1/metrics" }).pipe(Layer.provide(layerFor(world)))
      const exit = yield* Effect.exit(
        Layer.build(push).pipe(Effect.scoped, withEnv({ OTEL_METRIC_EXPORT_INTERVAL: "soon" }))
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        assert.strictEqual(failure?._tag, "ConfigError", String(exit.cause))
        assert.include(String(failure), "OTEL_METRIC_EXPORT_INTERVAL")
      }
    })
  )
})
