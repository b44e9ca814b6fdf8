/** In-memory VMs for the otel tests: the real collector over the in-memory core ports. */
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { Layer, Logger, LogLevel } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import * as VmMetrics from "../src/VmMetrics.js"

export const GiB = 1024 * 1024 * 1024
export const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }

export const vm = (id: string, pid: number, extra: Partial<InstanceInfo> = {}): InstanceInfo => ({
  id,
  name: `name-${id}`,
  hypervisorPid: pid,
  tapDevice: `hype-${id}`.slice(0, 15),
  allocatedVcpus: 2,
  allocatedMemoryBytes: GiB,
  ...extra
})

export interface World {
  readonly source: InstanceSource.MemoryInstanceSource
  readonly proc: ProcReader.MemoryProcReader
  readonly taps: TapReader.MemoryTapReader
  readonly logs: Array<{ readonly level: string; readonly message: string }>
  /** A running process: utime/stime ticks, rss/vms pages, start ticks. */
  readonly setProcess: (
    pid: number,
    p: { utime: number; stime?: number; rss?: number; vms?: number; start?: number }
  ) => void
  readonly setTap: (name: string, rx: number | bigint, tx: number | bigint) => void
}

export const makeWorld = (instances: ReadonlyArray<InstanceInfo> = []): World => {
  const proc = ProcReader.makeMemory(kernel)
  const taps = TapReader.makeMemory()
  return {
    source: InstanceSource.makeMemory(instances),
    proc,
    taps,
    logs: [],
    setProcess: (pid, p) =>
      proc.set(pid, {
        stat: statLine({ pid, utime: p.utime, stime: p.stime ?? 0, startTime: p.start ?? 500 }),
        statm: `${p.vms ?? 1000} ${p.rss ?? 100} 0 0 0 0 0\n`
      }),
    setTap: (name, rx, tx) => taps.set(name, { rxBytes: `${rx}\n`, txBytes: `${tx}\n` })
  }
}

/** Collector + VmMetrics over a world, with logs captured. */
export const layerFor = (world: World, options: VmMetrics.Options = {}) => {
  const capture = Logger.make(({ logLevel, message }) => {
    world.logs.push({ level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) })
  })
  const collector = Collector.layer({ maxAge: "1 second" }).pipe(
    Layer.provide(
      Layer.mergeAll(
        InstanceSource.layerMemory(world.source),
        ProcReader.layerMemory(world.proc),
        TapReader.layerMemory(world.taps)
      )
    )
  )
  return VmMetrics.layer(options).pipe(
    Layer.provideMerge(collector),
    Layer.provide(Layer.merge(Logger.replace(Logger.defaultLogger, capture), Logger.minimumLogLevel(LogLevel.Debug)))
  )
}

/** Parses Prometheus text into "name{k="v",…}" → value, labels sorted, plus HELP/TYPE per family. */
export const parseExposition = (text: string) => {
  const samples = new Map<string, string>()
  const meta = new Map<string, string>()
  for (const line of text.split("\n")) {
    if (line === "") continue
    const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (m !== null) {
      meta.set(`${m[1]} ${m[2]}`, m[3]!)
      continue
    }
    if (line.startsWith("#")) continue
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line)
    if (s === null) throw new Error(`unparsable line: ${line}`)
    const labels = s[3] === undefined ? [] : (s[3].match(/[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"/g) ?? [])
    samples.set(`${s[1]}{${[...labels].sort().join(",")}}`, s[4]!)
  }
  return { samples, meta }
}
