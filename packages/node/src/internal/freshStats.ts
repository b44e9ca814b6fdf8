/**
 * Stat lines that discovery has just read, offered to the proc reader so that a VM's stat is read once
 * per collection instead of twice.
 *
 * A collection lists (discovery reads every known hypervisor's stat through its kept fd, to see that it
 * is alive, not a zombie, and still the same program) and then samples the listed pids, which read the
 * same files again a few milliseconds later: at 1,000 VMs that second read was 1,000 preads of ~8.7 µs.
 * Discovery offers the bytes it read; the reader takes an offer instead of reading when it is
 *
 * - fresh: read within `maxAgeMs` (default 200 ms, well above a collection's span at 1,000 VMs),
 * - newer than the reader's own last stat of that pid, so that a counter never goes back, and
 * - not taken before: each read is used by one sample only.
 *
 * The bytes are the kernel's for the process alive at that pid when read, bound to it by discovery's
 * kept fd; the collector checks its start time against the VM's identity as it does for its own reads
 * (a reused pid is `pid_reused`, never the VM's numbers). Anything else (no offer, a stale one, a
 * static listing) and the reader reads the file itself.
 *
 * The other way, sightings: what the reader's own stat of a pid last showed (when, the process's start
 * time and comm, running or not). A rescan of /proc would read every known hypervisor's stat through
 * its kept fd to see that it is still the process it knew; a sighting no older than `SIGHTING_MS`
 * (1.5 s: the server collects every second and rescans every 5 s) of the same process (start time),
 * running under the same comm, says as much, so the rescan reads nothing for it and the collection
 * that follows reads stat and statm together. A failed read, or one of a process that is not running,
 * clears the pid's sighting, so an exit the collection saw is seen by the next rescan at once. A process
 * that exits and is reaped leaves /proc's listing, which no sighting changes; one that exited since the
 * last collection but is still there (a zombie, a reused pid) is listed by that rescan; the collection
 * that follows reads it as `exited` (or `pid_reused`), which clears the sighting, and lists again at once
 * (Collector: a VM found newly exited), so it never reaches a snapshot.
 *
 * One per proc root per process (`sharedFreshStats`), like the fd budget: discovery and the readers are
 * separate layers that a user composes, and sharing by root needs no wiring and changes nothing when
 * only one of them runs.
 *
 * @internal
 */
import { isNotRunningState, type ProcStat } from "@vm-metrics/core/ProcStat"

/** How old an offer may be when taken, in ms. @internal */
export const FRESH_MS = 200

/** How old a sighting may be when discovery takes it, in ms: above the default collection interval. @internal */
export const SIGHTING_MS = 1500

/** The last offer for one pid; its buffer is reused by the next. @internal */
export interface Offer {
  readonly bytes: Buffer
  readonly length: number
  /** When it was read (the shared clock). */
  readonly at: number
}

interface Slot {
  bytes: Buffer
  length: number
  at: number
  taken: boolean
}

/** The reader's last own stat of a running pid. */
interface Sighting {
  at: number
  startTicks: bigint
  comm: string
}

/** @internal */
export class FreshStats {
  private readonly slots = new Map<number, Slot>()
  private readonly sightings = new Map<number, Sighting>()

  constructor(
    private readonly maxAgeMs = FRESH_MS,
    /** The clock both sides stamp reads with, in ms. */
    readonly now: () => number = () => performance.now(),
    private readonly sightingMs = SIGHTING_MS
  ) {}

  /** Discovery: `bytes[0, length)` is the stat of `pid`, read just now. */
  offer(pid: number, bytes: Buffer, length: number): void {
    let slot = this.slots.get(pid)
    if (slot === undefined || slot.bytes.length < length) {
      slot = { bytes: Buffer.allocUnsafe(Math.max(512, length)), length: 0, at: 0, taken: true }
      this.slots.set(pid, slot)
    }
    bytes.copy(slot.bytes, 0, 0, length)
    slot.length = length
    slot.at = this.now()
    slot.taken = false
  }

  /** Discovery: `pid` is no longer followed; its offer and sighting go. */
  forget(pid: number): void {
    this.slots.delete(pid)
    this.sightings.delete(pid)
  }

  /**
   * Reader: what its stat of `pid`, read (or taken) at `at`, showed; undefined for a failed read. Only a
   * running process with a start time is remembered; anything else clears the pid's sighting.
   */
  sight(pid: number, at: number, stat: ProcStat | undefined): void {
    if (stat === undefined || stat.startTimeTicks === null || isNotRunningState(stat.state)) {
      this.sightings.delete(pid)
      return
    }
    const sighting = this.sightings.get(pid)
    if (sighting === undefined) this.sightings.set(pid, { at, startTicks: stat.startTimeTicks, comm: stat.comm })
    else {
      sighting.at = at
      sighting.startTicks = stat.startTimeTicks
      sighting.comm = stat.comm
    }
  }

  /** Reader: `pid` is no longer read; its sighting goes. */
  unsight(pid: number): void {
    this.sightings.delete(pid)
  }

  /**
   * Discovery: whether the reader saw `pid` running as the process that started at `startTicks`, named
   * `comm`, no more than `sightingMs` ago.
   */
  sawRunning(pid: number, startTicks: bigint, comm: string): boolean {
    const sighting = this.sightings.get(pid)
    return (
      sighting !== undefined &&
      sighting.startTicks === startTicks &&
      sighting.comm === comm &&
      this.now() - sighting.at <= this.sightingMs
    )
  }

  /**
   * Reader: the stat of `pid` read after `after` and no more than `maxAgeMs` ago, not taken before, or
   * undefined. Valid until the next offer for that pid.
   */
  take(pid: number, after: number): Offer | undefined {
    const slot = this.slots.get(pid)
    if (slot === undefined || slot.taken || slot.at <= after || this.now() - slot.at > this.maxAgeMs) return undefined
    slot.taken = true
    return slot
  }

  /** How many pids have an offer (taken or not). */
  get size(): number {
    return this.slots.size
  }

  /** How many pids have a sighting. */
  get sighted(): number {
    return this.sightings.size
  }
}

const byRoot = new Map<string, FreshStats>()

/** The offers every reader and discovery of this process on `procRoot` share. @internal */
export const sharedFreshStats = (procRoot: string): FreshStats => {
  let fresh = byRoot.get(procRoot)
  if (fresh === undefined) {
    fresh = new FreshStats()
    byRoot.set(procRoot, fresh)
  }
  return fresh
}
