/**
 * Pure parser for the `btime` line of `/proc/stat`: the boot time in seconds since the epoch. With it
 * a process's starttime (ticks after boot) becomes a wall-clock time.
 *
 * The text is the file decoded as Latin-1 (`readFileSync(path, "latin1")`). Lines end at `\n` only,
 * as the kernel writes them; the value is ASCII digits whose milliseconds a `number` holds exactly.
 *
 * @since 0.1.0
 */

const BTIME_LINE = /^btime[ \t]+([0-9]{1,15})[ \t]*$/
const MAX_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000)

/** Boot time in ms since the epoch, or undefined when the text has no valid `btime` line. @category parsers */
export const parseBootTimeMs = (procStat: string): number | undefined => {
  for (const line of procStat.split("\n")) {
    const match = BTIME_LINE.exec(line)
    if (match === null) continue
    const seconds = Number(match[1]) // ≤ 15 digits: exact
    if (seconds <= MAX_SECONDS) return seconds * 1000
  }
  return undefined
}
