/**
 * A collector snapshot as OTel `ScopeMetrics`, for the SDK's readers (OTLP push, or any reader given
 * `metricProducers: [producer]`). Built from the Catalog like the Prometheus text.
 *
 * Unlike observable instruments, a producer sets each point's start time: a per-VM counter starts at
 * the start of its current series (`seriesStartTimeMs`: the hypervisor process's start time, moved on
 * when a kernel counter went down under the same process), so a VMM restart or a recreated TAP is an
 * explicit reset to any OTLP consumer. Service counters start when this service started.
 *
 * A value OTel cannot carry exactly (see OtelValue) is left out and counted in `drops`.
 *
 * @since 0.1.0
 */
import type { HrTime } from "@opentelemetry/api"
import { ValueType } from "@opentelemetry/api"
import type {
  AggregationTemporality,
  DataPointType,
  MetricData,
  MetricDescriptor,
  ScopeMetrics
} from "@opentelemetry/sdk-metrics"
import type { Snapshot } from "@vm-metrics/core/Collector"
import type { MetricGroup } from "@vm-metrics/core/MetricGroup"
import {
  type AgentSample,
  type Family,
  labeledAttributes,
  labeledFamilies,
  serviceFamilies,
  vmAttributes,
  vmFamilies
} from "./Catalog.js"
import type { GroupDrops } from "./LabelBudget.js"
import type { MetricOptions } from "./MetricOptions.js"
import { type DropCounter, toOtelNumber } from "./OtelValue.js"
import { VERSION } from "./ResourceAttributes.js"

// The SDK's enum values, inlined: a value import of @opentelemetry/sdk-metrics would load the whole SDK with
// every command of the CLI (OtelData.test.ts checks them against the SDK's own).
/** @internal */
export const CUMULATIVE = 1 as AggregationTemporality.CUMULATIVE
/** @internal */
export const SUM = 3 as DataPointType.SUM
/** @internal */
export const GAUGE = 2 as DataPointType.GAUGE

/** The instrumentation scope of everything vm-metrics exports. @category constants */
export const SCOPE = { name: "@vm-metrics/otel", version: VERSION }

/** @category utils */
export const hrTime = (ms: number): HrTime => {
  const seconds = Math.floor(ms / 1000)
  return [seconds, Math.round((ms - seconds * 1000) * 1e6)]
}

const descriptor = (family: Family): MetricDescriptor => ({
  name: family.name,
  description: family.help,
  unit: family.unit,
  valueType: family.integer ? ValueType.INT : ValueType.DOUBLE
})

interface Point {
  readonly attributes: Record<string, string>
  readonly startTime: HrTime
  readonly endTime: HrTime
  readonly value: number
}

const metricData = (family: Family, dataPoints: Array<Point>): MetricData =>
  family.kind === "counter"
    ? {
        descriptor: descriptor(family),
        aggregationTemporality: CUMULATIVE,
        dataPointType: SUM,
        isMonotonic: true,
        dataPoints
      }
    : {
        descriptor: descriptor(family),
        aggregationTemporality: CUMULATIVE,
        dataPointType: GAUGE,
        dataPoints
      }

/**
 * `groups`: the metric groups exported (the label budget's kept ones), default the options' groups;
 * `groupDrops`: the guardrail's drops per group; `agent`: the agent's own series (Catalog agentFamilies),
 * which are left out without it. @category constructors
 */
export const toScopeMetrics = (
  options: MetricOptions,
  snapshot: Snapshot,
  budgetTransitions: number,
  drops: DropCounter,
  serviceStartMs: number,
  groups: ReadonlySet<MetricGroup> = options.groups,
  groupDrops: ReadonlyArray<GroupDrops> = [],
  agent?: AgentSample
): ScopeMetrics => {
  const end = hrTime(snapshot.sampledAtMs)
  const serviceStart = hrTime(serviceStartMs)
  const metrics: Array<MetricData> = []
  for (const family of vmFamilies(options, groups)) {
    const points: Array<Point> = []
    for (const vm of snapshot.stats) {
      const read = family.value(vm)
      if (read === null) continue
      const value = toOtelNumber(family.integer, read)
      if (value === null) {
        drops.count(family.name, "out_of_range")
        continue
      }
      const start =
        family.kind === "gauge" ? end : vm.seriesStartTimeMs === null ? serviceStart : hrTime(vm.seriesStartTimeMs)
      points.push({
        attributes: vmAttributes(vm),
        startTime: start,
        endTime: end,
        value
      })
    }
    metrics.push(metricData(family, points))
  }
  for (const family of labeledFamilies(options, groups)) {
    const points: Array<Point> = []
    for (const vm of snapshot.stats) {
      for (const sample of family.samples(vm)) {
        if (sample.value === null) continue
        const value = toOtelNumber(family.integer, sample.value)
        if (value === null) {
          drops.count(family.name, "out_of_range")
          continue
        }
        const attributes = labeledAttributes(family, vm, sample)
        const start = sample.seriesStartTimeMs === null ? serviceStart : hrTime(sample.seriesStartTimeMs)
        points.push({ attributes, startTime: start, endTime: end, value })
      }
    }
    metrics.push(metricData(family, points))
  }
  // After the per-VM points, so that this export's drops are in the count it carries.
  const counts = { budgetTransitions, dropped: drops.totals(), groupDrops, ...(agent === undefined ? {} : { agent }) }
  for (const family of serviceFamilies(options, agent !== undefined)) {
    const start = family.kind === "gauge" ? end : serviceStart
    metrics.push(
      metricData(
        family,
        family.samples(snapshot, counts).map((s) => ({
          attributes: Object.fromEntries(s.labels),
          startTime: start,
          endTime: end,
          value: s.value
        }))
      )
    )
  }
  return { scope: SCOPE, metrics }
}
