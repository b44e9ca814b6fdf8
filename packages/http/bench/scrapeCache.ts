/**
 * `/metrics` end to end through the real HTTP server at N in-memory VMs (no /proc: this measures render
 * and transport only), interleaved round by round: the same snapshot scraped again (cached bytes), a new
 * snapshot per scrape (render + encode, the collection itself not timed), and on-demand with max age 0
 * (collection + render inline, the old request path); each plain and gzip. Prints medians and p99, and
 * the ratios to the cached scrape. Usage: `tsx packages/http/bench/scrapeCache.ts [N]` (env BENCH_ROUNDS).
 */
import * as http from "node:http"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Collector } from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { Effect, Layer, ManagedRuntime } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import type * as AppConfig from "../src/AppConfig.js"
import * as Main from "../src/Main.js"

const N = Number(process.argv[2] ?? 1000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const SCRAPES = 40
const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }
const instances: ReadonlyArray<InstanceInfo> = Array.from({ length: N }, (_, i) => ({
  id: `vm${String(i).padStart(6, "0")}xxxxxxxxxxxxxxxxx`,
  name: `vm-${i}`,
  hypervisorPid: 10_000 + i,
  tapDevice: `tap${i}`,
  allocatedVcpus: 2,
  allocatedMemoryBytes: 4 * 1024 ** 3
}))
const proc = ProcReader.makeMemory(kernel)
const taps = TapReader.makeMemory()
for (let i = 0; i < N; i++) {
  proc.set(10_000 + i, { stat: statLine({ pid: 10_000 + i, utime: 100 + i }), statm: "1000 500 0 0 0 0 0\n" })
  taps.set(`tap${i}`, { rxBytes: `${i * 1000}\n`, txBytes: `${i * 2000}\n` })
}
const readers = Layer.merge(ProcReader.layerMemory(proc), TapReader.layerMemory(taps))

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
const scrape = (port: number, gzip: boolean) =>
  new Promise<number>((resolve, reject) => {
    const started = process.hrtime.bigint()
    const req = http.request(
      { host: "127.0.0.1", port, path: "/metrics", agent, headers: gzip ? { "accept-encoding": "gzip" } : {} },
      (res) => {
        let bytes = 0
        res.on("data", (chunk: Buffer) => (bytes += chunk.length))
        res.on("end", () => {
          if (res.statusCode !== 200 || bytes === 0) reject(new Error(`status ${res.statusCode}`))
          resolve(Number(process.hrtime.bigint() - started) / 1e6)
        })
      }
    )
    req.on("error", reject)
    req.end()
  })

const serverOf = (config: Partial<AppConfig.AppConfig>) =>
  ManagedRuntime.make(
    Main.layerApp(config, { source: InstanceSource.layerStatic(instances), readers }).pipe(
      Layer.provideMerge(NodeHttpServer.layerTest)
    )
  )

const quantile = (xs: ReadonlyArray<number>, q: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
}

const main = async () => {
  const background = serverOf({ collect: "background", interval: "1 hour" })
  const onDemand = serverOf({ collect: "on-demand", maxAge: "0 millis" })
  const portOf = (rt: typeof background) =>
    rt.runPromise(Effect.map(HttpServer.HttpServer, (s) => (s.address as HttpServer.TcpAddress).port))
  const bgPort = await portOf(background)
  const odPort = await portOf(onDemand)
  const refresh = () => background.runPromise(Effect.flatMap(Collector, (c) => c.refresh))
  const results: Record<string, Array<number>> = {}
  const add = (name: string, ms: number) => {
    results[name] ??= []
    results[name].push(ms)
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const gzip of [false, true]) {
      const tag = gzip ? "gzip" : "plain"
      await refresh()
      await scrape(bgPort, gzip) // the first scrape of this snapshot renders it
      for (let i = 0; i < SCRAPES; i++) add(`cached ${tag}`, await scrape(bgPort, gzip))
      for (let i = 0; i < SCRAPES; i++) {
        await refresh()
        add(`new snapshot ${tag}`, await scrape(bgPort, gzip))
      }
      for (let i = 0; i < SCRAPES; i++) add(`on-demand collect ${tag}`, await scrape(odPort, gzip))
    }
  }
  console.log(`N = ${N}, ${ROUNDS} rounds × ${SCRAPES} scrapes each`)
  for (const tag of ["plain", "gzip"]) {
    const base = quantile(results[`cached ${tag}`], 0.5)
    for (const what of ["cached", "new snapshot", "on-demand collect"]) {
      const xs = results[`${what} ${tag}`]
      const p50 = quantile(xs, 0.5)
      console.log(
        `${`${what} ${tag}`.padEnd(24)} p50 ${p50.toFixed(2).padStart(7)} ms  p99 ${quantile(xs, 0.99).toFixed(2).padStart(7)} ms  ×${(p50 / base).toFixed(1)} of cached`
      )
    }
  }
  agent.destroy()
  await background.dispose()
  await onDemand.dispose()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
