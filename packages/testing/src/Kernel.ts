/**
 * The kernel's own numbers about a process, read by a test independently of vm-metrics. Fields of
 * /proc/<pid>/stat and statm are named by their 1-based numbers in proc(5) (14 = utime, 22 = starttime).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"

export const getconf = (name: string): number => Number(execFileSync("getconf", [name], { encoding: "utf8" }).trim())

export const CLK_TCK = getconf("CLK_TCK")
export const PAGE_SIZE = getconf("PAGESIZE")

/** One clock tick in seconds: the resolution of the CPU counter. */
export const TICK_SECONDS = 1 / CLK_TCK

/** The fields of a stat line; `fields[n - 1]` is proc(5)'s field n (the command may hold spaces and ")"). */
export const statFieldsOf = (text: string): ReadonlyArray<string> => {
  const open = text.indexOf("(")
  const close = text.lastIndexOf(")")
  return [
    text.slice(0, open).trim(),
    text.slice(open, close + 1),
    ...text
      .slice(close + 2)
      .trim()
      .split(" ")
  ]
}

/** Field `n` (1-based, as in proc(5)) of a stat line. */
export const statFieldOf = (text: string, n: number): string => {
  const field = statFieldsOf(text)[n - 1]
  if (field === undefined) throw new Error(`no field ${n} in stat line ${text}`)
  return field
}

/** Field `n` (1-based, as in proc(5)) of /proc/<pid>/stat: 3 state, 14 utime, 15 stime, 22 starttime. */
export const statField = (pid: number, n: number): string =>
  statFieldOf(fs.readFileSync(`/proc/${pid}/stat`, "utf8"), n)

/** Whether the pid exists and is not a zombie. */
export const pidAlive = (pid: number): boolean => {
  try {
    return statField(pid, 3) !== "Z"
  } catch {
    return false
  }
}

/** utime + stime (stat fields 14 and 15) ÷ CLK_TCK, in seconds. */
export const statCpuSeconds = (pid: number): number =>
  (Number(statField(pid, 14)) + Number(statField(pid, 15))) / CLK_TCK

/** Resident pages (statm field 2) × the page size, in bytes. */
export const statmRssBytes = (pid: number): number =>
  Number(fs.readFileSync(`/proc/${pid}/statm`, "utf8").trim().split(" ")[1]) * PAGE_SIZE

/** The boot time (`btime` of /proc/stat), epoch seconds. */
export const bootTimeSeconds = (): number => Number(/^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "utf8"))?.[1])

/** The process's start: stat field 22 (ticks after boot) and the boot time, epoch ms. */
export const processStartMs = (pid: number): number =>
  bootTimeSeconds() * 1000 + (Number(statField(pid, 22)) * 1000) / CLK_TCK

/** `ps -o rss=,vsz=,times=` of a pid: KiB, KiB, CPU seconds (a second tool besides /proc). */
export const psOf = (pid: number) => {
  const [rssKiB = Number.NaN, vszKiB = Number.NaN, cpuSeconds = Number.NaN] = execFileSync(
    "ps",
    ["-o", "rss=,vsz=,times=", "-p", String(pid)],
    { encoding: "utf8" }
  )
    .trim()
    .split(/\s+/)
    .map(Number)
  return { rssKiB, vszKiB, cpuSeconds }
}

/** Children of a pid (from /proc/<pid>/task/<pid>/children). */
export const childrenOf = (pid: number): Array<number> =>
  fs
    .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter((s) => s !== "")
    .map(Number)
