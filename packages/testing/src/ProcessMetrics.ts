/**
 * What the standard Prometheus process metrics of a process should be, worked out here independently
 * of the code under test: getconf for the clock ticks and page size, proc(5) field numbers, `btime` of
 * /proc/stat, the fd directory and the limits file.
 */
import * as fs from "node:fs"
import { CLK_TCK, PAGE_SIZE } from "./Kernel.js"

export interface ExpectedProcessMetrics {
  readonly cpuSeconds: number
  readonly residentMemoryBytes: number
  readonly openFds: number
  readonly maxFds: number
  readonly startTimeSeconds: number
}

export const expectedProcessMetrics = (pid: number): ExpectedProcessMetrics => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
  // Fields after the comm's closing paren start at field 3 (state).
  const after = stat
    .slice(stat.lastIndexOf(")") + 2)
    .trim()
    .split(/\s+/)
  const field = (n: number) => Number(after[n - 3])
  const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "latin1"))?.[1] ?? Number.NaN)
  const resident = Number(fs.readFileSync(`/proc/${pid}/statm`, "latin1").trim().split(/\s+/)[1])
  const limit = /^Max open files\s+(\d+)\s/m.exec(fs.readFileSync(`/proc/${pid}/limits`, "latin1"))
  return {
    cpuSeconds: (field(14) + field(15)) / CLK_TCK,
    residentMemoryBytes: resident * PAGE_SIZE,
    openFds: fs.readdirSync(`/proc/${pid}/fd`).length,
    maxFds: limit === null ? Number.NaN : Number(limit[1]),
    startTimeSeconds: btime + field(22) / CLK_TCK
  }
}
