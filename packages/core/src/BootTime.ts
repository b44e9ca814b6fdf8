/**
 * Pure parser for the `btime` line of `/proc/stat`: the boot time in seconds since the epoch. With it
 * a process's starttime (ticks after boot) becomes a wall-clock time.
 *
 * @since 0.1.0
 */

/** Boot time in ms since the epoch, or undefined when the text has no valid `btime` line. @category parsers */
export const parseBootTimeMs = (procStat: string): number | undefined => {
  const match = /^btime[ \t]+(\d{1,15})[ \t]*$/m.exec(procStat)
  return match === null ? undefined : Number(match[1]) * 1000
}
