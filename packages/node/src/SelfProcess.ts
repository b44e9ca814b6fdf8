/**
 * Reads what the agent's own process costs (core SelfProcess) from `/proc/self`: stat (CPU time, start
 * time), statm (RSS), the fd directory (open fds) and limits (the open-files soft limit), the files the
 * standard Prometheus process collector reads. A failed read leaves its value null and is counted by file
 * and reason.
 *
 * The reads are synchronous (~0.15 ms in all): run asynchronously, each file's open, read and close went
 * through libuv's thread pool, and a sample took 5–7 ms of wall time at 1,000 VMs, which a scrape of a new
 * snapshot waited for. The fds are counted without listing them where the kernel allows (Linux 6.2 and
 * later give the count as the size of `/proc/<pid>/fd`, a directory of four entries per VM here); an older
 * kernel's listing stays asynchronous, as it grows with the VMs.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import type { KernelInfo } from "@vm-metrics/core/Kernel"
import { parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseProcStatm } from "@vm-metrics/core/ProcStatm"
import {
  cpuSecondsOf,
  residentBytesOf,
  type SelfProcess,
  type SelfSource,
  type SelfUnavailableTotal,
  startTimeSecondsOf
} from "@vm-metrics/core/SelfProcess"
import { Effect, Either } from "effect"
import { parseSoftLimit } from "./internal/fdBudget.js"
import { readKernelInfo } from "./NodeKernel.js"

/** @category models */
export interface Options {
  /** The process's /proc directory; default `/proc/self` (tests read another process's `/proc/<pid>`). */
  readonly dir?: string
  /** Clock ticks, page size and boot time; default read from this process (NodeKernel). */
  readonly kernel?: KernelInfo
}

const reasonOf = (error: unknown): string => {
  const code = (error as { code?: unknown } | null)?.code
  if (code === "EACCES" || code === "EPERM") return "permission_denied"
  if (code === "ENOENT" || code === "ESRCH") return "process_gone"
  return "read_failed"
}

/** procfs's magic number (statfs f_type). */
const PROC_SUPER_MAGIC = 0x9fa0

const isProcfs = (dir: string): boolean => {
  try {
    return fs.statfsSync(dir).type === PROC_SUPER_MAGIC
  } catch {
    return false
  }
}

/** A sampler: each run reads the files again; failures accumulate across runs. @category constructors */
export const make = (options: Options = {}): Effect.Effect<Effect.Effect<SelfProcess>> =>
  Effect.gen(function* () {
    const kernel = options.kernel ?? (yield* readKernelInfo())
    const dir = options.dir ?? "/proc/self"
    const failures = new Map<string, { source: SelfSource; reason: string; count: number }>()
    const count = (source: SelfSource, reason: string): null => {
      const key = `${source}\u0000${reason}`
      const entry = failures.get(key)
      if (entry === undefined) failures.set(key, { source, reason, count: 1 })
      else entry.count++
      return null
    }
    /** The file's value, or null with the failure counted (a parse failure as `parse_error`). */
    const settle = <A>(source: SelfSource, parsed: Either.Either<A, unknown>): A | null =>
      Either.isRight(parsed) ? parsed.right : count(source, "parse_error")
    const read = <A>(source: SelfSource, load: () => Either.Either<A, unknown>) =>
      Effect.sync(() => {
        try {
          return settle(source, load())
        } catch (error) {
          return count(source, reasonOf(error))
        }
      })
    const limitOf = (text: string) => {
      // "unlimited" is a valid answer (no series), not a parse error.
      if (/^Max open files\s+unlimited\s/m.test(text)) return Either.right(null)
      const limit = parseSoftLimit(text)
      return limit === null ? Either.left("no Max open files line") : Either.right(limit)
    }
    const fdDir = `${dir}/fd`
    const listFds = Effect.promise(() =>
      fs.promises.readdir(fdDir).then(
        (names) => names.length,
        (error: unknown) => count("self_fd", reasonOf(error))
      )
    )
    // The size of a procfs fd directory is its count on Linux 6.2+ and 0 before; elsewhere (a test's
    // directory) it means nothing. A process holds at least one fd (this one holds many), so 0 is "list".
    const openFdsOf = isProcfs(dir)
      ? Effect.suspend(() => {
          let size: number
          try {
            size = fs.statSync(fdDir).size
          } catch (error) {
            return Effect.succeed(count("self_fd", reasonOf(error)))
          }
          return size > 0 ? Effect.succeed(size) : listFds
        })
      : listFds
    // The fds are counted before the other three files are opened: counted while one is open, the count
    // would include it.
    const others = Effect.all([
      read("self_stat", () => parseProcStat(fs.readFileSync(`${dir}/stat`))),
      read("self_statm", () => parseProcStatm(fs.readFileSync(`${dir}/statm`))),
      read("self_limits", () => limitOf(fs.readFileSync(`${dir}/limits`, "latin1")))
    ])
    return Effect.map(
      Effect.zip(openFdsOf, others),
      ([openFds, [stat, statm, maxFds]]): SelfProcess => ({
        cpuSeconds: stat === null ? null : cpuSecondsOf(stat, kernel),
        residentMemoryBytes: statm === null ? null : residentBytesOf(statm, kernel),
        openFds,
        maxFds,
        startTimeSeconds: stat === null ? null : startTimeSecondsOf(stat, kernel),
        unavailableTotals: [...failures.values()].map((f): SelfUnavailableTotal => ({ ...f }))
      })
    )
  })
