/**
 * The host's TAP counters from one read of the agent's own `<procRoot>/self/net/dev` per collection,
 * instead of 2–8 sysfs counter files per TAP (measured: a sysfs counter read 5–6 µs, a net/dev line
 * 1.5–2.3 µs). Both show the kernel's rtnl_link_stats64 of the device (dev_get_stats); net/dev's rx
 * drop adds rx_missed_errors, which a TAP never counts.
 *
 * Used only while the agent's network namespace is the one `<sysRoot>/class/net` shows. In a Kubernetes
 * pod without hostNetwork the agent's namespace is the pod's while /sys is the host's, and a pod's
 * interface of the same name must never stand in for the host's TAP. The check: net/dev lists exactly
 * the names sysfs lists, and each interface's sysfs rx_bytes lies between its net/dev rx_bytes read
 * before and after it (counters only grow: two namespaces pass only if all their names and counters
 * match). It runs on first use, at a low rate (`recheckMs`), after 5 s when interfaces kept coming and
 * going while it compared, and in the collection after a disagreement (a TAP sysfs has that net/dev
 * lacks even when read again). Until it passes, the reader uses sysfs.
 * Counters of a collection are those of its first read (a TAP deleted meanwhile is missing from the next
 * collection on). Neither namespace changes under a running agent (it never calls setns; a sysfs mount keeps the
 * namespace it was mounted in), so re-checking only guards against evidence that was weak (few
 * interfaces, idle counters); a check costs one listing and, when the names agree, one sysfs read per
 * interface.
 *
 * @internal
 */
import * as fs from "node:fs"
import { NetDevTable } from "@vm-metrics/core/NetDev"
import { parseSysfsCounterText } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import { Either } from "effect"
import type { FdBudget } from "./fdBudget.js"
import { KeptFile, type ReadBuffer } from "./keptFile.js"

/** @internal */
export interface HostNetDevOptions {
  /** How often (ms) the namespace check runs again once it has run. Default one minute. */
  readonly recheckMs?: number
  /** The clock, in ms (tests). */
  readonly now?: () => number
}

type Interfaces = NetDevTable

/** A check that saw interfaces come and go (VMs starting or stopping) runs again this soon (ms). */
const RETRY_MS = 5_000

/** A sysfs counter read once by path (the check's reads are rare: no kept fd). */
const sysfsRxBytes = (path: string): bigint | undefined => {
  try {
    const value = parseSysfsCounterText(fs.readFileSync(path, "latin1"), "rx_bytes")
    return Either.isRight(value) ? value.right : undefined
  } catch {
    return undefined
  }
}

/** @internal */
export const makeHostNetDev = (
  sysRoot: string,
  procRoot: string,
  budget: FdBudget,
  buffer: ReadBuffer,
  options: HostNetDevOptions = {}
) => {
  const recheckMs = options.recheckMs ?? 60_000
  const now = options.now ?? (() => performance.now())
  const file = new KeptFile(`${procRoot}/self/net/dev`, "ESRCH", budget)
  let same = false
  let nextCheck = Number.NEGATIVE_INFINITY
  let checks = 0
  let roundRead = -1
  let current: Interfaces | undefined
  // Filled again in place by each read: the collections' own, and the check's two (before and after).
  const collected = new NetDevTable()
  const checkedBefore = new NetDevTable()
  const checkedAfter = new NetDevTable()

  /** The agent's interfaces now (in `into`), or undefined when the file cannot be read or parsed. */
  const readNow = (into: NetDevTable = collected): Interfaces | undefined => {
    const length = file.read(buffer, true) // a page holds ~30 interfaces
    if (typeof length === "string") return undefined
    return into.fill(buffer.bytes, length) === undefined ? into : undefined
  }

  const sameNames = (a: Interfaces, b: Interfaces): boolean => {
    if (a.size !== b.size) return false
    for (let row = 0; row < a.size; row++) if (b.row(a.nameAt(row)) === undefined) return false
    return true
  }

  /** One comparison (see the header): the interfaces when they match, "changed" when net/dev changed meanwhile. */
  const compare = (): Interfaces | undefined | "changed" => {
    const before = readNow(checkedBefore)
    if (before === undefined) return undefined
    let listed: Array<string>
    try {
      // Interfaces are links (dirs in a test's root); a file such as bonding_masters is none. Latin-1 like net/dev.
      listed = fs
        .readdirSync(`${sysRoot}/class/net`, { encoding: "latin1", withFileTypes: true })
        .filter((entry) => !entry.isFile())
        .map((entry) => entry.name)
    } catch {
      return undefined
    }
    if (listed.length !== before.size || !listed.every((name) => before.row(name) !== undefined)) {
      const later = readNow(checkedAfter)
      return later !== undefined && !sameNames(before, later) ? "changed" : undefined
    }
    const sysfs: Array<{ readonly name: string; readonly earlier: bigint; readonly value: bigint }> = []
    for (let row = 0; row < before.size; row++) {
      const name = before.nameAt(row)
      if (Either.isLeft(validateTapName(name))) continue // compared by name only, never made a path
      const value = sysfsRxBytes(`${sysRoot}/class/net/${name}/statistics/rx_bytes`)
      if (value === undefined) return "changed" // gone meanwhile, or no counter there: tried again, then sysfs
      sysfs.push({ name, earlier: before.counter(row, "rxBytes"), value })
    }
    const after = readNow(checkedAfter)
    if (after === undefined) return undefined
    if (!sameNames(before, after)) return "changed"
    for (const { name, earlier, value } of sysfs) {
      const later = after.row(name)
      if (later === undefined || earlier > value || value > after.counter(later, "rxBytes")) return undefined
    }
    return after
  }

  /**
   * Whether net/dev shows the namespace sysfs shows: its interfaces when it does; "changed" when
   * interfaces came and went during each of a few tries (no answer: tried again sooner).
   */
  const check = (): Interfaces | undefined | "changed" => {
    checks++
    for (let attempt = 0; attempt < 3; attempt++) {
      const result = compare()
      if (result !== "changed") return result
    }
    return "changed"
  }

  return {
    /**
     * The host namespace's interfaces for `round` (read once per round: a collection), or undefined:
     * read sysfs. Runs the check when it is due.
     */
    interfaces: (round: number): Interfaces | undefined => {
      if (round === roundRead) return current
      roundRead = round
      const time = now()
      if (time >= nextCheck) {
        const result = check()
        nextCheck = time + (result === "changed" ? Math.min(recheckMs, RETRY_MS) : recheckMs)
        current = result === "changed" ? undefined : result
        same = current !== undefined
        if (!same) file.close() // nothing kept while sysfs is read
        return current
      }
      current = same ? readNow() : undefined
      return current
    },

    /**
     * Sysfs has a TAP this round's net/dev lacked: read net/dev again (it may have appeared in between);
     * still not there, the namespaces may differ: sysfs until the check passes again, next round.
     */
    disagrees: (name: string): void => {
      if (!same) return
      const fresh = readNow()
      if (fresh !== undefined && fresh.row(name) !== undefined) {
        current = fresh
        return
      }
      same = false
      current = undefined
      nextCheck = Number.NEGATIVE_INFINITY
      file.close()
    },

    /** Whether the last check passed (the host's TAPs are read from net/dev). */
    inUse: (): boolean => same,
    /** Checks run so far (tests). */
    checks: (): number => checks,
    close: (): void => {
      file.close()
      roundRead = -1
      current = undefined
    }
  }
}

/** @internal */
export type HostNetDev = ReturnType<typeof makeHostNetDev>
