/**
 * The end-to-end rig of the http package's tests: a real vm-metrics pipeline (a real child process
 * standing in for a hypervisor, a real TAP device as root), a tiny `/metrics` endpoint serving it,
 * and real servers (Prometheus, VictoriaMetrics) started on random loopback ports.
 *
 * Everything started here is released with its scope: servers are killed by pid, TAPs deleted,
 * temporary directories removed.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as NodeReaders from "@vm-metrics/node/NodeReaders"
import * as PrometheusText from "@vm-metrics/otel/PrometheusText"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { Context, Duration, Effect, Layer, Runtime, type Scope } from "effect"
import {
  createTap,
  deleteTap,
  getconf,
  pushFrames,
  sleepMs,
  spawnChild,
  stopChild,
  sysCounter,
  tapSkipReason
} from "../../node/test/helpers.js"

// ---------------------------------------------------------------------------------------------------
// Prerequisites

/**
 * Why a test cannot run here (`missing`), or undefined when it can. Under CI (CI=true) a missing
 * prerequisite is a failure, not a skip, as in the node package's tapSkipReason.
 */
export const skipReason = (missing: string | undefined, what: string): string | undefined => {
  if (missing === undefined) return undefined
  if (process.env.CI === "true") throw new Error(`CI must not skip the ${what}: ${missing}`)
  console.warn(`skipping ${what}: ${missing}`)
  return missing
}

const which = (command: string): string | undefined => {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" })
  const resolved = found.status === 0 ? found.stdout.trim() : ""
  return resolved === "" ? undefined : resolved
}

const executable = (file: string): boolean => {
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** `prometheus` and `promtool` on PATH (Debian: `apt-get install prometheus`). */
export const findPrometheus = () => ({ prometheus: which("prometheus"), promtool: which("promtool") })

/**
 * The VictoriaMetrics binary: `$VICTORIA_METRICS_BIN`, else `victoria-metrics` on PATH, else where
 * `.ci/victoria-metrics.sh` caches it (`$VM_METRICS_CI_CACHE`, default /var/cache/vm-metrics-ci).
 * The tests never download it themselves: CI runs that script beforehand.
 */
export const findVictoriaMetrics = (): string | undefined => {
  const fromEnv = process.env.VICTORIA_METRICS_BIN
  if (fromEnv !== undefined && fromEnv !== "") return executable(fromEnv) ? fromEnv : undefined
  const onPath = which("victoria-metrics")
  if (onPath !== undefined) return onPath
  const cached = path.join(
    process.env.VM_METRICS_CI_CACHE ?? "/var/cache/vm-metrics-ci",
    "victoria-metrics/usr/bin/victoria-metrics"
  )
  return executable(cached) ? cached : undefined
}

/** Whether real TAP devices can be created here (throws under CI when they cannot). */
export const tapMissing = tapSkipReason()

// ---------------------------------------------------------------------------------------------------
// Small tools

/** A port nobody listens on right now (listen on 0, read it, close). */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.once("error", (error) => resume(Effect.die(error)))
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A temporary directory, removed with the scope. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

/** A long-running server process with its recent output, for failure messages. */
export interface Server {
  readonly name: string
  readonly process: ChildProcess
  readonly output: () => string
}

/** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
export const stopProcess = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    const kill = setTimeout(() => child.kill("SIGKILL"), 5_000)
    child.once("exit", () => {
      clearTimeout(kill)
      resolve()
    })
    child.kill("SIGTERM")
  })

/** Spawns a server; SIGTERM (then SIGKILL after 5 s) to its pid when the scope closes. */
export const startServer = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}
): Effect.Effect<Server, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] })
      let output = ""
      const keep = (chunk: Buffer) => {
        output = (output + chunk.toString("utf8")).slice(-16_000)
      }
      child.stdout?.on("data", keep)
      child.stderr?.on("data", keep)
      child.on("error", (error) => keep(Buffer.from(`spawn error: ${error.message}\n`)))
      return { name, process: child, output: () => output }
    }),
    (server) => Effect.promise(() => stopProcess(server.process))
  )

/**
 * Polls `probe` every 200 ms until it gives a value; fails after `timeout` (or as soon as `server`
 * exits) with what was last seen and the server's output.
 */
export const waitFor = <A>(
  what: string,
  probe: () => Promise<A | undefined>,
  options: { readonly timeout: Duration.DurationInput; readonly server?: Server }
): Effect.Effect<A> =>
  Effect.promise(async () => {
    const deadline = Date.now() + Duration.toMillis(options.timeout)
    let last = "nothing yet"
    for (;;) {
      const server = options.server
      if (server !== undefined && (server.process.exitCode !== null || server.process.signalCode !== null)) {
        throw new Error(
          `${server.name} exited (${server.process.exitCode ?? server.process.signalCode}) while waiting for ${what}:\n${server.output()}`
        )
      }
      try {
        const value = await probe()
        if (value !== undefined) return value
        last = "no value"
      } catch (error) {
        last = String(error)
      }
      if (Date.now() > deadline) {
        const output = server === undefined ? "" : `\n${server.name} output:\n${server.output()}`
        throw new Error(`timed out waiting for ${what} (last: ${last})${output}`)
      }
      await sleepMs(200)
    }
  })

/** GET (or POST) a loopback URL; the status and body. */
export const request = async (url: string, init: RequestInit = {}) => {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) })
  return { status: response.status, contentType: response.headers.get("content-type"), body: await response.text() }
}

/** One series of an instant query (Prometheus HTTP API, also spoken by VictoriaMetrics). */
export interface Series {
  readonly metric: Readonly<Record<string, string>>
  readonly value: readonly [number, string]
}

/** Runs an instant query; the series, or undefined while the result is empty. */
export const instantQuery = async (base: string, query: string): Promise<ReadonlyArray<Series> | undefined> => {
  const { status, body } = await request(`${base}/api/v1/query?query=${encodeURIComponent(query)}`)
  if (status !== 200) throw new Error(`query ${query}: HTTP ${status}: ${body}`)
  const parsed = JSON.parse(body) as { status: string; data: { resultType: string; result: Array<Series> } }
  if (parsed.status !== "success" || parsed.data.resultType !== "vector") throw new Error(`query ${query}: ${body}`)
  return parsed.data.result.length === 0 ? undefined : parsed.data.result
}

// ---------------------------------------------------------------------------------------------------
// The kernel's own numbers, read by the test independently of vm-metrics

const CLK_TCK = getconf("CLK_TCK")
const PAGE_SIZE = getconf("PAGESIZE")

/** Fields 3… of /proc/<pid>/stat (after the command in parentheses). */
const statFields = (pid: number): Array<string> => {
  const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  return text
    .slice(text.lastIndexOf(")") + 2)
    .trim()
    .split(" ")
}

/** utime + stime (stat fields 14 and 15) / CLK_TCK, in seconds. */
export const statCpuSeconds = (pid: number): number => {
  const fields = statFields(pid)
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / CLK_TCK
}

/** Resident pages (statm field 2) × the page size, in bytes. */
export const statmRssBytes = (pid: number): number =>
  Number(fs.readFileSync(`/proc/${pid}/statm`, "utf8").trim().split(" ")[1]) * PAGE_SIZE

/** One clock tick in seconds: the resolution of the CPU counter. */
export const TICK_SECONDS = 1 / CLK_TCK

// ---------------------------------------------------------------------------------------------------
// The pipeline under test

/** The one VM of the rig: a real process (and a real TAP as root) it reads. */
export class TestVm extends Context.Tag("e2e/TestVm")<
  TestVm,
  {
    readonly pid: number
    /** Undefined when TAPs cannot be created here (not root). */
    readonly tap: string | undefined
    /** Bytes the guest sent and received through the TAP (frames × frame size). */
    readonly framed: { readonly sentByGuest: number; readonly receivedByGuest: number }
    readonly info: InstanceInfo
  }
>() {}

export const VM_ID = "e2e-vm-1"
export const VM_NAME = "web-1"
export const VM_VCPUS = 2
export const VM_MEMORY_BYTES = 1024 * 1024 * 1024

/**
 * The hypervisor stand-in: a shell that burns ~0.2 s of CPU, then `exec`s `sleep` under the same pid,
 * so the pid's utime + stime is non-zero and then stays put (a value the test can compare exactly).
 * As root, a fresh TAP named `<tapPrefix><pid>` with frames pushed through it both ways.
 */
export const testVmLayer = (tapPrefix: string): Layer.Layer<TestVm> =>
  Layer.scoped(
    TestVm,
    Effect.gen(function* () {
      const child = yield* Effect.acquireRelease(
        Effect.sync(() => spawnChild("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 60")),
        (child) => Effect.promise(() => stopChild(child))
      )
      // Wait until the shell has become `sleep` and is asleep: from then on its CPU time is constant.
      yield* waitFor(
        "the child to exec sleep",
        async () => {
          const comm = fs.readFileSync(`/proc/${child.pid}/comm`, "utf8").trim()
          return comm === "sleep" && statFields(child.pid)[0] === "S" ? true : undefined
        },
        { timeout: "10 seconds" }
      )
      yield* Effect.promise(() => sleepMs(100))
      let tap: string | undefined
      let framed = { sentByGuest: 0, receivedByGuest: 0 }
      if (tapMissing === undefined) {
        tap = yield* Effect.acquireRelease(
          Effect.sync(() => createTap(`${tapPrefix}${process.pid % 100000}`.slice(0, 15))),
          (name) => Effect.sync(() => deleteTap(name))
        )
        const pushed = pushFrames(tap, 7, 300, 5)
        if (pushed.received_by_guest !== 5) throw new Error(`the TAP delivered ${pushed.received_by_guest} of 5 frames`)
        framed = { sentByGuest: 7 * pushed.frame_bytes, receivedByGuest: 5 * pushed.frame_bytes }
      }
      const info: InstanceInfo = {
        id: VM_ID,
        name: VM_NAME,
        hypervisorPid: child.pid,
        ...(tap === undefined ? {} : { tapDevice: tap }),
        allocatedVcpus: VM_VCPUS,
        allocatedMemoryBytes: VM_MEMORY_BYTES
      }
      return { pid: child.pid, tap, framed, info }
    }).pipe(Effect.orDie)
  )

/** The TAP's own counters (sysfs, read by the test), in the VM's perspective. */
export const tapBytes = (tap: string) => ({
  vmRx: Number(sysCounter(tap, "tx_bytes")),
  vmTx: Number(sysCounter(tap, "rx_bytes"))
})

/** Collector (max age 500 ms) over the real Linux readers and a static listing of the TestVm; VmMetrics on top. */
export const pipelineLayer: Layer.Layer<VmMetrics.VmMetrics | Collector.Collector, never, TestVm> = Layer.unwrapEffect(
  Effect.map(TestVm, (vm) =>
    VmMetrics.layer().pipe(
      Layer.provideMerge(Collector.layer({ maxAge: "500 millis" })),
      Layer.provide(NodeReaders.layer()),
      Layer.provide(InstanceSource.layerStatic([vm.info])),
      Layer.orDie
    )
  )
)

/** The `/metrics` endpoint the rig serves (a stand-in for the http package's own, a later issue). */
export class Exporter extends Context.Tag("e2e/Exporter")<
  Exporter,
  { readonly port: number; readonly url: string }
>() {}

/** `vmMetrics.prometheusText` from node:http on 127.0.0.1:<random port>/metrics. */
export const exporterLayer: Layer.Layer<Exporter, never, VmMetrics.VmMetrics> = Layer.scoped(
  Exporter,
  Effect.gen(function* () {
    const metrics = yield* VmMetrics.VmMetrics
    const runPromise = Runtime.runPromise(yield* Effect.runtime<never>())
    const server = yield* Effect.acquireRelease(
      Effect.async<http.Server>((resume) => {
        const server = http.createServer((req, res) => {
          if (req.method !== "GET" || req.url !== "/metrics") {
            res.writeHead(404).end()
            return
          }
          runPromise(metrics.prometheusText).then(
            (body) => res.writeHead(200, { "content-type": PrometheusText.CONTENT_TYPE }).end(body),
            (error) => res.writeHead(500, { "content-type": "text/plain" }).end(String(error))
          )
        })
        server.once("error", (error) => resume(Effect.die(error)))
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
      }),
      (server) =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const { port } = server.address() as AddressInfo
    return { port, url: `http://127.0.0.1:${port}/metrics` }
  })
)

/** Runs `promtool check metrics` with the text on stdin. */
export const promtoolCheck = (promtool: string, text: string) => {
  const result = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

/** The version line of a binary, for the log. */
export const versionOf = (binary: string, flag = "--version"): string => {
  try {
    return execFileSync(binary, [flag], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0]!
  } catch {
    return "unknown version"
  }
}

/** A real Prometheus on a free loopback port with the given config file, ready (`/-/ready`) before it returns. */
export const startPrometheus = (
  binary: string,
  config: string,
  dataDir: string
): Effect.Effect<{ readonly base: string; readonly server: Server }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const port = yield* freePort
    const server = yield* startServer("prometheus", binary, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${dataDir}`,
      `--web.listen-address=127.0.0.1:${port}`
    ])
    const base = `http://127.0.0.1:${port}`
    yield* waitFor(
      "Prometheus /-/ready",
      async () => ((await request(`${base}/-/ready`)).status === 200 ? true : undefined),
      { timeout: "15 seconds", server }
    )
    yield* Effect.log(`${versionOf(binary)} ready at ${base}`)
    return { base, server }
  })
