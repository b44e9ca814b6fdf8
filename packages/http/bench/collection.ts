/**
 * The collection approaches `pnpm bench` times over one fleet (see bench.ts): two baselines, the product's
 * Collector over a static listing and over discovery, discovery alone (steady-state rescan and full scan),
 * and rendering `/metrics` from a snapshot (directly and through the OTel SDK).
 */
import * as fs from "node:fs"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { MeterProvider } from "@opentelemetry/sdk-metrics"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import type { MetricGroup } from "@vm-metrics/core/MetricGroup"
import * as Discovery from "@vm-metrics/node/Discovery"
import * as NodeReaders from "@vm-metrics/node/NodeReaders"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import type { FakeVm } from "@vm-metrics/testing/FakeHypervisors"
import { Context, Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import * as Main from "../src/Main.js"

/** One measured approach: `run` does one full sweep over all VMs; `checksum` sweeps once more and sums the raw values. */
export interface Approach {
  readonly name: string
  readonly run: () => Promise<unknown> | unknown
  readonly checksum: () => Promise<bigint> | bigint
  readonly close: () => Promise<void> | void
}

// ---------- baseline 1: naive ----------

/** `readFileSync` per file and split on whitespace (a direct port of the Go original). */
export const naive = (vms: ReadonlyArray<FakeVm>): Approach => {
  const sweep = () => {
    let sum = 0n
    for (const vm of vms) {
      const stat = fs.readFileSync(`/proc/${vm.pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(/\s+/)
      const statm = fs.readFileSync(`/proc/${vm.pid}/statm`, "utf8").split(/\s+/)
      sum += BigInt(fields[11]!) + BigInt(fields[12]!) + BigInt(statm[0]!) + BigInt(statm[1]!)
      if (vm.tap !== undefined) {
        sum += BigInt(fs.readFileSync(`/sys/class/net/${vm.tap}/statistics/rx_bytes`, "utf8").trim())
        sum += BigInt(fs.readFileSync(`/sys/class/net/${vm.tap}/statistics/tx_bytes`, "utf8").trim())
      }
    }
    return sum
  }
  return { name: "naive", run: sweep, checksum: sweep, close: () => {} }
}

// ---------- baseline 2: bare kept fds (stands in for the C pread floor) ----------

/** Kept fds re-read with `readSync` at offset 0 and parsed by hand: no Effect, no allocation. */
export const bare = (vms: ReadonlyArray<FakeVm>): Approach => {
  const buffer = Buffer.allocUnsafe(4096)
  const fds = vms.map((vm) => ({
    stat: fs.openSync(`/proc/${vm.pid}/stat`, "r"),
    statm: fs.openSync(`/proc/${vm.pid}/statm`, "r"),
    rx: vm.tap === undefined ? -1 : fs.openSync(`/sys/class/net/${vm.tap}/statistics/rx_bytes`, "r"),
    tx: vm.tap === undefined ? -1 : fs.openSync(`/sys/class/net/${vm.tap}/statistics/tx_bytes`, "r")
  }))
  /** The n-th (0-based) whitespace-separated number from `start`. */
  const field = (length: number, start: number, n: number) => {
    let i = start
    for (let f = 0; f < n; f++) {
      while (i < length && buffer[i] !== 0x20) i++
      i++
    }
    let value = 0
    while (i < length && buffer[i]! >= 0x30 && buffer[i]! <= 0x39) value = value * 10 + buffer[i++]! - 0x30
    return value
  }
  const readNumber = (fd: number) => field(fs.readSync(fd, buffer, 0, 4096, 0), 0, 0)
  const sweep = () => {
    let sum = 0
    for (const f of fds) {
      const length = fs.readSync(f.stat, buffer, 0, 4096, 0)
      let close = length - 1
      while (buffer[close] !== 0x29) close--
      sum += field(length, close + 2, 11) + field(length, close + 2, 12)
      const statmLength = fs.readSync(f.statm, buffer, 0, 4096, 0)
      sum += field(statmLength, 0, 0) + field(statmLength, 0, 1)
      if (f.rx >= 0) sum += readNumber(f.rx) + readNumber(f.tx)
    }
    return BigInt(sum)
  }
  return {
    name: "bare",
    run: sweep,
    checksum: sweep,
    close: () => {
      for (const f of fds) for (const fd of [f.stat, f.statm, f.rx, f.tx]) if (fd >= 0) fs.closeSync(fd)
    }
  }
}

// ---------- the product: the Collector of Main's graph ----------

/** Our fakes' share of a snapshot, in raw units so it matches the baselines; throws on a missing value. */
const checksumOf = (
  snapshot: Collector.Snapshot,
  pids: ReadonlySet<number>,
  pageSize: bigint,
  vcpus: number | undefined
) => {
  let sum = 0n
  let seen = 0
  for (const s of snapshot.stats) {
    if (s.pid === null || !pids.has(s.pid)) continue // another process discovery found on this host
    seen++
    if (vcpus !== undefined && s.vcpus.length !== vcpus) {
      throw new Error(`pid ${s.pid}: ${s.vcpus.length} vCPU threads read, not ${vcpus}`)
    }
    // Undo the unit conversions so the checksum matches the raw baselines.
    sum += (s.cpuUsec ?? 0n) / 10_000n + (s.memoryVmsBytes ?? 0n) / pageSize + (s.memoryRssBytes ?? 0n) / pageSize
    sum += (s.netRxBytes ?? 0n) + (s.netTxBytes ?? 0n)
    if (s.unavailable.length > 0) throw new Error(`unavailable: ${JSON.stringify(s.unavailable)}`)
  }
  if (seen !== pids.size) throw new Error(`the snapshot has ${seen} of our ${pids.size} VMs`)
  return sum
}

/**
 * The product's pipeline (Main.layerPipeline) over the fleet: a static listing of it, or discovery. It
 * collects the original's metric set (no metric group, issue #10's terms: the files the baselines read)
 * unless `groups` says otherwise. With `vcpus` (fakes with that many named vCPU threads), the checksum
 * also checks that the vcpu group, when on, read every one of them. `sysfsTaps`: the TAPs from their sysfs
 * files only (the reader before it read the agent's own net/dev), for the before/after rows.
 */
export const collector = (
  vms: ReadonlyArray<FakeVm>,
  pageSize: number,
  source: "static" | "discovery",
  groups: ReadonlySet<MetricGroup> = new Set(),
  vcpus?: number,
  sysfsTaps = false
) => {
  const infos: Array<InstanceInfo> = vms.map((vm) => ({
    id: vm.name,
    name: vm.name,
    hypervisorPid: vm.pid,
    ...(vm.tap === undefined ? {} : { tapDevice: vm.tap }),
    allocatedVcpus: vcpus ?? 2,
    allocatedMemoryBytes: 1 << 30
  }))
  const runtime = ManagedRuntime.make(
    Main.layerPipeline(
      { maxAge: "1 hour", source: "discovery", groups },
      {
        ...(source === "static" ? { source: InstanceSource.layerStatic(infos) } : {}),
        ...(sysfsTaps ? { readers: NodeReaders.layer({ selfNetDev: false }) } : {})
      }
    ).pipe(Layer.orDie)
  )
  const pids = new Set(vms.map((vm) => vm.pid))
  const refresh = Effect.flatMap(Collector.Collector, (c) => c.refresh)
  return {
    name: `Collector, ${source}${groups.size > 0 ? `, groups ${[...groups].join(",")}` : ""}${sysfsTaps ? ", sysfs TAPs" : ""}`,
    run: () => runtime.runPromise(refresh),
    checksum: () =>
      runtime
        .runPromise(refresh)
        .then((snapshot) =>
          checksumOf(snapshot, pids, BigInt(pageSize), groups.has("vcpu") ? vcpus : vcpus === undefined ? undefined : 0)
        ),
    close: () => runtime.dispose(),
    runtime
  }
}

export type PipelineRuntime = ReturnType<typeof collector>["runtime"]

// ---------- discovery alone ----------

/** Discovery's listing of /proc: a steady-state rescan (one kept scanner), or a full scan (a new one each time). */
export const discoveryScan = (kind: "rescan" | "full scan"): Approach => {
  const open = () => {
    const scope = Effect.runSync(Scope.make())
    const source = Context.get(
      Effect.runSync(Layer.buildWithScope(Discovery.layer(), scope)),
      InstanceSource.InstanceSource
    )
    // A scan yields to the event loop between steps of pids (Discovery), so it runs as a promise.
    return { list: () => Effect.runPromise(source.list), close: () => Effect.runSync(Scope.close(scope, Exit.void)) }
  }
  const kept = kind === "rescan" ? open() : undefined
  return {
    name: `discovery ${kind}`,
    run:
      kept === undefined
        ? async () => {
            const fresh = open()
            await fresh.list()
            fresh.close()
          }
        : kept.list,
    checksum: () => 0n,
    close: () => kept?.close()
  }
}

// ---------- rendering /metrics from a snapshot ----------

/** `/metrics` rendered from a snapshot (what the server does once per snapshot). */
export const directRender = async (runtime: PipelineRuntime): Promise<Approach> => {
  const { metrics, snapshot } = await runtime.runPromise(
    Effect.all({ metrics: VmMetrics.VmMetrics, snapshot: Effect.flatMap(Collector.Collector, (c) => c.refresh) })
  )
  // A copy per run: VmMetrics keeps the bytes of each snapshot rendered, and this times the render itself.
  // The bytes, as the server sends them (`render` would decode them into a string for a caller).
  // runPromise: the render may yield (a log line of the label budget goes through an async logger).
  return {
    name: "render direct",
    run: () => runtime.runPromise(metrics.renderBytes({ ...snapshot })),
    checksum: () => 0n,
    close: () => {}
  }
}

/** The same text through the OTel SDK: instruments, PrometheusExporter.collect and its serializer. */
export const sdkRender = async (runtime: PipelineRuntime): Promise<Approach> => {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
  const provider = new MeterProvider({ readers: [exporter] })
  const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
  const scope = await runtime.runPromise(Scope.make())
  await runtime.runPromise(
    Effect.flatMap(VmMetrics.VmMetrics, (m) => m.registerOn(provider.getMeter("bench"))).pipe(Scope.extend(scope))
  )
  return {
    name: "render via OTel SDK",
    run: async () => serializer.serialize((await exporter.collect()).resourceMetrics),
    checksum: () => 0n,
    close: () => runtime.runPromise(Scope.close(scope, Exit.void)).then(() => provider.shutdown())
  }
}

// ---------- timing ----------

/** Median wall time of one sweep, in ms: warm-up, then blocks of k sweeps (≥ 2 ms each) for ≥ 300 ms. */
export const measure = async (approach: Approach): Promise<number> => {
  const warmUntil = performance.now() + 100
  while (performance.now() < warmUntil) await approach.run()
  let k = 1
  for (;;) {
    const t0 = performance.now()
    for (let i = 0; i < k; i++) await approach.run()
    if (performance.now() - t0 >= 2) break
    k *= 2
  }
  const blocks: Array<number> = []
  const until = performance.now() + 300
  while (blocks.length < 5 || performance.now() < until) {
    const t0 = performance.now()
    for (let i = 0; i < k; i++) await approach.run()
    blocks.push((performance.now() - t0) / k)
  }
  blocks.sort((a, b) => a - b)
  return blocks[Math.floor(blocks.length / 2)]!
}
