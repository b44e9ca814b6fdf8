/**
 * `pnpm bench [N ...]`: the numbers of issue #10 (scale), at N = 100, 1000 and 3000 fake hypervisor
 * processes (FakeHypervisors: copies of sh named qemu-system-x86_64 that discovery accepts, stopped in
 * place) with as many real TAP devices when root. Per N:
 *
 * 1. Collection per VM, interleaved round by round (every ratio is taken within one round: the machine
 *    is shared and noisy): *bare* (kept fds + readSync at offset 0, no Effect, no allocation: stands in
 *    for the C pread floor), *naive* (readFileSync + split, a port of the Go original), the Collector of
 *    Main's pipeline over a static listing and over discovery, discovery alone (steady-state rescan, full
 *    scan), and rendering `/metrics` from a snapshot (directly, and through the OTel SDK). The readers must
 *    read identical values. Then, in rounds of their own, issue #11's cost: the Collector over a static
 *    listing of a second fleet, started only for these rows (alive during the first, its N processes would
 *    be read by every rescan), whose fakes have 4 threads named like QEMU's vCPU threads, with the seed set
 *    (no metric group), the default groups and every group (4 vCPUs' schedstat, every TAP counter); its
 *    ratios to the seed set are taken within a round too.
 * 2. `/metrics` end to end through Main's HTTP server (Main.layerApp, in a worker), round by round: fresh
 *    (`--collection on-demand`, max age 0: discovery + collection + render per scrape), a new snapshot per
 *    scrape (`--collection background`: render + encode), the same snapshot again (cached bytes), each plain
 *    and gzip; a bare node:http server sending as many bytes as the cached plain body (the yardstick of the
 *    cached rows: what moving that body over loopback to this client costs, whatever the server); and prometheus-process-exporter
 *    on the same processes when installed (one group per pid, `-threads=false -gather-smaps=false`). Median
 *    and p99 over ≥ 30 scrapes each.
 * 3. The server in its own process (served.ts): start to first full listing, `/instances/{id}/stats` at a
 *    fixed 1,000 req/s (hey when installed, else autocannon), RSS after 1,000 scrapes, and at N = 1000 the CPU it spends with a
 *    scrape every 15 s. Once before: its RSS idle with 0 VMs.
 *
 * Then one markdown table: the issue's targets next to the measured numbers.
 * Each approach and each in-process server runs in its own worker process (worker.ts: the fds of 3,000 VMs).
 * Environment: BENCH_ROUNDS (default 5; 2 with BENCH_QUICK=1), BENCH_QUICK=1 (5 s of load, 15 s of CPU),
 * BENCH_LONG=1 (CPU over 2 minutes, as the issue defines it; default 30 s), BENCH_STATS_SECONDS and
 * BENCH_CPU_SECONDS override, BENCH_SERVE (the server command, see served.ts), BENCH_PARTS (a comma list of
 * collection, scrapes, served: the parts to run, default all; the table shows their rows only).
 */
import { execFileSync, fork } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { type FakeVm, type Fleet, startFleet } from "@vm-metrics/testing/FakeHypervisors"
import { atExit } from "./atExit.js"
import { bareBytesServer, get, processExporter, quantile } from "./scrape.js"
import {
  bareServerLoad,
  cpuPercent,
  fixedRate,
  type Load,
  loadGenerator,
  rssMiB,
  serveCommandLine,
  startServed
} from "./served.js"
import type { Reply, Request, What } from "./worker.js"

const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0)
const SIZES = sizes.length > 0 ? sizes : [100, 1000, 3000]
const QUICK = process.env.BENCH_QUICK === "1"
const LONG = process.env.BENCH_LONG === "1"
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 2 : 5))
const STATS_SECONDS = Number(process.env.BENCH_STATS_SECONDS ?? (QUICK ? 5 : 30))
const CPU_SECONDS = Number(process.env.BENCH_CPU_SECONDS ?? (LONG ? 120 : QUICK ? 15 : 30))
const STATS_RATE = 1000
/** vCPU threads per fake of issue #11's fleet (its target: the full set "with 4 vCPUs per VM"). */
const VCPU_THREADS = 4
const VCPU_SEED = "vcpus: seed"
const VCPU_DEFAULT = "vcpus: default groups"
const VCPU_ALL = "vcpus: all groups"
/** The TAPs from their sysfs files only: the reader before it read the agent's own net/dev (before/after). */
const STATIC_SYSFS = "Collector, static, sysfs TAPs"
const DEFAULT_GROUPS = "Collector, static, groups cpu,memory,disk,network"
const DEFAULT_SYSFS = `${DEFAULT_GROUPS}, sysfs TAPs`
const VCPU_SEED_SYSFS = "vcpus: seed, sysfs TAPs"
const VCPU_DEFAULT_SYSFS = "vcpus: default groups, sysfs TAPs"
/** Issue #10's targets are for the original's metric set: no metric group (issue #11's) on top of it. */
const ORIGINAL_METRICS = ["--no-collect", "all"]
const RSS_SCRAPES = 1000
const allParts = ["collection", "scrapes", "served"] as const
type Part = (typeof allParts)[number]
const PARTS = new Set(
  (process.env.BENCH_PARTS ?? allParts.join(","))
    .split(",")
    .map((part) => part.trim())
    .filter((part) => part !== "")
)
for (const part of PARTS) {
  if (!(allParts as ReadonlyArray<string>).includes(part)) {
    throw new Error(`BENCH_PARTS: unknown part ${part} (the parts: ${allParts.join(", ")})`)
  }
}
const runs = (part: Part) => PARTS.has(part)
/** Scrapes per kind and round, so that every kind gets at least 30. */
const SCRAPES = Math.ceil(30 / ROUNDS)
/** Scrapes of each kind before the first round: at most this many, for at most WARM_MS. */
const WARM_SCRAPES = 30
const WARM_MS = 1000

const median = (values: ReadonlyArray<number>) => quantile(values, 0.5)
const pageSize = Number(execFileSync("getconf", ["PAGESIZE"], { encoding: "utf8" }))
const shuffled = <A>(xs: ReadonlyArray<A>): Array<A> => [...xs].sort(() => Math.random() - 0.5)

/** A loopback port nobody listens on right now. */
const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** The open-files limit (soft:hard); at 3,000 VMs one collector with discovery keeps up to ~16,000 fds. */
const fdLimit = () => execFileSync("sh", ["-c", "echo $(ulimit -Sn):$(ulimit -Hn)"], { encoding: "utf8" }).trim()

// ---------- 1. collection ----------

interface CollectionResult {
  /** µs per VM, median over rounds. */
  readonly perVm: Record<string, number>
  /** Ratios within a round, median over rounds. */
  readonly staticOverBare: number
  readonly discoveryOverStatic: number
  readonly naiveOverStatic: number
  readonly renderOverStatic: number
  readonly sdkOverStatic: number
  /** Issue #11: the default groups and every group over the seed set, on the fakes with vCPU threads. */
  readonly defaultOverSeed: number
  readonly allOverSeed: number
}

const STATIC = "Collector, static"
const DISCOVERY = "Collector, discovery"

/** A worker process (worker.ts) holding one approach or server; `call` runs one operation there. */
const startWorker = async (what: What, vms: ReadonlyArray<FakeVm>) => {
  const child = fork(path.join(import.meta.dirname, "worker.ts"), [], {
    cwd: path.resolve(import.meta.dirname, "../../.."),
    execArgv: ["--import", "tsx"],
    env: { ...process.env, BENCH_PAGE_SIZE: String(pageSize), BENCH_VCPU_THREADS: String(VCPU_THREADS) },
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const kill = () => child.kill("SIGKILL")
  atExit(kill)
  const pending = new Map<number, { resolve: (value: string | number) => void; reject: (error: Error) => void }>()
  let next = 0
  child.on("message", (reply: Reply) => {
    const waiter = pending.get(reply.id)
    pending.delete(reply.id)
    if (reply.error !== undefined) waiter?.reject(new Error(`${what}: ${reply.error}`))
    else waiter?.resolve(reply.value!)
  })
  child.on("exit", (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error(`the ${what} worker exited (${code})`))
    pending.clear()
  })
  const call = (op: Exclude<Request["op"], "open">) =>
    new Promise<string | number>((resolve, reject) => {
      const id = next++
      pending.set(id, { resolve, reject })
      child.send({ id, op } satisfies Request)
    })
  const opened = await new Promise<string | number>((resolve, reject) => {
    pending.set(next, { resolve, reject })
    child.send({ id: next++, op: "open", what, vms } satisfies Request)
  })
  return {
    /** The approach's name, or the server's port. */
    opened,
    call,
    close: async () => {
      await call("close").catch(() => undefined)
      kill()
    }
  }
}

/** Throws unless the workers' checksums are equal (they read the same values). */
const agree = async (
  workers: ReadonlyArray<{
    readonly opened: string | number
    readonly call: (op: "checksum") => Promise<string | number>
  }>
) => {
  const sums: Array<string> = []
  for (const w of workers) sums.push(String(await w.call("checksum")))
  if (new Set(sums).size !== 1) {
    throw new Error(`readers disagree: ${sums.map((sum, i) => `${workers[i]!.opened} ${sum}`).join(", ")}`)
  }
}

/**
 * Checks that the first `agreeing` workers read identical values, then, round by round, `measure` of every
 * worker in a shuffled order; the µs per VM of each, by name. The workers are closed at the end.
 */
const measureRounds = async (
  workers: ReadonlyArray<Awaited<ReturnType<typeof startWorker>>>,
  agreeing: number,
  n: number,
  ratiosOf: (ms: Record<string, number>) => Record<string, number>
) => {
  try {
    await agree(workers.slice(0, agreeing))
    const names = workers.map((w) => String(w.opened))
    const perVm: Record<string, Array<number>> = {}
    const ratios: Record<string, Array<number>> = {}
    const push = (table: Record<string, Array<number>>, key: string, value: number) => {
      table[key] ??= []
      table[key].push(value)
    }
    for (let round = 0; round < ROUNDS; round++) {
      const ms: Record<string, number> = {}
      for (const i of shuffled(workers.map((_, i) => i))) ms[names[i]!] = Number(await workers[i]!.call("measure"))
      for (const name of names) push(perVm, name, (ms[name]! * 1000) / n)
      for (const [key, value] of Object.entries(ratiosOf(ms))) push(ratios, key, value)
    }
    return { perVm, ratios }
  } finally {
    await Promise.all(workers.map((w) => w.close()))
  }
}

/**
 * The collection rows over `fleet` alone (as the issue defines them: N fake hypervisors and their TAPs), then
 * issue #11's rows over a fleet with vCPU threads, started only then (`startVcpuFleet`): alive during the first
 * rows, its N processes would be read by every discovery rescan, which a host's vCPU threads are not.
 */
const benchCollection = async (fleet: Fleet, startVcpuFleet: () => Promise<Fleet>): Promise<CollectionResult> => {
  const n = fleet.vms.length
  const readerKinds: Array<What> = ["bare", "naive", "static", "discovery", "static, sysfs TAPs"]
  const otherKinds: Array<What> = [
    "static, default groups",
    "static, default groups, sysfs TAPs",
    "rescan",
    "full scan",
    "render",
    "sdk render"
  ]
  const vcpuKinds: Array<What> = [VCPU_SEED, VCPU_DEFAULT, VCPU_ALL, VCPU_SEED_SYSFS, VCPU_DEFAULT_SYSFS]
  const workers = await Promise.all([...readerKinds, ...otherKinds].map((what) => startWorker(what, fleet.vms)))
  const first = await measureRounds(workers, readerKinds.length, n, (ms) => ({
    "static/bare": ms[STATIC]! / ms.bare!,
    "discovery/static": ms[DISCOVERY]! / ms[STATIC]!,
    "naive/static": ms.naive! / ms[STATIC]!,
    "render/static": ms["render direct"]! / ms[STATIC]!,
    "sdk/static": ms["render via OTel SDK"]! / ms[STATIC]!,
    "seed: net/dev ÷ sysfs": ms[STATIC]! / ms[STATIC_SYSFS]!,
    "default groups: net/dev ÷ sysfs": ms[DEFAULT_GROUPS]! / ms[DEFAULT_SYSFS]!
  }))
  const vcpuFleet = await startVcpuFleet()
  try {
    const vcpuWorkers = await Promise.all(vcpuKinds.map((what) => startWorker(what, vcpuFleet.vms)))
    // The seed's values agree across the groups; the checksum also checks every vCPU thread was read.
    const second = await measureRounds(vcpuWorkers, vcpuKinds.length, n, (ms) => ({
      "default/seed": ms[VCPU_DEFAULT]! / ms[VCPU_SEED]!,
      "all/seed": ms[VCPU_ALL]! / ms[VCPU_SEED]!,
      "vcpus, seed: net/dev ÷ sysfs": ms[VCPU_SEED]! / ms[VCPU_SEED_SYSFS]!,
      "vcpus, default: net/dev ÷ sysfs": ms[VCPU_DEFAULT]! / ms[VCPU_DEFAULT_SYSFS]!,
      "vcpus, default/seed, sysfs TAPs": ms[VCPU_DEFAULT_SYSFS]! / ms[VCPU_SEED_SYSFS]!
    }))
    const perVm = { ...first.perVm, ...second.perVm }
    const ratios = { ...first.ratios, ...second.ratios }
    const perVmMedians = Object.fromEntries(Object.entries(perVm).map(([k, v]) => [k, median(v)]))
    console.log(`collection, µs/VM (median of ${ROUNDS} rounds; the readers' values agree):`)
    for (const [name, us] of Object.entries(perVmMedians)) console.log(`  ${name.padEnd(22)} ${us.toFixed(2)}`)
    const result = {
      perVm: perVmMedians,
      staticOverBare: median(ratios["static/bare"]!),
      discoveryOverStatic: median(ratios["discovery/static"]!),
      naiveOverStatic: median(ratios["naive/static"]!),
      renderOverStatic: median(ratios["render/static"]!),
      sdkOverStatic: median(ratios["sdk/static"]!),
      defaultOverSeed: median(ratios["default/seed"]!),
      allOverSeed: median(ratios["all/seed"]!)
    }
    console.log(
      `  static ÷ bare ${result.staticOverBare.toFixed(2)}, discovery ÷ static ${result.discoveryOverStatic.toFixed(2)}, ` +
        `naive ÷ static ${result.naiveOverStatic.toFixed(2)}, render ÷ static ${result.renderOverStatic.toFixed(2)}, ` +
        `SDK render ÷ static ${result.sdkOverStatic.toFixed(2)}`
    )
    console.log(
      `  ${VCPU_THREADS} vCPU threads per VM: default groups ÷ seed ${result.defaultOverSeed.toFixed(2)}, ` +
        `all groups ÷ seed ${result.allOverSeed.toFixed(2)}`
    )
    // Before/after: the TAPs from the agent's own net/dev ÷ from their sysfs files, within each round.
    for (const key of Object.keys(ratios).filter((k) => k.includes("net/dev") || k.includes("sysfs TAPs")))
      console.log(`  ${key}: ${median(ratios[key]!).toFixed(2)}`)
    return result
  } finally {
    vcpuFleet.stop() // not used past these rows: its TAPs and processes would only add load
  }
}

// ---------- 2. /metrics end to end ----------

interface Scrapes {
  readonly p50: number
  readonly p99: number
  readonly bytes: number
}

interface ScrapeResult {
  readonly kinds: Record<string, Scrapes>
  /** Ours cached plain ÷ the bare server sending as many bytes, per round, median. */
  readonly cachedOverBare: number
  /** process-exporter's median ÷ ours (fresh, plain), per round, median; undefined without it. */
  readonly exporterRatio: number | undefined
  readonly exporterRss: number | undefined
}

const FRESH = "fresh (on-demand)"
const NEW = "new snapshot (background)"
const CACHED = "cached"
const EXPORTER = "process-exporter"
const BARE = "bare node:http, as many bytes"

const benchScrapes = async (fleet: Fleet, dir: string): Promise<ScrapeResult> => {
  const [onDemand, background] = await Promise.all([
    startWorker("server on-demand", fleet.vms),
    startWorker("server background", fleet.vms)
  ])
  const onDemandPort = Number(onDemand.opened)
  const backgroundPort = Number(background.opened)
  const exporter = await processExporter(dir, await freePort())
  if (exporter === undefined) console.log("prometheus-process-exporter is not installed: its column is skipped")
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const bare = await bareBytesServer(await freePort())
  // As many bytes as the cached body has now: discovery also lists any other fleet on this machine, so its size moves.
  let bareBytes = 0
  const kinds: Array<{
    readonly name: string
    readonly scrape: () => Promise<{ ms: number; bytes: number }>
    readonly warm?: () => Promise<unknown>
  }> = [
    {
      name: BARE,
      scrape: () => get(agent, bare.port, `/${bareBytes}`),
      warm: async () => {
        bareBytes = (await get(agent, backgroundPort, "/metrics")).bytes
        return get(agent, bare.port, `/${bareBytes}`)
      }
    }
  ]
  for (const gzip of [false, true]) {
    const tag = gzip ? "gzip" : "plain"
    kinds.push(
      { name: `${FRESH} ${tag}`, scrape: () => get(agent, onDemandPort, "/metrics", gzip) },
      {
        name: `${NEW} ${tag}`,
        scrape: async () => {
          await background.call("refresh")
          return get(agent, backgroundPort, "/metrics", gzip)
        }
      },
      {
        name: `${CACHED} ${tag}`,
        scrape: () => get(agent, backgroundPort, "/metrics", gzip)
      }
    )
  }
  if (exporter !== undefined) {
    kinds.push({ name: EXPORTER, scrape: () => get(exporter.agent, exporter.port, "/metrics") })
  }
  const times: Record<string, Array<number>> = {}
  const bytes: Record<string, number> = {}
  const ratios: Array<number> = []
  const bareRatios: Array<number> = []
  try {
    // Each server's code warm before the first timed round (V8 optimizes what runs hot), as the collection
    // rows warm up: a kind scraped 2 × 15 times was otherwise timed while partly unoptimized, and what
    // these rows compare is a scrape of a running server. A second apiece at most.
    for (const kind of kinds) {
      const until = performance.now() + WARM_MS
      for (let i = 0; i < WARM_SCRAPES && performance.now() < until; i++) await (kind.warm ?? kind.scrape)()
    }
    for (let round = 0; round < ROUNDS; round++) {
      const roundMedians: Record<string, number> = {}
      for (const kind of shuffled(kinds)) {
        await (kind.warm ?? kind.scrape)() // warm: a cached kind's first scrape of a snapshot renders it
        const ms: Array<number> = []
        for (let i = 0; i < SCRAPES; i++) {
          const r = await kind.scrape()
          ms.push(r.ms)
          bytes[kind.name] = r.bytes
        }
        times[kind.name] = [...(times[kind.name] ?? []), ...ms]
        roundMedians[kind.name] = median(ms)
      }
      if (exporter !== undefined) ratios.push(roundMedians[EXPORTER]! / roundMedians[`${FRESH} plain`]!)
      bareRatios.push(roundMedians[`${CACHED} plain`]! / roundMedians[BARE]!)
    }
    const exporterRss = exporter === undefined ? undefined : rssMiB(exporter.pid)
    const result: Record<string, Scrapes> = {}
    console.log(`/metrics end to end, ms (${ROUNDS} rounds × ${SCRAPES} scrapes each):`)
    for (const kind of kinds) {
      const xs = times[kind.name]!
      result[kind.name] = { p50: median(xs), p99: quantile(xs, 0.99), bytes: bytes[kind.name]! }
      console.log(
        `  ${kind.name.padEnd(32)} p50 ${median(xs).toFixed(2).padStart(8)}  p99 ${quantile(xs, 0.99).toFixed(2).padStart(8)}  ${(bytes[kind.name]! / 1024).toFixed(0)} KiB`
      )
    }
    const cachedOverBare = median(bareRatios)
    console.log(`  ours cached plain ÷ the bare server, as many bytes: ${cachedOverBare.toFixed(2)}×`)
    const exporterRatio = ratios.length > 0 ? median(ratios) : undefined
    if (exporterRatio !== undefined) {
      console.log(
        `  process-exporter ÷ ours (fresh, plain) ${exporterRatio.toFixed(1)}×; its RSS ${exporterRss?.toFixed(0)} MiB`
      )
    }
    return { kinds: result, cachedOverBare, exporterRatio, exporterRss }
  } finally {
    agent.destroy()
    bare.close()
    exporter?.close()
    await background.close()
    await onDemand.close()
  }
}

// ---------- 3. the server in its own process ----------

interface ServedResult {
  readonly readyMs: number
  readonly stats: Load
  readonly rssAfterScrapes: number
  readonly cpuPercent: number | undefined
}

const benchServed = async (fleet: Fleet): Promise<ServedResult> => {
  const n = fleet.vms.length
  const served = await startServed(await freePort(), ["--source", "discovery", ...ORIGINAL_METRICS], n)
  try {
    console.log(`server (${serveCommandLine()}): first full listing after ${served.readyMs.toFixed(0)} ms`)
    const url = `http://127.0.0.1:${served.port}/instances/${fleet.vms[Math.floor(n / 2)]!.name}/stats`
    await get(served.agent, served.port, new URL(url).pathname)
    await fixedRate(url, STATS_RATE, 2) // warm-up, not counted
    const stats = await fixedRate(url, STATS_RATE, STATS_SECONDS)
    console.log(
      `  stats at ${STATS_RATE} req/s for ${STATS_SECONDS} s (${loadGenerator()}): p50 ${stats.p50} ms, p99 ${stats.p99} ms, p99.9 ${stats.p999} ms, ` +
        `max ${stats.max} ms; ${stats.rate.toFixed(0)} req/s answered 2xx, ${stats.failed} failed`
    )
    for (let i = 0; i < RSS_SCRAPES; i++) await get(served.agent, served.port, "/metrics", i % 2 === 1)
    const rssAfterScrapes = rssMiB(served.pid)
    console.log(`  RSS after ${RSS_SCRAPES} scrapes: ${rssAfterScrapes.toFixed(0)} MiB`)
    let cpu: number | undefined
    if (n === 1000) {
      cpu = await cpuPercent(served, CPU_SECONDS)
      console.log(`  CPU over ${CPU_SECONDS} s with a scrape every 15 s: ${cpu.toFixed(2)} % of one core`)
    }
    return { readyMs: served.readyMs, stats, rssAfterScrapes, cpuPercent: cpu }
  } finally {
    served.stop()
  }
}

/** RSS of the server listing nothing (a file source with no instances), after a few scrapes. */
const idleRss = async (dir: string): Promise<number> => {
  const file = path.join(dir, "none.json")
  fs.writeFileSync(file, "[]\n")
  const served = await startServed(
    await freePort(),
    ["--source", "file", "--instances-file", file, ...ORIGINAL_METRICS],
    0
  )
  try {
    for (let i = 0; i < 10; i++) await get(served.agent, served.port, "/metrics", i % 2 === 1)
    await new Promise((resolve) => setTimeout(resolve, 2000))
    return rssMiB(served.pid)
  } finally {
    served.stop()
  }
}

// ---------- the table ----------

/** A part not run (BENCH_PARTS) is undefined; its rows are left out of the table. */
interface SizeResult {
  readonly n: number
  readonly collection: CollectionResult | undefined
  readonly scrapes: ScrapeResult | undefined
  readonly served: ServedResult | undefined
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1))
const scrapeCell = (s: Scrapes | undefined) => (s === undefined ? "—" : `${ms(s.p50)} ms (p99 ${ms(s.p99)})`)

/** One row: what, target, a cell per N, and whether the target holds at the N it is stated for. */
interface Row {
  readonly part: Part
  readonly what: string
  readonly target: string
  readonly cell: (r: SizeResult) => string
  readonly holds?: { readonly at: number; readonly test: (r: SizeResult) => boolean }
}

/** `idle` and `floor` are those of the served part (NaN and undefined when it is not run: its rows are not shown). */
const rows = (idle: number, floor: Load | undefined): Array<Row> => [
  {
    part: "collection",
    what: "collection per VM, static listing (÷ bare kept-fd loop)",
    target: "≤ 1.5× the C floor (bare stands in)",
    cell: (r) => `${r.collection!.perVm[STATIC]!.toFixed(1)} µs (${r.collection!.staticOverBare.toFixed(2)}×)`,
    holds: { at: 1000, test: (r) => r.collection!.staticOverBare <= 1.5 }
  },
  {
    part: "collection",
    what: "collection per VM, discovery (÷ static)",
    target: "≤ 1.2× static",
    cell: (r) => `${r.collection!.perVm[DISCOVERY]!.toFixed(1)} µs (${r.collection!.discoveryOverStatic.toFixed(2)}×)`,
    holds: { at: 1000, test: (r) => r.collection!.discoveryOverStatic <= 1.2 }
  },
  {
    part: "collection",
    what: "collection per VM, static, with the default metric groups (issue #11: status, io, vCPU threads)",
    target: "",
    cell: (r) => `${r.collection!.perVm["Collector, static, groups cpu,memory,disk,network"]?.toFixed(1) ?? "—"} µs`
  },
  {
    part: "collection",
    what: `issue #11: collection per VM, static, seed set (no group; fakes with ${VCPU_THREADS} vCPU threads and a TAP)`,
    target: "",
    cell: (r) => `${r.collection!.perVm[VCPU_SEED]!.toFixed(1)} µs`
  },
  {
    part: "collection",
    what: "issue #11: … default groups (÷ seed)",
    target: "≤ 1.6× seed",
    cell: (r) => `${r.collection!.perVm[VCPU_DEFAULT]!.toFixed(1)} µs (${r.collection!.defaultOverSeed.toFixed(2)}×)`,
    holds: { at: 1000, test: (r) => r.collection!.defaultOverSeed <= 1.6 }
  },
  {
    part: "collection",
    what: `issue #11: … every group, ${VCPU_THREADS} vCPUs per VM (÷ seed)`,
    target: "≤ 3× seed",
    cell: (r) => `${r.collection!.perVm[VCPU_ALL]!.toFixed(1)} µs (${r.collection!.allOverSeed.toFixed(2)}×)`,
    holds: { at: 1000, test: (r) => r.collection!.allOverSeed <= 3 }
  },
  {
    part: "collection",
    what: "discovery rescan / full scan alone, per VM",
    target: "",
    cell: (r) =>
      `${r.collection!.perVm["discovery rescan"]!.toFixed(1)} / ${r.collection!.perVm["discovery full scan"]!.toFixed(1)} µs`
  },
  {
    part: "collection",
    what: "bare / naive, per VM",
    target: "",
    cell: (r) => `${r.collection!.perVm.bare!.toFixed(1)} / ${r.collection!.perVm.naive!.toFixed(1)} µs`
  },
  {
    part: "scrapes",
    what: "`/metrics` fresh (on-demand: collect + render), plain",
    target: "median < 25 ms at 1,000",
    cell: (r) => scrapeCell(r.scrapes!.kinds[`${FRESH} plain`]),
    holds: { at: 1000, test: (r) => r.scrapes!.kinds[`${FRESH} plain`]!.p50 < 25 }
  },
  {
    part: "scrapes",
    what: "`/metrics` fresh, gzip",
    target: "",
    cell: (r) => scrapeCell(r.scrapes!.kinds[`${FRESH} gzip`])
  },
  {
    part: "scrapes",
    what: "`/metrics` new snapshot (background: render + encode), plain",
    target: "median < 25 ms at 1,000",
    cell: (r) => scrapeCell(r.scrapes!.kinds[`${NEW} plain`]),
    holds: { at: 1000, test: (r) => r.scrapes!.kinds[`${NEW} plain`]!.p50 < 25 }
  },
  {
    part: "scrapes",
    what: "`/metrics` new snapshot, gzip",
    target: "",
    cell: (r) => scrapeCell(r.scrapes!.kinds[`${NEW} gzip`])
  },
  {
    part: "scrapes",
    what: "`/metrics` cached, plain (÷ a bare node:http server sending as many bytes: its median)",
    target: "< 5 ms at 3,000",
    cell: (r) =>
      `${scrapeCell(r.scrapes!.kinds[`${CACHED} plain`])}, ${r.scrapes!.cachedOverBare.toFixed(2)}× (bare ${ms(r.scrapes!.kinds[BARE]!.p50)} ms)`,
    holds: { at: 3000, test: (r) => r.scrapes!.kinds[`${CACHED} plain`]!.p50 < 5 }
  },
  {
    part: "scrapes",
    what: "`/metrics` cached, gzip",
    target: "< 5 ms at 3,000",
    cell: (r) => scrapeCell(r.scrapes!.kinds[`${CACHED} gzip`]),
    holds: { at: 3000, test: (r) => r.scrapes!.kinds[`${CACHED} gzip`]!.p50 < 5 }
  },
  {
    part: "scrapes",
    what: "body plain / gzip",
    target: "gzip when asked",
    cell: (r) =>
      `${(r.scrapes!.kinds[`${CACHED} plain`]!.bytes / 1024).toFixed(0)} / ${(r.scrapes!.kinds[`${CACHED} gzip`]!.bytes / 1024).toFixed(0)} KiB`
  },
  {
    part: "scrapes",
    what: "process-exporter `/metrics` (÷ ours fresh)",
    target: "≥ 10× ours fresh",
    cell: (r) =>
      r.scrapes!.exporterRatio === undefined
        ? "not installed"
        : `${scrapeCell(r.scrapes!.kinds[EXPORTER])}, ${r.scrapes!.exporterRatio.toFixed(1)}×`,
    holds: { at: 1000, test: (r) => (r.scrapes!.exporterRatio ?? 0) >= 10 }
  },
  {
    part: "served",
    what:
      `\`/instances/{id}/stats\` at ${STATS_RATE} req/s, ${STATS_SECONDS} s: p50 / p99 / p99.9 (answered rate); ` +
      `a bare Node server: ${floor?.p50} / ${floor?.p99} / ${floor?.p999} ms`,
    target: "p99 < 5 ms, p99.9 < 15 ms",
    cell: (r) =>
      `${r.served!.stats.p50} / ${r.served!.stats.p99} / ${r.served!.stats.p999} ms (${r.served!.stats.rate.toFixed(0)}/s` +
      `${r.served!.stats.failed > 0 ? `, ${r.served!.stats.failed} failed` : ""})`,
    holds: {
      at: 1000,
      test: (r) => r.served!.stats.p99 < 5 && r.served!.stats.p999 < 15 && r.served!.stats.failed === 0
    }
  },
  {
    part: "served",
    what: "start to first full listing",
    target: "< 2 s at 1,000",
    cell: (r) => `${(r.served!.readyMs / 1000).toFixed(2)} s`,
    holds: { at: 1000, test: (r) => r.served!.readyMs < 2000 }
  },
  {
    part: "served",
    what: `server RSS after ${RSS_SCRAPES} scrapes (idle, 0 VMs: ${idle.toFixed(0)} MiB)`,
    target: "< 120 MiB at 1,000; idle < 80 MiB",
    cell: (r) => `${r.served!.rssAfterScrapes.toFixed(0)} MiB`,
    holds: { at: 1000, test: (r) => r.served!.rssAfterScrapes < 120 && idle < 80 }
  },
  {
    part: "served",
    what: `server CPU, ${CPU_SECONDS} s with a scrape every 15 s (% of one core)`,
    target: "≤ 3 % at 1,000",
    cell: (r) => (r.served!.cpuPercent === undefined ? "—" : `${r.served!.cpuPercent.toFixed(2)} %`),
    holds: { at: 1000, test: (r) => r.served!.cpuPercent !== undefined && r.served!.cpuPercent <= 3 }
  }
]

const table = (results: ReadonlyArray<SizeResult>, idle: number, floor: Load | undefined): string => {
  const head = `| what | target (issue #10, #11) | ${results.map((r) => `N = ${r.n}`).join(" | ")} | holds |`
  const lines = [head, `|${" --- |".repeat(results.length + 3)}`]
  for (const row of rows(idle, floor).filter((row) => runs(row.part))) {
    const at = row.holds === undefined ? undefined : results.find((r) => r.n === row.holds!.at)
    const holds =
      row.holds === undefined
        ? ""
        : at === undefined
          ? `(N = ${row.holds.at} not run)`
          : row.holds.test(at)
            ? "yes"
            : "**no**"
    lines.push(`| ${row.what} | ${row.target} | ${results.map(row.cell).join(" | ")} | ${holds} |`)
  }
  return lines.join("\n")
}

// ---------- main ----------

/** The machine's load (1, 5, 15 min): other jobs on a shared machine show in every latency. */
const loadAverage = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")

const main = async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-bench-"))
  atExit(() => fs.rmSync(dir, { recursive: true, force: true }))
  console.log(
    `pnpm bench ${SIZES.join(" ")}: ${ROUNDS} rounds, ${os.cpus().length} CPUs, node ${process.version}, ` +
      `open-files limit ${fdLimit()}; ${new Date().toISOString()}; load average ${loadAverage()}`
  )
  let idle = Number.NaN
  let floor: Load | undefined
  if (runs("served")) {
    idle = await idleRss(dir)
    console.log(`server RSS idle with 0 VMs: ${idle.toFixed(0)} MiB`)
    floor = await bareServerLoad(await freePort(), STATS_SECONDS)
    console.log(
      `a bare Node server at ${STATS_RATE} req/s for ${STATS_SECONDS} s: p50 ${floor.p50} ms, p99 ${floor.p99} ms, p99.9 ${floor.p999} ms`
    )
  }
  const results: Array<SizeResult> = []
  for (const n of SIZES) {
    // TAP names of this run only: two benches at once (helpers share this machine) must not delete each other's.
    const fleet = await startFleet(n, { tapPrefix: `b${process.pid}-` })
    // Issue #11's fleet serves its collection rows only.
    const startVcpuFleet = () => startFleet(n, { tapPrefix: `v${process.pid}-`, vcpuThreads: VCPU_THREADS })
    try {
      console.log(`\nN = ${n} fake hypervisors (${fleet.vms[0]?.tap === undefined ? "without" : "with"} TAPs)`)
      const collection = runs("collection") ? await benchCollection(fleet, startVcpuFleet) : undefined
      const scrapes = runs("scrapes") ? await benchScrapes(fleet, dir) : undefined
      const served = runs("served") ? await benchServed(fleet) : undefined
      results.push({ n, collection, scrapes, served })
    } finally {
      fleet.stop()
    }
  }
  console.log(
    `\n${table(results, idle, floor)}\n\nload average at the end: ${loadAverage()} (1, 5, 15 min; ${os.cpus().length} CPUs)`
  )
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
