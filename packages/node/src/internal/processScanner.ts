/**
 * The synchronous scanner behind discovery (Discovery.ts describes what it lists and why), usable
 * without Effect by tests and the discovery bench.
 *
 * @internal
 */
import * as fs from "node:fs"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { type IgnoredTotal, kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { isNotRunningState, parseProcStat } from "@vm-metrics/core/ProcStat"
import { Either } from "effect"
import {
  firecrackerInfo,
  type Hypervisor,
  hypervisorOfComm,
  parseCloudHypervisorArgv,
  parseFirecrackerArgv,
  parseFirecrackerConfig,
  parseQemuArgv,
  splitCmdline
} from "../HypervisorCmdline.js"
import { exeProblem, type IgnoreReason, ignoreReasons, parseStatusUids } from "../ProcessTrust.js"
import type { FreshStats } from "./freshStats.js"
import { closeQuietly, errnoOf, openReadOnly, ReadBuffer } from "./keptFile.js"
import { SmallFileReader } from "./smallFile.js"

/** The largest Firecracker config file read. @category constants */
export const MAX_CONFIG_BYTES = 1024 * 1024

/**
 * How many non-hypervisor processes keep an fd on their comm by default: the fd count must not grow
 * with the host's process count. The others are checked by path (open, read, close) each scan.
 *
 * @category constants
 */
export const DEFAULT_KEPT_COMM_FDS = 1024

/** The most comm fds kept, however large the open-files limit. @category constants */
export const MAX_KEPT_COMM_FDS = 8192

/**
 * The comm fds to keep under an open-files soft limit: `DEFAULT_KEPT_COMM_FDS`, or a 64th of a larger
 * limit up to `MAX_KEPT_COMM_FDS` (Node raises the soft limit to the hard one: 524,288 under systemd,
 * 1,048,576 in a container), so that a host with thousands of processes is not read by path, three
 * syscalls a process, on every scan. Unlimited: the most.
 *
 * @category constructors
 */
export const keptCommFdsFor = (softLimit: number | null): number =>
  softLimit === null
    ? MAX_KEPT_COMM_FDS
    : Math.min(MAX_KEPT_COMM_FDS, Math.max(DEFAULT_KEPT_COMM_FDS, Math.floor(softLimit / 64)))

/**
 * How often a known hypervisor's status (its uids) and cmdline are read again: 30 s. Between those
 * reads, a scan reads its stat alone through the kept fd, which already tells a reaped process
 * (ESRCH), a zombie and an exec() into another program (its comm). What waits for the re-check is a
 * setuid() or an exec() into the same program with other arguments; neither lets anyone list an
 * identity of their choosing, as a new process (a new pid, or a reused one) is always read in full
 * at once.
 *
 * @category constants
 */
export const DEFAULT_RECHECK_MS = 30_000

const MAX_CMDLINE_BYTES = 1024 * 1024
const MAX_STATUS_BYTES = 64 * 1024
const MAX_COMM_BYTES = 64
const MAX_STAT_BYTES = 4096

/** The process is gone (or hidden): nothing to list. */
const isGone = (code: string): boolean => code === "ENOENT" || code === "ESRCH"

/** The fd limit (per process or system-wide) is reached. */
const isExhausted = (code: string): boolean => code === "EMFILE" || code === "ENFILE"
const PID_MAX = 4_194_304

/** A /proc entry name that is a pid (digits only, 1 … 2^22), else undefined. @category parsers */
export const pidOfEntry = (entry: string): number | undefined => {
  if (entry.length === 0 || entry.length > 7) return undefined
  for (let i = 0; i < entry.length; i++) {
    const c = entry.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return undefined
  }
  const pid = Number(entry)
  return pid >= 1 && pid <= PID_MAX ? pid : undefined
}

/**
 * Where a Firecracker `--config-file` can be read from outside the process: through its root
 * (absolute path) or its working directory (relative path). Undefined for an empty path, one with a
 * NUL or a `..` segment.
 *
 * @category parsers
 */
export const firecrackerConfigPath = (procRoot: string, pid: number, file: string): string | undefined => {
  if (file === "" || file.includes("\u0000") || file.split("/").includes("..")) return undefined
  return file.startsWith("/") ? `${procRoot}/${pid}/root${file}` : `${procRoot}/${pid}/cwd/${file}`
}

/**
 * A process that is not a hypervisor, remembered by its `comm`, through a kept fd while the budget
 * allows. The fd is bound to the process itself, not to its pid number: once the process is reaped
 * the fd reads ESRCH, so a pid that is reused by a new process is never mistaken for the old one.
 * Without an fd the comm is read by path: a pid reused by a hypervisor, or an exec() into one, shows
 * another comm. A changed comm means an exec().
 */
interface Other {
  readonly kind: "other"
  /** The kept fd on its comm, or -1: checked by path. */
  fd: number
  /** The comm file's bytes (the name and a newline). */
  readonly name: Buffer
  seen: number
}

/**
 * A hypervisor process, remembered by a kept fd on its `stat`, read every scan: ESRCH once it is reaped
 * (even if its pid is already reused), a state of Z or X once it exited (a zombie: not listed), another
 * comm after an exec() into another program. Unless the proc reader saw it (freshStats.ts): its own
 * stat of the pid, no older than `SIGHTING_MS`, showing the same start time and comm, running, says the
 * same and that scan reads nothing for it. Its `status` (the uids: setuid() can change them) and
 * `cmdline` (an exec() into the same program with other arguments) are re-read by path when `checkAt`
 * comes, every `recheckMs`: right after the stat fd vouched for the process (never a sighting), so the
 * path names the same process. Without a kept fd (at the fd limit) nothing vouches for it between
 * scans, so all three are read every scan.
 */
interface Known {
  readonly kind: "hypervisor"
  readonly hypervisor: Hypervisor
  readonly cmdline: Buffer
  /** The comm as read when inspected (no newline: as stat shows it); other bytes mean an exec(). */
  readonly name: Buffer
  /** The same comm decoded as Latin-1, as ProcStat's parser decodes it: to compare with a sighting. */
  readonly comm: string
  /** Its start time (stat field 22) as read when inspected; null when not read (no kept fd): no sighting vouches. */
  readonly startTicks: bigint | null
  /** The kept fd on its stat, or -1: read by path, and everything re-checked, every scan. */
  fd: number
  /** Derived once it is trusted: nothing of an untrusted process is parsed (nor its config file read). */
  info: InstanceInfo | undefined
  /** The verdict on its executable, judged once per process and command line. */
  readonly exe: IgnoreReason | undefined
  /** The reason it was last counted as ignored for, so that a process is counted once. */
  ignoredAs: IgnoreReason | undefined
  /** The verdict on its uids from the last status read. */
  uids: IgnoreReason | undefined
  /** When (the scanner's clock, ms) its status and cmdline are read again. */
  checkAt: number
  seen: number
}

type Entry = Other | Known

const closeEntry = (entry: Entry): void => {
  if (entry.fd >= 0) closeQuietly(entry.fd)
}

/** A status text up to its `Uid:` line (the name comes first): all a scan needs, without decoding the rest. */
const statusHead = (status: Buffer): string => {
  const uid = status.indexOf("\nUid:\t")
  const end = uid === -1 ? -1 : status.indexOf(0x0a, uid + 1)
  return status.toString("latin1", 0, end === -1 ? status.length : end)
}

/** Whether `bytes[start, end)` are `expected` (a comm: a loop beats a native call). */
const sameBytes = (bytes: Uint8Array, start: number, end: number, expected: Uint8Array): boolean => {
  if (end - start !== expected.length) return false
  for (let i = start; i < end; i++) if (bytes[i] !== expected[i - start]) return false
  return true
}

/**
 * Whether the first `length` bytes of a stat file are a live process named `name`: the comm between the
 * first `(` and the last `)` (a comm may hold either; ProcStat's parser draws the same bounds), then a
 * state that is running (ProcStat's `isNotRunningState`).
 *
 * @category parsers
 */
export const liveAs = (bytes: Uint8Array, length: number, name: Uint8Array): boolean => {
  let close = length - 1
  while (close >= 0 && bytes[close] !== 0x29) close--
  let open = 0
  while (open < close && bytes[open] !== 0x28) open++
  if (open >= close || close + 2 >= length) return false
  return !isNotRunningState(String.fromCharCode(bytes[close + 2])) && sameBytes(bytes, open + 1, close, name)
}

/** Whether a file read of a remembered process shows it still: a hypervisor's stat, another's comm. */
const shows = (entry: Entry, bytes: Uint8Array, length: number): boolean =>
  entry.kind === "hypervisor" ? liveAs(bytes, length, entry.name) : sameBytes(bytes, 0, length, entry.name)

/** Whether two lists hold the very same objects in the same order. */
const sameInfos = (a: ReadonlyArray<InstanceInfo>, b: ReadonlyArray<InstanceInfo>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const byId = (a: InstanceInfo, b: InstanceInfo): number =>
  a.id < b.id ? -1 : a.id > b.id ? 1 : (a.hypervisorPid ?? 0) - (b.hypervisorPid ?? 0)

/** Gives every process of a shared id its own, `<id>-pid<pid>`; unique ids stay as they are. @category utils */
export const uniqueIds = (sortedById: ReadonlyArray<InstanceInfo>): ReadonlyArray<InstanceInfo> => {
  const counts = new Map<string, number>()
  for (const info of sortedById) counts.set(info.id, (counts.get(info.id) ?? 0) + 1)
  return sortedById.map((info) =>
    (counts.get(info.id) ?? 0) > 1 ? { ...info, id: `${info.id}-pid${info.hypervisorPid ?? 0}` } : info
  )
}

/** What the scanner did since it was made: how many processes it read afresh. @category models */
export interface ScanCounters {
  /** Scans run. */
  readonly scans: number
  /** Processes inspected from scratch (their comm opened, for a hypervisor its cmdline, status, exe). */
  readonly inspected: number
  /** Re-checks of a known hypervisor's status and cmdline (when due, or every scan without a kept fd). */
  readonly rechecked: number
  /** Known hypervisors a scan took as still the same from the proc reader's sighting, reading nothing. */
  readonly sighted: number
}

/** @category models */
export interface ScannerOptions {
  /** How many non-hypervisor processes keep an fd on their comm (default `DEFAULT_KEPT_COMM_FDS`). */
  readonly keptCommFds?: number
  /** How often a known hypervisor's uids and command line are read again, in ms (default `DEFAULT_RECHECK_MS`). */
  readonly recheckMs?: number
  /** The clock `recheckMs` is measured on, in ms (default `performance.now`). */
  readonly now?: () => number
  /** Where the stat lines read through kept fds are offered to the proc reader (internal/freshStats.ts). */
  readonly fresh?: FreshStats
}

/**
 * One scan taken in steps, so that a caller can give its event loop a turn between them: the listing
 * of `procRoot` is taken when the scan begins, its pids are read `step` at a time. Steps of one scan
 * must not interleave with another scan's (Discovery runs one at a time); a scan abandoned before
 * `finish` leaves nothing behind that the next scan does not settle.
 *
 * @category models
 */
export interface ScanInSteps {
  /** Reads the next `count` pids of the listing; whether any remain. */
  readonly step: (count: number) => boolean
  /** Forgets the processes this scan did not see and gives its listing (after the last step). */
  readonly finish: () => ReadonlyArray<InstanceInfo>
}

/** The synchronous scanner behind the source, usable without Effect (benchmarks). @category models */
export interface Scanner {
  /** A whole scan at once. */
  readonly scan: () => Either.Either<ReadonlyArray<InstanceInfo>, InstanceSourceError>
  /** A scan in steps; only an unlistable `procRoot` fails it. */
  readonly begin: () => Either.Either<ScanInSteps, InstanceSourceError>
  /** How many hypervisor processes are remembered (those of the last scan). */
  readonly known: () => number
  /** How many processes are remembered, hypervisors or not (each holds kept fds). */
  readonly cached: () => number
  readonly counters: () => ScanCounters
  /** Hypervisor processes ignored since start, by reason (each process once). */
  readonly ignoredTotals: () => ReadonlyArray<IgnoredTotal>
  /** Closes every kept fd and forgets every process. */
  readonly close: () => void
}

/**
 * A scanner of `procRoot`, which must already be checked (absolute, no `..`).
 *
 * Incremental: what a process is (its comm, command line, derived info and executable verdict) is
 * read once and remembered with a kept fd that identifies the process itself: on its comm, or on its
 * stat for a hypervisor (which also tells a zombie, not to be listed). A later scan costs one listing
 * of `procRoot` plus one `pread` per remembered process, none for a hypervisor the proc reader saw
 * running moments before (its sighting, see `Known`). A kept fd that fails (ESRCH: the process was
 * reaped, even if its pid is already reused), reads another comm (an exec() into another program) or,
 * for a hypervisor, a zombie drops the entry and the pid is inspected afresh. A hypervisor's status
 * (its uids, since setuid() can change them) and cmdline (an exec() into the same program with other
 * arguments) are read again every `recheckMs` (`DEFAULT_RECHECK_MS`), and every scan when it has no
 * kept fd. Pids gone from the listing are dropped and their fds closed.
 *
 * Bounded fds: at most `keptCommFds` non-hypervisor processes keep an fd (plus one per hypervisor);
 * the others, and any file whose fd cannot be kept (EMFILE, ENFILE, EACCES, …), are read by path each
 * scan. At the fd limit the scanner gives its comm fds back (those processes are read by path from
 * then on, and the budget halves) and retries, so a hypervisor is never skipped because fds ran out.
 * A by-path check that fails for a reason other than the process being gone (ENOENT, ESRCH) keeps the
 * entry as remembered.
 *
 * @category constructors
 */
export const makeScanner = (
  procRoot: string,
  trustedUids: ReadonlyArray<number> = [],
  options: ScannerOptions = {}
): Scanner => {
  const reader = new SmallFileReader()
  const kept = new ReadBuffer()
  const cache = new Map<number, Entry>()
  const trustedSet = new Set([0, ...trustedUids])
  const trusted = (uid: number) => trustedSet.has(uid)
  const ignored = new Map<IgnoreReason, number>(ignoreReasons.map((reason) => [reason, 0]))
  const recheckMs = Math.max(0, options.recheckMs ?? DEFAULT_RECHECK_MS)
  const clock = options.now ?? (() => performance.now())
  const fresh = options.fresh
  let generation = 0
  let inspected = 0
  /** The last scan's trusted hypervisors in /proc's order, and the listing made of them. */
  let lastFound: ReadonlyArray<InstanceInfo> = []
  let lastListing: ReadonlyArray<InstanceInfo> | undefined
  let rechecked = 0
  let sighted = 0
  let hypervisors = 0
  let commBudget = Math.max(0, options.keptCommFds ?? DEFAULT_KEPT_COMM_FDS)
  let commFds = 0
  /** Whether hypervisors keep fds on their stat; off for good once shed at the fd limit. */
  let keepHypervisorFds = true

  /** The length read through a kept fd into the shared buffer, or -1 when the read fails. */
  const readQuietly = (fd: number): number => {
    try {
      return kept.readAt0(fd)
    } catch {
      return -1 // ESRCH (reaped) or any failure: not the process we knew
    }
  }

  /** The bytes behind a kept fd (a view into the shared buffer, valid until the next read), or undefined. */
  const reread = (fd: number): Buffer | undefined => {
    const length = readQuietly(fd)
    return length < 0 ? undefined : kept.bytes.subarray(0, length)
  }

  /**
   * The length of a hypervisor's stat read through its kept fd into the shared buffer when it shows it
   * alive as `name` (that read is offered to the proc reader), else -1.
   */
  const vouchedLength = (pid: number, fd: number, name: Buffer): number => {
    const length = readQuietly(fd) // -1 on failure: not shown
    if (!liveAs(kept.bytes, length, name)) return -1
    fresh?.offer(pid, kept.bytes, length)
    return length
  }

  const vouches = (pid: number, fd: number, name: Buffer): boolean => vouchedLength(pid, fd, name) >= 0

  /** Why uids in a status text are not all trusted, or undefined when they are. */
  const uidVerdict = (status: string): IgnoreReason | undefined => {
    const uids = parseStatusUids(status)
    if (uids === undefined) return "unverifiable"
    return uids.every(trusted) ? undefined : "untrusted_uid"
  }

  const derive = (hypervisor: Hypervisor, pid: number, argv: ReadonlyArray<string>): InstanceInfo => {
    switch (hypervisor) {
      case "qemu":
        return parseQemuArgv(argv, pid)
      case "cloud-hypervisor":
        return parseCloudHypervisorArgv(argv, pid)
      case "firecracker": {
        const args = parseFirecrackerArgv(argv)
        const location =
          args.configFile === undefined ? undefined : firecrackerConfigPath(procRoot, pid, args.configFile)
        const bytes =
          location === undefined
            ? undefined
            : reader.read(location, { limit: MAX_CONFIG_BYTES, regularOnly: true, noFollow: true })
        const config =
          bytes === undefined || typeof bytes === "string" ? {} : parseFirecrackerConfig(bytes.toString("utf8"))
        return firecrackerInfo(pid, args, config)
      }
    }
  }

  /**
   * Whether a remembered process is still alive as what it was remembered by: through its kept fd (a
   * failure, ESRCH once it is reaped, means no) or by path (gone means no; unreadable otherwise, nothing
   * says it changed). A hypervisor by its stat (its comm, and not a zombie), another by its comm.
   */
  const stillAlive = (name: string, pid: number, entry: Entry): boolean => {
    if (entry.fd >= 0) {
      return entry.kind === "hypervisor"
        ? vouches(pid, entry.fd, entry.name)
        : sameBytes(kept.bytes, 0, readQuietly(entry.fd), entry.name) // -1 on failure: no
    }
    const bytes =
      entry.kind === "hypervisor"
        ? readPath(`${procRoot}/${name}/stat`, MAX_STAT_BYTES)
        : readPath(`${procRoot}/${name}/comm`, MAX_COMM_BYTES)
    if (typeof bytes === "string") return !isGone(bytes)
    return shows(entry, bytes, bytes.length)
  }

  /** Whether a remembered process is still the one remembered (a hypervisor re-checked when due). */
  const stillSame = (name: string, pid: number, entry: Entry): boolean => {
    if (entry.kind === "hypervisor" && entry.fd >= 0 && entry.startTicks !== null && clock() < entry.checkAt) {
      if (fresh?.sawRunning(pid, entry.startTicks, entry.comm) === true) {
        sighted++
        return true
      }
    }
    if (!stillAlive(name, pid, entry)) return false
    if (entry.kind === "other") return true
    const now = clock()
    if (entry.fd >= 0 && now < entry.checkAt) return true
    rechecked++
    const cmdline = readPath(`${procRoot}/${name}/cmdline`, MAX_CMDLINE_BYTES)
    if (typeof cmdline === "string") {
      if (isGone(cmdline)) return false
    } else if (!cmdline.equals(entry.cmdline)) return false
    const status = readPath(`${procRoot}/${name}/status`, MAX_STATUS_BYTES)
    if (typeof status === "string") {
      if (isGone(status)) return false
      if (!isExhausted(status)) entry.uids = "unverifiable" // at the fd limit, the last verdict stands
    } else {
      entry.uids = uidVerdict(statusHead(status))
    }
    entry.checkAt = now + recheckMs
    return true
  }

  /** A process's comm: through a kept fd while the budget allows, else by path; or undefined to skip it. */
  const readComm = (path: string): { readonly fd: number; readonly comm: Buffer } | undefined => {
    if (commFds < commBudget) {
      const fd = open(path)
      if (typeof fd === "number") {
        const comm = reread(fd)
        if (comm !== undefined && comm.length <= MAX_COMM_BYTES) return { fd, comm }
        return void closeQuietly(fd) // vanished or absurd
      }
      if (isGone(fd)) return undefined
    }
    const comm = readPath(path, MAX_COMM_BYTES)
    return typeof comm === "string" ? undefined : { fd: -1, comm }
  }

  /**
   * At the fd limit: closes every kept comm fd (those processes are read by path from now on) and
   * keeps at most half as many from now on. Whether any fd was freed.
   */
  const shed = (): boolean => {
    const freed = commFds
    for (const entry of cache.values()) {
      if (entry.kind === "other" && entry.fd >= 0) {
        closeQuietly(entry.fd)
        entry.fd = -1
      }
    }
    commFds = 0
    commBudget = Math.min(commBudget, Math.floor(freed / 2))
    return freed > 0 || shedHypervisorFds()
  }

  /**
   * With no comm fd left to give back, the hypervisors' own go (thousands of VMs under a low limit) and
   * they are read by path, in full, every scan from then on, so the scan, and /proc's listing, still work.
   */
  const shedHypervisorFds = (): boolean => {
    if (!keepHypervisorFds) return false
    keepHypervisorFds = false
    for (const entry of cache.values()) {
      if (entry.kind !== "hypervisor" || entry.fd < 0) continue
      closeQuietly(entry.fd)
      entry.fd = -1
    }
    return true
  }

  /** Opens a process file to keep: the fd or the errno code, shedding comm fds once at the fd limit. */
  const open = (path: string): number | string => {
    const fd = openReadOnly(path)
    return typeof fd === "string" && isExhausted(fd) && shed() ? openReadOnly(path) : fd
  }

  /** A process file read by path (a view into the reader's buffer) or the errno code, like `open`. */
  const readPath = (path: string, limit: number): Buffer | string => {
    const read = reader.read(path, { limit })
    return typeof read === "string" && isExhausted(read) && shed() ? reader.read(path, { limit }) : read
  }

  /**
   * A hypervisor's kept stat fd, opened now: it must show a live process named `name` (else undefined:
   * it exited or exec()'d meanwhile); -1 when fds are not kept or it cannot be opened.
   */
  const hypervisorStatFd = (path: string, name: Buffer): number | undefined => {
    if (!keepHypervisorFds) return -1
    const opened = open(path)
    if (typeof opened === "string") return isGone(opened) ? undefined : -1
    if (liveAs(kept.bytes, readQuietly(opened), name)) return opened
    closeQuietly(opened)
    return undefined
  }

  /** Reads a process afresh: what it is, with its kept fd, or undefined to skip it this scan. */
  const inspect = (entry: string, pid: number, ignoredAs: IgnoreReason | undefined): Entry | undefined => {
    inspected++
    const read = readComm(`${procRoot}/${entry}/comm`)
    if (read === undefined) return undefined // vanished or unreadable
    const { comm } = read
    const end = comm.length > 0 && comm[comm.length - 1] === 0x0a ? comm.length - 1 : comm.length
    const hypervisor = hypervisorOfComm(comm.toString("latin1", 0, end))
    if (hypervisor === undefined) {
      if (read.fd >= 0) commFds++
      return { kind: "other", fd: read.fd, name: Buffer.from(comm), seen: 0 }
    }
    if (read.fd >= 0) closeQuietly(read.fd) // a hypervisor is followed through its stat instead
    const name = Buffer.from(comm.subarray(0, end)) // the shared buffer is reused by the next read
    const statPath = `${procRoot}/${entry}/stat`
    const statFd = hypervisorStatFd(statPath, name)
    if (statFd === undefined) return undefined
    const release = () => {
      if (statFd >= 0) closeQuietly(statFd)
      return undefined
    }
    const cmdline = readPath(`${procRoot}/${entry}/cmdline`, MAX_CMDLINE_BYTES)
    if (typeof cmdline === "string") return release() // vanished or unreadable
    if (cmdline.length === 0 || cmdline.length > MAX_CMDLINE_BYTES) return release() // a zombie, or absurd
    const copy = Buffer.from(cmdline) // the shared buffer is reused by the next read
    const status = readPath(`${procRoot}/${entry}/status`, MAX_STATUS_BYTES)
    if (typeof status === "string" && isGone(status)) return release() // gone meanwhile
    const uids = typeof status === "string" ? "unverifiable" : uidVerdict(statusHead(status))
    const exe = exeProblem(procRoot, pid, trusted)
    if (exe === "gone") return release()
    // The stat fd still shows the same live process: the files read by path above were its own.
    let startTicks: bigint | null = null
    if (statFd >= 0) {
      const length = vouchedLength(pid, statFd, name)
      if (length < 0) return release()
      startTicks = Either.getOrNull(parseProcStat(kept.bytes, length))?.startTimeTicks ?? null
    }
    return {
      kind: "hypervisor",
      hypervisor,
      cmdline: copy,
      name,
      comm: name.toString("latin1"),
      startTicks,
      fd: statFd,
      info: undefined,
      exe,
      ignoredAs,
      uids,
      checkAt: clock() + recheckMs,
      seen: 0
    }
  }

  /** Whether to list the process; an untrusted one is counted once per reason it is ignored for. */
  const isTrusted = (candidate: Known): boolean => {
    const reason = candidate.uids ?? candidate.exe
    if (reason !== undefined && reason !== candidate.ignoredAs) ignored.set(reason, (ignored.get(reason) ?? 0) + 1)
    candidate.ignoredAs = reason
    return reason === undefined
  }

  const forget = (pid: number, entry: Entry): void => {
    if (entry.kind === "other" && entry.fd >= 0) commFds--
    closeEntry(entry)
    cache.delete(pid)
    if (entry.kind === "hypervisor") {
      hypervisors--
      fresh?.forget(pid)
    }
  }

  /** The entries of /proc, or the errno code; at the fd limit our own comm fds are shed and it is tried again. */
  const listProc = (): Array<string> | string => {
    try {
      return fs.readdirSync(procRoot)
    } catch (error) {
      const code = errnoOf(error)
      return isExhausted(code) && shed() ? listProc() : code
    }
  }

  /**
   * One scan's listing and progress. A class, not closures made by `begin`: V8 would compile a new
   * scan's closures again (a scan runs every few seconds), while a method is compiled once.
   */
  class Scan implements ScanInSteps {
    readonly #entries: ReadonlyArray<string>
    readonly #generation: number
    readonly #found: Array<InstanceInfo> = []
    #next = 0

    constructor(entries: ReadonlyArray<string>, scanGeneration: number) {
      this.#entries = entries
      this.#generation = scanGeneration
    }

    step(count: number): boolean {
      const entries = this.#entries
      const end = Math.min(entries.length, this.#next + count)
      for (let next = this.#next; next < end; next++) visit(entries[next], this.#found)
      this.#next = end
      return end < entries.length
    }

    finish(): ReadonlyArray<InstanceInfo> {
      // A newer scan began meanwhile (misuse): its own finish settles the cache, not this one.
      if (this.#generation === generation) {
        for (const pid of cache.keys()) {
          const entry = cache.get(pid)
          if (entry !== undefined && entry.seen !== generation) forget(pid, entry)
        }
      }
      // Nothing changed since the last scan (the same objects in /proc's order): the same listing.
      const found = this.#found
      if (lastListing !== undefined && sameInfos(found, lastFound)) return lastListing
      lastFound = found
      lastListing = uniqueIds(found.slice().sort(byId))
      return lastListing
    }
  }

  const begin = (): Either.Either<ScanInSteps, InstanceSourceError> => {
    const entries = listProc()
    if (typeof entries === "string") {
      return Either.left(
        new InstanceSourceError({ kind: kindOfErrno(entries), reason: `cannot list ${procRoot}: ${entries}` })
      )
    }
    return Either.right(new Scan(entries, ++generation))
  }

  /** One entry of a listing: its process remembered or inspected; a trusted hypervisor's info goes to `found`. */
  const visit = (name: string, found: Array<InstanceInfo>): void => {
    const pid = pidOfEntry(name)
    if (pid === undefined) return
    let entry = cache.get(pid)
    let ignoredAs: IgnoreReason | undefined
    if (entry !== undefined && !stillSame(name, pid, entry)) {
      // Gone, reused or exec()'d: read afresh. An ignored process keeps its count (once per pid).
      ignoredAs = entry.kind === "hypervisor" ? entry.ignoredAs : undefined
      forget(pid, entry)
      entry = undefined
    }
    if (entry === undefined) {
      entry = inspect(name, pid, ignoredAs)
      if (entry === undefined) return
      cache.set(pid, entry)
      if (entry.kind === "hypervisor") hypervisors++
    }
    entry.seen = generation
    if (entry.kind === "other" || !isTrusted(entry)) return
    entry.info ??= derive(entry.hypervisor, pid, splitCmdline(entry.cmdline))
    found.push(entry.info)
  }

  const scan = (): Either.Either<ReadonlyArray<InstanceInfo>, InstanceSourceError> =>
    Either.map(begin(), (inSteps) => {
      while (inSteps.step(Number.POSITIVE_INFINITY));
      return inSteps.finish()
    })

  const ignoredTotals = () => Array.from(ignored, ([reason, count]) => ({ reason, count }))

  const close = () => {
    for (const [pid, entry] of cache) forget(pid, entry)
  }

  return {
    scan,
    begin,
    known: () => hypervisors,
    cached: () => cache.size,
    counters: () => ({ scans: generation, inspected, rechecked, sighted }),
    ignoredTotals,
    close
  }
}
