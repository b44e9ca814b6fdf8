/**
 * How many fds the node readers may keep open, shared by every reader of the process: the open-files
 * limit is the process's, not a reader's. A file is kept (re-read at offset 0) while the budget has
 * room; beyond it, it is read by path (open, read, close each time: correct, just slower), so the fd
 * count does not grow with the VM count past the budget.
 *
 * The default budget is the collector's half of the open-files soft limit (the other half is the HTTP
 * server's connections, see the http package's Connections) less a reserve for discovery's kept comm
 * fds, the by-path reads and the runtime (`reserveFor`, at most a quarter of the half). When an open still meets the
 * limit (EMFILE, ENFILE: other fds of the process, or of the host), the budget gives back half of its
 * kept fds (those files are read by path from then on) and keeps at most that many, so the read that
 * met the limit is retried by path instead of failing for want of an fd.
 *
 * @internal
 */
import * as fs from "node:fs"
import { openReadOnly } from "./keptFile.js"
import { keptCommFdsFor } from "./processScanner.js"

/** Fds left out of the readers' budget: discovery's comm fds, plus room for reads by path and the runtime. */
const reserveFor = (softLimit: number): number => keptCommFdsFor(softLimit) + 64

/** Something kept open under the budget, which the budget may ask to close its fd. @internal */
export interface Holder {
  /** Closes the fd; the holder calls `release` for it. */
  close(): void
}

/** The fd limit (per process or system-wide) is reached. @internal */
export const isExhausted = (code: string): boolean => code === "EMFILE" || code === "ENFILE"

/** The soft "Max open files" of a /proc/<pid>/limits text; null when unlimited or absent. @internal */
export const parseSoftLimit = (limits: string): number | null => {
  const match = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits)
  if (match === null || match[1] === "unlimited") return null
  const limit = Number(match[1])
  return Number.isSafeInteger(limit) ? limit : null
}

/** The budget a soft limit leaves the readers: the collector's half less the reserve (unlimited: no bound). @internal */
export const budgetFor = (softLimit: number | null): number => {
  if (softLimit === null) return Number.MAX_SAFE_INTEGER
  const half = Math.floor(softLimit / 2)
  return half - Math.min(reserveFor(softLimit), Math.floor(half / 4))
}

/** @internal */
export class FdBudget {
  private readonly holders = new Set<Holder>()
  /** Files read by path because the budget had no room (or the limit was met). */
  private byPathReads = 0
  /** How many times an open met the fd limit. */
  private exhaustions = 0

  constructor(private limit: number) {}

  /** The most fds kept now (shrinks at the fd limit, never grows). */
  get max(): number {
    return this.limit
  }

  /** The fds kept now. */
  get kept(): number {
    return this.holders.size
  }

  /** Reads done by path since the start. */
  get byPath(): number {
    return this.byPathReads
  }

  /** Opens met the fd limit since the start. */
  get exhausted(): number {
    return this.exhaustions
  }

  /**
   * Opens `path` for `holder` to keep: the fd, the errno code of a failed open, or undefined when the
   * budget has no room (or the limit was met): then read the file by path (`readByPath`).
   */
  open(holder: Holder, path: string): number | string | undefined {
    if (this.holders.size >= this.limit) return undefined
    const fd = openReadOnly(path)
    if (typeof fd === "number") {
      this.holders.add(holder)
      return fd
    }
    if (!isExhausted(fd)) return fd
    this.shed()
    return undefined
  }

  /** The holder closed its kept fd: room for another. */
  release(holder: Holder): void {
    this.holders.delete(holder)
  }

  /**
   * Opens `path` for one read by path (counted): the fd, to be closed by the caller, or the errno code.
   * At the fd limit the budget sheds kept fds and opens once more.
   */
  openOnce(path: string): number | string {
    this.byPathReads++
    const fd = openReadOnly(path)
    return typeof fd === "string" && isExhausted(fd) && this.shed() ? openReadOnly(path) : fd
  }

  /** At the fd limit: closes the older half of the kept fds and keeps at most that many. Whether any was freed. */
  shed(): boolean {
    this.exhaustions++
    const before = this.holders.size
    const keep = Math.floor(before / 2)
    this.limit = Math.min(this.limit, keep)
    for (const holder of this.holders) {
      if (this.holders.size <= keep) break
      holder.close()
      this.holders.delete(holder) // even if the holder forgot to release
    }
    return this.holders.size < before
  }
}

let shared: FdBudget | undefined

/** This process's open-files soft limit (null when unlimited or unreadable). @internal */
export const softLimitOfSelf = (): number | null => {
  try {
    return parseSoftLimit(fs.readFileSync("/proc/self/limits", "latin1"))
  } catch {
    return null
  }
}

/** The budget every reader of this process shares unless given its own; sized on first use. @internal */
export const sharedFdBudget = (): FdBudget => {
  shared ??= new FdBudget(budgetFor(softLimitOfSelf()))
  return shared
}
