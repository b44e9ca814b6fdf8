/**
 * The label-budget guardrail. Two limits from one setting, the budget `B`:
 *
 * - instances, as in the Go original: more than `B` instances is "over budget". Entering that state
 *   counts one transition and logs one WARN; leaving it logs one INFO; nothing is logged while it holds.
 * - series: the per-VM series of a snapshot are counted (the seed's families, plus each enabled group's:
 *   fixed per VM, or per vCPU thread / NIC). Over `B` VMs' worth of the seed and default groups' series,
 *   groups are dropped from the export, in `DROP_ORDER` (the opt-in ones first: `vcpu`, `interfaces`,
 *   `packets`), only as many as needed; the seed's metrics are never dropped. A group dropped or restored
 *   logs once (WARN / INFO); each drop is counted per group. A dropped group is still collected: only its
 *   series are left out, so it comes back as soon as the series fit again.
 *
 * @since 0.1.0
 */
import { defaultGroups, type MetricGroup } from "@vm-metrics/core/MetricGroup"
import type { VmStats } from "@vm-metrics/core/VmStats"
import { Effect } from "effect"
import { groupSeries } from "./Catalog.js"

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

type SeriesCounted = Pick<VmStats, "vcpus" | "interfaces">

/** Series of the default groups for one VM (fixed: none of them is per vCPU or NIC). */
const defaultSeriesPerVm = [...defaultGroups].reduce((n, g) => n + groupSeries(g, { vcpus: [], interfaces: [] }), 0)

/** The series budget of `budget` VMs with `seedPerVm` seed series each, at the default groups. @category getters */
export const seriesBudget = (budget: number, seedPerVm: number): number => budget * (seedPerVm + defaultSeriesPerVm)

/**
 * The groups of `enabled` that fit `budget` series for these VMs: groups are left out in DROP_ORDER
 * until the rest fits (or only the seed is left, which always stays). Pure. @category utils
 */
export const fit = (
  stats: ReadonlyArray<SeriesCounted>,
  enabled: ReadonlySet<MetricGroup>,
  seedPerVm: number,
  budget: number
): Fit => {
  const perGroup = new Map<MetricGroup, number>()
  let series = seedPerVm * stats.length
  for (const group of enabled) {
    let n = 0
    for (const vm of stats) n += groupSeries(group, vm)
    perGroup.set(group, n)
    series += n
  }
  const kept = new Set(enabled)
  for (const group of DROP_ORDER) {
    if (series <= budget) break
    if (!kept.delete(group)) continue
    series -= perGroup.get(group) ?? 0
  }
  return { kept, series }
}

/** @category models */
export interface LabelBudget {
  /** Feeds the number of instances of a new snapshot; logs on transitions. */
  readonly observe: (instances: number) => Effect.Effect<void>
  /** Feeds a new snapshot's VMs: the instance check, then the series check; logs on transitions. */
  readonly observeStats: (stats: ReadonlyArray<SeriesCounted>) => Effect.Effect<void>
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
  /** Seed series per VM (the seed's families). Default 0. */
  readonly seedPerVm?: number
}

/** @category constructors */
export const make = (initialBudget: number, options: GroupOptions = {}): LabelBudget => {
  const enabled = options.enabled ?? new Set<MetricGroup>()
  const seedPerVm = options.seedPerVm ?? 0
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

  const observeGroups = (stats: ReadonlyArray<SeriesCounted>) =>
    Effect.suspend(() => {
      const limit = seriesBudget(budget, seedPerVm)
      const next = fit(stats, enabled, seedPerVm, limit)
      const dropped = [...kept].filter((g) => !next.kept.has(g))
      const restored = [...next.kept].filter((g) => !kept.has(g))
      kept = next.kept
      for (const group of dropped) drops.set(group, (drops.get(group) ?? 0) + 1)
      const log = Effect.annotateLogs({ series_budget: limit, series: next.series })
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
