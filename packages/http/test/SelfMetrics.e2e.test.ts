/**
 * The agent's own series on the real server (the bundle, spawned as `vm-metrics serve` over a real
 * process): `hypeman_vm_metrics_build_info` names the build `--version` prints, and the standard process
 * metrics are those of the server's process, checked against its /proc/<pid> files read by the test
 * (testing's expectedProcessMetrics) just before and after the scrape. On demand with max age 0, every
 * scrape collects, so every scrape samples the process anew. `promtool check metrics` accepts the body.
 * Through OTLP too: the product's pipeline pushes them into a real VictoriaMetrics, which stores this
 * process's values.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as OtlpPush from "@vm-metrics/otel/OtlpPush"
import {
  expectedProcessMetrics,
  freePort,
  skipReason,
  spawnChild,
  startServer,
  stopChild,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { Effect, Layer } from "effect"
import * as BuildInfo from "../src/BuildInfo.js"
import * as Main from "../src/Main.js"
import {
  findPrometheus,
  findVictoriaMetrics,
  instantQuery,
  nodeArgs,
  promtoolCheck,
  REPO_ROOT,
  request,
  serveCli,
  serverBin
} from "./rig.js"

const { promtool } = findPrometheus()
const skipPromtool = skipReason(
  promtool === undefined ? "promtool not found on PATH (apt-get install prometheus)" : undefined,
  "promtool check of the agent's own series"
)

const victoriaMetrics = findVictoriaMetrics()
const skipVictoriaMetrics = skipReason(
  victoriaMetrics === undefined
    ? "victoria-metrics not found (run `bash .ci/victoria-metrics.sh`, or set VICTORIA_METRICS_BIN)"
    : undefined,
  "the agent's own series over OTLP"
)

const MiB = 1024 * 1024

/** The value of an unlabeled sample, and the HELP and TYPE of its family. */
const family = (text: string, name: string) => {
  const value = new RegExp(`^${name} (\\S+)$`, "m").exec(text)
  const help = new RegExp(`^# HELP ${name} (.+)$`, "m").exec(text)
  const type = new RegExp(`^# TYPE ${name} (\\S+)$`, "m").exec(text)
  if (value === null || help === null || type === null) throw new Error(`${name} incomplete in\n${text}`)
  return { value: Number(value[1]), help: help[1], type: type[1] }
}

const scrape = (server: { get: (p: string) => Promise<{ status: number; body: string }> }) =>
  Effect.promise(async () => {
    const res = await server.get("/metrics")
    if (res.status !== 200) throw new Error(`/metrics: ${res.status} ${res.body}`)
    return res.body
  })

const agent = Effect.gen(function* () {
  const dir = yield* tempDir("self-metrics-")
  const vm = yield* Effect.acquireRelease(
    Effect.sync(() => spawnChild("exec sleep 120")),
    (child) => Effect.promise(() => stopChild(child))
  )
  const instancesFile = path.join(dir, "instances.json")
  fs.writeFileSync(
    instancesFile,
    JSON.stringify([{ id: "self-vm-1", name: "self", pid: vm.pid, vcpus: 1, memory: "1G" }])
  )
  const server = yield* serveCli({
    name: "agent (self metrics)",
    args: ["--source", "file", "--instances-file", instancesFile, "--collection", "on-demand", "--max-age", "0ms"]
  })
  const pid = server.process.pid
  if (pid === undefined) throw new Error("the server has no pid")
  return { server, pid }
})

describe("the agent's own series on the real server", () => {
  it.scoped("process_* are the server process's own values (its /proc/<pid> before and after the scrape)", () =>
    Effect.gen(function* () {
      const { server, pid } = yield* agent
      const before = expectedProcessMetrics(pid)
      const text = yield* scrape(server)
      const after = expectedProcessMetrics(pid)

      const cpu = family(text, "process_cpu_seconds_total")
      assert.strictEqual(cpu.type, "counter")
      assert.isAbove(cpu.value, 0)
      assert.isAtLeast(cpu.value, before.cpuSeconds)
      assert.isAtMost(cpu.value, after.cpuSeconds)

      const start = family(text, "process_start_time_seconds")
      assert.strictEqual(start.type, "gauge")
      assert.closeTo(start.value, before.startTimeSeconds, 1e-6)

      const max = family(text, "process_max_fds")
      assert.strictEqual(max.type, "gauge")
      assert.strictEqual(max.value, before.maxFds)

      // RSS moves with the garbage collector while the scrape renders: within 32 MiB of the bounds,
      // far from a unit error (pages, KiB) or another process's value.
      const rss = family(text, "process_resident_memory_bytes")
      assert.strictEqual(rss.type, "gauge")
      assert.isAtLeast(rss.value, Math.min(before.residentMemoryBytes, after.residentMemoryBytes) - 32 * MiB)
      assert.isAtMost(rss.value, Math.max(before.residentMemoryBytes, after.residentMemoryBytes) + 32 * MiB)
      assert.isAbove(rss.value, 16 * MiB)

      // Open fds: the scrape's own connection, the fd listing's own fd and the files a collection has open
      // at that moment come and go (the test's readings see neither); a few either way.
      const fds = family(text, "process_open_fds")
      assert.strictEqual(fds.type, "gauge")
      assert.isAtLeast(fds.value, Math.min(before.openFds, after.openFds) - 6)
      assert.isAtMost(fds.value, Math.max(before.openFds, after.openFds) + 6)
    })
  )

  it.scoped("process_open_fds follows the server's fds: 20 idle connections more are 20 fds more", () =>
    Effect.gen(function* () {
      const { server, pid } = yield* agent
      const first = family(yield* scrape(server), "process_open_fds").value
      const baseline = expectedProcessMetrics(pid).openFds
      const port = Number(server.target.split(":").pop())
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          Promise.all(
            Array.from(
              { length: 20 },
              () =>
                new Promise<net.Socket>((resolve, reject) => {
                  const socket = net.connect(port, "127.0.0.1", () => resolve(socket))
                  socket.on("error", reject)
                })
            )
          )
        ),
        (sockets) =>
          Effect.sync(() => {
            for (const socket of sockets) socket.destroy()
          })
      )
      // The server accepts them asynchronously: wait until its fd directory shows them.
      yield* waitFor(
        "the server to accept 20 connections",
        async () => (expectedProcessMetrics(pid).openFds >= baseline + 20 ? true : undefined),
        { timeout: "20 seconds", interval: "50 millis" }
      )
      const second = family(yield* scrape(server), "process_open_fds").value
      assert.isAtLeast(second - first, 17)
      assert.isAtMost(second - first, 23)
    })
  )

  it.scoped("build_info names the build `--version` prints, with the Node that runs it", () =>
    Effect.gen(function* () {
      const { server } = yield* agent
      const text = yield* scrape(server)
      const version = execFileSync(process.execPath, [...nodeArgs(serverBin()), "--version"], {
        cwd: REPO_ROOT,
        encoding: "utf8"
      })
      const printed = /(\d+\.\d+\.\d+\S*) \(revision (\S+), node (\S+)\)/.exec(version)
      assert.isNotNull(printed, version)
      const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "packages/http/package.json"), "utf8")) as {
        version: string
      }
      assert.strictEqual(printed![1], pkg.version)
      assert.match(printed![2], /^[0-9a-f]{7,40}(-dirty)?$/)
      assert.include(
        text,
        `\nhypeman_vm_metrics_build_info{version="${pkg.version}",revision="${printed![2]}",node_version="${process.versions.node}"} 1\n`
      )
      assert.include(text, "# TYPE hypeman_vm_metrics_build_info gauge\n")
    })
  )

  it.scoped.skipIf(skipPromtool)("promtool check metrics accepts the body with the agent's series", () =>
    Effect.gen(function* () {
      const { server } = yield* agent
      const text = yield* scrape(server)
      assert.include(text, "process_open_fds")
      const checked = promtoolCheck(promtool!, text)
      assert.strictEqual(checked.status, 0, checked.output)
    })
  )
})

describe.skipIf(skipVictoriaMetrics)("the agent's own series over OTLP", () => {
  it.scoped(
    "the product's pipeline pushes build_info and process_* of this process; VictoriaMetrics stores them",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir("self-metrics-victoria-")
        const port = yield* freePort
        const receiver = yield* startServer("victoria-metrics", victoriaMetrics!, [
          `-httpListenAddr=127.0.0.1:${port}`,
          `-storageDataPath=${path.join(dir, "data")}`,
          "-search.latencyOffset=0s"
        ])
        const base = `http://127.0.0.1:${port}`
        yield* waitFor(
          "VictoriaMetrics /health",
          async () => ((await request(`${base}/health`)).status === 200 ? true : undefined),
          {
            timeout: "15 seconds",
            gone: receiver.gone,
            details: receiver.output
          }
        )
        const before = expectedProcessMetrics(process.pid)
        const pushed = yield* Effect.gen(function* () {
          const { pushOnce } = yield* OtlpPush.make({
            url: `${base}/opentelemetry/v1/metrics`,
            interval: "1 hour",
            timeout: "5 seconds"
          })
          return yield* pushOnce
        }).pipe(
          Effect.provide(
            Main.layerPipeline({ maxAge: "0 millis" }, { source: InstanceSource.layerStatic([]) }).pipe(Layer.orDie)
          )
        )
        const after = expectedProcessMetrics(process.pid)
        assert.isTrue(pushed)
        const value = (name: string) =>
          waitFor(
            `VictoriaMetrics to have ${name}`,
            async () => {
              await request(`${base}/internal/force_flush`)
              const series = await instantQuery(base, name)
              return series?.[0]
            },
            { timeout: "20 seconds" }
          )
        const cpu = Number((yield* value("process_cpu_seconds_total")).value[1])
        assert.isAtLeast(cpu, before.cpuSeconds)
        assert.isAtMost(cpu, after.cpuSeconds)
        assert.strictEqual(Number((yield* value("process_max_fds")).value[1]), before.maxFds)
        assert.closeTo(Number((yield* value("process_start_time_seconds")).value[1]), before.startTimeSeconds, 1e-3)
        assert.isAbove(Number((yield* value("process_resident_memory_bytes")).value[1]), 16 * MiB)
        assert.isAbove(Number((yield* value("process_open_fds")).value[1]), 3)
        const build = yield* value("hypeman_vm_metrics_build_info")
        assert.strictEqual(build.value[1], "1")
        assert.strictEqual(build.metric.version, BuildInfo.version)
        assert.strictEqual(build.metric.revision, BuildInfo.revision)
        assert.strictEqual(build.metric.node_version, process.versions.node)
      }),
    60_000
  )
})
