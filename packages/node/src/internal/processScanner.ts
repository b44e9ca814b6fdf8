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

const MAX_CMDLINE_BYTES = 1024 * 1024
const MAX_STATUS_BYTES = 64 * 1024
const MAX_COMM_BYTES = 64

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
  /** The kept fd, or -1: checked by path. */
  comm: number
  readonly name: Buffer
  seen: number
}

/**
 * A hypervisor process, remembered by kept fds on its `status` (uids, re-checked every scan, and the
 * name) and its `cmdline` (compared byte for byte every scan: an exec() changes it). Either fd reading
 * ESRCH means the process is gone. A file whose fd could not be kept is read by path instead: a
 * hypervisor is never dropped for want of an fd.
 */
interface Known {
  readonly kind: "hypervisor"
  readonly hypervisor: Hypervisor
  readonly cmdline: Buffer
  /** The kept fd, or -1: read by path each scan (also once shed at the fd limit). */
  cmdlineFd: number
  /** The kept fd, or -1: read by path each scan (its uids unverifiable while it cannot be read). */
  statusFd: number
  /** The `Name:` line's value as the status printed it when inspected; a changed one means an exec(). */
  readonly statusName: string | undefined
  /** Derived once it is trusted: nothing of an untrusted process is parsed (nor its config file read). */
  info: InstanceInfo | undefined
  /** The verdict on its executable, judged once per process and command line. */
  readonly exe: IgnoreReason | undefined
  /** The reason it was last counted as ignored for, so that a process is counted once. */
  ignoredAs: IgnoreReason | undefined
  /** The verdict on its uids from this scan's status read. */
  uids: IgnoreReason | undefined
  seen: number
}

type Entry = Other | Known

const closeEntry = (entry: Entry): void => {
  if (entry.kind === "other") {
    if (entry.comm >= 0) closeQuietly(entry.comm)
  } else {
    if (entry.cmdlineFd >= 0) closeQuietly(entry.cmdlineFd)
    if (entry.statusFd >= 0) closeQuietly(entry.statusFd)
  }
}

/** A status text up to its `Uid:` line (the name comes first): all a scan needs, without decoding the rest. */
const statusHead = (status: Buffer): string => {
  const uid = status.indexOf("\nUid:\t")
  const end = uid === -1 ? -1 : status.indexOf(0x0a, uid + 1)
  return status.toString("latin1", 0, end === -1 ? status.length : end)
}

/** The value of a status text's `Name:` line, or undefined. */
const statusNameOf = (status: string): string | undefined => {
  if (!status.startsWith("Name:\t")) return undefined
  const end = status.indexOf("\n")
  return status.slice(6, end === -1 ? status.length : end)
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
}

/** @category models */
export interface ScannerOptions {
  /** How many non-hypervisor processes keep an fd on their comm (default `DEFAULT_KEPT_COMM_FDS`). */
  readonly keptCommFds?: number
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
 * read once and remembered with kept fds that identify the process itself. A later scan costs one
 * listing of `procRoot` plus one `pread` per remembered process (its comm), two for a hypervisor (its
 * status, whose uids are judged afresh since setuid() can change them, and its cmdline, compared byte
 * for byte since an exec() keeps the pid). A kept fd that fails (ESRCH: the process was reaped, even
 * if its pid is already reused) or reads other bytes drops the entry and the pid is inspected afresh.
 * Pids gone from the listing are dropped and their fds closed.
 *
 * Bounded fds: at most `keptCommFds` non-hypervisor processes keep an fd (plus two per hypervisor);
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
  let generation = 0
  let inspected = 0
  let hypervisors = 0
  let commBudget = Math.max(0, options.keptCommFds ?? DEFAULT_KEPT_COMM_FDS)
  let commFds = 0
  /** Whether hypervisors keep fds on their status and cmdline; off for good once shed at the fd limit. */
  let keepHypervisorFds = true

  /** The bytes behind a kept fd (a view into the shared buffer, valid until the next read), or undefined. */
  const reread = (fd: number): Buffer | undefined => {
    try {
      return kept.bytes.subarray(0, kept.readAt0(fd))
    } catch {
      return undefined // ESRCH (reaped) or any failure: not the process we knew
    }
  }

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

  /** Whether a remembered process is still the one remembered (and, for a hypervisor, its uids of now). */
  const stillSame = (name: string, entry: Entry): boolean => {
    if (entry.kind === "other") {
      const comm = entry.comm >= 0 ? reread(entry.comm) : readPath(`${procRoot}/${name}/comm`, MAX_COMM_BYTES)
      if (typeof comm === "string") return !isGone(comm) // unreadable now: nothing says it changed
      return comm?.equals(entry.name) === true
    }
    const cmdline =
      entry.cmdlineFd >= 0 ? reread(entry.cmdlineFd) : readPath(`${procRoot}/${name}/cmdline`, MAX_CMDLINE_BYTES)
    if (typeof cmdline === "string") {
      if (isGone(cmdline)) return false
    } else if (cmdline?.equals(entry.cmdline) !== true) return false
    const status =
      entry.statusFd >= 0 ? reread(entry.statusFd) : readPath(`${procRoot}/${name}/status`, MAX_STATUS_BYTES)
    if (status === undefined) return false
    if (typeof status === "string") {
      if (isGone(status)) return false
      if (!isExhausted(status)) entry.uids = "unverifiable" // at the fd limit, the last verdict stands
      return true
    }
    const head = statusHead(status)
    if (statusNameOf(head) !== entry.statusName) return false
    entry.uids = uidVerdict(head)
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
      if (entry.kind === "other" && entry.comm >= 0) {
        closeQuietly(entry.comm)
        entry.comm = -1
      }
    }
    commFds = 0
    commBudget = Math.min(commBudget, Math.floor(freed / 2))
    return freed > 0 || shedHypervisorFds()
  }

  /**
   * With no comm fd left to give back, the hypervisors' own fds go (two each: thousands of VMs under a
   * low limit) and they are read by path from then on, so the scan, and /proc's listing, still work.
   */
  const shedHypervisorFds = (): boolean => {
    if (!keepHypervisorFds) return false
    keepHypervisorFds = false
    for (const entry of cache.values()) {
      if (entry.kind !== "hypervisor") continue
      if (entry.cmdlineFd >= 0) closeQuietly(entry.cmdlineFd)
      if (entry.statusFd >= 0) closeQuietly(entry.statusFd)
      entry.cmdlineFd = -1
      entry.statusFd = -1
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

  /** Reads a process afresh: what it is, with its kept fds, or undefined to skip it this scan. */
  const inspect = (entry: string, pid: number, ignoredAs: IgnoreReason | undefined): Entry | undefined => {
    inspected++
    const read = readComm(`${procRoot}/${entry}/comm`)
    if (read === undefined) return undefined // vanished or unreadable
    const { comm, fd: commFd } = read
    const end = comm.length > 0 && comm[comm.length - 1] === 0x0a ? comm.length - 1 : comm.length
    const hypervisor = hypervisorOfComm(comm.toString("latin1", 0, end))
    if (hypervisor === undefined) {
      if (commFd >= 0) commFds++
      return { kind: "other", comm: commFd, name: Buffer.from(comm), seen: 0 }
    }
    if (commFd >= 0) closeQuietly(commFd) // a hypervisor is followed by its status and cmdline instead
    const cmdlinePath = `${procRoot}/${entry}/cmdline`
    const opened = keepHypervisorFds ? open(cmdlinePath) : "not_kept"
    if (typeof opened === "string" && isGone(opened)) return undefined
    const cmdlineFd = typeof opened === "number" ? opened : -1
    const release = () => {
      if (cmdlineFd >= 0) closeQuietly(cmdlineFd)
      return undefined
    }
    const cmdline = cmdlineFd >= 0 ? reread(cmdlineFd) : readPath(cmdlinePath, MAX_CMDLINE_BYTES)
    if (cmdline === undefined || typeof cmdline === "string") return release() // vanished or absurd
    if (cmdline.length === 0 || cmdline.length > MAX_CMDLINE_BYTES) return release() // a zombie, or absurd
    const copy = Buffer.from(cmdline) // the shared buffer is reused by the next read
    const statusPath = `${procRoot}/${entry}/status`
    const statusFd = keepHypervisorFds ? open(statusPath) : "not_kept"
    const status =
      typeof statusFd === "number"
        ? reread(statusFd)
        : isGone(statusFd)
          ? undefined
          : readPath(statusPath, MAX_STATUS_BYTES)
    if (status === undefined || (typeof status === "string" && isGone(status))) {
      if (typeof statusFd === "number") closeQuietly(statusFd)
      return release() // gone meanwhile
    }
    const statusText = typeof status === "string" ? undefined : statusHead(status)
    const exe = exeProblem(procRoot, pid, trusted)
    if (exe === "gone") {
      if (typeof statusFd === "number") closeQuietly(statusFd)
      return release()
    }
    return {
      kind: "hypervisor",
      hypervisor,
      cmdline: copy,
      cmdlineFd,
      statusFd: typeof statusFd === "number" ? statusFd : -1,
      statusName: statusText === undefined ? undefined : statusNameOf(statusText),
      info: undefined,
      exe,
      ignoredAs,
      uids: statusText === undefined ? "unverifiable" : uidVerdict(statusText),
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
    if (entry.kind === "other" && entry.comm >= 0) commFds--
    closeEntry(entry)
    cache.delete(pid)
    if (entry.kind === "hypervisor") hypervisors--
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

  const begin = (): Either.Either<ScanInSteps, InstanceSourceError> => {
    const entries = listProc()
    if (typeof entries === "string") {
      return Either.left(
        new InstanceSourceError({ kind: kindOfErrno(entries), reason: `cannot list ${procRoot}: ${entries}` })
      )
    }
    const scanGeneration = ++generation
    const found: Array<InstanceInfo> = []
    let next = 0
    const step = (count: number): boolean => {
      const end = Math.min(entries.length, next + count)
      for (; next < end; next++) visit(entries[next], found)
      return next < entries.length
    }
    const finish = (): ReadonlyArray<InstanceInfo> => {
      // A newer scan began meanwhile (misuse): its own finish settles the cache, not this one.
      if (scanGeneration === generation) {
        for (const [pid, entry] of cache) if (entry.seen !== generation) forget(pid, entry)
      }
      return uniqueIds(found.sort(byId))
    }
    return Either.right({ step, finish })
  }

  /** One entry of a listing: its process remembered or inspected; a trusted hypervisor's info goes to `found`. */
  const visit = (name: string, found: Array<InstanceInfo>): void => {
    const pid = pidOfEntry(name)
    if (pid === undefined) return
    let entry = cache.get(pid)
    let ignoredAs: IgnoreReason | undefined
    if (entry !== undefined && !stillSame(name, entry)) {
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
    counters: () => ({ scans: generation, inspected }),
    ignoredTotals,
    close
  }
}
