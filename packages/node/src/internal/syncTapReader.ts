/**
 * The synchronous core of NodeTapReader (whose header says how it reads), usable without Effect by
 * tests and benchmarks.
 *
 * @internal
 */
import { PermissionDenied, ReadFailed, TapMissing, type TapReadError } from "@vm-metrics/core/Errors"
import { type NetDevInterface, parseNetDev } from "@vm-metrics/core/NetDev"
import { parseSysfsCounter } from "@vm-metrics/core/SysfsCounter"
import { validateTapName } from "@vm-metrics/core/TapName"
import {
  type CounterFile,
  counterFiles,
  countersOf,
  filesFor,
  type TapCounters,
  type TapRequest,
  type TapSample,
  type TapWanted,
  tapKey
} from "@vm-metrics/core/TapReader"
import { Either } from "effect"
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

/** A process's net/dev, kept open while a TAP of it is read via its netns; parsed once per batch. */
interface NetDevFile {
  readonly file: KeptFile
  /** The keys (tapKey) that read through it. */
  readonly users: Set<string>
  batch: number
  parsed: Either.Either<ReadonlyMap<string, NetDevInterface>, TapReadError | "gone"> | undefined
}

/** The synchronous core of the reader, usable without Effect (benchmarks). @category constructors */
export const makeSyncTapReader = (sysRoot: string, procRoot = "/proc") => {
  const buffer = new ReadBuffer()
  /** Per TAP name: its sysfs counter files, opened as they are first wanted. */
  const sysfs = new Map<string, Map<CounterFile, KeptFile>>()
  /** Per TAP name: the keys (name + pid) that read it; its files are closed when the last one is released. */
  const users = new Map<string, Set<string>>()
  /** Per pid: its net/dev. */
  const netDevs = new Map<number, NetDevFile>()
  /** The keys last read via netns: tried there first next time (no failing sysfs open per read). */
  const viaNetns = new Set<string>()
  let batch = 0

  const closeSysfs = (name: string): void => {
    const files = sysfs.get(name)
    if (files === undefined) return
    for (const file of files.values()) file.close()
    sysfs.delete(name)
  }

  const leaveNetDev = (key: string, pid: number): void => {
    const netDev = netDevs.get(pid)
    if (netDev === undefined) return
    netDev.users.delete(key)
    if (netDev.users.size > 0) return
    netDev.file.close()
    netDevs.delete(pid)
  }

  const release = (request: TapRequest): void => {
    const key = tapKey(request)
    viaNetns.delete(key)
    if (request.pid !== undefined) leaveNetDev(key, request.pid)
    const keys = users.get(request.name)
    keys?.delete(key)
    if (keys !== undefined && keys.size > 0) return // another VM names the same TAP
    users.delete(request.name)
    closeSysfs(request.name)
  }

  const readSysfs = (name: string, wanted: TapWanted): Either.Either<TapCounters, TapReadError> => {
    let files = sysfs.get(name)
    if (files === undefined) {
      files = new Map()
      sysfs.set(name, files)
    }
    const values: Array<bigint | null> = counterFiles.map(() => null)
    for (const counter of filesFor(wanted)) {
      let file = files.get(counter)
      if (file === undefined) {
        file = new KeptFile(`${sysRoot}/class/net/${name}/statistics/${counter}`, "ENODEV")
        files.set(counter, file)
      }
      const length = file.read(buffer)
      const value =
        typeof length === "string"
          ? Either.left(errorOf(name, file.path, length))
          : parseSysfsCounter(buffer.bytes, length, counter)
      if (Either.isLeft(value)) {
        closeSysfs(name) // a missing or broken TAP keeps nothing open
        return Either.left(value.left)
      }
      values[counterFiles.indexOf(counter)] = value.right
    }
    return Either.right(countersOf(values))
  }

  /** The interfaces of `pid`'s network namespace, read once per batch; "gone" when the process is. */
  const interfacesOf = (key: string, pid: number) => {
    let netDev = netDevs.get(pid)
    if (netDev === undefined) {
      netDev = {
        file: new KeptFile(`${procRoot}/${pid}/net/dev`, "ESRCH"),
        users: new Set(),
        batch: -1,
        parsed: undefined
      }
      netDevs.set(pid, netDev)
    }
    netDev.users.add(key)
    if (netDev.batch !== batch || netDev.parsed === undefined) {
      const length = netDev.file.read(buffer)
      netDev.batch = batch
      netDev.parsed =
        typeof length !== "string"
          ? parseNetDev(buffer.bytes, length)
          : length === "ENOENT" || length === "ESRCH"
            ? Either.left("gone" as const)
            : Either.left(errorOf("", netDev.file.path, length))
    }
    return netDev.parsed
  }

  /** The TAP in `pid`'s namespace: counters, an error of that read, or undefined when it is not there. */
  const readNetns = (
    name: string,
    pid: number,
    key: string,
    wanted: TapWanted
  ): Either.Either<TapCounters, TapReadError> | undefined => {
    const interfaces = interfacesOf(key, pid)
    if (Either.isLeft(interfaces)) {
      leaveNetDev(key, pid)
      return interfaces.left === "gone" ? undefined : Either.left(interfaces.left)
    }
    const found = interfaces.right.get(name)
    if (found === undefined) {
      leaveNetDev(key, pid)
      return undefined
    }
    return Either.right({
      rxBytes: found.rxBytes,
      txBytes: found.txBytes,
      rxPackets: wanted.packets ? found.rxPackets : null,
      txPackets: wanted.packets ? found.txPackets : null,
      rxErrors: wanted.packets ? found.rxErrors : null,
      txErrors: wanted.packets ? found.txErrors : null,
      rxDropped: wanted.dropped ? found.rxDropped : null,
      txDropped: wanted.dropped ? found.txDropped : null
    })
  }

  /**
   * Sysfs first; when the host has no such TAP and the VM's pid is known, that process's net/dev.
   * A TAP found via netns is looked for there first next time, and in sysfs again once it is gone.
   */
  const sampleOne = (request: TapRequest, wanted: TapWanted): TapSample => {
    const { name } = request
    // Only a pid in the kernel's range ever becomes part of a /proc path.
    const pid =
      request.pid !== undefined && Number.isSafeInteger(request.pid) && request.pid > 0 ? request.pid : undefined
    if (!sysfs.has(name)) {
      const valid = validateTapName(name) // before the name becomes part of any path
      if (Either.isLeft(valid)) return { via: "sysfs", counters: Either.left(valid.left) }
    }
    const key = tapKey(request)
    const keys = users.get(name)
    if (keys === undefined) users.set(name, new Set([key]))
    else keys.add(key)
    if (pid !== undefined && viaNetns.has(key)) {
      const inNetns = readNetns(name, pid, key, wanted)
      if (inNetns !== undefined) return { via: "netns", counters: inNetns }
      viaNetns.delete(key)
    }
    const counters = readSysfs(name, wanted)
    if (pid === undefined || Either.isRight(counters) || counters.left._tag !== "TapMissing") {
      return { via: "sysfs", counters }
    }
    const inNetns = readNetns(name, pid, key, wanted)
    if (inNetns === undefined) {
      const path = `${sysRoot}/class/net/${name} nor in ${procRoot}/${pid}/net/dev`
      return { via: "sysfs", counters: Either.left(new TapMissing({ tap: name, path })) }
    }
    if (Either.isRight(inNetns)) viaNetns.add(key)
    return { via: "netns", counters: inNetns }
  }

  const sample = (requests: ReadonlyArray<TapRequest>, wanted: TapWanted): Array<TapSample> => {
    batch++
    const samples = new Array<TapSample>(requests.length)
    for (let i = 0; i < requests.length; i++) samples[i] = sampleOne(requests[i], wanted)
    return samples
  }

  const closeAll = (): void => {
    for (const name of [...sysfs.keys()]) closeSysfs(name)
    for (const netDev of netDevs.values()) netDev.file.close()
    netDevs.clear()
    viaNetns.clear()
    users.clear()
  }

  return {
    sample,
    /** One TAP alone (tests): its own batch. */
    sampleOne: (request: TapRequest | string, wanted: TapWanted = { packets: false, dropped: false }) =>
      sample([typeof request === "string" ? { name: request } : request], wanted)[0],
    release,
    closeAll,
    openTaps: () => sysfs.size,
    openNetDevs: () => netDevs.size
  }
}
