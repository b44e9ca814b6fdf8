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

// C0 and C1 controls and DEL (escape sequences, line breaks, bells), bidirectional marks, embeddings,
// overrides and isolates, and the line and paragraph separators.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is matched
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g

/**
 * `text` safe to write to a terminal: every control character, bidirectional control and line separator
 * becomes "?". A VM's name or id comes from a command line, a file or a remote server: written as it is,
 * it could move the cursor, clear the screen, retitle the window or reorder what follows it.
 * @category format
 */
export const printable = (text: string): string => text.replace(UNPRINTABLE, "?")

/**
 * Columns two spaces apart, each as wide as its widest cell; the columns `rightAligned` picks (numbers)
 * are padded on the left, the others on the right; no trailing spaces. Cells are made `printable`.
 * @category format
 */
export const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  rightAligned: (column: number) => boolean = () => false
): string => {
  const all = [header, ...rows].map((row) => row.map(printable))
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
