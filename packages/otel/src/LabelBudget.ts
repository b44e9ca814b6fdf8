/**
 * The label-budget guardrail, two limits:
 *
 * - instances (`labelBudget`), as in the Go original: more instances than the budget is "over budget".
 *   Entering that state counts one transition and logs one WARN; leaving it logs one INFO; nothing is
 *   logged while it holds. It drops nothing.
 * - series (`seriesBudget`): the per-VM series a snapshot would export are counted (Catalog.countSeries:
 *   the values read). Over the budget, metric groups are left out of the export in `DROP_ORDER` (the
 *   opt-in ones first: `vcpu`, `interfaces`, `packets`), only as many as needed; the seed's metrics are
 *   never dropped. A group dropped or restored logs once (WARN / INFO); each drop is counted per group.
 *   A dropped group is still collected: only its series are left out, so it comes back as soon as the
 *   series fit again.
 *
 * @since 0.1.0
 */
import type { MetricGroup } from "@vm-metrics/core/MetricGroup"
import type { VmStats } from "@vm-metrics/core/VmStats"
import { Effect } from "effect"
import type { SeriesCount } from "./Catalog.js"

/** The order groups are dropped in when over the series budget: opt-in first, the default ones last. @category constants */
export const DROP_ORDER: ReadonlyArray<MetricGroup> = [
  "vcpu",
  "interfaces",
  "packets",
  "network",
  "disk",
  "memory",
  "cpu"
]

/** How often a group was dropped (entered the dropped state) since start. @category models */
export interface GroupDrops {
  readonly group: MetricGroup
  readonly count: number
}

/** What a snapshot fits: the groups kept and the series they and the seed make. @category models */
export interface Fit {
  readonly kept: ReadonlySet<MetricGroup>
  readonly series: number
}

/**
 * The groups of `enabled` whose series fit `budget` with the seed's: groups are left out in DROP_ORDER
 * until the rest fits (or only the seed is left, which always stays). Pure. @category utils
 */
export const fit = (count: SeriesCount, enabled: ReadonlySet<MetricGroup>, budget: number): Fit => {
  let series = count.seed
  for (const group of enabled) series += count.groups.get(group) ?? 0
  const kept = new Set(enabled)
  for (const group of DROP_ORDER) {
    if (series <= budget) break
    if (!kept.delete(group)) continue
    series -= count.groups.get(group) ?? 0
  }
  return { kept, series }
}

/** @category models */
export interface LabelBudget {
  /** Feeds the number of instances of a new snapshot; logs on transitions. */
  readonly observe: (instances: number) => Effect.Effect<void>
  /** Feeds a new snapshot's VMs: the instance check, then the series check; logs on transitions. */
  readonly observeStats: (stats: ReadonlyArray<VmStats>) => Effect.Effect<void>
  /** Transitions into the over-budget state since start. */
  readonly transitions: () => number
  readonly budget: () => number
  /** Changes the budget; values ≤ 0 (or not integers) are ignored, as in the original. */
  readonly setBudget: (budget: number) => void
  /** The enabled groups that fit the last snapshot observed (all enabled ones before any). */
  readonly groups: () => ReadonlySet<MetricGroup>
  /** Drops per group since start, in the order groups were first dropped. */
  readonly groupDrops: () => ReadonlyArray<GroupDrops>
}

/** @category models */
export interface GroupOptions {
  /** The groups exported when within budget. Default none (the seed only). */
  readonly enabled?: ReadonlySet<MetricGroup>
  /** Most series exported before groups are dropped. Default unlimited. */
  readonly seriesBudget?: number
  /** The series of a snapshot's VMs by group (Catalog.countSeries). Default none counted. */
  readonly count?: (stats: ReadonlyArray<VmStats>) => SeriesCount
}

/** @category constructors */
export const make = (initialBudget: number, options: GroupOptions = {}): LabelBudget => {
  const enabled = options.enabled ?? new Set<MetricGroup>()
  const seriesBudget = options.seriesBudget ?? Number.POSITIVE_INFINITY
  const count = options.count ?? (() => ({ seed: 0, groups: new Map() }))
  let budget = initialBudget > 0 ? initialBudget : 1
  let exceeded = false
  let transitions = 0
  let kept: ReadonlySet<MetricGroup> = enabled
  const drops = new Map<MetricGroup, number>()

  const observe = (instances: number) =>
    Effect.suspend(() => {
      const over = instances > budget
      if (over === exceeded) return Effect.void
      exceeded = over
      const log = Effect.annotateLogs({ observed_instances: instances, budget })
      if (over) {
        transitions++
        return Effect.logWarning("vm metrics label budget exceeded").pipe(log)
      }
      return Effect.logInfo("vm metrics label budget recovered").pipe(log)
    })

  const observeGroups = (stats: ReadonlyArray<VmStats>) =>
    Effect.suspend(() => {
      // Nothing to drop: skip the count (the seed alone is never dropped).
      if (enabled.size === 0 || seriesBudget === Number.POSITIVE_INFINITY) return Effect.void
      const next = fit(count(stats), enabled, seriesBudget)
      const dropped = [...kept].filter((g) => !next.kept.has(g))
      const restored = [...next.kept].filter((g) => !kept.has(g))
      kept = next.kept
      for (const group of dropped) drops.set(group, (drops.get(group) ?? 0) + 1)
      const log = Effect.annotateLogs({ series_budget: seriesBudget, series: next.series })
      return Effect.all([
        ...dropped.map((group) => Effect.logWarning(`metric group ${group} dropped: over the series budget`).pipe(log)),
        ...restored.map((group) => Effect.logInfo(`metric group ${group} restored: within the series budget`).pipe(log))
      ]).pipe(Effect.asVoid)
    })

  return {
    observe,
    observeStats: (stats) => Effect.zipRight(observe(stats.length), observeGroups(stats)),
    transitions: () => transitions,
    budget: () => budget,
    setBudget: (next) => {
      if (Number.isSafeInteger(next) && next > 0) budget = next
    },
    groups: () => kept,
    groupDrops: () => Array.from(drops, ([group, count]) => ({ group, count }))
  }
}
