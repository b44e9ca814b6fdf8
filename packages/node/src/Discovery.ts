/**
 * Zero-config `InstanceSource`: finds hypervisor processes (QEMU, Cloud Hypervisor, Firecracker) in
 * `<procRoot>` and derives each one's `InstanceInfo` from its command line (HypervisorCmdline.ts).
 *
 * The collector lists every second or so, so a scan must be cheap on a host with thousands of
 * processes:
 * - every pid costs one read of `<pid>/comm` (a 15-character name), which rules out almost all of
 *   them; the directory listing is the only other per-scan cost;
 * - a hypervisor's `<pid>/cmdline` is read and compared byte for byte with the one parsed before:
 *   the same pid with the same bytes reuses the parsed result (and, for Firecracker, the config file
 *   read with it). A restarted VMM or a reused pid with other arguments is parsed afresh.
 * - a process that vanishes between the listing and its reads is skipped; so is a zombie (empty
 *   cmdline).
 *
 * A Firecracker `--config-file` is read through `<procRoot>/<pid>/root/…` (absolute) or
 * `<procRoot>/<pid>/cwd/…` (relative), so a jailed Firecracker's chroot is honoured and nothing
 * outside /proc is named; paths with `..` or NUL are refused, the last component must be a regular
 * file (no symlink, no FIFO) and at most 1 MiB. A missing or bad config means defaults, not failure.
 *
 * Only hypervisor processes that ProcessTrust.ts vouches for are listed: all uids root or in
 * `trustedUids`, and an executable that only root or trusted users could have put there. The others
 * are ignored and counted by reason (`ignoredTotals`, once per process), so that another local user
 * cannot pose as a VM. The uids are read on every scan (a process may change them); the executable
 * is judged once per pid and command line.
 *
 * Only an unlistable `<procRoot>` fails the listing (`InstanceSourceError`). The result is sorted by
 * id (then pid), so its order is stable. Ids must be unique (each is a series in /metrics and a REST
 * resource): processes that derive the same id (two QEMUs with one `-name` and no `-uuid`) are told
 * apart as `<id>-pid<pid>`.
 *
 * @since 0.1.0
 */

import * as fs from "node:fs"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { type IgnoredTotal, InstanceSource, kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { type Context, Effect, Either, Layer } from "effect"
import {
  firecrackerInfo,
  type Hypervisor,
  hypervisorOfComm,
  parseCloudHypervisorArgv,
  parseFirecrackerArgv,
  parseFirecrackerConfig,
  parseQemuArgv,
  splitCmdline
} from "./HypervisorCmdline.js"
import { checkRoot, errnoOf } from "./internal/keptFile.js"
import { SmallFileReader } from "./internal/smallFile.js"
import { exeProblem, type IgnoreReason, ignoreReasons, parseStatusUids } from "./ProcessTrust.js"

/** @category models */
export interface Options {
  /** Where the host's /proc is mounted. Default `/proc`. */
  readonly procRoot?: string
  /** Uids besides root whose hypervisor processes are trusted (e.g. libvirt-qemu's). Default none. */
  readonly trustedUids?: ReadonlyArray<number>
}

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

/** Builds the source; an invalid `procRoot` makes every listing fail with the reason. @category constructors */
export const make = (options: Options = {}): Effect.Effect<Context.Tag.Service<InstanceSource>> =>
  checkRoot("procRoot", options.procRoot ?? "/proc").pipe(
    Effect.map((procRoot) => {
      const scanner = makeScanner(procRoot, options.trustedUids)
      return InstanceSource.of({ list: Effect.suspend(scanner.scan), ignoredTotals: scanner.ignoredTotals })
    }),
    Effect.catchAll((invalid) =>
      Effect.succeed(
        InstanceSource.of({
          list: Effect.fail(new InstanceSourceError({ kind: "invalid_config", reason: invalid.message }))
        })
      )
    )
  )

/** Lists the hypervisor processes under `procRoot` (default `/proc`). @category layers */
export const layer = (options: Options = {}): Layer.Layer<InstanceSource> => Layer.effect(InstanceSource, make(options))
