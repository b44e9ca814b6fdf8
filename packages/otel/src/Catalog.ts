/**
 * The one list of exported metrics: name, kind, unit, help, and how each value is read from a
 * collector snapshot. The Prometheus text renderer, the OTel metric producer and the instruments on a
 * caller's Meter are all built from it, so the three cannot drift apart.
 *
 * The service's own health (collection duration, read errors, instances by state, source errors) is
 * also derived from the snapshot rather than kept in Effect's `Metric` registry (a deviation from
 * effect-style.md §7): the snapshot already holds these numbers, both export paths then agree by
 * construction, and Effect 3's registry cannot drop a series.
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import { memoryUtilizationRatio, type VmState, type VmStats } from "@vm-metrics/core/VmStats"
import type { MetricOptions } from "./MetricOptions.js"
import type { Dropped } from "./OtelValue.js"

/** @category models */
export type Kind = "counter" | "gauge"

/** @category models */
export interface Family {
  /** Full name, prefix included; counters end in `_total`. */
  readonly name: string
  readonly kind: Kind
  /** UCUM as OTel writes it: `s`, `By`, `{vcpu}`, `1`, or "" for none. */
  readonly unit: string
  readonly help: string
  /** Whether the values are integers (OTel valueType INT). */
  readonly integer: boolean
}

/** A per-VM family: its value for one VM, or null for "not observed this time". @category models */
export interface VmFamily extends Family {
  readonly value: (vm: VmStats) => number | bigint | null
}

/** A sample of a service-level family. @category models */
export interface Sample {
  readonly labels: ReadonlyArray<readonly [string, string]>
  readonly value: number
}

/** A service-level family: its samples for one snapshot and the export side's own counts. @category models */
export interface ServiceFamily extends Family {
  readonly samples: (snapshot: Snapshot, counts: ExportCounts) => ReadonlyArray<Sample>
}

/** The two labels every per-VM series carries, and nothing else. @category constants */
export const VM_LABELS = ["instance_id", "instance_name"] as const

/** A VM's labels as OTel attributes, named by `VM_LABELS`. @category constructors */
export const vmAttributes = (vm: VmStats): Record<(typeof VM_LABELS)[number], string> => ({
  [VM_LABELS[0]]: vm.instanceId,
  [VM_LABELS[1]]: vm.instanceName
})

const seconds = (usec: bigint | null) => (usec === null ? null : Number(usec) / 1e6)

/** Per-VM families, in export order. @category constructors */
export const vmFamilies = (options: MetricOptions): ReadonlyArray<VmFamily> => {
  const p = options.prefix
  const families: Array<VmFamily> = [
    {
      name: `${p}_cpu_seconds_total`,
      kind: "counter",
      unit: "s",
      integer: false,
      help: "CPU time (user + system) of the hypervisor process, all threads, from /proc/<pid>/stat.",
      value: (vm) => seconds(vm.cpuUsec)
    },
    {
      name: `${p}_allocated_vcpus`,
      kind: "gauge",
      unit: "{vcpu}",
      integer: true,
      help: "vCPUs allocated to the VM.",
      value: (vm) => vm.allocatedVcpus
    },
    {
      name: `${p}_memory_rss_bytes`,
      kind: "gauge",
      unit: "By",
      integer: true,
      help: "Resident set size of the hypervisor process, from /proc/<pid>/statm.",
      value: (vm) => vm.memoryRssBytes
    },
    {
      name: `${p}_memory_vms_bytes`,
      kind: "gauge",
      unit: "By",
      integer: true,
      help: "Virtual memory size of the hypervisor process, from /proc/<pid>/statm.",
      value: (vm) => vm.memoryVmsBytes
    },
    {
      name: `${p}_allocated_memory_bytes`,
      kind: "gauge",
      unit: "By",
      integer: true,
      help: "Memory allocated to the VM (size + hotplug size).",
      value: (vm) => vm.allocatedMemoryBytes
    },
    {
      name: `${p}_network_rx_bytes_total`,
      kind: "counter",
      unit: "By",
      integer: true,
      help: "Bytes received by the VM (the TAP device's tx_bytes).",
      value: (vm) => vm.netRxBytes
    },
    {
      name: `${p}_network_tx_bytes_total`,
      kind: "counter",
      unit: "By",
      integer: true,
      help: "Bytes sent by the VM (the TAP device's rx_bytes).",
      value: (vm) => vm.netTxBytes
    }
  ]
  if (options.utilizationRatio) {
    families.push({
      name: `${p}_memory_utilization_ratio`,
      kind: "gauge",
      unit: "1",
      integer: false,
      help: "RSS / allocated memory; only when allocated memory > 0. May exceed 1.",
      value: memoryUtilizationRatio
    })
  }
  return families
}

const STATES: ReadonlyArray<VmState> = ["running", "exited", "no-process", "unknown"]

/** What the export side counts itself, beside the snapshot. @category models */
export interface ExportCounts {
  /** Transitions into over-budget, from the label budget guardrail. */
  readonly budgetTransitions: number
  /** Values left out of OTel exports (see OtelValue). */
  readonly dropped: ReadonlyArray<Dropped>
}

/** Listed instances by state, every state present (0 when none). */
const countByState = (snapshot: Snapshot): ReadonlyArray<Sample> => {
  const byState = new Map<string, number>(STATES.map((state) => [state, 0]))
  for (const vm of snapshot.stats) byState.set(vm.state, (byState.get(vm.state) ?? 0) + 1)
  return Array.from(byState, ([state, count]) => ({ labels: [["state", state]] as const, value: count }))
}

/** Service-level families, in export order; each reads its samples from a snapshot and the counts. @category constructors */
export const serviceFamilies = (options: MetricOptions): ReadonlyArray<ServiceFamily> => {
  const p = `${options.prefix}_metrics`
  return [
    {
      name: `${p}_instances_observed`,
      kind: "gauge",
      unit: "{instance}",
      integer: true,
      help: "Current number of VM instances represented by per-VM labeled metrics.",
      samples: (snapshot) => [{ labels: [], value: snapshot.stats.length }]
    },
    {
      name: `${p}_label_budget_exceeded_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Total number of transitions into over-budget VM metric label cardinality.",
      samples: (_, counts) => [{ labels: [], value: counts.budgetTransitions }]
    },
    {
      name: `${p}_instances`,
      kind: "gauge",
      unit: "{instance}",
      integer: true,
      help: "Listed VM instances by state of their hypervisor process.",
      samples: countByState
    },
    {
      name: `${p}_last_collection_timestamp_seconds`,
      kind: "gauge",
      unit: "s",
      integer: false,
      help: "When the snapshot behind these series was taken (Unix time); its age tells how stale they are.",
      samples: (snapshot) => [{ labels: [], value: snapshot.sampledAtMs / 1000 }]
    },
    {
      name: `${p}_collection_duration_seconds`,
      kind: "gauge",
      unit: "s",
      integer: false,
      help: "How long the last collection of all instances took.",
      samples: (snapshot) => [{ labels: [], value: snapshot.durationMs / 1000 }]
    },
    {
      name: `${p}_read_errors_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Values that could not be read, by kernel file and reason, since start.",
      samples: (snapshot) =>
        snapshot.unavailableTotals.map((t) => ({
          labels: [
            ["source", t.source],
            ["reason", t.reason]
          ] as const,
          value: t.count
        }))
    },
    {
      name: `${p}_source_errors_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Times the instance source failed to list instances, since start.",
      samples: (snapshot) => [{ labels: [], value: snapshot.sourceErrorsTotal }]
    },
    {
      name: `${p}_discovery_ignored_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Hypervisor-named processes discovery did not trust (another user's, or an executable others could write), by reason, since start.",
      samples: (snapshot) =>
        (snapshot.sourceIgnored ?? []).map((ignored) => ({
          labels: [["reason", ignored.reason]] as const,
          value: ignored.count
        }))
    },
    {
      name: `${p}_export_dropped_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Values left out of an OTel export (OTLP push, producer, instruments) because OTel cannot carry them exactly, by metric and reason, since start.",
      samples: (_, counts) =>
        counts.dropped.map((d) => ({
          labels: [
            ["metric", d.metric],
            ["reason", d.reason]
          ] as const,
          value: d.count
        }))
    }
  ]
}
