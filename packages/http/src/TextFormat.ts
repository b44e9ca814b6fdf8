/**
 * How numbers and tables are written for a person at a terminal: `vm-metrics list` and `top` share
 * the byte units and the column layout.
 *
 * @since 0.1.0
 */

const UNITS = ["B", "K", "M", "G", "T"] as const

/**
 * A byte count (or rate) in binary units, one decimal: 1536 → "1.5K", or "1.5KiB" with `"iec"`; null
 * (unavailable) → "-". For display only: a count past 2^53 is rounded first.
 * @category format
 */
export const bytes = (n: number | bigint | null, style: "short" | "iec" = "short"): string => {
  if (n === null) return "-"
  let value = Number(n)
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  const suffix = unit === 0 || style === "short" ? UNITS[unit] : `${UNITS[unit]}iB`
  return `${value.toFixed(unit === 0 ? 0 : 1)}${suffix}`
}

/**
 * Columns two spaces apart, each as wide as its widest cell; the columns `rightAligned` picks (numbers)
 * are padded on the left, the others on the right; no trailing spaces.
 * @category format
 */
export const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  rightAligned: (column: number) => boolean = () => false
): string => {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((row) => (row[c] ?? "").length)))
  return all
    .map((row) =>
      row
        .map((cell, c) => (rightAligned(c) ? cell.padStart(widths[c] ?? 0) : cell.padEnd(widths[c] ?? 0)))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}
