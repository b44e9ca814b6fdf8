/**
 * The server in its own process for `pnpm bench`, as an operator runs it (`serve`, discovery, background
 * collection every 1 s): time to its first good answer, the stats endpoint under a fixed request rate
 * (hey when installed, else autocannon; spawned), its RSS (/proc/<pid>/status) and the CPU time it spends (/proc/<pid>/stat).
 * The command is `node --max-semi-space-size=2 --heap-growing-percent=50 dist/vm-metrics.mjs serve` (what `pnpm start`, the unit and the
 * bundle's shebang run) when that bundle is built, else `node --import tsx
 * packages/http/src/bin.ts serve`, or BENCH_SERVE (a command line taking the same flags).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { atExit } from "./atExit.js"
import { get, quantile, untilAnswering } from "./scrape.js"

const root = path.resolve(import.meta.dirname, "../../..")

/** The bundle `pnpm build` writes, when there is one (what `pnpm start` runs); else the sources through tsx. */
const bundle = path.join(root, "dist/vm-metrics.mjs")

const serveCommand = (): Array<string> =>
  process.env.BENCH_SERVE !== undefined && process.env.BENCH_SERVE !== ""
    ? process.env.BENCH_SERVE.split(/\s+/)
    : fs.existsSync(bundle)
      ? [process.execPath, "--max-semi-space-size=2", "--heap-growing-percent=50", bundle, "serve"]
      : [process.execPath, "--import", "tsx", path.join(root, "packages/http/src/bin.ts"), "serve"]

export const serveCommandLine = (): string =>
  serveCommand().join(" ").replace(process.execPath, "node").replaceAll(`${root}/`, "")

const clockTicks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resident set of a process in MiB (VmRSS). */
export const rssMiB = (pid: number): number => {
  const line = fs
    .readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"))
  return Number(line?.match(/\d+/)?.[0]) / 1024
}

/** CPU seconds a process has spent (utime + stime). */
export const cpuSeconds = (pid: number): number => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / clockTicks
}

export interface Served {
  readonly pid: number
  readonly port: number
  readonly agent: http.Agent
  /** ms from spawn to the first `/instances` listing at least the expected VMs. */
  readonly readyMs: number
  readonly stop: () => void
}

/** Spawns the server on `port` with `args` after `serve`; resolves when it lists `expected` VMs (bounded). */
export const startServed = async (port: number, args: ReadonlyArray<string>, expected: number): Promise<Served> => {
  const [command, ...rest] = serveCommand()
  const started = performance.now()
  const child: ChildProcess = spawn(command!, [...rest, "--host", "127.0.0.1", "--port", String(port), ...args], {
    cwd: root,
    stdio: ["ignore", "ignore", "pipe"]
  })
  let stderr = ""
  child.stderr?.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-4000)))
  const stop = () => {
    child.kill("SIGKILL")
  }
  atExit(stop)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  const deadline = performance.now() + 120_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}): ${stderr}`)
    try {
      const { body } = await get(agent, port, "/instances")
      if ((JSON.parse(body) as { instances: Array<unknown> }).instances.length >= expected) break
    } catch {
      // not listening yet, or not every VM listed yet
    }
    if (performance.now() > deadline) {
      stop()
      throw new Error(`the server did not list ${expected} VMs in 120 s: ${stderr}`)
    }
    await sleep(20)
  }
  return {
    pid: child.pid!,
    port,
    agent,
    readyMs: performance.now() - started,
    stop: () => {
      agent.destroy()
      stop()
    }
  }
}

export interface Load {
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
  /** Requests answered 2xx per second over the run. */
  readonly rate: number
  readonly failed: number
}

/** The Go load generator `hey` (Debian package `hey`) when installed: its own jitter is far below autocannon's. */
const hey = (() => {
  for (const dir of (process.env.PATH ?? "").split(":")) {
    const candidate = path.join(dir || ".", "hey")
    if (fs.existsSync(candidate)) return candidate
  }
  return undefined
})()

/** Which generator `fixedRate` uses. */
export const loadGenerator = (): string => (hey === undefined ? "autocannon" : "hey")

/**
 * `url` at `rate` requests per second over 10 connections for `seconds`, spawned so that it does not
 * share the server's or this process's event loop. With `hey` (preferred): every request's latency
 * (`-o csv`), quantiles computed here, in ms with 0.01 ms resolution. Without it, autocannon's own
 * quantiles (whole ms). Measured on this 2-vCPU machine against a bare Node server answering `{}`:
 * p99 2.9 ms through hey, 8 ms through autocannon (p99.9 19): autocannon's own pauses were the floor.
 */
export const fixedRate = (url: string, rate: number, seconds: number): Promise<Load> =>
  hey === undefined ? autocannonRate(url, rate, seconds) : heyRate(hey, url, rate, seconds)

const run = (command: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    let err = ""
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString("utf8")))
    child.on("error", reject)
    child.on("close", (code) =>
      code === 0
        ? resolve(Buffer.concat(out).toString("utf8"))
        : reject(new Error(`${path.basename(command)} exited ${code}: ${err}`))
    )
  })

const heyRate = async (command: string, url: string, rate: number, seconds: number): Promise<Load> => {
  // 10 workers at rate/10 each; one CSV row per request: response-time (s), DNS…, offset, status code.
  const csv = await run(command, ["-z", `${seconds}s`, "-c", "10", "-q", String(rate / 10), "-o", "csv", url])
  const rows = csv.trim().split("\n").slice(1)
  const ok: Array<number> = []
  let failed = 0
  for (const row of rows) {
    const fields = row.split(",")
    const status = Number(fields[6])
    if (status >= 200 && status < 300) ok.push(Number(fields[0]) * 1000)
    else failed++
  }
  if (ok.length === 0) throw new Error(`hey: no request answered 2xx (${failed} failed)`)
  const round = (ms: number) => Math.round(ms * 100) / 100
  return {
    p50: round(quantile(ok, 0.5)),
    p99: round(quantile(ok, 0.99)),
    p999: round(quantile(ok, 0.999)),
    max: round(Math.max(...ok)),
    rate: ok.length / seconds,
    failed
  }
}

const autocannonRate = async (url: string, rate: number, seconds: number): Promise<Load> => {
  const out = await run(path.join(root, "node_modules/.bin/autocannon"), [
    "-c",
    "10",
    "-R",
    String(rate),
    "-d",
    String(seconds),
    "-j",
    url
  ])
  const r = JSON.parse(out) as {
    latency: { p50: number; p99: number; p99_9: number; max: number }
    "2xx": number
    non2xx: number
    errors: number
    timeouts: number
    duration: number
  }
  return {
    p50: r.latency.p50,
    p99: r.latency.p99,
    p999: r.latency.p99_9,
    max: r.latency.max,
    rate: r["2xx"] / r.duration,
    failed: r.non2xx + r.errors + r.timeouts
  }
}

/** CPU the server spends, as % of one core, over `seconds` with a gzip `/metrics` scrape every 15 s (Prometheus's default). */
export const cpuPercent = async (served: Served, seconds: number): Promise<number> => {
  const t0 = performance.now()
  const before = cpuSeconds(served.pid)
  for (let next = 0; next < seconds * 1000; next += 15_000) {
    await sleep(Math.max(0, t0 + next - performance.now()))
    await get(served.agent, served.port, "/metrics", true)
  }
  await sleep(Math.max(0, t0 + seconds * 1000 - performance.now()))
  const wall = (performance.now() - t0) / 1000
  return ((cpuSeconds(served.pid) - before) / wall) * 100
}

/**
 * The same fixed-rate load against a bare Node HTTP server answering `{}`: the floor this machine (and
 * the load generator on it) allows, so the stats endpoint's tail can be read against the noise of the moment.
 */
export const bareServerLoad = async (port: number, seconds: number): Promise<Load> => {
  const script = `require("node:http").createServer((_, res) => res.end("{}")).listen(${port}, "127.0.0.1")`
  const child = spawn(process.execPath, ["-e", script], { stdio: "ignore" })
  const unhook = atExit(() => child.kill("SIGKILL"))
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      await untilAnswering("the bare server", child, agent, port, "/", 50)
    } finally {
      agent.destroy()
    }
    await fixedRate(`http://127.0.0.1:${port}/`, 1000, 2)
    return await fixedRate(`http://127.0.0.1:${port}/`, 1000, seconds)
  } finally {
    unhook()
    child.kill("SIGKILL")
  }
}
