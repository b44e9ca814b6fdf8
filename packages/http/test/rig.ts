/**
 * The end-to-end rig of the http package's tests: the product's pipeline (built by Main) over a real
 * child process standing in for a hypervisor and a real TAP device as root, the real HTTP server
 * (Server.layerApp on the product's listener) serving it on a random loopback port, and real servers
 * (Prometheus, VictoriaMetrics) started on random loopback ports.
 *
 * Everything started here is released with its scope: servers are killed by pid, TAPs deleted,
 * temporary directories removed.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { HttpServer } from "@effect/platform"
import type * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import type * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import {
  createTap,
  deleteTap,
  freePort,
  pushFrames,
  type Server,
  sleepMs,
  spawnChild,
  startServer,
  statField,
  stopChild,
  tapSkipReason,
  tempDir,
  versionOf,
  waitFor,
  which
} from "@vm-metrics/testing"
import { Context, Effect, Layer, Option, type Scope } from "effect"
import * as Connections from "../src/Connections.js"
import * as Listener from "../src/Listener.js"
import * as Main from "../src/Main.js"
import * as ServerApp from "../src/Server.js"

// ---------------------------------------------------------------------------------------------------
// Prerequisites

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

/** The repository's root (this file is packages/http/test/rig.ts). */
export const REPO_ROOT = path.resolve(import.meta.dirname, "../../..")

/** The CLI under test: `$VM_METRICS_E2E_BIN`, else the bundle dist/vm-metrics.mjs (`pnpm build`; globalSetup). */
export const serverBin = (): string => process.env.VM_METRICS_E2E_BIN ?? path.join(REPO_ROOT, "dist/vm-metrics.mjs")

/** node's arguments that run `bin`: a TypeScript entry (e.g. packages/http/src/bin.ts) through tsx, a bundle as is. */
export const nodeArgs = (bin: string): ReadonlyArray<string> => (bin.endsWith(".ts") ? ["--import", "tsx", bin] : [bin])

/**
 * The test's environment without the server's own settings (VM_METRICS_*, OTEL_*: a token, a prefix or
 * other /proc and /sys roots in a developer's shell would change what the server answers), plus `extra`.
 */
export const serverEnv = (extra: Record<string, string> = {}): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("VM_METRICS_") && !key.startsWith("OTEL_")) env[key] = value
  }
  return { ...env, NO_COLOR: "1", ...extra }
}

/** A running `vm-metrics serve`. */
export interface CliServer extends Server {
  readonly base: string
  /** host:port, as Prometheus scrapes it. */
  readonly target: string
  readonly args: ReadonlyArray<string>
  /** GET a path; remembers when the last request ended (see `idleMs`). */
  readonly get: (pathname: string) => Promise<{ status: number; contentType: string | null; body: string }>
  /** Ms since the last request to the server ended (its snapshot cache is older than this). */
  readonly idleMs: () => number
}

/**
 * `node dist/vm-metrics.mjs serve --host <host> --port <free port> <args>` from the repository root, in its
 * own process group, with `serverEnv(env)`; ready once `GET /healthz` answers 200 `{"status":"ok"}`
 * (≤ 60 s). The group is stopped with the scope (SIGTERM, SIGKILL after 5 s).
 */
export const serveCli = (options: {
  readonly name: string
  readonly args: ReadonlyArray<string>
  readonly host?: string
  readonly env?: Record<string, string>
}): Effect.Effect<CliServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const port = yield* freePort
    const args = [...nodeArgs(serverBin()), "serve", "--host", host, "--port", String(port), ...options.args]
    const server = yield* startServer(options.name, process.execPath, args, {
      cwd: REPO_ROOT,
      env: serverEnv(options.env),
      group: true
    })
    const base = `http://${host}:${port}`
    let lastRequestEnd = 0
    const get = async (pathname: string) => {
      try {
        return await request(`${base}${pathname}`)
      } finally {
        lastRequestEnd = Date.now()
      }
    }
    yield* waitFor(
      `${options.name}: a healthy /healthz`,
      async () => {
        const health = await get("/healthz")
        if (health.status === 200 && JSON.stringify(JSON.parse(health.body)) === `{"status":"ok"}`) return true
        throw new Error(`${health.status} ${health.body}`)
      },
      {
        timeout: "60 seconds",
        interval: "100 millis",
        gone: server.gone,
        details: () => `node ${args.join(" ")}:\n${server.output()}`
      }
    )
    return { ...server, base, target: `${host}:${port}`, args, get, idleMs: () => Date.now() - lastRequestEnd }
  })

/**
 * `serveCli` over a file source listing two real processes (`sleep`, stopped with the scope), with a token
 * file, collecting once an hour (every request reads the same snapshot). `instances` gives the file's
 * entries for the two pids.
 */
export const serveFileWithToken = (options: {
  readonly name: string
  readonly token: string
  readonly instances: (pids: readonly [number, number]) => ReadonlyArray<Record<string, unknown>>
}): Effect.Effect<CliServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = yield* tempDir("file-agent-")
    const children = yield* Effect.acquireRelease(
      Effect.sync(() => [spawnChild("exec sleep 300"), spawnChild("exec sleep 300")] as const),
      (sleepers) => Effect.promise(() => Promise.all(sleepers.map(stopChild)))
    )
    const instancesFile = path.join(dir, "instances.json")
    fs.writeFileSync(instancesFile, JSON.stringify(options.instances([children[0].pid, children[1].pid])))
    const tokenFile = path.join(dir, "token")
    fs.writeFileSync(tokenFile, `${options.token}\n`, { mode: 0o600 })
    return yield* serveCli({
      name: options.name,
      args: [
        ...["--source", "file", "--instances-file", instancesFile, "--auth-token-file", tokenFile],
        ...["--collection", "background", "--interval", "3600s"]
      ]
    })
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
export const instantQuery = async (
  base: string,
  query: string,
  /** RFC 3339 or Unix seconds; Prometheus's now when absent. */
  time?: string
): Promise<ReadonlyArray<Series> | undefined> => {
  const at = time === undefined ? "" : `&time=${encodeURIComponent(time)}`
  const { status, body } = await request(`${base}/api/v1/query?query=${encodeURIComponent(query)}${at}`)
  if (status !== 200) throw new Error(`query ${query}: HTTP ${status}: ${body}`)
  const parsed = JSON.parse(body) as { status: string; data: { resultType: string; result: Array<Series> } }
  if (parsed.status !== "success" || parsed.data.resultType !== "vector") throw new Error(`query ${query}: ${body}`)
  return parsed.data.result.length === 0 ? undefined : parsed.data.result
}

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
          return comm === "sleep" && statField(child.pid, 3) === "S" ? true : undefined
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

/** The product's pipeline (Main, max age 500 ms) over the real Linux readers and a static listing of the TestVm. */
export const pipelineLayer: Layer.Layer<VmMetrics.VmMetrics | Collector.Collector, never, TestVm> = Layer.unwrapEffect(
  Effect.map(TestVm, (vm) =>
    Main.layerPipeline({ maxAge: "500 millis" }, { source: InstanceSource.layerStatic([vm.info]) }).pipe(Layer.orDie)
  )
)

/** The real server the rig serves: its address on 127.0.0.1:<random port>. */
export class Exporter extends Context.Tag("e2e/Exporter")<
  Exporter,
  { readonly port: number; readonly url: string }
>() {}

/** Server.layerApp (no token) on the product's listener at 127.0.0.1:<random port>, over the given pipeline. */
export const exporterLayer: Layer.Layer<Exporter, never, VmMetrics.VmMetrics | Collector.Collector> = Layer.merge(
  ServerApp.layerApp(Option.none()),
  Layer.effect(
    Exporter,
    Effect.map(HttpServer.HttpServer, (server) => {
      const { port } = server.address as HttpServer.TcpAddress
      return { port, url: `http://127.0.0.1:${port}/metrics` }
    })
  )
).pipe(Layer.provide(Listener.layer({ host: "127.0.0.1", port: 0, limits: Connections.defaults })), Layer.orDie)

/** Runs `promtool check metrics` with the text on stdin. */
export const promtoolCheck = (promtool: string, text: string) => {
  const result = spawnSync(promtool, ["check", "metrics"], { input: text, encoding: "utf8", timeout: 10_000 })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
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
      { timeout: "15 seconds", gone: server.gone, details: server.output }
    )
    yield* Effect.log(`${versionOf(binary)} ready at ${base}`)
    return { base, server }
  })
