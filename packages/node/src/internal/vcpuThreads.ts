/**
 * The vCPU threads of one hypervisor process: which threads they are (listed rarely) and their
 * `schedstat` (read on every sample through kept fds).
 *
 * Listing costs a directory read plus a `comm` (and, for vCPU threads, a `stat`) per thread, and
 * threads come and go rarely (vCPU hotplug, a restart of the VMM's vCPU loop), so the threads are
 * listed when the process is first sampled, when a kept schedstat fd reads ESRCH (its thread
 * exited), and otherwise every `relistEvery`-th sample: a new thread (a replacement, or vCPUs that
 * start after the process) is found within that many collections.
 *
 * One thread per vCPU index: if two threads carry one index (a replacement caught while the old
 * thread still exits), the first listed (lowest vCPU index, then tid) is read.
 *
 * @internal
 */
import * as fs from "node:fs"
import type { ProcReadError } from "@vm-metrics/core/Errors"
import type { VcpuThreadSample, VcpuThreadsError } from "@vm-metrics/core/ProcReader"
import { parseProcStat } from "@vm-metrics/core/ProcStat"
import { parseSchedstat } from "@vm-metrics/core/Schedstat"
import { findVcpuThreads, type ThreadComm } from "@vm-metrics/core/VcpuThread"
import { Either } from "effect"
import type { FdBudget } from "./fdBudget.js"
import { errnoOf, KeptFile, type ReadBuffer } from "./keptFile.js"
import type { SmallFileReader } from "./smallFile.js"

/** How a reader turns an errno code at a path of a pid into a typed error. @internal */
export type ErrorOf = (pid: number, path: string, code: string) => ProcReadError

interface Thread {
  readonly tid: number
  readonly vcpu: number
  readonly startTicks: bigint | null
  readonly schedstat: KeptFile
}

/** A comm is at most 15 bytes and a newline; a stat line is a few hundred bytes. */
const COMM_LIMIT = 64
const STAT_LIMIT = 4096

/** The default listing rate: every 30th sample (with a 15 s scrape, every 7.5 minutes). @internal */
export const RELIST_EVERY = 30

/** @internal */
export class VcpuThreads {
  private threads: ReadonlyArray<Thread> = []
  /** Why the last listing found no threads to read, if it did not. */
  private failure: VcpuThreadsError | undefined
  /** Whether the last read found a kept fd whose thread exited. */
  private stale = false
  /** Samples since the last listing; at `relistEvery` (and at first) the next sample lists. */
  private sinceListing = Number.POSITIVE_INFINITY

  constructor(
    private readonly taskDir: string,
    private readonly pid: number,
    private readonly budget: FdBudget,
    private readonly relistEvery: number = RELIST_EVERY
  ) {}

  /** The vCPU threads with their schedstat read now, or why there are none. */
  sample(
    buffer: ReadBuffer,
    small: SmallFileReader,
    errorOf: ErrorOf
  ): Either.Either<ReadonlyArray<VcpuThreadSample>, VcpuThreadsError> {
    let listed = false
    if (this.sinceListing >= this.relistEvery) {
      this.list(small, errorOf)
      listed = true
    }
    let samples = this.failure === undefined ? this.readAll(buffer, errorOf) : []
    if (!listed && this.stale) {
      // A vCPU thread exited: whoever runs its vCPU now is found by listing again, at once.
      this.list(small, errorOf)
      samples = this.failure === undefined ? this.readAll(buffer, errorOf) : []
    }
    this.sinceListing++
    return this.failure === undefined ? Either.right(samples) : Either.left(this.failure)
  }

  /** Closes the kept fds. */
  close(): void {
    for (const thread of this.threads) thread.schedstat.close()
    this.threads = []
  }

  private readAll(buffer: ReadBuffer, errorOf: ErrorOf): Array<VcpuThreadSample> {
    this.stale = false
    const samples: Array<VcpuThreadSample> = []
    for (const { tid, vcpu, startTicks, schedstat } of this.threads) {
      const length = schedstat.read(buffer)
      // A kept fd reads ESRCH when its thread exited; a file read by path (no room in the fd budget)
      // reads ENOENT then. Either way the thread listed is gone: list again at once.
      if (length === "ESRCH" || (length === "ENOENT" && !schedstat.isOpen)) this.stale = true
      samples.push({
        tid,
        vcpu,
        startTicks,
        schedstat:
          typeof length === "string"
            ? Either.left(errorOf(this.pid, schedstat.path, length))
            : parseSchedstat(buffer.bytes, length)
      })
    }
    return samples
  }

  private list(small: SmallFileReader, errorOf: ErrorOf): void {
    this.sinceListing = 0
    let names: Array<string>
    try {
      names = fs.readdirSync(this.taskDir)
    } catch (error) {
      this.replace([], errorOf(this.pid, this.taskDir, errnoOf(error)))
      this.sinceListing = Number.POSITIVE_INFINITY // a failed listing (gone, hidden, refused): again next time
      return
    }
    const comms: Array<ThreadComm> = []
    let mainComm = ""
    for (const name of names) {
      const tid = Number(name)
      if (!Number.isSafeInteger(tid)) continue
      const comm = small.read(`${this.taskDir}/${name}/comm`, { limit: COMM_LIMIT, oneRead: true })
      if (typeof comm === "string") continue // the thread exited meanwhile
      const text = comm.toString("latin1")
      if (tid === this.pid) mainComm = text
      comms.push({ tid, comm: text })
    }
    const found = findVcpuThreads(mainComm, comms)
    if (Either.isLeft(found)) {
      this.replace([], found.left)
      return
    }
    const kept = new Map(this.threads.map((thread) => [thread.tid, thread]))
    const threads: Array<Thread> = []
    const seen = new Set<number>()
    for (const { tid, vcpu } of found.right) {
      if (seen.has(vcpu)) continue
      seen.add(vcpu)
      const old = kept.get(tid)
      if (old !== undefined && old.vcpu === vcpu) {
        threads.push(old)
        continue
      }
      const path = `${this.taskDir}/${tid}`
      threads.push({
        tid,
        vcpu,
        startTicks: this.startTicksOf(small, path),
        schedstat: new KeptFile(`${path}/schedstat`, "ESRCH", this.budget)
      })
    }
    this.replace(threads, undefined)
  }

  /** The thread's start time (stat field 22), so a replaced thread's series starts when it did. */
  private startTicksOf(small: SmallFileReader, threadPath: string): bigint | null {
    const stat = small.read(`${threadPath}/stat`, { limit: STAT_LIMIT })
    if (typeof stat === "string") return null
    const parsed = parseProcStat(stat, stat.length)
    return Either.isRight(parsed) ? parsed.right.startTimeTicks : null
  }

  /** Keeps `threads`, closing the fds of the threads no longer read. */
  private replace(threads: ReadonlyArray<Thread>, failure: VcpuThreadsError | undefined): void {
    const keep = new Set(threads)
    for (const thread of this.threads) if (!keep.has(thread)) thread.schedstat.close()
    this.threads = threads
    this.failure = failure
  }
}
