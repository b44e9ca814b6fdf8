/**
 * Metric groups: which of the optional values the collector reads and the exporters show, selectable
 * like node_exporter's collectors. The seed's values (CPU, RSS/VMS, network bytes) are always read;
 * each group adds a few series per VM. The default set adds 12 series per VM; the per-vCPU (`vcpu`)
 * and per-NIC (`interfaces`) groups are opt-in because their series grow with the VM's size.
 *
 * A group the collector does not read costs nothing: its files are not opened (see `needs`), and its
 * VmStats fields are null (arrays empty), never 0.
 *
 * @since 0.1.0
 */
import { Either, Schema } from "effect"

/** @category schemas */
export const MetricGroup = Schema.Literal("cpu", "memory", "disk", "network", "packets", "vcpu", "interfaces")
/** @category models */
export type MetricGroup = typeof MetricGroup.Type

/** Every group, in documentation order. @category constants */
export const allGroups: ReadonlyArray<MetricGroup> = MetricGroup.literals

/** The groups read unless configured otherwise: at most 12 series per VM, none per vCPU or NIC. @category constants */
export const defaultGroups: ReadonlySet<MetricGroup> = new Set<MetricGroup>(["cpu", "memory", "disk", "network"])

/** The groups whose series grow with the VM (per vCPU, per NIC): the first dropped when over a label budget. @category constants */
export const optInGroups: ReadonlySet<MetricGroup> = new Set<MetricGroup>(["vcpu", "interfaces"])

/** @category guards */
export const isMetricGroup = (name: string): name is MetricGroup => (allGroups as ReadonlyArray<string>).includes(name)

/** A name in a group list that is no group. @category errors */
export class UnknownMetricGroup extends Schema.TaggedError<UnknownMetricGroup>()("UnknownMetricGroup", {
  name: Schema.String
}) {
  override get message() {
    return `unknown metric group ${JSON.stringify(this.name)} (known: ${allGroups.join(", ")}, or all, default)`
  }
}

/**
 * Parses a comma-separated list of groups (`"cpu,vcpu"`), for flags and environment variables.
 * Blanks around names are ignored, as are empty items; `all` and `default` stand for those sets.
 * An empty list is the empty set (only the seed's values). Any other name is an error, never ignored:
 * a typo must not silently turn a group off. @category parsers
 */
export const parseList = (text: string): Either.Either<ReadonlySet<MetricGroup>, UnknownMetricGroup> => {
  const groups = new Set<MetricGroup>()
  for (const item of text.split(",")) {
    const name = item.trim()
    if (name === "") continue
    if (name === "all") for (const group of allGroups) groups.add(group)
    else if (name === "default") for (const group of defaultGroups) groups.add(group)
    else if (isMetricGroup(name)) groups.add(name)
    else return Either.left(new UnknownMetricGroup({ name }))
  }
  return Either.right(groups)
}

/**
 * The enabled set from a base set (the default, or an explicit `--collect` list), plus `add`, minus
 * `remove` (`--no-collect` wins over both). @category constructors
 */
export const select = (
  base: Iterable<MetricGroup>,
  add: Iterable<MetricGroup> = [],
  remove: Iterable<MetricGroup> = []
): ReadonlySet<MetricGroup> => {
  const groups = new Set<MetricGroup>(base)
  for (const group of add) groups.add(group)
  for (const group of remove) groups.delete(group)
  return groups
}

/** What the readers must read for a set of groups, beyond the seed's stat, statm and TAP bytes. @category models */
export interface Needs {
  /** `/proc/<pid>/status` (memory breakdown): `memory`. */
  readonly status: boolean
  /** `/proc/<pid>/io` (disk bytes): `disk`. */
  readonly io: boolean
  /** The task listing, thread names and vCPU threads' schedstat: `cpu` (delay sum) or `vcpu`. */
  readonly vcpuThreads: boolean
  /** The TAP's packet, error and drop counters: `network`, `packets` or `interfaces`. */
  readonly tapDetail: boolean
}

/** Which files a set of groups needs read. @category utils */
export const needs = (groups: ReadonlySet<MetricGroup>): Needs => ({
  status: groups.has("memory"),
  io: groups.has("disk"),
  vcpuThreads: groups.has("cpu") || groups.has("vcpu"),
  tapDetail: groups.has("network") || groups.has("packets") || groups.has("interfaces")
})
