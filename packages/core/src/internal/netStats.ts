/**
 * The network part of a VmStats: every NIC's TAP reading turned to the VM's perspective (VM rx = TAP
 * tx, for bytes, packets, errors and drops), the per-NIC list and the sums over the NICs.
 *
 * A sum is null when any NIC of it could not be read (or its counter was not read): a partial sum
 * would go backwards once the missing NIC is back, which a counter must never do. A NIC that cannot
 * be read has null values and one `unavailable` entry (source `tap` via sysfs, `netdev` via netns,
 * its message naming the TAP). A NIC read through the hypervisor's netns is discarded when that pid
 * turned out not to be the VM's process any more (reused, zombie, gone).
 *
 * Series: any counter of a NIC, or any sum, that went down under the same process (a TAP deleted and
 * created again, a NIC removed from the VM) starts a new series of the VM (the caller moves its epoch).
 *
 * @internal
 */
import { Either } from "effect"
import { reasonOf } from "../Errors.js"
import type { TapCounters, TapSample, TapWanted } from "../TapReader.js"
import type { NicStats, Unavailable } from "../VmStats.js"

/** What the collector reads for the enabled groups, and what VmStats shows. @internal */
export interface NetGroups {
  /** Counters the TAP reader reads. */
  readonly wanted: TapWanted
  /** Group `packets`: netRx/TxPackets and Errors. */
  readonly packets: boolean
  /** Group `network`: netRx/TxDropped. */
  readonly dropped: boolean
  /** Group `interfaces`: the per-NIC list. */
  readonly interfaces: boolean
}

/** @internal */
export const netGroupsOf = (groups: ReadonlySet<string>): NetGroups => {
  const interfaces = groups.has("interfaces")
  const packets = groups.has("packets")
  const dropped = groups.has("network")
  return { wanted: { packets: packets || interfaces, dropped: dropped || interfaces }, packets, dropped, interfaces }
}

/** The VM-perspective counters, in this order. */
const FIELDS = [
  "rxBytes",
  "txBytes",
  "rxPackets",
  "txPackets",
  "rxErrors",
  "txErrors",
  "rxDropped",
  "txDropped"
] as const

/** The network values of one reading. @internal */
export interface NetValues {
  /** Sums over the NICs, VM perspective, in FIELDS order (null: some NIC missing, or no NIC). */
  readonly sums: ReadonlyArray<bigint | null>
  /** Every NIC, VM perspective, whatever the groups (the epoch check needs them all). */
  readonly nics: ReadonlyArray<NicStats>
}

/** The last values of a series: per NIC and summed, in FIELDS order. Updated in place. @internal */
export interface NetMemory {
  readonly sums: Array<bigint | null>
  readonly nics: Map<string, Array<bigint | null>>
}

const failedNic = (name: string, via: NicStats["via"]): NicStats => ({
  name,
  via,
  rxBytes: null,
  txBytes: null,
  rxPackets: null,
  txPackets: null,
  rxErrors: null,
  txErrors: null,
  rxDropped: null,
  txDropped: null
})

/** The VM's rx is the TAP's tx and the other way round, for every counter. */
const nicOf = (name: string, via: NicStats["via"], host: TapCounters): NicStats => ({
  name,
  via,
  rxBytes: host.txBytes,
  txBytes: host.rxBytes,
  rxPackets: host.txPackets,
  txPackets: host.rxPackets,
  rxErrors: host.txErrors,
  txErrors: host.rxErrors,
  rxDropped: host.txDropped,
  txDropped: host.rxDropped
})

/**
 * The NICs and sums of one reading. `samples[i]` belongs to `names[i]`; `pidProblem` is the reason
 * the hypervisor pid is not the VM's process now (its netns readings are then discarded). Unreadable
 * NICs are appended to `unavailable`.
 *
 * @internal
 */
export const readNet = (
  names: ReadonlyArray<string>,
  samples: ReadonlyArray<TapSample>,
  pidProblem: string | undefined,
  unavailable: Array<Unavailable>
): NetValues => {
  const nics = new Array<NicStats>(names.length)
  if (names.length === 0) return noNics
  for (let i = 0; i < names.length; i++) {
    const { via, counters } = samples[i]
    let nic: NicStats
    if (Either.isLeft(counters)) {
      unavailable.push({
        source: via === "netns" ? "netdev" : "tap",
        reason: reasonOf(counters.left),
        message: counters.left.message
      })
      nic = failedNic(names[i], via)
    } else if (via === "netns" && pidProblem !== undefined) {
      unavailable.push({
        source: "netdev",
        reason: pidProblem,
        message: `TAP ${names[i]} was read in the network namespace of a process that is not the VM's now`
      })
      nic = failedNic(names[i], via)
    } else {
      nic = nicOf(names[i], via, counters.right)
    }
    nics[i] = nic
  }
  return { sums: sumsOf(nics), nics }
}

/** No NIC: every sum null. */
const noNics: NetValues = { sums: FIELDS.map(() => null), nics: [] }

/** The sums over the NICs (null where any NIC's value is); one NIC's values as they are, with no addition. */
const sumsOf = (nics: ReadonlyArray<NicStats>): Array<bigint | null> => {
  const first = nics[0]
  const sums: Array<bigint | null> = [
    first.rxBytes,
    first.txBytes,
    first.rxPackets,
    first.txPackets,
    first.rxErrors,
    first.txErrors,
    first.rxDropped,
    first.txDropped
  ]
  for (let i = 1; i < nics.length; i++) {
    for (let f = 0; f < FIELDS.length; f++) {
      const value = nics[i][FIELDS[f]]
      const sum = sums[f]
      sums[f] = value === null || sum === null ? null : sum + value
    }
  }
  return sums
}

const wentDown = (now: bigint | null | undefined, before: bigint | null | undefined): boolean =>
  now !== null && now !== undefined && before !== null && before !== undefined && now < before

/** Whether any of a NIC's counters went down since `before` (its values in FIELDS order). */
const nicWentDown = (nic: NicStats, before: ReadonlyArray<bigint | null>): boolean =>
  // Field by field, not nic[FIELDS[f]]: a load by a computed key was most of this check's cost.
  wentDown(nic.rxBytes, before[0]) ||
  wentDown(nic.txBytes, before[1]) ||
  wentDown(nic.rxPackets, before[2]) ||
  wentDown(nic.txPackets, before[3]) ||
  wentDown(nic.rxErrors, before[4]) ||
  wentDown(nic.txErrors, before[5]) ||
  wentDown(nic.rxDropped, before[6]) ||
  wentDown(nic.txDropped, before[7])

/** Whether any sum or any NIC's counter went down since the last reading of the series. @internal */
export const netWentDown = (memory: NetMemory | null, values: NetValues): boolean => {
  if (memory === null) return false
  for (let f = 0; f < FIELDS.length; f++) if (wentDown(values.sums[f], memory.sums[f])) return true
  for (const nic of values.nics) {
    const before = memory.nics.get(nic.name)
    if (before !== undefined && nicWentDown(nic, before)) return true
  }
  return false
}

/**
 * The value to remember: the one read, unless none was (a null is no evidence either way) or it equals
 * the one kept (bigints compare by value): that object stays, one made now would be promoted.
 */
const remembered = (value: bigint | null, kept: bigint | null): bigint | null =>
  value !== null && value !== kept ? value : kept

/** A NIC's values written into `before`, in FIELDS order. */
const rememberNic = (nic: NicStats, before: Array<bigint | null>): void => {
  before[0] = remembered(nic.rxBytes, before[0])
  before[1] = remembered(nic.txBytes, before[1])
  before[2] = remembered(nic.rxPackets, before[2])
  before[3] = remembered(nic.txPackets, before[3])
  before[4] = remembered(nic.rxErrors, before[4])
  before[5] = remembered(nic.txErrors, before[5])
  before[6] = remembered(nic.rxDropped, before[6])
  before[7] = remembered(nic.txDropped, before[7])
}

/**
 * The memory after this reading, updated in place (no allocation per VM and collection once its NICs
 * are known): every value read replaces the last one; a value not read keeps it. NICs no longer listed
 * are forgotten.
 *
 * @internal
 */
export const rememberNet = (memory: NetMemory | null, values: NetValues): NetMemory => {
  const kept: NetMemory = memory ?? { sums: FIELDS.map(() => null), nics: new Map() }
  for (let f = 0; f < FIELDS.length; f++) kept.sums[f] = remembered(values.sums[f], kept.sums[f])
  for (const nic of values.nics) {
    let before = kept.nics.get(nic.name)
    if (before === undefined) {
      before = FIELDS.map(() => null)
      kept.nics.set(nic.name, before)
    }
    rememberNic(nic, before)
  }
  if (kept.nics.size > values.nics.length) {
    for (const name of kept.nics.keys()) if (!values.nics.some((nic) => nic.name === name)) kept.nics.delete(name)
  }
  return kept
}
