/**
 * `pnpm bench`: what one collection and one `/metrics` render cost per VM, for N = 1, 100, 1000 real processes (and as many
 * real TAP devices when root), next to two baselines measured in the same run:
 *
 * - naive: `readFileSync` per file and split on whitespace (a direct port of the Go original);
 * - bare:  kept fds re-read with `readSync` at offset 0 and parsed by hand, no Effect, no allocation.
 *
 * Approaches are interleaved round by round and every ratio is taken within one round, because the
 * machine is shared and noisy. Targets: collector ≤ 1.3× bare and ≥ 3× faster than naive at N = 1000
 * (issue #2); rendering `/metrics` from the snapshot costs no more than the collection (issue #3),
 * shown next to the OTel SDK path (observable instruments + PrometheusExporter.collect + serializer).
 * Usage: `pnpm bench [N ...]` (env BENCH_ROUNDS, default 5).
 */
import { execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { MeterProvider } from "@opentelemetry/sdk-metrics"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { Effect, Exit, Layer, ManagedRuntime, Scope } from "effect"
import * as Main from "../src/Main.js"

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0)
const SIZES = sizes.length > 0 ? sizes : [1, 100, 1000]
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const isRoot = process.getuid?.() === 0 && fs.existsSync("/dev/net/tun")

interface Vm {
  readonly pid: number
  readonly tap: string | undefined
}

/** One measured approach: `run` does one full sweep over all VMs; `checksum` sweeps once more and sums the raw values. */
interface Approach {
  readonly name: string
  readonly run: () => Promise<unknown> | unknown
  readonly checksum: () => Promise<bigint> | bigint
  readonly close: () => Promise<void> | void
}

// ---------- fixtures: real processes and TAPs ----------

const spawnSleepers = (n: number) =>
  Array.from({ length: n }, () => {
    const child = spawn("sleep", ["3600"], { stdio: "ignore" })
    return child
  })

const tapName = (i: number) => `vmb${i}`

const createTaps = (n: number): Array<string> => {
  if (!isRoot) return []
  const names = Array.from({ length: n }, (_, i) => tapName(i))
  deleteTaps(names)
  execFileSync("ip", ["-batch", "-"], { input: names.map((name) => `tuntap add dev ${name} mode tap\n`).join("") })
  return names
}

const deleteTaps = (names: ReadonlyArray<string>) => {
  const existing = names.filter((name) => fs.existsSync(`/sys/class/net/${name}`))
  if (existing.length === 0) return
  execFileSync("ip", ["-batch", "-"], { input: existing.map((name) => `link del ${name}\n`).join("") })
}

// ---------- baseline 1: naive ----------

const naive = (vms: ReadonlyArray<Vm>): Approach => {
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
  return { name: "naive readFileSync+split", run: sweep, checksum: sweep, close: () => {} }
}

// ---------- baseline 2: bare kept fds ----------

const bare = (vms: ReadonlyArray<Vm>): Approach => {
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
    name: "bare kept fds",
    run: sweep,
    checksum: sweep,
    close: () => {
      for (const f of fds) for (const fd of [f.stat, f.statm, f.rx, f.tx]) if (fd >= 0) fs.closeSync(fd)
    }
  }
}

// ---------- the product: core Collector over the node readers ----------

const collector = (vms: ReadonlyArray<Vm>, pageSize: number) => {
  const infos: Array<InstanceInfo> = vms.map((vm, i) => ({
    id: `vm${i}`,
    name: `vm${i}`,
    hypervisorPid: vm.pid,
    ...(vm.tap === undefined ? {} : { tapDevice: vm.tap }),
    allocatedVcpus: 1,
    allocatedMemoryBytes: 1 << 30
  }))
  const runtime = ManagedRuntime.make(
    // The product's own graph (Main), over a fixed list of the spawned processes.
    Main.layerPipeline({ maxAge: "1 hour" }, { source: InstanceSource.layerStatic(infos) }).pipe(Layer.orDie)
  )
  const page = BigInt(pageSize)
  const refresh = Effect.flatMap(Collector.Collector, (c) => c.refresh)
  const checksum = refresh.pipe(
    Effect.map((snapshot) => {
      let sum = 0n
      for (const s of snapshot.stats) {
        // Undo the unit conversions so the checksum matches the raw baselines.
        sum += (s.cpuUsec ?? 0n) / 10_000n + (s.memoryVmsBytes ?? 0n) / page + (s.memoryRssBytes ?? 0n) / page
        sum += (s.netRxBytes ?? 0n) + (s.netTxBytes ?? 0n)
        if (s.unavailable.length > 0) throw new Error(`unavailable: ${JSON.stringify(s.unavailable)}`)
      }
      return sum
    })
  )
  return {
    name: "vm-metrics Collector",
    run: () => runtime.runPromise(refresh),
    checksum: () => runtime.runPromise(checksum),
    close: () => runtime.dispose(),
    runtime
  }
}

type BenchRuntime = ReturnType<typeof collector>["runtime"]

/** `/metrics` straight from the last snapshot (what the server does after its collection). */
const directRender = async (runtime: BenchRuntime): Promise<Approach> => {
  const { metrics, snapshot } = await runtime.runPromise(
    Effect.all({ metrics: VmMetrics.VmMetrics, snapshot: Effect.flatMap(Collector.Collector, (c) => c.refresh) })
  )
  const render = metrics.render(snapshot)
  return {
    name: "render /metrics (direct)",
    run: () => runtime.runSync(render),
    checksum: () => 0n,
    close: () => {}
  }
}

/** The same text through the OTel SDK: instruments, PrometheusExporter.collect and its serializer. */
const sdkRender = async (runtime: BenchRuntime): Promise<Approach> => {
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
const measure = async (approach: Approach): Promise<number> => {
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

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!
const fmt = (n: number, digits = 2) => n.toFixed(digits).padStart(8)

const pageSize = Number(execFileSync("getconf", ["PAGESIZE"], { encoding: "utf8" }))

const BARE = "bare kept fds"
const NAIVE = "naive readFileSync+split"
const COLLECTOR = "vm-metrics Collector"
const DIRECT = "render /metrics (direct)"
const SDK = "render via OTel SDK"

const benchSize = async (n: number) => {
  const children = spawnSleepers(n)
  const taps = createTaps(n)
  try {
    await new Promise((resolve) => setTimeout(resolve, 200 + n))
    const vms: Array<Vm> = children.map((child, i) => ({ pid: child.pid!, tap: taps[i] }))
    const product = collector(vms, pageSize)
    const readers = [bare(vms), naive(vms), product]
    const sums = await Promise.all(readers.map((a) => a.checksum()))
    if (new Set(sums.map(String)).size !== 1) throw new Error(`approaches disagree: ${sums.join(" ")}`)
    const approaches = [...readers, await directRender(product.runtime), await sdkRender(product.runtime)]
    const perVm: Record<string, Array<number>> = {}
    const ratios: Record<string, Array<number>> = {}
    for (let round = 0; round < ROUNDS; round++) {
      const times: Record<string, number> = {}
      for (const approach of [...approaches].sort(() => Math.random() - 0.5)) {
        times[approach.name] = await measure(approach)
      }
      for (const approach of approaches) {
        // Readers are compared with the bare loop; renders with the collection they follow.
        const base = approach.name.startsWith("render") ? COLLECTOR : BARE
        perVm[approach.name] = [...(perVm[approach.name] ?? []), (times[approach.name]! * 1000) / n]
        ratios[approach.name] = [...(ratios[approach.name] ?? []), times[approach.name]! / times[base]!]
      }
    }
    for (const a of [...approaches].reverse()) await a.close()
    console.log(`\nN = ${n} VMs (${taps.length > 0 ? "with" : "without"} TAPs), ${ROUNDS} rounds, values agree`)
    console.log("approach                       µs/VM   ratio")
    for (const a of approaches) {
      const base = a.name.startsWith("render") ? "×collection" : "×bare"
      console.log(`${a.name.padEnd(26)} ${fmt(median(perVm[a.name]!))} ${fmt(median(ratios[a.name]!))} ${base}`)
    }
    const c = median(ratios[COLLECTOR]!)
    console.log(
      `collector/bare = ${c.toFixed(2)} (target ≤ 1.3 at N=1000), naive/collector = ${(median(ratios[NAIVE]!) / c).toFixed(2)} (target ≥ 3), ` +
        `render/collection = ${median(ratios[DIRECT]!).toFixed(2)} (target ≤ 1), SDK render/collection = ${median(ratios[SDK]!).toFixed(2)}`
    )
  } finally {
    for (const child of children) child.kill("SIGKILL")
    deleteTaps(taps)
  }
}

for (const n of SIZES) await benchSize(n)
