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
import { bytes, printable } from "./TextFormat.js"

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
  /** Set when the listing failed: the VMs are then the last good listing, and the screen says so. */
  readonly sourceError?: string
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

/** Text length in terminal columns, counting code points (VM names and IDs are expected to be narrow). */
const columnsOf = (text: string) => Array.from(text).length

/** At most `width` columns: a cut text ends in "…" (nothing at all for width 0). @category format */
export const clip = (text: string, width: number): string => {
  const chars = Array.from(text)
  if (chars.length <= width) return text
  return width <= 0 ? "" : `${chars.slice(0, width - 1).join("")}…`
}

interface Column {
  readonly title: string
  readonly cells: ReadonlyArray<string>
  readonly right: boolean
  /** Never narrower than this when cut (the ID and NAME columns are cut before any column is left out). */
  readonly minWidth?: number
}

const naturalWidth = (column: Column) => Math.max(...[column.title, ...column.cells].map(columnsOf))
const rowWidth = (widths: ReadonlyArray<number>) => widths.reduce((sum, w) => sum + w, 0) + 2 * (widths.length - 1)

/**
 * Which columns are shown and how wide, for a terminal `width` columns wide: first the ID (an 8-column
 * prefix still tells VMs apart) and then NAME are cut, down to their `minWidth`; then columns are left
 * out, least telling first (`dropOrder`), and NAME gets back the room that freed; NAME is always kept.
 */
const fit = (
  columns: ReadonlyArray<Column>,
  width: number,
  dropOrder: ReadonlyArray<string>
): ReadonlyArray<{ readonly column: Column; readonly width: number }> => {
  let shown = columns.map((column) => ({ column, width: naturalWidth(column) }))
  const excess = () => rowWidth(shown.map((c) => c.width)) - width
  for (const title of ["ID", "NAME"]) {
    const over = excess()
    if (over <= 0) return shown
    shown = shown.map((c) =>
      c.column.title === title
        ? { column: c.column, width: Math.min(c.width, Math.max(c.column.minWidth ?? 1, c.width - over)) }
        : c
    )
  }
  for (const title of dropOrder) {
    if (excess() <= 0) break
    shown = shown.filter((c) => c.column.title !== title)
  }
  // The room a column left out freed goes back to NAME.
  const spare = -excess()
  return shown.map((c) =>
    c.column.title === "NAME" && spare > 0
      ? { column: c.column, width: Math.min(naturalWidth(c.column), c.width + spare) }
      : c
  )
}

/** The table, columns cut or left out to fit `width`. */
const fittedTable = (columns: ReadonlyArray<Column>, width: number, dropOrder: ReadonlyArray<string>) => {
  const shown = fit(columns, width, dropOrder)
  const rowCount = columns[0]?.cells.length ?? 0
  const line = (cellOf: (column: Column) => string) =>
    shown
      .map(({ column, width }) => {
        const cell = clip(cellOf(column), width)
        const pad = " ".repeat(width - columnsOf(cell))
        return column.right ? pad + cell : cell + pad
      })
      .join("  ")
      .trimEnd()
  return [line((c) => c.title), ...Array.from({ length: rowCount }, (_, i) => line((c) => c.cells[i] ?? ""))]
}

/** Left out first when the terminal is narrow; NAME, CORES and RSS go last. */
const DROP_ORDER = ["ID", "SWAP", "%ALLOC", "STATE", "STEAL%", "%VCPU", "TX/s", "RX/s", "RSS", "CORES"] as const

/**
 * The whole screen. With `width` (the terminal's columns) no line is longer, so the terminal never
 * wraps one: the table's columns are cut or left out (`fit`), other lines cut with "…". With `height`
 * (its rows) the screen has at most that many lines, the last one saying how many VMs are not shown.
 * @category format
 */
export const screen = (
  all: ReadonlyArray<Row>,
  options: {
    readonly sort: SortKey
    readonly source: string
    readonly at: Date
    readonly error?: string
    readonly width?: number
    readonly height?: number
  }
): string => {
  const width = Math.max(0, options.width ?? Number.POSITIVE_INFINITY)
  // What the sources and the rows say is made printable: a name, an id or a remote server's error must not
  // drive the terminal.
  const header = `vm-metrics top — ${printable(options.source)} — ${options.at.toISOString().slice(11, 19)} — ${all.length} VMs — sort: ${options.sort}`
  const help = "keys: c cpu  s steal  m memory  n network  a name  q quit"
  const rows = sorted(all, options.sort)
  const column = (title: string, cell: (row: Row) => string, right = false, minWidth?: number): Column => ({
    title,
    cells: rows.map((row) => printable(cell(row))),
    right,
    ...(minWidth === undefined ? {} : { minWidth })
  })
  // The number columns (CORES to TX/s) are right-aligned.
  const columns = [
    column("NAME", (row) => row.name, false, 12),
    column("STATE", (row) => row.state),
    column("CORES", (row) => fixed(row.cores, 2), true),
    column("%VCPU", (row) => percent(row.cpuShare), true),
    column("STEAL%", (row) => stealPercent(row.steal), true),
    column("RSS", (row) => bytes(row.rssBytes), true),
    column("%ALLOC", (row) => percent(row.memoryShare), true),
    column("SWAP", (row) => bytes(row.swapBytes), true),
    column("RX/s", (row) => bytes(row.rxPerSecond), true),
    column("TX/s", (row) => bytes(row.txPerSecond), true),
    column("ID", (row) => row.id, false, 8)
  ]
  const top = [header, help, options.error === undefined ? "" : `error: ${printable(options.error)}`]
  let table = fittedTable(columns, width, DROP_ORDER)
  const room = (options.height ?? Number.POSITIVE_INFINITY) - top.length
  if (table.length > room) {
    // The column titles, as many VMs as fit, and a last line for the rest.
    const kept = Math.max(0, room - 2)
    table = [...table.slice(0, 1 + kept), `… ${rows.length - kept} more VMs (a larger terminal shows them)`]
  }
  return [...top, ...table]
    .slice(0, options.height ?? undefined)
    .map((line) => clip(line, width))
    .join("\n")
}
