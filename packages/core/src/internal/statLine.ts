/**
 * Test support: renders a realistic `/proc/<pid>/stat` line for in-memory processes and fixtures.
 * Internal (not exported by the package); tests of every package import it by relative path.
 *
 * @internal
 */

/** Fields of a realistic stat line; everything else is filled like a sleeping process. */
export interface StatLine {
  readonly pid: number
  readonly comm?: string
  readonly state?: string
  /** Field 12, majflt. */
  readonly majorFaults?: bigint | number
  readonly utime?: bigint | number
  readonly stime?: bigint | number
  readonly startTime?: bigint | number
  readonly guestTime?: bigint | number
}

/** Renders a full 52-field `/proc/<pid>/stat` line, for in-memory processes and fixtures. */
export const statLine = (line: StatLine): string => {
  const fields: Array<string | number | bigint> = [
    line.state ?? "S",
    1,
    line.pid,
    line.pid,
    0,
    -1,
    4194560,
    100,
    0,
    line.majorFaults ?? 0,
    0
  ]
  fields.push(line.utime ?? 0, line.stime ?? 0, 0, 0, 20, 0, 1, 0, line.startTime ?? 1000, 12345678, 3000)
  fields.push("18446744073709551615", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 0, line.guestTime ?? 0, 0)
  fields.push(0, 0, 0, 0, 0, 0, 0, 0)
  return `${line.pid} (${line.comm ?? "qemu-system-x86"}) ${fields.join(" ")}\n`
}
