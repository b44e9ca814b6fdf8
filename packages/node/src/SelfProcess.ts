/**
 * Reads what the agent's own process costs (core SelfProcess) from `/proc/self`: stat (CPU time, start
 * time), statm (RSS), the fd directory (open fds) and limits (the open-files soft limit), the files the
 * standard Prometheus process collector reads. Each read is asynchronous (the fd directory holds four
 * entries per VM). A failed read leaves its value null and is counted by file and reason.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs/promises"
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
    const read = <A>(source: SelfSource, load: () => Promise<Either.Either<A, unknown>>) =>
      Effect.promise(() =>
        load().then(
          (parsed) => (Either.isRight(parsed) ? parsed.right : count(source, "parse_error")),
          (error: unknown) => count(source, reasonOf(error))
        )
      )
    const limitOf = (text: string) => {
      // "unlimited" is a valid answer (no series), not a parse error.
      if (/^Max open files\s+unlimited\s/m.test(text)) return Either.right(null)
      const limit = parseSoftLimit(text)
      return limit === null ? Either.left("no Max open files line") : Either.right(limit)
    }
    // The fds are counted before the other three files are opened: read together, the count would
    // include them (up to three more than the process holds, varying from scrape to scrape).
    const openFdsOf = read("self_fd", () => fs.readdir(`${dir}/fd`).then((names) => Either.right(names.length)))
    const others = Effect.all(
      [
        read("self_stat", () => fs.readFile(`${dir}/stat`).then((bytes) => parseProcStat(bytes))),
        read("self_statm", () => fs.readFile(`${dir}/statm`).then((bytes) => parseProcStatm(bytes))),
        read("self_limits", () => fs.readFile(`${dir}/limits`, "latin1").then(limitOf))
      ],
      { concurrency: "unbounded" }
    )
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
