/**
 * What the collector needs to know about a VM: `InstanceInfo` (with a TAP name) and
 * `InstanceData` (with `networkEnabled` instead), and `buildInstanceInfo`, which derives the TAP name.
 * These are plain `Schema.Struct`s: callers build them as object literals; the schemas validate input
 * that arrives from files or HTTP.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { tapNameFor } from "./TapName.js"

/** A Linux pid: 1 … 2^22 (PID_MAX_LIMIT). @category schemas */
export const Pid = Schema.Int.pipe(Schema.between(1, 4_194_304))

const common = {
  id: Schema.String,
  name: Schema.String,
  /** The hypervisor process; absent when the VM has no process (stopped, standby, never started). */
  hypervisorPid: Schema.optional(Pid),
  /**
   * Field 22 of the hypervisor's `/proc/<pid>/stat` (clock ticks after boot), for sources that know
   * it: the pid must still carry this start time, else it is another process (`pid_reused`). Without
   * it, the first reading pins the start time.
   */
  hypervisorStartTicks: Schema.optional(Schema.Int.pipe(Schema.nonNegative())),
  allocatedVcpus: Schema.Int.pipe(Schema.nonNegative()),
  /** Size + hotplug size. May be ≤ 0, which makes the utilisation ratio null. */
  allocatedMemoryBytes: Schema.Int
}

/** @category schemas */
export const InstanceInfo = Schema.Struct({
  ...common,
  /** Host-side TAP device; absent when the VM has no network. With several NICs: the first of `tapDevices`. */
  tapDevice: Schema.optional(Schema.String),
  /**
   * Every TAP of the VM, in NIC order. When given it wins over `tapDevice` (which sources still set to
   * its first element, for readers of the single field); absent means `[tapDevice]` or none.
   */
  tapDevices: Schema.optional(Schema.Array(Schema.String))
})
/** @category models */
export type InstanceInfo = typeof InstanceInfo.Type

/**
 * The VM's TAPs in NIC order: `tapDevices` when given, else `tapDevice` alone, else none. A name
 * listed twice is read once (the first place counts), so a NIC is never summed twice.
 *
 * @category getters
 */
export const tapsOf = (info: Pick<InstanceInfo, "tapDevice" | "tapDevices">): ReadonlyArray<string> => {
  const taps = info.tapDevices
  if (taps === undefined) return info.tapDevice === undefined ? [] : [info.tapDevice]
  return taps.length < 2 || new Set(taps).size === taps.length ? taps : [...new Set(taps)]
}

/**
 * The TAP fields of an instance with these NICs: none, `tapDevice` alone for one (the seed's
 * shape), or both for several. For sources.
 *
 * @category constructors
 */
export const tapFields = (
  taps: ReadonlyArray<string>
): { readonly tapDevice?: string; readonly tapDevices?: ReadonlyArray<string> } =>
  taps.length === 0 ? {} : taps.length === 1 ? { tapDevice: taps[0] } : { tapDevice: taps[0], tapDevices: taps }

/** @category schemas */
export const InstanceData = Schema.Struct({ ...common, networkEnabled: Schema.Boolean })
/** @category models */
export type InstanceData = typeof InstanceData.Type

/** The TAP name comes from the id, only when networking is on (the Go original's `BuildInstanceInfo`). @category constructors */
export const buildInstanceInfo = (
  id: string,
  name: string,
  hypervisorPid: number | undefined,
  networkEnabled: boolean,
  allocatedVcpus: number,
  allocatedMemoryBytes: number
): InstanceInfo => ({
  id,
  name,
  ...(hypervisorPid === undefined ? {} : { hypervisorPid }),
  ...(networkEnabled ? { tapDevice: tapNameFor(id) } : {}),
  allocatedVcpus,
  allocatedMemoryBytes
})

/** `InstanceData` → `InstanceInfo`: the TAP name derived from the id when networking is on. @category constructors */
export const fromInstanceData = (data: InstanceData): InstanceInfo => {
  const info = buildInstanceInfo(
    data.id,
    data.name,
    data.hypervisorPid,
    data.networkEnabled,
    data.allocatedVcpus,
    data.allocatedMemoryBytes
  )
  return data.hypervisorStartTicks === undefined ? info : { ...info, hypervisorStartTicks: data.hypervisorStartTicks }
}
