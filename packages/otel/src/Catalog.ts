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
 * Per-VM families belong to the seed (always exported) or to a metric group (MetricGroup): only the
 * families of the groups given are listed. Most have one series per VM; the `vcpu` and `interfaces`
 * groups' labeled families have one per vCPU thread or NIC (labels after the VM's: `vcpu`, or
 * `interface` and `via`). Seconds come from µs or ns counters as the nearest double to the exact
 * quotient (exact below 2^53 µs or ns: 285 years, 104 days).
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import type { MetricGroup } from "@vm-metrics/core/MetricGroup"
import type { SelfProcess } from "@vm-metrics/core/SelfProcess"
import { memoryUtilizationRatio, type NicStats, type VmState, type VmStats } from "@vm-metrics/core/VmStats"
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
  /** The metric group it belongs to; null: the seed's, always exported. */
  readonly group: MetricGroup | null
  readonly value: (vm: VmStats) => number | bigint | null
}

/** One series of a labeled per-VM family: its own label values, value and series start. @category models */
export interface LabeledSample {
  /** Values of the family's `labels`, in order. */
  readonly labels: ReadonlyArray<string>
  readonly value: number | bigint | null
  /** Start of the cumulative series (ms since the epoch), null when unknown. */
  readonly seriesStartTimeMs: number | null
}

/** A per-VM family with more series than one per VM (per vCPU, per NIC). @category models */
export interface LabeledVmFamily extends Family {
  readonly group: MetricGroup
  /** The label names after `VM_LABELS`. */
  readonly labels: ReadonlyArray<string>
  readonly samples: (vm: VmStats) => ReadonlyArray<LabeledSample>
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

/** The two labels every per-VM series carries (a labeled family adds its own after them). @category constants */
export const VM_LABELS = ["instance_id", "instance_name"] as const

/** A VM's labels as OTel attributes, named by `VM_LABELS`. @category constructors */
export const vmAttributes = (vm: VmStats): Record<(typeof VM_LABELS)[number], string> => ({
  [VM_LABELS[0]]: vm.instanceId,
  [VM_LABELS[1]]: vm.instanceName
})

const seconds = (usec: bigint | null) => (usec === null ? null : Number(usec) / 1e6)
const nanoseconds = (ns: bigint | null) => (ns === null ? null : Number(ns) / 1e9)

/** The seed's per-VM families: exported whatever the groups. */
const seedFamilies = (options: MetricOptions): Array<VmFamily> => {
  const p = options.prefix
  const families: Array<Omit<VmFamily, "group">> = [
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
  return families.map((family) => ({ ...family, group: null }))
}

type Spec = Pick<VmFamily, "name" | "help" | "value">

const counter = (group: MetricGroup, unit: string, spec: Spec): VmFamily => ({
  kind: "counter",
  integer: unit !== "s",
  unit,
  group,
  ...spec
})
const bytesGauge = (group: MetricGroup, spec: Spec): VmFamily => ({
  kind: "gauge",
  integer: true,
  unit: "By",
  group,
  ...spec
})

/** The metric groups' one-series-per-VM families, in group order. */
const groupFamilies = (p: string): ReadonlyArray<VmFamily> => [
  counter("cpu", "s", {
    name: `${p}_cpu_guest_seconds_total`,
    help: "CPU time the hypervisor process's vCPU threads ran guest code (guest_time, /proc/<pid>/stat field 43; part of cpu_seconds_total; 0 under TCG).",
    value: (vm) => seconds(vm.guestUsec)
  }),
  counter("cpu", "s", {
    name: `${p}_cpu_system_seconds_total`,
    help: "Kernel CPU time of the hypervisor process (stime, /proc/<pid>/stat field 15; part of cpu_seconds_total).",
    value: (vm) => seconds(vm.systemUsec)
  }),
  counter("cpu", "s", {
    name: `${p}_cpu_delay_seconds_total`,
    help: "Time the VM's vCPU threads were runnable but waited for a host CPU (the host-side steal), summed over the threads, from /proc/<pid>/task/<tid>/schedstat.",
    value: (vm) => nanoseconds(vm.cpuDelayNs)
  }),
  bytesGauge("memory", {
    name: `${p}_memory_anon_bytes`,
    help: "Anonymous resident memory of the hypervisor process (RssAnon of /proc/<pid>/status).",
    value: (vm) => vm.memoryAnonBytes
  }),
  bytesGauge("memory", {
    name: `${p}_memory_file_bytes`,
    help: "File-backed resident memory of the hypervisor process (RssFile of /proc/<pid>/status).",
    value: (vm) => vm.memoryFileBytes
  }),
  bytesGauge("memory", {
    name: `${p}_memory_shmem_bytes`,
    help: "Resident shared memory of the hypervisor process (RssShmem of /proc/<pid>/status: memfd, shm, tmpfs).",
    value: (vm) => vm.memoryShmemBytes
  }),
  bytesGauge("memory", {
    name: `${p}_memory_swap_bytes`,
    help: "Memory of the hypervisor process swapped out (VmSwap of /proc/<pid>/status).",
    value: (vm) => vm.memorySwapBytes
  }),
  bytesGauge("memory", {
    name: `${p}_memory_hugetlb_bytes`,
    help: "hugetlbfs pages mapped by the hypervisor process (HugetlbPages of /proc/<pid>/status; not in any RSS).",
    value: (vm) => vm.memoryHugetlbBytes
  }),
  counter("disk", "By", {
    name: `${p}_disk_read_bytes_total`,
    help: "Bytes the hypervisor process caused to be read from storage (read_bytes of /proc/<pid>/io).",
    value: (vm) => vm.diskReadBytes
  }),
  counter("disk", "By", {
    name: `${p}_disk_write_bytes_total`,
    help: "Bytes the hypervisor process caused to be written to storage (write_bytes of /proc/<pid>/io).",
    value: (vm) => vm.diskWriteBytes
  }),
  counter("network", "{packet}", {
    name: `${p}_network_rx_dropped_total`,
    help: "Packets dropped on their way into the VM (the TAPs' tx_dropped, summed over its NICs): guest receive backpressure.",
    value: (vm) => vm.netRxDropped
  }),
  counter("network", "{packet}", {
    name: `${p}_network_tx_dropped_total`,
    help: "Packets from the VM dropped by the host (the TAPs' rx_dropped, summed over its NICs).",
    value: (vm) => vm.netTxDropped
  }),
  counter("packets", "{packet}", {
    name: `${p}_network_rx_packets_total`,
    help: "Packets received by the VM (the TAPs' tx_packets, summed over its NICs).",
    value: (vm) => vm.netRxPackets
  }),
  counter("packets", "{packet}", {
    name: `${p}_network_tx_packets_total`,
    help: "Packets sent by the VM (the TAPs' rx_packets, summed over its NICs).",
    value: (vm) => vm.netTxPackets
  }),
  counter("packets", "{error}", {
    name: `${p}_network_rx_errors_total`,
    help: "Receive errors on the VM's side (the TAPs' tx_errors, summed over its NICs).",
    value: (vm) => vm.netRxErrors
  }),
  counter("packets", "{error}", {
    name: `${p}_network_tx_errors_total`,
    help: "Send errors on the VM's side (the TAPs' rx_errors, summed over its NICs).",
    value: (vm) => vm.netTxErrors
  }),
  counter("packets", "{fault}", {
    name: `${p}_major_page_faults_total`,
    help: "Major page faults of the hypervisor process (majflt, /proc/<pid>/stat field 12): pages read back from swap or files.",
    value: (vm) => vm.majorFaults
  })
]

/**
 * Per-VM families with one series per VM, in export order: the seed's, then those of the given groups
 * (default: the options' groups). @category constructors
 */
export const vmFamilies = (
  options: MetricOptions,
  groups: ReadonlySet<MetricGroup> = options.groups
): ReadonlyArray<VmFamily> => [
  ...seedFamilies(options),
  ...groupFamilies(options.prefix).filter((family) => family.group !== null && groups.has(family.group))
]

/** A labeled sample's attributes: the VM's, then the family's own labels. @category constructors */
export const labeledAttributes = (
  family: LabeledVmFamily,
  vm: VmStats,
  sample: LabeledSample
): Record<string, string> => {
  const attributes: Record<string, string> = vmAttributes(vm)
  family.labels.forEach((label, l) => {
    attributes[label] = sample.labels[l] ?? ""
  })
  return attributes
}

/** One value per vCPU thread; a replaced thread has its own series start. */
const perVcpu =
  (read: (vcpu: VmStats["vcpus"][number]) => bigint) =>
  (vm: VmStats): ReadonlyArray<LabeledSample> =>
    vm.vcpus.map((v) => ({
      labels: [String(v.vcpu)],
      value: nanoseconds(read(v)),
      seriesStartTimeMs: v.seriesStartTimeMs
    }))

/** One value per NIC; a NIC's series starts with the VM's. */
const perNic =
  (read: (nic: NicStats) => bigint | null) =>
  (vm: VmStats): ReadonlyArray<LabeledSample> =>
    vm.interfaces.map((nic) => ({
      labels: [nic.name, nic.via],
      value: read(nic),
      seriesStartTimeMs: vm.seriesStartTimeMs
    }))

type NicCounter = "bytes" | "packets" | "errors" | "dropped"

const NIC_COUNTERS: ReadonlyArray<readonly ["rx" | "tx", NicCounter, (nic: NicStats) => bigint | null]> = [
  ["rx", "bytes", (n) => n.rxBytes],
  ["tx", "bytes", (n) => n.txBytes],
  ["rx", "packets", (n) => n.rxPackets],
  ["tx", "packets", (n) => n.txPackets],
  ["rx", "errors", (n) => n.rxErrors],
  ["tx", "errors", (n) => n.txErrors],
  ["rx", "dropped", (n) => n.rxDropped],
  ["tx", "dropped", (n) => n.txDropped]
]

const NIC_UNITS: Record<NicCounter, string> = {
  bytes: "By",
  packets: "{packet}",
  errors: "{error}",
  dropped: "{packet}"
}
const NIC_HELP: Record<NicCounter, string> = {
  bytes: "Bytes",
  packets: "Packets",
  errors: "Errors",
  dropped: "Packets dropped"
}

/** The labeled families (per vCPU, per NIC) of the given groups, in export order. @category constructors */
export const labeledFamilies = (
  options: MetricOptions,
  groups: ReadonlySet<MetricGroup> = options.groups
): ReadonlyArray<LabeledVmFamily> => {
  const p = options.prefix
  const families: Array<LabeledVmFamily> = [
    {
      name: `${p}_vcpu_seconds_total`,
      kind: "counter",
      unit: "s",
      integer: false,
      group: "vcpu",
      labels: ["vcpu"],
      help: "CPU time of one vCPU thread (schedstat field 1 of /proc/<pid>/task/<tid>); a replaced thread starts a new series.",
      samples: perVcpu((v) => v.runNs)
    },
    {
      name: `${p}_vcpu_delay_seconds_total`,
      kind: "counter",
      unit: "s",
      integer: false,
      group: "vcpu",
      labels: ["vcpu"],
      help: "Time one vCPU thread was runnable but waited for a host CPU (schedstat field 2): its steal.",
      samples: perVcpu((v) => v.delayNs)
    },
    ...NIC_COUNTERS.map(
      ([direction, what, read]): LabeledVmFamily => ({
        name: `${p}_network_interface_${direction}_${what}_total`,
        kind: "counter",
        unit: NIC_UNITS[what],
        integer: true,
        group: "interfaces",
        labels: ["interface", "via"],
        help: `${NIC_HELP[what]} ${direction === "rx" ? "received" : "sent"} by the VM on one NIC (the TAP's ${direction === "rx" ? "tx" : "rx"}_${what}; via sysfs, or netns: /proc/<pid>/net/dev of the VMM).`,
        samples: perNic(read)
      })
    )
  ]
  return families.filter((family) => groups.has(family.group))
}

/** Series by group (seed: the seed's), as the label budget counts them. @category models */
export interface SeriesCount {
  readonly seed: number
  readonly groups: ReadonlyMap<MetricGroup, number>
}

/**
 * The series these VMs export with the options' groups: values that are not null (a value that could
 * not be read, or a VM without a process, makes no series). @category getters
 */
export const countSeries = (options: MetricOptions, stats: ReadonlyArray<VmStats>): SeriesCount => {
  const groups = new Map<MetricGroup, number>()
  let seed = 0
  for (const family of vmFamilies(options)) {
    let n = 0
    for (const vm of stats) if (family.value(vm) !== null) n++
    if (family.group === null) seed += n
    else groups.set(family.group, (groups.get(family.group) ?? 0) + n)
  }
  for (const family of labeledFamilies(options)) {
    let n = 0
    for (const vm of stats) for (const sample of family.samples(vm)) if (sample.value !== null) n++
    groups.set(family.group, (groups.get(family.group) ?? 0) + n)
  }
  return { seed, groups }
}

const STATES: ReadonlyArray<VmState> = ["running", "exited", "no-process", "unknown"]

/** What the export side counts itself, beside the snapshot. @category models */
export interface ExportCounts {
  /** Transitions into over-budget, from the label budget guardrail. */
  readonly budgetTransitions: number
  /** Values left out of OTel exports (see OtelValue). */
  readonly dropped: ReadonlyArray<Dropped>
  /** Metric groups dropped by the guardrail (over the series budget), per group; absent: none. */
  readonly groupDrops?: ReadonlyArray<{ readonly group: MetricGroup; readonly count: number }>
  /** The agent's build and own process (agentFamilies); absent for a library user. */
  readonly agent?: AgentSample
}

/** What build of the agent runs: the labels of `<prefix>_metrics_build_info`. @category models */
export interface BuildInfo {
  readonly version: string
  readonly revision: string
  readonly nodeVersion: string
}

/** The agent's own series for one snapshot: its build and its process, sampled with the snapshot. @category models */
export interface AgentSample {
  readonly build: BuildInfo
  readonly process: SelfProcess
}

/** Listed instances by state, every state present (0 when none). */
const countByState = (snapshot: Snapshot): ReadonlyArray<Sample> => {
  const byState = new Map<string, number>(STATES.map((state) => [state, 0]))
  for (const vm of snapshot.stats) byState.set(vm.state, (byState.get(vm.state) ?? 0) + 1)
  return Array.from(byState, ([state, count]) => ({ labels: [["state", state]] as const, value: count }))
}

/**
 * Service-level families, in export order; each reads its samples from a snapshot and the counts.
 * `agent`: the agent's own families (agentFamilies) after them. @category constructors
 */
export const serviceFamilies = (options: MetricOptions, agent = false): ReadonlyArray<ServiceFamily> => {
  const p = `${options.prefix}_metrics`
  const families: ReadonlyArray<ServiceFamily> = [
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
      name: `${p}_groups_dropped_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Times a metric group's series were dropped from the export because the series were over the label budget, by group, since start.",
      samples: (_, counts) =>
        (counts.groupDrops ?? []).map((d) => ({ labels: [["group", d.group]] as const, value: d.count }))
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
      samples: (snapshot, counts) =>
        [...snapshot.unavailableTotals, ...(counts.agent?.process.unavailableTotals ?? [])].map((t) => ({
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
      name: `${p}_kept_fds`,
      kind: "gauge",
      unit: "{file}",
      integer: true,
      help: "Kernel files the readers keep open (re-read at offset 0), within their fd budget (half the open-files soft limit, less a reserve).",
      samples: (snapshot) => (snapshot.readerFds === undefined ? [] : [{ labels: [], value: snapshot.readerFds.kept }])
    },
    {
      name: `${p}_reads_by_path_total`,
      kind: "counter",
      unit: "",
      integer: true,
      help: "Kernel files read by path (open, read, close) because the readers' fd budget had no room or the open-files limit was met, since start.",
      samples: (snapshot) =>
        snapshot.readerFds === undefined ? [] : [{ labels: [], value: snapshot.readerFds.byPathTotal }]
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
  return agent ? [...families, ...agentFamilies(options)] : families
}

/** One sample of a value of the agent's process, none when it could not be read. */
const selfValue =
  (read: (process: SelfProcess) => number | null) =>
  (_: Snapshot, counts: ExportCounts): ReadonlyArray<Sample> => {
    const value = counts.agent === undefined ? null : read(counts.agent.process)
    return value === null ? [] : [{ labels: [], value }]
  }

/**
 * The agent's own families: its build info and the standard process metrics, under the names every
 * Prometheus client library gives them (no prefix), so dashboards made for other exporters work. Only
 * the agent exports them (VmMetrics `agent`): a control plane embedding the library has its own process
 * metrics, and two sets of `process_*` would clash. @category constructors
 */
export const agentFamilies = (options: MetricOptions): ReadonlyArray<ServiceFamily> => [
  {
    name: `${options.prefix}_metrics_build_info`,
    kind: "gauge",
    unit: "",
    integer: true,
    help: "Always 1; the labels say which build of vm-metrics runs: version, source revision and Node version.",
    samples: (_, counts) =>
      counts.agent === undefined
        ? []
        : [
            {
              labels: [
                ["version", counts.agent.build.version],
                ["revision", counts.agent.build.revision],
                ["node_version", counts.agent.build.nodeVersion]
              ] as const,
              value: 1
            }
          ]
  },
  {
    name: "process_cpu_seconds_total",
    kind: "counter",
    unit: "s",
    integer: false,
    help: "Total user and system CPU time spent in seconds (the agent's own process, /proc/self/stat).",
    samples: selfValue((p) => p.cpuSeconds)
  },
  {
    name: "process_resident_memory_bytes",
    kind: "gauge",
    unit: "By",
    integer: true,
    help: "Resident memory size in bytes (the agent's own process, /proc/self/statm).",
    samples: selfValue((p) => p.residentMemoryBytes)
  },
  {
    name: "process_open_fds",
    kind: "gauge",
    unit: "{file}",
    integer: true,
    help: "Number of open file descriptors (the agent's own process, /proc/self/fd).",
    samples: selfValue((p) => p.openFds)
  },
  {
    name: "process_max_fds",
    kind: "gauge",
    unit: "{file}",
    integer: true,
    help: "Maximum number of open file descriptors: the soft limit (the agent's own process, /proc/self/limits).",
    samples: selfValue((p) => p.maxFds)
  },
  {
    name: "process_start_time_seconds",
    kind: "gauge",
    unit: "s",
    integer: false,
    help: "Start time of the process since unix epoch in seconds (the agent's own process).",
    samples: selfValue((p) => p.startTimeSeconds)
  }
]
