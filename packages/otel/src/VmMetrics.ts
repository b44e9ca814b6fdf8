/**
 * The export service: the collector's snapshots as Prometheus text, as an OTel `MetricProducer`, and
 * as observable instruments on a caller's own `Meter`. Nothing here reads /proc: every path asks the
 * collector for a snapshot no older than its max age (`collectAll`), so a scrape, a push and a
 * caller's reader within that age share one collection, and a caller's reader with nothing else
 * running still sees fresh values (as the Go original's `InitializeOTel` callback collected on every read).
 * The OTel callbacks run outside Effect: they run the collection on the runtime captured when the
 * layer was built and return a Promise, which the OTel JS SDK awaits.
 *
 * The label-budget guardrail sees each snapshot once, whichever path reads it first, and decides
 * which of the enabled metric groups every path exports (see LabelBudget). Values OTel cannot carry
 * exactly are left out of the OTel paths and counted (see OtelValue).
 *
 * The name says what it serves (the per-VM metric families), but it is also the product's name and
 * close to the HTTP contract `VmMetricsApi`; a clearer one (e.g. `MetricsExport`) is left for a
 * rename of its own, as it touches the composition root and most e2e tests.
 *
 * @since 0.1.0
 */
import { type BatchObservableResult, type Meter, type Observable, ValueType } from "@opentelemetry/api"
import type { Resource } from "@opentelemetry/resources"
import type { MetricProducer } from "@opentelemetry/sdk-metrics"
import { Collector, type Snapshot } from "@vm-metrics/core/Collector"
import type { SelfProcess } from "@vm-metrics/core/SelfProcess"
import { Clock, Context, Effect, Layer, Runtime, type Scope } from "effect"
import {
  type AgentSample,
  type BuildInfo,
  countSeries,
  type ExportCounts,
  type Family,
  labeledAttributes,
  labeledFamilies,
  serviceFamilies,
  vmAttributes,
  vmFamilies
} from "./Catalog.js"
import * as LabelBudget from "./LabelBudget.js"
import * as MetricOptions from "./MetricOptions.js"
import { toScopeMetrics } from "./OtelData.js"
import * as OtelValue from "./OtelValue.js"
import { makeByteRenderer } from "./PrometheusText.js"
import * as ResourceAttributes from "./ResourceAttributes.js"

/** @category tags */
export class VmMetrics extends Context.Tag("@vm-metrics/otel/VmMetrics")<
  VmMetrics,
  {
    readonly resource: ResourceAttributes.ResourceAttributes
    /** Prometheus text of a snapshot no older than the collector's max age. */
    readonly prometheusText: Effect.Effect<string>
    /**
     * Prometheus text of the given snapshot, without I/O. Rendered once per snapshot (and export
     * counts): asked again, it returns the same string.
     */
    readonly render: (snapshot: Snapshot) => Effect.Effect<string>
    /**
     * The same text as UTF-8 bytes (what a server sends), made without a string: once per snapshot (and
     * export counts), the same array when asked again. Do not write to it.
     */
    readonly renderBytes: (snapshot: Snapshot) => Effect.Effect<Uint8Array>
    /** A snapshot no older than the max age, per collect: give it to a reader as `metricProducers: [producer]`. */
    readonly producer: MetricProducer
    /**
     * Observable instruments on a caller's Meter; each read of the caller's reader gets a snapshot no
     * older than the max age. Removed with the scope.
     * Note: the OTel JS SDK's cumulative readers keep re-exporting an attribute set they have seen, so
     * a VM that is gone lingers there; readers given `producer` drop it on the next collection.
     */
    readonly registerOn: (meter: Meter) => Effect.Effect<void, never, Scope.Scope>
  }
>() {}

/**
 * The agent's own series (Catalog agentFamilies): its build, and a sampler of its process that runs once
 * per snapshot (the series are as fresh as the per-VM ones, and an unchanged snapshot renders to the
 * same text). Only the agent gives it: a control plane's process metrics are its own. @category models
 */
export interface AgentOptions {
  readonly build: BuildInfo
  readonly process: Effect.Effect<SelfProcess>
}

/** A snapshot's render: its bytes, and their text once asked for (decoded on first demand). */
interface Rendered {
  readonly countsKey: string
  readonly bytes: Uint8Array
  text: string | undefined
}

/** @category models */
export interface Options {
  readonly metrics?: Partial<MetricOptions.MetricOptions>
  readonly resource?: ResourceAttributes.ResourceOptions
  readonly agent?: AgentOptions
}

/** The service; its OTel paths stop answering when the scope closes. @category constructors */
export const make = (options: Options = {}) =>
  Effect.gen(function* () {
    const collector = yield* Collector
    const metricOptions = yield* MetricOptions.make(options.metrics)
    const resource = ResourceAttributes.make(options.resource)
    const budget = LabelBudget.make(metricOptions.labelBudget, {
      enabled: metricOptions.groups,
      seriesBudget: metricOptions.seriesBudget,
      count: (stats) => countSeries(metricOptions, stats)
    })
    const runtime = yield* Effect.runtime<never>()
    const serviceStartMs = yield* Clock.currentTimeMillis
    const renderer = makeByteRenderer(metricOptions, resource)
    const drops = OtelValue.makeDropCounter()
    const counts = (agent?: AgentSample): ExportCounts => ({
      budgetTransitions: budget.transitions(),
      dropped: drops.totals(),
      groupDrops: budget.groupDrops(),
      ...(agent === undefined ? {} : { agent })
    })
    // The agent's sample of a snapshot asked for: every path reading that snapshot shares it. Weakly
    // keyed, as the texts below: a snapshot is not kept alive for a scrape that may never come.
    const agentSampled = new WeakMap<Snapshot, AgentSample>()
    const agentOf = (snapshot: Snapshot): Effect.Effect<AgentSample | undefined> => {
      const agent = options.agent
      if (agent === undefined) return Effect.succeed(undefined)
      return Effect.suspend(() => {
        const sampled = agentSampled.get(snapshot)
        return sampled !== undefined
          ? Effect.succeed(sampled)
          : Effect.map(agent.process, (process) => {
              const sample = { build: agent.build, process }
              agentSampled.set(snapshot, sample)
              return sample
            })
      })
    }
    let observedSequence = 0

    /** Feeds the guardrail once per snapshot. */
    const observe = (snapshot: Snapshot) =>
      Effect.suspend(() => {
        if (snapshot.sequence <= observedSequence) return Effect.void
        observedSequence = snapshot.sequence
        return budget.observeStats(snapshot.stats)
      })

    // The text depends on the snapshot and the export counts only (no clock), so the same snapshot with
    // the same counts gives back the same bytes (the same array, which http's body cache keys on) and the
    // same string.
    const rendered = new WeakMap<Snapshot, Rendered>()
    const countsKey = (current: ExportCounts) =>
      `${current.budgetTransitions}|${current.dropped.map((d) => `${d.metric}\u0000${d.reason}\u0000${d.count}`).join("|")}|${[...budget.groups()].join(",")}|${(current.groupDrops ?? []).map((d) => `${d.group}:${d.count}`).join(",")}`

    const renderedOf = (snapshot: Snapshot) =>
      Effect.zipRight(
        observe(snapshot),
        Effect.flatMap(agentOf(snapshot), (agent) =>
          Effect.sync(() => {
            const current = counts(agent)
            const key = countsKey(current)
            const last = rendered.get(snapshot)
            if (last !== undefined && last.countsKey === key) return last
            const entry: Rendered = {
              countsKey: key,
              bytes: renderer(snapshot, current, budget.groups()),
              text: undefined
            }
            rendered.set(snapshot, entry)
            return entry
          })
        )
      )
    const decoder = new TextDecoder()
    const renderBytes = (snapshot: Snapshot) => Effect.map(renderedOf(snapshot), (entry) => entry.bytes)
    const render = (snapshot: Snapshot) =>
      Effect.map(renderedOf(snapshot), (entry) => {
        entry.text ??= decoder.decode(entry.bytes)
        return entry.text
      })

    // A reader can outlive this service (e.g. shut down after it). Once released, the OTel paths give
    // nothing rather than ask a collector whose scope is closed (that would never answer).
    let released = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        released = true
      })
    )

    /**
     * For OTel callbacks, outside Effect: a snapshot no older than the max age, observed by the
     * guardrail, or undefined once released. Concurrent reads join one collection (the collector
     * shares it).
     */
    const freshObserved = async (): Promise<{ snapshot: Snapshot; agent: AgentSample | undefined } | undefined> =>
      released
        ? undefined
        : Runtime.runPromise(runtime)(
            Effect.flatMap(Effect.tap(collector.collectAll, observe), (snapshot) =>
              Effect.map(agentOf(snapshot), (agent) => ({ snapshot, agent }))
            )
          )

    // Built on the first collect: @opentelemetry/resources (and the semantic conventions it loads) is needed
    // only by a reader, so a CLI command that never exports does not load it.
    let otelResourceOnce: Promise<Resource> | undefined
    const otelResourceGet = () =>
      (otelResourceOnce ??= import("@opentelemetry/resources").then((m) => {
        // A CommonJS package: in the code-split bundle its exports come only as `default`.
        const resources: typeof m = "default" in m ? (m.default as typeof m) : m
        return resources.resourceFromAttributes(resource)
      }))
    const producer: MetricProducer = {
      collect: async () => {
        const otelResource = await otelResourceGet()
        try {
          const fresh = await freshObserved()
          const scopeMetrics =
            fresh === undefined
              ? []
              : [
                  toScopeMetrics(
                    metricOptions,
                    fresh.snapshot,
                    budget.transitions(),
                    drops,
                    serviceStartMs,
                    budget.groups(),
                    budget.groupDrops(),
                    fresh.agent
                  )
                ]
          return { resourceMetrics: { resource: otelResource, scopeMetrics }, errors: [] }
        } catch (error) {
          return { resourceMetrics: { resource: otelResource, scopeMetrics: [] }, errors: [error] }
        }
      }
    }

    const registerOn = (meter: Meter) =>
      Effect.gen(function* () {
        const perVm = vmFamilies(metricOptions)
        const labeled = labeledFamilies(metricOptions)
        const service = serviceFamilies(metricOptions, options.agent !== undefined)
        const instrument = (family: Family): Observable => {
          const spec = {
            description: family.help,
            unit: family.unit,
            valueType: family.integer ? ValueType.INT : ValueType.DOUBLE
          }
          return family.kind === "counter"
            ? meter.createObservableCounter(family.name, spec)
            : meter.createObservableGauge(family.name, spec)
        }
        const vmInstruments = perVm.map((family) => [family, instrument(family)] as const)
        const labeledInstruments = labeled.map((family) => [family, instrument(family)] as const)
        const serviceInstruments = service.map((family) => [family, instrument(family)] as const)
        const callback = async (result: BatchObservableResult) => {
          const fresh = await freshObserved()
          if (fresh === undefined) return
          const { snapshot } = fresh
          const kept = budget.groups()
          for (const [family, target] of vmInstruments) {
            if (family.group !== null && !kept.has(family.group)) continue
            for (const vm of snapshot.stats) {
              const read = family.value(vm)
              if (read === null) continue
              const value = OtelValue.toOtelNumber(family.integer, read)
              if (value === null) drops.count(family.name, "out_of_range")
              else result.observe(target, value, vmAttributes(vm))
            }
          }
          for (const [family, target] of labeledInstruments) {
            if (!kept.has(family.group)) continue
            for (const vm of snapshot.stats) {
              for (const sample of family.samples(vm)) {
                if (sample.value === null) continue
                const value = OtelValue.toOtelNumber(family.integer, sample.value)
                if (value === null) {
                  drops.count(family.name, "out_of_range")
                  continue
                }
                result.observe(target, value, labeledAttributes(family, vm, sample))
              }
            }
          }
          const current = counts(fresh.agent)
          for (const [family, target] of serviceInstruments) {
            for (const sample of family.samples(snapshot, current)) {
              result.observe(target, sample.value, Object.fromEntries(sample.labels))
            }
          }
        }
        const all = [...vmInstruments, ...labeledInstruments, ...serviceInstruments].map(([, target]) => target)
        yield* Effect.acquireRelease(
          Effect.sync(() => meter.addBatchObservableCallback(callback, all)),
          () => Effect.sync(() => meter.removeBatchObservableCallback(callback, all))
        )
      })

    return VmMetrics.of({
      resource,
      prometheusText: Effect.flatMap(collector.collectAll, render),
      render,
      renderBytes,
      producer,
      registerOn
    })
  })

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<VmMetrics, MetricOptions.InvalidMetricOption, Collector> =>
  Layer.scoped(VmMetrics, make(options))

/** Registers the instruments on a caller's Meter for the lifetime of the layer. @category layers */
export const layerRegisterOn = (meter: Meter): Layer.Layer<never, never, VmMetrics> =>
  Layer.scopedDiscard(Effect.flatMap(VmMetrics, (metrics) => metrics.registerOn(meter)))

/**
 * Options from the environment (see MetricOptions.config and ResourceAttributes.config) under the given
 * ones; `make` and `layer` never read it. @category layers
 */
export const layerConfig = (options: Options = {}) =>
  Layer.unwrapEffect(
    Effect.map(Effect.all([MetricOptions.config, ResourceAttributes.config]), ([metrics, resource]) =>
      layer({
        ...options,
        metrics: { ...metrics, ...options.metrics },
        resource: {
          ...resource,
          ...options.resource,
          attributes: { ...resource.attributes, ...options.resource?.attributes }
        }
      })
    )
  )
