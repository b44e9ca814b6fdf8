import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import * as MetricOptions from "../src/MetricOptions.js"
import * as ResourceAttributes from "../src/ResourceAttributes.js"

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
          VM_METRICS_LABEL_BUDGET: "50"
        })
      )
      assert.deepStrictEqual(set, { prefix: "acme_vm", utilizationRatio: false, labelBudget: 50 })
      const bad = yield* Effect.flip(MetricOptions.config.pipe(withEnv({ VM_METRICS_LABEL_BUDGET: "many" })))
      assert.strictEqual(bad._tag, "ConfigError")
      assert.include(String(bad), "VM_METRICS_LABEL_BUDGET")
      const zero = yield* Effect.flip(MetricOptions.make({ labelBudget: 0 }))
      assert.strictEqual(zero.option, "labelBudget")
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
})
