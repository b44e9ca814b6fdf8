/**
 * What the exported metrics look like and how the guardrail behaves, with defaults and validation:
 * the name prefix (default `hypeman_vm`, so other control planes can brand it), whether the derived
 * utilisation ratio is exported, the VM label budget, the series budget and the metric groups exported
 * (MetricGroup). `make` takes them as given; only `config` reads the environment (`VM_METRICS_METRIC_PREFIX`,
 * `VM_METRICS_UTILIZATION_RATIO`, `VM_METRICS_LABEL_BUDGET`, `VM_METRICS_SERIES_BUDGET`, `VM_METRICS_COLLECT`,
 * `VM_METRICS_NO_COLLECT`), for `VmMetrics.layerConfig`. The CLI reads them through its own table.
 *
 * @since 0.1.0
 */
import * as MetricGroup from "@vm-metrics/core/MetricGroup"
import { Config, ConfigError, Data, Effect, Either } from "effect"

/** @category models */
export interface MetricOptions {
  /** Prefix of every metric name. Default `hypeman_vm`. */
  readonly prefix: string
  /** Export `<prefix>_memory_utilization_ratio` (RSS / allocated). Default true. */
  readonly utilizationRatio: boolean
  /** More instances than this is "over budget" (warn once, count the transition). Default 200. */
  readonly labelBudget: number
  /**
   * More per-VM series than this drops metric groups from the export, opt-in ones first, never the
   * seed's (see LabelBudget). Default 40,000: 2,000 VMs at the seed and default groups (20 series each), or 1,000 with 4 vCPUs and a NIC
   * in the opt-in groups too (36 each) — the scale this exporter is built for.
   */
  readonly seriesBudget: number
  /** The metric groups exported (their values come from a collector reading the same groups). Default the default groups. */
  readonly groups: ReadonlySet<MetricGroup.MetricGroup>
}

/** @category constants */
export const defaults: MetricOptions = {
  prefix: "hypeman_vm",
  utilizationRatio: true,
  labelBudget: 200,
  seriesBudget: 40_000,
  groups: MetricGroup.defaultGroups
}

/** @category errors */
export class InvalidMetricOption extends Data.TaggedError("InvalidMetricOption")<{
  readonly option: string
  readonly reason: string
}> {
  override get message() {
    return `invalid ${this.option}: ${this.reason}`
  }
}

const PREFIX = /^[a-zA-Z_][a-zA-Z0-9_]{0,99}$/

/** Fills defaults and rejects a prefix that is not a Prometheus name or a budget ≤ 0. @category constructors */
export const make = (options: Partial<MetricOptions> = {}): Effect.Effect<MetricOptions, InvalidMetricOption> => {
  const resolved = { ...defaults, ...options }
  if (!PREFIX.test(resolved.prefix)) {
    return Effect.fail(
      new InvalidMetricOption({ option: "prefix", reason: `not a Prometheus name: ${resolved.prefix}` })
    )
  }
  if (!Number.isSafeInteger(resolved.labelBudget) || resolved.labelBudget <= 0) {
    return Effect.fail(new InvalidMetricOption({ option: "labelBudget", reason: `must be a positive integer` }))
  }
  if (!Number.isSafeInteger(resolved.seriesBudget) || resolved.seriesBudget <= 0) {
    return Effect.fail(new InvalidMetricOption({ option: "seriesBudget", reason: `must be a positive integer` }))
  }
  return Effect.succeed(resolved)
}

/** A comma-separated list of groups; an unknown name is an invalid config naming the groups. */
const groupList = (name: string) =>
  Config.string(name).pipe(
    Config.withDefault(""),
    Config.mapOrFail((text) =>
      Either.mapLeft(MetricGroup.parseList(text), (error) => ConfigError.InvalidData([name], error.message))
    )
  )

/** @category config */
export const config: Config.Config<Partial<MetricOptions>> = Config.all({
  prefix: Config.string("VM_METRICS_METRIC_PREFIX").pipe(Config.withDefault(defaults.prefix)),
  utilizationRatio: Config.boolean("VM_METRICS_UTILIZATION_RATIO").pipe(Config.withDefault(defaults.utilizationRatio)),
  labelBudget: Config.integer("VM_METRICS_LABEL_BUDGET").pipe(Config.withDefault(defaults.labelBudget)),
  seriesBudget: Config.integer("VM_METRICS_SERIES_BUDGET").pipe(Config.withDefault(defaults.seriesBudget)),
  groups: Config.map(
    Config.all([groupList("VM_METRICS_COLLECT"), groupList("VM_METRICS_NO_COLLECT")]),
    ([add, remove]) => MetricGroup.select(defaults.groups, add, remove)
  )
})
