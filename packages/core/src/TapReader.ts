/**
 * Port: reads the host-side counters of TAP devices (`/sys/class/net/<tap>/statistics/*`: rx/tx
 * bytes, packets, errors, dropped). Values are from the HOST's point of view; the collector swaps them
 * to the VM's. Batched like ProcReader. Every name is validated by the collector and again by real
 * readers, before it becomes part of any path.
 *
 * Bytes are always read (the seed's metrics); packets + errors and dropped only when asked
 * (`TapWanted`, from the enabled metric groups), else null. A TAP that is not in the host's network
 * namespace but in that of the VM's hypervisor process (`TapRequest.pid`) is read from that
 * process's `/proc/<pid>/net/dev` (`via: "netns"`); only the VM's own pid is ever given.
 *
 * @since 0.1.0
 */
import { Context, Effect, Either, Layer } from "effect"
import { TapMissing, type TapReadError } from "./Errors.js"
import { parseSysfsCounterText } from "./SysfsCounter.js"
import { validateTapName } from "./TapName.js"

/**
 * Where a TAP was found (VmStats' `NicVia`): "sysfs", the namespace the host's sysfs shows (read from its
 * counter files, or from the agent's own net/dev when that is the same namespace: the same kernel
 * counters), or "netns", the VMM's namespace (`/proc/<pid>/net/dev`). A NIC's label does not change with
 * the file its numbers came from.
 *
 * @category models
 */
export type TapVia = "sysfs" | "netns"

/** One TAP to read, and the hypervisor process whose network namespace may hold it. @category models */
export interface TapRequest {
  readonly name: string
  /** The VM's own hypervisor pid: where to look when the host has no TAP of that name. */
  readonly pid?: number | undefined
}

/** Which counters beyond bytes to read. @category models */
export interface TapWanted {
  /** rx/tx packets and errors (groups `packets`, `interfaces`). */
  readonly packets: boolean
  /** rx/tx dropped (groups `network`, `interfaces`). */
  readonly dropped: boolean
}

/** Bytes only: the seed's reads. @category constants */
export const bytesOnly: TapWanted = { packets: false, dropped: false }

/** Every counter. @category constants */
export const allCounters: TapWanted = { packets: true, dropped: true }

/**
 * Host perspective: rx = what the host received from the VM. A counter not asked for is null. Read
 * via netns, rx dropped is net/dev's `drop` column (rx_dropped + rx_missed_errors; 0 missed for a TAP).
 *
 * @category models
 */
export interface TapCounters {
  readonly rxBytes: bigint
  readonly txBytes: bigint
  readonly rxPackets: bigint | null
  readonly txPackets: bigint | null
  readonly rxErrors: bigint | null
  readonly txErrors: bigint | null
  readonly rxDropped: bigint | null
  readonly txDropped: bigint | null
}

/** One TAP's reading: how it was read (or tried last), and the counters or why not. @category models */
export interface TapSample {
  readonly via: TapVia
  readonly counters: Either.Either<TapCounters, TapReadError>
}

/** The key a reader keeps a TAP's resources under: the name, and the pid whose netns may hold it. @category utils */
export const tapKey = (request: TapRequest): string =>
  request.pid === undefined ? request.name : `${request.name}\u0000${request.pid}`

/** @category tags */
export class TapReader extends Context.Tag("@vm-metrics/core/TapReader")<
  TapReader,
  {
    /**
     * One sample per request, in the same order. `collection`: the collection the call belongs to; calls
     * of one collection (its chunks) may share one read of a file that lists every TAP (a net/dev). A call
     * without one is read on its own, now.
     */
    readonly sample: (
      taps: ReadonlyArray<TapRequest>,
      wanted: TapWanted,
      collection?: number
    ) => Effect.Effect<ReadonlyArray<TapSample>>
    /** The collector no longer needs this TAP (name and pid): drop whatever is kept for it. */
    readonly release: (tap: TapRequest) => Effect.Effect<void>
    /**
     * Optional: reads now, as a step of its own, what the chunks of `collection` will share (a net/dev
     * listing every TAP), so that no chunk carries that read besides its own.
     */
    readonly prepare?: (collection: number) => Effect.Effect<void>
  }
>() {}

/** The counter files of a TAP's statistics directory, in TapCounters order. @category constants */
export const counterFiles = [
  "rx_bytes",
  "tx_bytes",
  "rx_packets",
  "tx_packets",
  "rx_errors",
  "tx_errors",
  "rx_dropped",
  "tx_dropped"
] as const
/** @category models */
export type CounterFile = (typeof counterFiles)[number]

const filesOf = (packets: boolean, dropped: boolean): ReadonlyArray<CounterFile> =>
  counterFiles.filter(
    (file) =>
      file.endsWith("_bytes") ||
      (packets && (file.endsWith("_packets") || file.endsWith("_errors"))) ||
      (dropped && file.endsWith("_dropped"))
  )
/** By `packets * 2 + dropped`: computed once, not per TAP and read. */
const FILES_FOR = [filesOf(false, false), filesOf(false, true), filesOf(true, false), filesOf(true, true)]

/** The counter files `wanted` needs, in `counterFiles` order (bytes first). @category utils */
export const filesFor = (wanted: TapWanted): ReadonlyArray<CounterFile> =>
  FILES_FOR[(wanted.packets ? 2 : 0) + (wanted.dropped ? 1 : 0)]

/** TapCounters from values in `counterFiles` order, null where not read. @category constructors */
export const countersOf = (values: ReadonlyArray<bigint | null>): TapCounters => ({
  rxBytes: values[0] ?? 0n,
  txBytes: values[1] ?? 0n,
  rxPackets: values[2] ?? null,
  txPackets: values[3] ?? null,
  rxErrors: values[4] ?? null,
  txErrors: values[5] ?? null,
  rxDropped: values[6] ?? null,
  txDropped: values[7] ?? null
})

/**
 * An in-memory TAP: the text of each counter file, or the error its read gives. A counter left out
 * reads "0" (a TAP that never saw such a packet).
 *
 * @category models
 */
export type MemoryTap = { readonly rxBytes: string | TapReadError; readonly txBytes: string | TapReadError } & {
  readonly [K in Exclude<keyof TapCounters, "rxBytes" | "txBytes">]?: string | TapReadError
}

/** @category models */
export interface MemoryTapReader {
  readonly reader: Context.Tag.Service<TapReader>
  /** A TAP in the host's namespace (read via sysfs). */
  readonly set: (name: string, tap: MemoryTap) => void
  readonly remove: (name: string) => void
  /** A TAP only in the network namespace of process `pid` (read via netns). */
  readonly setInNetns: (pid: number, name: string, tap: MemoryTap) => void
  readonly removeFromNetns: (pid: number, name: string) => void
  /** Reads by TAP name. */
  readonly reads: ReadonlyMap<string, number>
  /** Released TAP names. */
  readonly released: ReadonlySet<string>
  /** What the last sample asked for. */
  readonly lastWanted: () => TapWanted | undefined
}

const fieldOf: Record<CounterFile, keyof TapCounters> = {
  rx_bytes: "rxBytes",
  tx_bytes: "txBytes",
  rx_packets: "rxPackets",
  tx_packets: "txPackets",
  rx_errors: "rxErrors",
  tx_errors: "txErrors",
  rx_dropped: "rxDropped",
  tx_dropped: "txDropped"
}

/** @category constructors */
export const makeMemory = (): MemoryTapReader => {
  const taps = new Map<string, MemoryTap>()
  const netns = new Map<number, Map<string, MemoryTap>>()
  const reads = new Map<string, number>()
  const released = new Set<string>()
  let lastWanted: TapWanted | undefined
  const counters = (tap: MemoryTap, wanted: TapWanted): Either.Either<TapCounters, TapReadError> => {
    const values: Array<bigint | null> = counterFiles.map(() => null)
    for (const file of filesFor(wanted)) {
      const content = tap[fieldOf[file]] ?? "0"
      const value = typeof content === "string" ? parseSysfsCounterText(content, file) : Either.left(content)
      if (Either.isLeft(value)) return Either.left(value.left)
      values[counterFiles.indexOf(file)] = value.right
    }
    return Either.right(countersOf(values))
  }
  const sampleOne = (request: TapRequest, wanted: TapWanted): TapSample => {
    const { name, pid } = request
    reads.set(name, (reads.get(name) ?? 0) + 1)
    released.delete(name)
    const valid = validateTapName(name)
    if (Either.isLeft(valid)) return { via: "sysfs", counters: Either.left(valid.left) }
    const tap = taps.get(name)
    if (tap !== undefined) return { via: "sysfs", counters: counters(tap, wanted) }
    const inNetns = pid === undefined ? undefined : netns.get(pid)?.get(name)
    if (inNetns !== undefined) return { via: "netns", counters: counters(inNetns, wanted) }
    return { via: "sysfs", counters: Either.left(new TapMissing({ tap: name, path: `/sys/class/net/${name}` })) }
  }
  return {
    reader: TapReader.of({
      sample: (requests, wanted) =>
        Effect.sync(() => {
          lastWanted = wanted
          return requests.map((request) => sampleOne(request, wanted))
        }),
      release: (request) => Effect.sync(() => void released.add(request.name))
    }),
    set: (name, tap) => void taps.set(name, tap),
    remove: (name) => void taps.delete(name),
    setInNetns: (pid, name, tap) => {
      const names = netns.get(pid) ?? new Map<string, MemoryTap>()
      names.set(name, tap)
      netns.set(pid, names)
    },
    removeFromNetns: (pid, name) => void netns.get(pid)?.delete(name),
    reads,
    released,
    lastWanted: () => lastWanted
  }
}

/** @category layers */
export const layerMemory = (memory: MemoryTapReader): Layer.Layer<TapReader> => Layer.succeed(TapReader, memory.reader)
