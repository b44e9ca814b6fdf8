/**
 * The JSON of `GET /instances/{id}/stats`: the Go original's (hypeman vm_metrics) ten snake_case
 * fields first, unchanged in name and meaning; then the metric groups' values (null when the group is
 * off or the value could not be read), rates since the previous snapshot (see Rates: null on the first
 * sample and after a restart, never negative), and extras (state, pid, TAP, epoch, times, and which
 * values are unavailable and why). One schema is the contract: the server types its bodies with it, the
 * OpenAPI document is generated from it and `top --url` decodes with it.
 *
 * 64-bit integers are exact JSON integer literals, also above 2^53 (see ExactJson). A value that could
 * not be read is `null`, never 0.
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import { type InstanceSourceError, InstanceSourceErrorKind } from "@vm-metrics/core/Errors"
import {
  cpuSeconds,
  memoryUtilizationRatio,
  NicVia,
  Unavailable,
  VmState,
  type VmStats
} from "@vm-metrics/core/VmStats"
import { Schema } from "effect"
import * as ExactJson from "./ExactJson.js"
import * as Rates from "./Rates.js"

const { Int64 } = ExactJson
const NullableInt64 = Schema.NullOr(Int64)
const Seconds = Schema.NullOr(Schema.Number)
const Rate = Schema.NullOr(Schema.Number.pipe(Schema.nonNegative()))

/** One vCPU thread (group `vcpu`). @category schemas */
export const VcpuJson = Schema.Struct({
  vcpu: Schema.Int.annotations({ description: "vCPU index, from the thread's name" }),
  tid: Schema.Int.annotations({ description: "the vCPU thread's id" }),
  run_seconds: Schema.Number.annotations({ description: "time on a host CPU (schedstat field 1)" }),
  delay_seconds: Schema.Number.annotations({
    description: "time runnable but waiting for a host CPU (schedstat field 2): this vCPU's steal"
  })
}).annotations({ identifier: "VcpuStats" })

/** One NIC of the VM (group `interfaces`), VM perspective: rx is what the VM received (the TAP's tx). @category schemas */
export const NicJson = Schema.Struct({
  name: Schema.String.annotations({ description: "the TAP device" }),
  via: NicVia.annotations({
    description: "sysfs: the host's /sys/class/net; netns: /proc/<pid>/net/dev of the VMM (a TAP in its namespace)"
  }),
  rx_bytes: NullableInt64,
  tx_bytes: NullableInt64,
  rx_packets: NullableInt64,
  tx_packets: NullableInt64,
  rx_errors: NullableInt64,
  tx_errors: NullableInt64,
  rx_dropped: NullableInt64,
  tx_dropped: NullableInt64
}).annotations({ identifier: "NicStats" })

const group = (name: string, what: string) => ({ description: `group ${name}: ${what}` })

/** The response body. @category schemas */
export const InstanceStats = Schema.Struct({
  instance_id: Schema.String,
  instance_name: Schema.String,
  cpu_seconds: Schema.NullOr(Schema.Number).annotations({ description: "utime + stime of the hypervisor process" }),
  memory_rss_bytes: NullableInt64,
  memory_vms_bytes: NullableInt64,
  network_rx_bytes: NullableInt64.annotations({ description: "bytes received by the VM (the TAP's tx_bytes)" }),
  network_tx_bytes: NullableInt64.annotations({ description: "bytes sent by the VM (the TAP's rx_bytes)" }),
  allocated_vcpus: Schema.Int,
  allocated_memory_bytes: Int64,
  memory_utilization_ratio: Schema.NullOr(Schema.Number).annotations({
    description: "RSS / allocated memory; always present, null when allocated memory ≤ 0 or RSS is unavailable"
  }),
  cpu_guest_seconds: Seconds.annotations(group("cpu", "guest_time of the process (vCPUs in guest code; 0 under TCG)")),
  cpu_system_seconds: Seconds.annotations(
    group("cpu", "stime of the process (kernel time; user = cpu_seconds − this)")
  ),
  cpu_delay_seconds: Seconds.annotations(
    group("cpu", "run-queue wait of the vCPU threads, summed (schedstat field 2): the host-side steal")
  ),
  memory_anon_bytes: NullableInt64.annotations(group("memory", "RssAnon of /proc/<pid>/status")),
  memory_file_bytes: NullableInt64.annotations(group("memory", "RssFile")),
  memory_shmem_bytes: NullableInt64.annotations(group("memory", "RssShmem")),
  memory_swap_bytes: NullableInt64.annotations(group("memory", "VmSwap: the process's memory swapped out")),
  memory_hugetlb_bytes: NullableInt64.annotations(group("memory", "HugetlbPages: hugetlbfs guest RAM, in no RSS")),
  major_page_faults: NullableInt64.annotations(group("packets", "majflt of /proc/<pid>/stat")),
  disk_read_bytes: NullableInt64.annotations(group("disk", "read_bytes of /proc/<pid>/io")),
  disk_write_bytes: NullableInt64.annotations(group("disk", "write_bytes of /proc/<pid>/io")),
  network_rx_packets: NullableInt64.annotations(group("packets", "packets received by the VM, over its NICs")),
  network_tx_packets: NullableInt64.annotations(group("packets", "packets sent by the VM, over its NICs")),
  network_rx_errors: NullableInt64.annotations(group("packets", "receive errors on the VM's side, over its NICs")),
  network_tx_errors: NullableInt64.annotations(group("packets", "send errors on the VM's side, over its NICs")),
  network_rx_dropped: NullableInt64.annotations(
    group("network", "packets dropped on their way into the VM (the TAPs' tx_dropped): guest backpressure")
  ),
  network_tx_dropped: NullableInt64.annotations(
    group("network", "packets from the VM dropped by the host (the TAPs' rx_dropped)")
  ),
  vcpus: Schema.Array(VcpuJson).annotations(
    group("vcpu", "one entry per vCPU thread; empty when the group is off or the threads are not found")
  ),
  interfaces: Schema.Array(NicJson).annotations(group("interfaces", "one entry per NIC; empty when the group is off")),
  cpu_cores: Rate.annotations({
    description:
      "CPU seconds per second of the process since the previous snapshot; null on the first sample, after a restart (new epoch) or when a value is missing"
  }),
  cpu_delay_ratio: Rate.annotations({
    description:
      "the host-side steal: vCPU run-queue wait per vCPU-second since the previous snapshot, Δ cpu_delay_seconds / (Δt × vCPUs), vCPUs being the vCPU threads read (group vcpu) or else allocated_vcpus; null like cpu_cores"
  }),
  network_rx_bytes_per_second: Rate.annotations({ description: "since the previous snapshot; null like cpu_cores" }),
  network_tx_bytes_per_second: Rate.annotations({ description: "since the previous snapshot; null like cpu_cores" }),
  network_rx_packets_per_second: Rate.annotations({
    description: "since the previous snapshot (group packets); null like cpu_cores"
  }),
  network_tx_packets_per_second: Rate.annotations({
    description: "since the previous snapshot (group packets); null like cpu_cores"
  }),
  state: VmState,
  pid: Schema.NullOr(Schema.Int),
  tap_device: Schema.NullOr(Schema.String),
  epoch: Schema.Int.annotations({
    description: "+1 each time another process takes the instance's place or a kernel counter goes down (a new series)"
  }),
  process_start_time: Schema.NullOr(Schema.String).annotations({ description: "ISO 8601" }),
  sampled_at: Schema.String.annotations({ description: "ISO 8601" }),
  unavailable: Schema.Array(Unavailable)
}).annotations({ identifier: "InstanceStats" })
/** @category models */
export type InstanceStats = typeof InstanceStats.Type

/**
 * Why the instance source failed, as far as any client may know: the kind and, for a parse error, where.
 * The source's own text (which may name paths, or quote what it read) goes only to the local log.
 * @category schemas
 */
export class SourceError extends Schema.Class<SourceError>("SourceError")({
  kind: InstanceSourceErrorKind,
  line: Schema.NullOr(Schema.Int).annotations({ description: "1-based line of a parse error, when known" }),
  column: Schema.NullOr(Schema.Int).annotations({ description: "1-based column of a parse error, when known" })
}) {}

/** A list of instances with their stats. @category schemas */
export const InstanceList = Schema.Struct({
  instances: Schema.Array(InstanceStats),
  sampled_at: Schema.String,
  source_error: Schema.NullOr(SourceError).annotations({
    description: "why the last listing failed (the instances are then the last good listing), or null"
  })
}).annotations({ identifier: "InstanceList" })
/** @category models */
export type InstanceList = typeof InstanceList.Type

/** The client-safe part of a source failure: never its reason. @category encoding */
export const sourceErrorBody = (error: InstanceSourceError | null): typeof SourceError.Encoded | null =>
  error === null ? null : { kind: error.kind, line: error.line ?? null, column: error.column ?? null }

const seconds = (ns: bigint | null) => (ns === null ? null : Number(ns) / 1e9)
const usecSeconds = (usec: bigint | null) => (usec === null ? null : Number(usec) / 1e6)

/**
 * The body of one VM, fields in order; rates against `previous`, its sample in the snapshot before (none:
 * null rates). Bigints stay bigints (`Int64` encodes to itself), so `ExactJson.write` of this value is
 * the body. @category encoding
 */
export const statsBody = (vm: VmStats, previous?: VmStats): InstanceStats => {
  const rates = Rates.between(previous, vm)
  return {
    instance_id: vm.instanceId,
    instance_name: vm.instanceName,
    cpu_seconds: cpuSeconds(vm),
    memory_rss_bytes: vm.memoryRssBytes,
    memory_vms_bytes: vm.memoryVmsBytes,
    network_rx_bytes: vm.netRxBytes,
    network_tx_bytes: vm.netTxBytes,
    allocated_vcpus: vm.allocatedVcpus,
    allocated_memory_bytes: BigInt(vm.allocatedMemoryBytes),
    memory_utilization_ratio: memoryUtilizationRatio(vm),
    cpu_guest_seconds: usecSeconds(vm.guestUsec),
    cpu_system_seconds: usecSeconds(vm.systemUsec),
    cpu_delay_seconds: seconds(vm.cpuDelayNs),
    memory_anon_bytes: vm.memoryAnonBytes,
    memory_file_bytes: vm.memoryFileBytes,
    memory_shmem_bytes: vm.memoryShmemBytes,
    memory_swap_bytes: vm.memorySwapBytes,
    memory_hugetlb_bytes: vm.memoryHugetlbBytes,
    major_page_faults: vm.majorFaults,
    disk_read_bytes: vm.diskReadBytes,
    disk_write_bytes: vm.diskWriteBytes,
    network_rx_packets: vm.netRxPackets,
    network_tx_packets: vm.netTxPackets,
    network_rx_errors: vm.netRxErrors,
    network_tx_errors: vm.netTxErrors,
    network_rx_dropped: vm.netRxDropped,
    network_tx_dropped: vm.netTxDropped,
    vcpus: vm.vcpus.map((v) => ({
      vcpu: v.vcpu,
      tid: v.tid,
      run_seconds: Number(v.runNs) / 1e9,
      delay_seconds: Number(v.delayNs) / 1e9
    })),
    interfaces: vm.interfaces.map((nic) => ({
      name: nic.name,
      via: nic.via,
      rx_bytes: nic.rxBytes,
      tx_bytes: nic.txBytes,
      rx_packets: nic.rxPackets,
      tx_packets: nic.txPackets,
      rx_errors: nic.rxErrors,
      tx_errors: nic.txErrors,
      rx_dropped: nic.rxDropped,
      tx_dropped: nic.txDropped
    })),
    cpu_cores: rates.cpuCores,
    cpu_delay_ratio: rates.cpuDelayRatio,
    network_rx_bytes_per_second: rates.networkRxBytesPerSecond,
    network_tx_bytes_per_second: rates.networkTxBytesPerSecond,
    network_rx_packets_per_second: rates.networkRxPacketsPerSecond,
    network_tx_packets_per_second: rates.networkTxPacketsPerSecond,
    state: vm.state,
    pid: vm.pid,
    tap_device: vm.tapDevice,
    epoch: vm.epoch,
    process_start_time: vm.processStartTimeMs === null ? null : new Date(vm.processStartTimeMs).toISOString(),
    sampled_at: new Date(vm.sampledAtMs).toISOString(),
    unavailable: vm.unavailable
  }
}

/** The body of `GET /instances/{id}/stats`; rates against `previous` (see statsBody). @category encoding */
export const statsJson = (vm: VmStats, previous?: VmStats): string => ExactJson.write(statsBody(vm, previous))

/**
 * The body of `GET /instances`; `previous` finds a VM's sample in the snapshot before (none: null
 * rates). @category encoding
 */
export const listJson = (
  snapshot: Pick<Snapshot, "stats" | "sampledAtMs" | "sourceError">,
  previous: (vm: VmStats) => VmStats | undefined = () => undefined
): string => {
  const body: InstanceList = {
    instances: snapshot.stats.map((vm) => statsBody(vm, previous(vm))),
    sampled_at: new Date(snapshot.sampledAtMs).toISOString(),
    source_error: sourceErrorBody(snapshot.sourceError)
  }
  return ExactJson.write(body)
}
