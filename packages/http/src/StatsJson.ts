/**
 * The JSON of `GET /instances/{id}/stats`: the Go original's (hypeman vm_metrics) ten snake_case
 * fields, unchanged in name and meaning, plus extras (state, pid, TAP, epoch, times, and which values
 * are unavailable and why). One schema is the contract: the server types its bodies with it, the
 * OpenAPI document is generated from it and `top --url` decodes with it.
 *
 * 64-bit integers are exact JSON integer literals, also above 2^53 (see ExactJson). A value that could
 * not be read is `null`, never 0.
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import { type InstanceSourceError, InstanceSourceErrorKind } from "@vm-metrics/core/Errors"
import { cpuSeconds, memoryUtilizationRatio, Unavailable, VmState, type VmStats } from "@vm-metrics/core/VmStats"
import { Schema } from "effect"
import * as ExactJson from "./ExactJson.js"

const { Int64 } = ExactJson
const NullableInt64 = Schema.NullOr(Int64)

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

/**
 * The body of one VM, fields in order. Bigints stay bigints (`Int64` encodes to itself), so `ExactJson.write`
 * of this value is the body. @category encoding
 */
export const statsBody = (vm: VmStats): InstanceStats => ({
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
  state: vm.state,
  pid: vm.pid,
  tap_device: vm.tapDevice,
  epoch: vm.epoch,
  process_start_time: vm.processStartTimeMs === null ? null : new Date(vm.processStartTimeMs).toISOString(),
  sampled_at: new Date(vm.sampledAtMs).toISOString(),
  unavailable: vm.unavailable
})

/** The body of `GET /instances/{id}/stats`. @category encoding */
export const statsJson = (vm: VmStats): string => ExactJson.write(statsBody(vm))

/** The body of `GET /instances`. @category encoding */
export const listJson = (snapshot: Pick<Snapshot, "stats" | "sampledAtMs" | "sourceError">): string => {
  const body: InstanceList = {
    instances: snapshot.stats.map(statsBody),
    sampled_at: new Date(snapshot.sampledAtMs).toISOString(),
    source_error: sourceErrorBody(snapshot.sourceError)
  }
  return ExactJson.write(body)
}
