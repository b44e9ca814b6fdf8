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
import { errnoOf } from "./keptFile.js"
import { SmallFileReader } from "./smallFile.js"

/** The largest Firecracker config file read. @category constants */
export const MAX_CONFIG_BYTES = 1024 * 1024

const MAX_CMDLINE_BYTES = 1024 * 1024
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

interface Known {
  readonly hypervisor: Hypervisor
  readonly cmdline: Buffer
  /** Derived once it is trusted: nothing of an untrusted process is parsed (nor its config file read). */
  info: InstanceInfo | undefined
  /** The verdict on its executable, judged once per pid and command line. */
  readonly exe: IgnoreReason | undefined
  /** The reason it was last counted as ignored for, so that a process is counted once. */
  ignoredAs: IgnoreReason | undefined
  seen: number
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

/** The synchronous scanner behind the source, usable without Effect (benchmarks). @category models */
export interface Scanner {
  readonly scan: () => Either.Either<ReadonlyArray<InstanceInfo>, InstanceSourceError>
  /** How many hypervisor processes are remembered (those of the last scan). */
  readonly known: () => number
  /** Hypervisor processes ignored since start, by reason (each process once). */
  readonly ignoredTotals: () => ReadonlyArray<IgnoredTotal>
}

/** A scanner of `procRoot`, which must already be checked (absolute, no `..`). @category constructors */
export const makeScanner = (procRoot: string, trustedUids: ReadonlyArray<number> = []): Scanner => {
  const reader = new SmallFileReader()
  const known = new Map<number, Known>()
  const trustedSet = new Set([0, ...trustedUids])
  const trusted = (uid: number) => trustedSet.has(uid)
  const ignored = new Map<IgnoreReason, number>(ignoreReasons.map((reason) => [reason, 0]))
  let generation = 0

  /** Why the process's uids are not all trusted, `gone`, or undefined when they are. */
  const uidProblem = (entry: string): IgnoreReason | "gone" | undefined => {
    const status = reader.read(`${procRoot}/${entry}/status`, { limit: 16 * 1024 })
    if (typeof status === "string") return status === "ENOENT" || status === "ESRCH" ? "gone" : "unverifiable"
    const uids = parseStatusUids(status.toString("latin1"))
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

  /** The process's hypervisor and the info derived from its command line, or undefined to skip it. */
  const inspect = (entry: string, pid: number): Known | undefined => {
    const comm = reader.read(`${procRoot}/${entry}/comm`, { limit: 64, oneRead: true })
    if (typeof comm === "string") return undefined // vanished or unreadable
    const end = comm.length > 0 && comm[comm.length - 1] === 0x0a ? comm.length - 1 : comm.length
    const hypervisor = hypervisorOfComm(comm.toString("latin1", 0, end))
    if (hypervisor === undefined) return undefined
    const cmdline = reader.read(`${procRoot}/${entry}/cmdline`, { limit: MAX_CMDLINE_BYTES })
    if (typeof cmdline === "string" || cmdline.length === 0) return undefined // vanished, or a zombie
    const cached = known.get(pid)
    if (cached !== undefined && cached.hypervisor === hypervisor && cached.cmdline.equals(cmdline)) return cached
    const copy = Buffer.from(cmdline) // the reader's buffer is reused by the status and config reads
    const exe = exeProblem(procRoot, pid, trusted)
    if (exe === "gone") return undefined
    const fresh: Known = {
      hypervisor,
      cmdline: copy,
      info: undefined,
      exe,
      ignoredAs: cached?.ignoredAs,
      seen: 0
    }
    known.set(pid, fresh)
    return fresh
  }

  /** Whether to list the process; an untrusted one is counted once per reason it is ignored for. */
  const isTrusted = (entry: string, candidate: Known): boolean | "gone" => {
    const uid = uidProblem(entry)
    if (uid === "gone") return "gone"
    const reason = uid ?? candidate.exe
    if (reason !== undefined && reason !== candidate.ignoredAs) ignored.set(reason, (ignored.get(reason) ?? 0) + 1)
    candidate.ignoredAs = reason
    return reason === undefined
  }

  const scan = (): Either.Either<ReadonlyArray<InstanceInfo>, InstanceSourceError> => {
    let entries: Array<string>
    try {
      entries = fs.readdirSync(procRoot)
    } catch (error) {
      const code = errnoOf(error)
      return Either.left(
        new InstanceSourceError({ kind: kindOfErrno(code), reason: `cannot list ${procRoot}: ${code}` })
      )
    }
    generation++
    const found: Array<InstanceInfo> = []
    for (const entry of entries) {
      const pid = pidOfEntry(entry)
      if (pid === undefined) continue
      const hypervisorProcess = inspect(entry, pid)
      if (hypervisorProcess === undefined) continue
      const verdict = isTrusted(entry, hypervisorProcess)
      if (verdict === "gone") continue
      hypervisorProcess.seen = generation
      if (!verdict) continue
      hypervisorProcess.info ??= derive(hypervisorProcess.hypervisor, pid, splitCmdline(hypervisorProcess.cmdline))
      found.push(hypervisorProcess.info)
    }
    for (const [pid, entry] of known) if (entry.seen !== generation) known.delete(pid)
    return Either.right(uniqueIds(found.sort(byId)))
  }

  const ignoredTotals = () => Array.from(ignored, ([reason, count]) => ({ reason, count }))

  return { scan, known: () => known.size, ignoredTotals }
}
