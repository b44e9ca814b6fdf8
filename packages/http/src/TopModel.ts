/**
 * The numbers behind `vm-metrics top`: rates from two consecutive samples, and the screen as text.
 * Pure, so the rules are tested without a terminal.
 *
 * A rate needs the same process in both samples (same epoch and process start time) and counters
 * that did not go down; otherwise (a VMM restart, a TAP re-created, a value unavailable) it is
 * unknown for that refresh, never negative.
 *
 * @since 0.1.0
 */
import { bytes, table } from "./TextFormat.js"

/** One VM in one sample, as the server's JSON (or the local collector) gives it. @category models */
export interface VmSample {
  readonly id: string
  readonly name: string
  readonly state: string
  readonly epoch: number
  readonly processStart: string | null
  readonly cpuSeconds: number | null
  readonly rssBytes: number | null
  readonly allocatedMemoryBytes: number
  readonly vcpus: number
  readonly rxBytes: number | null
  readonly txBytes: number | null
  /** The server's vCPU delay ratio (run-queue wait per vCPU-second), null when unknown. */
  readonly cpuDelayRatio: number | null
  /** Memory of the process swapped out, null when unknown (group memory off, or unread). */
  readonly swapBytes: number | null
}

/** @category models */
export interface Sample {
  readonly atMs: number
  readonly vms: ReadonlyArray<VmSample>
}

/** @category models */
export interface Row {
  readonly id: string
  readonly name: string
  readonly state: string
  /** CPU cores in use (CPU seconds per second). */
  readonly cores: number | null
  /** cores / allocated vCPUs. */
  readonly cpuShare: number | null
  /** The vCPU delay ratio (STEAL% / 100): the time the vCPUs waited for a host CPU. */
  readonly steal: number | null
  readonly swapBytes: number | null
  readonly rssBytes: number | null
  /** RSS / allocated memory. */
  readonly memoryShare: number | null
  readonly rxPerSecond: number | null
  readonly txPerSecond: number | null
}

/** @category models */
export const sortKeys = { c: "cpu", s: "steal", m: "memory", n: "network", a: "name" } as const
/** @category models */
export type SortKey = (typeof sortKeys)[keyof typeof sortKeys]

const rate = (before: number | null | undefined, after: number | null, seconds: number): number | null =>
  before === null || before === undefined || after === null || seconds <= 0 || after < before
    ? null
    : (after - before) / seconds

/** Rows of `current`, with rates against `previous` where the same process was seen. @category rates */
export const rows = (previous: Sample | undefined, current: Sample): ReadonlyArray<Row> => {
  const before = new Map(previous?.vms.map((vm) => [vm.id, vm] as const) ?? [])
  const seconds = previous === undefined ? 0 : (current.atMs - previous.atMs) / 1000
  return current.vms.map((vm) => {
    const old = before.get(vm.id)
    const same = old !== undefined && old.epoch === vm.epoch && old.processStart === vm.processStart
    const cores = same ? rate(old.cpuSeconds, vm.cpuSeconds, seconds) : null
    return {
      id: vm.id,
      name: vm.name,
      state: vm.state,
      cores,
      cpuShare: cores === null || vm.vcpus <= 0 ? null : cores / vm.vcpus,
      // The server's rate, between its own two latest snapshots (null after a restart there too).
      steal: vm.cpuDelayRatio,
      swapBytes: vm.swapBytes,
      rssBytes: vm.rssBytes,
      memoryShare: vm.rssBytes === null || vm.allocatedMemoryBytes <= 0 ? null : vm.rssBytes / vm.allocatedMemoryBytes,
      // Network counters belong to the TAP, which may outlive a VMM restart: compare them as they are.
      rxPerSecond: rate(old?.rxBytes, vm.rxBytes, seconds),
      txPerSecond: rate(old?.txBytes, vm.txBytes, seconds)
    }
  })
}

const value = (row: Row, key: SortKey): number | string => {
  switch (key) {
    case "cpu":
      return row.cores ?? -1
    case "steal":
      return row.steal ?? -1
    case "memory":
      return row.rssBytes ?? -1
    case "network":
      return (row.rxPerSecond ?? 0) + (row.txPerSecond ?? 0)
    case "name":
      return row.name
  }
}

/** Largest first, except names (A to Z); ties by name. @category rates */
export const sorted = (all: ReadonlyArray<Row>, key: SortKey): ReadonlyArray<Row> =>
  [...all].sort((a, b) => {
    const [x, y] = [value(a, key), value(b, key)]
    if (typeof x === "string" || typeof y === "string") return String(x).localeCompare(String(y))
    return y - x || a.name.localeCompare(b.name)
  })

const fixed = (n: number | null, digits: number) => (n === null ? "-" : n.toFixed(digits))
const percent = (n: number | null) => (n === null ? "-" : `${(n * 100).toFixed(0)}%`)
/** One decimal: a steal of a few percent already matters. */
const stealPercent = (n: number | null) => (n === null ? "-" : `${(n * 100).toFixed(1)}%`)

/** The whole screen. @category format */
export const screen = (
  all: ReadonlyArray<Row>,
  options: { readonly sort: SortKey; readonly source: string; readonly at: Date; readonly error?: string }
): string => {
  const header = `vm-metrics top — ${options.source} — ${options.at.toISOString().slice(11, 19)} — ${all.length} VMs — sort: ${options.sort}`
  const help = "keys: c cpu  s steal  m memory  n network  a name  q quit"
  const columns = ["NAME", "STATE", "CORES", "%VCPU", "STEAL%", "RSS", "%ALLOC", "SWAP", "RX/s", "TX/s", "ID"]
  const cells = sorted(all, options.sort).map((row) => [
    row.name,
    row.state,
    fixed(row.cores, 2),
    percent(row.cpuShare),
    stealPercent(row.steal),
    bytes(row.rssBytes),
    percent(row.memoryShare),
    bytes(row.swapBytes),
    bytes(row.rxPerSecond),
    bytes(row.txPerSecond),
    row.id
  ])
  return [
    header,
    help,
    options.error === undefined ? "" : `error: ${options.error}`,
    // The number columns (CORES to TX/s) are right-aligned.
    table(columns, cells, (column) => column >= 2 && column <= 9)
  ].join("\n")
}
