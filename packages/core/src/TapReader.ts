/**
 * Port: reads the host-side byte counters of TAP devices (`/sys/class/net/<tap>/statistics/
 * {rx,tx}_bytes`). Values are from the HOST's point of view; the collector swaps them to the VM's.
 * Batched like ProcReader. Every name is validated by the collector and again by real readers.
 *
 * @since 0.1.0
 */
import { Context, Effect, Either, Layer } from "effect"
import { TapMissing, type TapReadError } from "./Errors.js"
import { parseSysfsCounterText } from "./SysfsCounter.js"
import { validateTapName } from "./TapName.js"

/** Host perspective: rx = bytes the host received from the VM. @category models */
export interface TapCounters {
  readonly rxBytes: bigint
  readonly txBytes: bigint
}

/** @category tags */
export class TapReader extends Context.Tag("@vm-metrics/core/TapReader")<
  TapReader,
  {
    /** One result per name, in the same order. */
    readonly sample: (
      names: ReadonlyArray<string>
    ) => Effect.Effect<ReadonlyArray<Either.Either<TapCounters, TapReadError>>>
    /** The collector no longer needs this TAP: drop whatever is kept for it. */
    readonly release: (name: string) => Effect.Effect<void>
  }
>() {}

/** An in-memory TAP: the text of each counter file, or the error its read gives. @category models */
export interface MemoryTap {
  readonly rxBytes: string | TapReadError
  readonly txBytes: string | TapReadError
}

/** @category models */
export interface MemoryTapReader {
  readonly reader: Context.Tag.Service<TapReader>
  readonly set: (name: string, tap: MemoryTap) => void
  readonly remove: (name: string) => void
  readonly reads: ReadonlyMap<string, number>
  readonly released: ReadonlySet<string>
}

/** @category constructors */
export const makeMemory = (): MemoryTapReader => {
  const taps = new Map<string, MemoryTap>()
  const reads = new Map<string, number>()
  const released = new Set<string>()
  const counter = (file: "rx_bytes" | "tx_bytes", content: string | TapReadError) =>
    typeof content === "string" ? parseSysfsCounterText(content, file) : Either.left(content)
  const sampleOne = (name: string): Either.Either<TapCounters, TapReadError> => {
    reads.set(name, (reads.get(name) ?? 0) + 1)
    released.delete(name)
    return Either.flatMap(validateTapName(name), () => {
      const tap = taps.get(name)
      if (tap === undefined) return Either.left(new TapMissing({ tap: name, path: `/sys/class/net/${name}` }))
      return Either.all({
        rxBytes: counter("rx_bytes", tap.rxBytes),
        txBytes: counter("tx_bytes", tap.txBytes)
      })
    })
  }
  return {
    reader: TapReader.of({
      sample: (names) => Effect.sync(() => names.map(sampleOne)),
      release: (name) => Effect.sync(() => void released.add(name))
    }),
    set: (name, tap) => void taps.set(name, tap),
    remove: (name) => void taps.delete(name),
    reads,
    released
  }
}

/** @category layers */
export const layerMemory = (memory: MemoryTapReader): Layer.Layer<TapReader> => Layer.succeed(TapReader, memory.reader)
