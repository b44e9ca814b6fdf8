/**
 * The synchronous core of NodeTapReader (whose header says how it reads), usable without Effect by
 * tests and benchmarks.
 *
 * @internal
 */
import { PermissionDenied, ReadFailed, TapMissing, type TapReadError } from "@vm-metrics/core/Errors"
import { NetDevTable } from "@vm-metrics/core/NetDev"
import { parseSysfsCounter } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import {
  counterFiles,
  filesFor,
  type TapCounters,
  type TapRequest,
  type TapSample,
  type TapWanted
} from "@vm-metrics/core/TapReader"
import { Either } from "effect"
import { type FdBudget, sharedFdBudget } from "./fdBudget.js"
import { type HostNetDevOptions, makeHostNetDev } from "./hostNetDev.js"
import { KeptFile, ReadBuffer } from "./keptFile.js"

const errorOf = (tap: string, path: string, code: string): TapReadError => {
  switch (code) {
    case "ENOENT":
    case "ENODEV":
    case "ENXIO":
      return new TapMissing({ tap, path })
    case "EACCES":
    case "EPERM":
      return new PermissionDenied({ path })
    default:
      return new ReadFailed({ path, code })
  }
}

/** The indices (in `counterFiles`) each `wanted` reads, by `packets * 2 + dropped`. */
const WANTED_INDICES = [false, true].flatMap((packets) =>
  [false, true].map((dropped) => filesFor({ packets, dropped }).map((file) => counterFiles.indexOf(file)))
)
const indicesFor = (wanted: TapWanted) => WANTED_INDICES[(wanted.packets ? 2 : 0) + (wanted.dropped ? 1 : 0)]

/** One TAP as one VM names it: its sysfs counter files (opened as first wanted), and where it was found. */
interface TapEntry {
  readonly name: string
  /** The VM's hypervisor pid (0: none), whose netns may hold the TAP. */
  readonly pid: number
  /** By index in `counterFiles`. */
  readonly files: Array<KeptFile | undefined>
  /** Found in the pid's netns last time: looked for there first (no failing sysfs open per read). */
  netns: boolean
}

/** A process's net/dev, kept open while a TAP of it is read via its netns; parsed once per batch. */
interface NetDevFile {
  readonly file: KeptFile
  readonly users: Set<TapEntry>
  batch: number
  /** Filled again in place by each batch's read. */
  readonly table: NetDevTable
  parsed: Either.Either<NetDevTable, TapReadError | "gone"> | undefined
}

/** @internal */
export interface SyncTapReaderOptions extends HostNetDevOptions {
  /**
   * Read the host's TAPs from the agent's own net/dev while it shows the namespace sysfs shows
   * (internal/hostNetDev.ts). Default true; false: sysfs counter files only.
   */
  readonly selfNetDev?: boolean
}

/** A TAP's counters from a row of a net/dev table, null where not wanted. */
const tableCounters = (table: NetDevTable, row: number, wanted: TapWanted): TapCounters => ({
  rxBytes: table.counter(row, "rxBytes"),
  txBytes: table.counter(row, "txBytes"),
  rxPackets: wanted.packets ? table.counter(row, "rxPackets") : null,
  txPackets: wanted.packets ? table.counter(row, "txPackets") : null,
  rxErrors: wanted.packets ? table.counter(row, "rxErrors") : null,
  txErrors: wanted.packets ? table.counter(row, "txErrors") : null,
  rxDropped: wanted.dropped ? table.counter(row, "rxDropped") : null,
  txDropped: wanted.dropped ? table.counter(row, "txDropped") : null
})

/**
 * The synchronous core of the reader, usable without Effect (benchmarks). `budget`: the fds it may
 * keep (default: the process's shared budget, internal/fdBudget.ts).
 *
 * @category constructors
 */
export const makeSyncTapReader = (
  sysRoot: string,
  procRoot = "/proc",
  budget: FdBudget = sharedFdBudget(),
  options: SyncTapReaderOptions = {}
) => {
  const buffer = new ReadBuffer()
  const host = options.selfNetDev === false ? undefined : makeHostNetDev(sysRoot, procRoot, budget, buffer, options)
  /** pid (0: none) → name → entry: two lookups, no key built per read. */
  const entries = new Map<number, Map<string, TapEntry>>()
  const netDevs = new Map<number, NetDevFile>()
  /** Values of the read in progress, by index in `counterFiles`. */
  const values: Array<bigint | null> = counterFiles.map(() => null)
  let batch = 0
  /** The host's net/dev is read once per round: a collection (all its chunks). */
  let round = 0
  /**
   * The collection of the round; undefined for a call of its own (`getInstanceStats`), whose TAPs' sysfs
   * files are read: a few reads where the host's net/dev lists every interface (and its first use runs
   * the namespace check, a sysfs read per interface: ~60 ms at 1,000 TAPs).
   */
  let roundCollection: number | undefined
  /** The test helper `sampleOne` makes each call a collection of its own (negative numbers). */
  let helperCollection = 0

  const closeSysfs = (entry: TapEntry): void => {
    for (let i = 0; i < entry.files.length; i++) {
      entry.files[i]?.close()
      entry.files[i] = undefined
    }
  }

  const leaveNetDev = (entry: TapEntry): void => {
    const netDev = netDevs.get(entry.pid)
    if (netDev === undefined || !netDev.users.delete(entry) || netDev.users.size > 0) return
    netDev.file.close()
    netDevs.delete(entry.pid)
  }

  /** Only a pid in the kernel's range ever becomes part of a /proc path; 0 stands for none. */
  const pidOf = (request: TapRequest): number =>
    request.pid !== undefined && Number.isSafeInteger(request.pid) && request.pid > 0 ? request.pid : 0

  const release = (request: TapRequest): void => {
    const pid = pidOf(request)
    const byName = entries.get(pid)
    const entry = byName?.get(request.name)
    if (byName === undefined || entry === undefined) return
    closeSysfs(entry)
    leaveNetDev(entry)
    byName.delete(request.name)
    if (byName.size === 0) entries.delete(pid)
  }

  const counters = (): TapCounters => ({
    rxBytes: values[0] ?? 0n,
    txBytes: values[1] ?? 0n,
    rxPackets: values[2],
    txPackets: values[3],
    rxErrors: values[4],
    txErrors: values[5],
    rxDropped: values[6],
    txDropped: values[7]
  })

  const readSysfs = (entry: TapEntry, indices: ReadonlyArray<number>): Either.Either<TapCounters, TapReadError> => {
    values.fill(null)
    for (const i of indices) {
      let file = entry.files[i]
      if (file === undefined) {
        file = new KeptFile(`${sysRoot}/class/net/${entry.name}/statistics/${counterFiles[i]}`, "ENODEV", budget)
        entry.files[i] = file
      }
      const length = file.read(buffer)
      const value =
        typeof length === "string"
          ? Either.left(errorOf(entry.name, file.path, length))
          : parseSysfsCounter(buffer.bytes, length, counterFiles[i])
      if (Either.isLeft(value)) {
        closeSysfs(entry) // a missing or broken TAP keeps nothing open
        return Either.left(value.left)
      }
      values[i] = value.right
    }
    return Either.right(counters())
  }

  /** The interfaces of the entry's pid's network namespace, read once per batch; "gone" when the process is. */
  const interfacesOf = (entry: TapEntry) => {
    let netDev = netDevs.get(entry.pid)
    if (netDev === undefined) {
      netDev = {
        file: new KeptFile(`${procRoot}/${entry.pid}/net/dev`, "ESRCH", budget),
        users: new Set(),
        batch: -1,
        table: new NetDevTable(),
        parsed: undefined
      }
      netDevs.set(entry.pid, netDev)
    }
    netDev.users.add(entry)
    if (netDev.batch !== batch || netDev.parsed === undefined) {
      const length = netDev.file.read(buffer, true) // more than a page with many interfaces
      netDev.batch = batch
      if (typeof length === "string") {
        netDev.parsed =
          length === "ENOENT" || length === "ESRCH"
            ? Either.left("gone" as const)
            : Either.left(errorOf("", netDev.file.path, length))
      } else {
        const error = netDev.table.fill(buffer.bytes, length)
        netDev.parsed = error === undefined ? Either.right(netDev.table) : Either.left(error)
      }
    }
    return netDev.parsed
  }

  /** The TAP in its pid's namespace: counters, an error of that read, or undefined when it is not there. */
  const readNetns = (entry: TapEntry, wanted: TapWanted): Either.Either<TapCounters, TapReadError> | undefined => {
    const interfaces = interfacesOf(entry)
    if (Either.isLeft(interfaces)) {
      leaveNetDev(entry)
      return interfaces.left === "gone" ? undefined : Either.left(interfaces.left)
    }
    const row = interfaces.right.row(entry.name)
    if (row === undefined) {
      leaveNetDev(entry)
      return undefined
    }
    return Either.right(tableCounters(interfaces.right, row, wanted))
  }

  /** The entry of a request, made (after the name is validated) on first use; or why there is none. */
  const entryOf = (request: TapRequest): TapEntry | TapReadError => {
    const pid = pidOf(request)
    let byName = entries.get(pid)
    const known = byName?.get(request.name)
    if (known !== undefined) return known
    const valid = validateTapName(request.name) // before the name becomes part of any path
    if (Either.isLeft(valid)) return valid.left
    const entry: TapEntry = { name: request.name, pid, files: counterFiles.map(() => undefined), netns: false }
    if (byName === undefined) {
      byName = new Map()
      entries.set(pid, byName)
    }
    byName.set(request.name, entry)
    return entry
  }

  /**
   * The host's namespace first: the agent's own net/dev when it is that namespace (`via` stays "sysfs":
   * the namespace /sys/class/net shows, the same counters), else sysfs; when the host has no such TAP
   * and the VM's pid is known, that process's net/dev. A TAP found via netns is looked for there first
   * next time, and in the host's namespace again once it is gone.
   */
  const sampleOne = (request: TapRequest, wanted: TapWanted): TapSample => {
    const entry = entryOf(request)
    if ("_tag" in entry) return { via: "sysfs", counters: Either.left(entry) } // an invalid name
    if (entry.netns) {
      const inNetns = readNetns(entry, wanted)
      if (inNetns !== undefined) return { via: "netns", counters: inNetns }
      entry.netns = false
    }
    const hostInterfaces = roundCollection === undefined ? undefined : host?.interfaces(round)
    const inHost = hostInterfaces?.row(entry.name)
    if (hostInterfaces !== undefined && inHost !== undefined) {
      closeSysfs(entry) // read from net/dev: its sysfs fds go back to the budget
      return { via: "sysfs", counters: Either.right(tableCounters(hostInterfaces, inHost, wanted)) }
    }
    const read = readSysfs(entry, indicesFor(wanted))
    if (hostInterfaces !== undefined && Either.isRight(read)) host?.disagrees(entry.name)
    if (entry.pid === 0 || Either.isRight(read) || read.left._tag !== "TapMissing")
      return { via: "sysfs", counters: read }
    const inNetns = readNetns(entry, wanted)
    if (inNetns === undefined) {
      const path = `${sysRoot}/class/net/${entry.name} nor in ${procRoot}/${entry.pid}/net/dev`
      return { via: "sysfs", counters: Either.left(new TapMissing({ tap: entry.name, path })) }
    }
    entry.netns = Either.isRight(inNetns)
    return { via: "netns", counters: inNetns }
  }

  /** Starts the round of `collection` (a call without one is a round of its own). */
  const enterRound = (collection: number | undefined): void => {
    if (collection === undefined || collection !== roundCollection) round++
    roundCollection = collection
  }

  /** Reads the host's net/dev for `collection` now (TapReader `prepare`); its chunks then share it. */
  const prepare = (collection: number): void => {
    enterRound(collection)
    host?.interfaces(round)
  }

  const sample = (requests: ReadonlyArray<TapRequest>, wanted: TapWanted, collection?: number): Array<TapSample> => {
    batch++
    enterRound(collection)
    const samples = new Array<TapSample>(requests.length)
    for (let i = 0; i < requests.length; i++) samples[i] = sampleOne(requests[i], wanted)
    return samples
  }

  const closeAll = (): void => {
    for (const byName of entries.values()) for (const entry of byName.values()) closeSysfs(entry)
    for (const netDev of netDevs.values()) netDev.file.close()
    host?.close()
    entries.clear()
    netDevs.clear()
  }

  return {
    sample,
    prepare,
    /** One TAP alone (tests): a collection of its own, read as a collection reads it. */
    sampleOne: (request: TapRequest | string, wanted: TapWanted = { packets: false, dropped: false }) =>
      sample([typeof request === "string" ? { name: request } : request], wanted, --helperCollection)[0],
    release,
    closeAll,
    /** TAPs with a sysfs counter file open. */
    openTaps: () => {
      let open = 0
      for (const byName of entries.values()) {
        for (const entry of byName.values()) if (entry.files.some((file) => file?.isOpen === true)) open++
      }
      return open
    },
    openNetDevs: () => netDevs.size,
    /** Whether the host's TAPs are read from the agent's own net/dev now (its namespace check passed). */
    selfNetDevInUse: () => host?.inUse() === true,
    /** Namespace checks run so far. */
    selfNetDevChecks: () => host?.checks() ?? 0
  }
}
