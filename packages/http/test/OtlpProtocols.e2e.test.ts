/**
 * The OTLP push of the real `vm-metrics serve` (the bundle), switched on and shaped by the standard OTel
 * variables only (OTEL_METRICS_EXPORTER=otlp, OTEL_EXPORTER_OTLP_PROTOCOL / _METRICS_PROTOCOL, the
 * endpoint), into a real receiver per protocol:
 * - http/protobuf → VictoriaMetrics (which takes protobuf only), asked through its query API;
 * - grpc → an OpenTelemetry Collector (.ci/otelcol.sh) whose OTLP receiver listens on gRPC only;
 * - http/json → the same Collector over HTTP, through a recording proxy in this test that shows the
 *   request really was JSON.
 * The Collector's debug exporter prints what it received; the values must be the VM process's own (its
 * stat, statm, its TAP's counters). Then the bad values: one line on stderr, exit 2.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import {
  freePort,
  skipReason,
  startServer,
  statCpuSeconds,
  statmRssBytes,
  TICK_SECONDS,
  tapBytes,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { ConfigProvider, Effect, Either } from "effect"
import * as AppConfig from "../src/AppConfig.js"
import { cli } from "./cliRig.js"
import { findVictoriaMetrics, instantQuery, request, serveCli, TestVm, testVmLayer, VM_ID, VM_NAME } from "./rig.js"

/** The Collector .ci/otelcol.sh builds (or OTELCOL_BIN). */
const findCollector = (): string | undefined => {
  const given = process.env.OTELCOL_BIN
  const file =
    given !== undefined && given !== ""
      ? given
      : path.join(process.env.VM_METRICS_CI_CACHE ?? "/var/cache/vm-metrics-ci", "otelcol/rig-otelcol")
  try {
    fs.accessSync(file, fs.constants.X_OK)
    return file
  } catch {
    return undefined
  }
}

const collectorBin = findCollector()
const victoriaMetrics = findVictoriaMetrics()
const skip = skipReason(
  collectorBin === undefined
    ? "no OpenTelemetry Collector (run `bash .ci/otelcol.sh`, or set OTELCOL_BIN)"
    : victoriaMetrics === undefined
      ? "victoria-metrics not found (run `bash .ci/victoria-metrics.sh`, or set VICTORIA_METRICS_BIN)"
      : undefined,
  "OTLP protocol end-to-end tests"
)

/** One data point as the Collector's debug exporter prints it. */
interface Point {
  readonly metric: string
  readonly attributes: Readonly<Record<string, string>>
  readonly value: number
}

/**
 * The debug exporter's detailed output → the resource attributes and the data points (`-> Name: m` after
 * `Descriptor:`, then per point its `-> key: Str(value)` attributes and `Value: n`).
 */
export const parseDebugOutput = (text: string) => {
  const resource: Record<string, string> = {}
  const points: Array<Point> = []
  let metric: string | undefined
  let attributes: Record<string, string> | undefined
  for (const line of text.split("\n")) {
    const name = /^\s+-> Name: (\S+)$/.exec(line)
    const attribute = /^\s+-> ([\w.]+): Str\((.*)\)$/.exec(line)
    const value = /^Value: (\S+)$/.exec(line)
    if (name !== null) metric = name[1]
    else if (line === "Data point attributes:") attributes = {}
    else if (attribute !== null) (attributes ?? resource)[attribute[1]!] = attribute[2]!
    else if (value !== null && metric !== undefined && attributes !== undefined) {
      points.push({ metric, attributes, value: Number(value[1]) })
      attributes = undefined
    }
  }
  return { resource, points }
}

/** A real Collector: an OTLP receiver on one transport, the debug exporter writing what came to a file. */
const startCollector = (transport: "grpc" | "http") =>
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-otelcol-")
    const port = yield* freePort
    const config = path.join(dir, "otelcol.yaml")
    fs.writeFileSync(
      config,
      [
        `receivers: {otlp: {protocols: {${transport}: {endpoint: "127.0.0.1:${port}"}}}}`,
        "exporters: {debug: {verbosity: detailed}}",
        "service:",
        "  telemetry: {metrics: {level: none}}",
        "  pipelines: {metrics: {receivers: [otlp], exporters: [debug]}}"
      ].join("\n")
    )
    const server = yield* startServer("otelcol", collectorBin!, [`--config=file:${config}`])
    let log = ""
    server.process.stderr?.on("data", (chunk: Buffer) => {
      log += chunk.toString("utf8")
    })
    yield* waitFor("the Collector to be ready", async () => (log.includes("Everything is ready") ? true : undefined), {
      timeout: "30 seconds",
      gone: server.gone,
      details: () => log
    })
    /** The points received so far, once every one of `metrics` is among them. */
    const received = (metrics: ReadonlyArray<string>) =>
      waitFor(
        `the Collector to receive ${metrics.join(", ")}`,
        async () => {
          const parsed = parseDebugOutput(log)
          const has = (metric: string) => parsed.points.some((point) => point.metric === metric)
          return metrics.every(has) ? parsed : undefined
        },
        { timeout: "60 seconds", interval: "200 millis", gone: server.gone, details: () => log.slice(-4000) }
      )
    return { port, received }
  })

/**
 * A proxy in front of `target` that records each request's method, path and content type, and forwards it
 * unchanged: what the push really sent.
 */
const recordingProxy = (target: number) =>
  Effect.gen(function* () {
    const seen: Array<{ readonly method: string; readonly url: string; readonly contentType: string; body: string }> =
      []
    const server = http.createServer((incoming, outgoing) => {
      const chunks: Array<Buffer> = []
      incoming.on("data", (chunk: Buffer) => chunks.push(chunk))
      incoming.on("end", () => {
        const body = Buffer.concat(chunks)
        seen.push({
          method: incoming.method ?? "",
          url: incoming.url ?? "",
          contentType: incoming.headers["content-type"] ?? "",
          body: body.toString("utf8")
        })
        const forward = http.request(
          { host: "127.0.0.1", port: target, path: incoming.url, method: incoming.method, headers: incoming.headers },
          (answer) => {
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers)
            answer.pipe(outgoing)
          }
        )
        forward.on("error", () => outgoing.writeHead(502).end())
        forward.end(body)
      })
    })
    const port = yield* freePort
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => {
        server.listen(port, "127.0.0.1", () => resume(Effect.void))
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        })
    )
    return { port, seen }
  })

/** The TestVm as an instances file for `--source file`. */
const instancesFile = Effect.gen(function* () {
  const vm = yield* TestVm
  const dir = yield* tempDir("vm-metrics-otlp-vms-")
  const file = path.join(dir, "vms.json")
  const entry = { id: VM_ID, name: VM_NAME, pid: vm.pid, vcpus: 2, memory: "1G", ...(vm.tap ? { tap: vm.tap } : {}) }
  fs.writeFileSync(file, JSON.stringify([entry]))
  return file
})

/** `vm-metrics serve` pushing by the OTel variables only; an hour apart, so the one push is the one at start. */
const servePushing = (name: string, env: Record<string, string>) =>
  Effect.gen(function* () {
    const file = yield* instancesFile
    return yield* serveCli({
      name,
      args: ["--source", "file", "--instances-file", file],
      env: { OTEL_METRICS_EXPORTER: "otlp", OTEL_METRIC_EXPORT_INTERVAL: "3600000", ...env }
    })
  })

/** What checkPoints reads. */
const checked = (tap: string | undefined) => [
  "hypeman_vm_cpu_seconds_total",
  "hypeman_vm_memory_rss_bytes",
  "hypeman_vm_allocated_memory_bytes",
  "hypeman_vm_allocated_vcpus",
  ...(tap === undefined ? [] : ["hypeman_vm_network_rx_bytes_total", "hypeman_vm_network_tx_bytes_total"])
]

/** The points the Collector got for the VM are the process's own values. */
const checkPoints = (received: ReturnType<typeof parseDebugOutput>) =>
  Effect.gen(function* () {
    const vm = yield* TestVm
    const one = (metric: string) => {
      const found = received.points.filter((point) => point.metric === metric)
      assert.lengthOf(found, 1, `${metric}: ${JSON.stringify(found)}`)
      assert.deepStrictEqual(found[0]!.attributes, { instance_id: VM_ID, instance_name: VM_NAME }, metric)
      return found[0]!.value
    }
    assert.strictEqual(received.resource["service.name"], "vm-metrics")
    const cpu = statCpuSeconds(vm.pid)
    assert.isAbove(cpu, 0, "the child burned CPU before sleeping")
    // Printed with six decimals; the child sleeps, so its CPU time no longer moves.
    assert.closeTo(one("hypeman_vm_cpu_seconds_total"), cpu, TICK_SECONDS + 1e-6)
    assert.strictEqual(one("hypeman_vm_memory_rss_bytes"), statmRssBytes(vm.pid))
    assert.strictEqual(one("hypeman_vm_allocated_memory_bytes"), 1024 ** 3)
    assert.strictEqual(one("hypeman_vm_allocated_vcpus"), 2)
    if (vm.tap !== undefined) {
      const bytes = tapBytes(vm.tap)
      assert.strictEqual(one("hypeman_vm_network_rx_bytes_total"), bytes.vmRx)
      assert.strictEqual(one("hypeman_vm_network_tx_bytes_total"), bytes.vmTx)
    }
  })

describe.skipIf(skip !== undefined)("OTLP push by protocol, into real receivers", () => {
  layer(testVmLayer("vmmp"), { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.scoped(
      "grpc: the Collector's gRPC-only receiver gets the VM's real values",
      () =>
        Effect.gen(function* () {
          const collector = yield* startCollector("grpc")
          yield* servePushing("vm-metrics grpc", {
            OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${collector.port}`
          })
          yield* checkPoints(yield* collector.received(checked((yield* TestVm).tap)))
        }),
      120_000
    )

    it.scoped(
      "http/json (the metrics-specific variable winning): JSON on the wire, the Collector gets the VM's real values",
      () =>
        Effect.gen(function* () {
          const collector = yield* startCollector("http")
          const proxy = yield* recordingProxy(collector.port)
          yield* servePushing("vm-metrics http/json", {
            OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
            OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "http/json",
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `http://127.0.0.1:${proxy.port}/v1/metrics`
          })
          yield* checkPoints(yield* collector.received(checked((yield* TestVm).tap)))
          const push = proxy.seen.find((request) => request.url === "/v1/metrics")
          assert.isDefined(push, JSON.stringify(proxy.seen))
          assert.strictEqual(push!.method, "POST")
          assert.strictEqual(push!.contentType, "application/json")
          const body = JSON.parse(push!.body) as { resourceMetrics: Array<unknown> }
          assert.lengthOf(body.resourceMetrics, 1)
          assert.include(push!.body, '"hypeman_vm_cpu_seconds_total"')
        }),
      120_000
    )

    it.scoped(
      "http/protobuf (the default): VictoriaMetrics, which takes protobuf only, stores the VM's real values",
      () =>
        Effect.gen(function* () {
          const vm = yield* TestVm
          const dir = yield* tempDir("vm-metrics-victoria-")
          const port = yield* freePort
          const base = `http://127.0.0.1:${port}`
          const server = yield* startServer("victoria-metrics", victoriaMetrics!, [
            `-httpListenAddr=127.0.0.1:${port}`,
            `-storageDataPath=${path.join(dir, "data")}`,
            "-search.latencyOffset=0s",
            "-retentionPeriod=1d"
          ])
          yield* waitFor(
            "VictoriaMetrics /health",
            async () => ((await request(`${base}/health`)).status === 200 ? true : undefined),
            { timeout: "15 seconds", gone: server.gone, details: server.output }
          )
          // No protocol variable at all: the default.
          yield* servePushing("vm-metrics http/protobuf", {
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${base}/opentelemetry/v1/metrics`
          })
          const stored = (query: string) =>
            waitFor(
              `VictoriaMetrics to have ${query}`,
              async () => {
                await request(`${base}/internal/force_flush`)
                const series = await instantQuery(base, query)
                return series?.length === 1 ? series[0]! : undefined
              },
              { timeout: "60 seconds", interval: "250 millis" }
            )
          const cpu = yield* stored("hypeman_vm_cpu_seconds_total")
          assert.strictEqual(cpu.metric.instance_id, VM_ID)
          assert.strictEqual(cpu.metric.instance_name, VM_NAME)
          assert.closeTo(Number(cpu.value[1]), statCpuSeconds(vm.pid), TICK_SECONDS + 1e-9)
          assert.strictEqual(Number((yield* stored("hypeman_vm_memory_rss_bytes")).value[1]), statmRssBytes(vm.pid))
          assert.strictEqual((yield* stored("hypeman_vm_allocated_memory_bytes")).value[1], "1073741824")
          if (vm.tap !== undefined) {
            const bytes = tapBytes(vm.tap)
            assert.strictEqual(Number((yield* stored("hypeman_vm_network_rx_bytes_total")).value[1]), bytes.vmRx)
            assert.strictEqual(Number((yield* stored("hypeman_vm_network_tx_bytes_total")).value[1]), bytes.vmTx)
          }
        }),
      120_000
    )
  })
})

describe("OTEL_METRICS_EXPORTER and OTEL_EXPORTER_OTLP_*PROTOCOL", () => {
  const resolve = (env: Record<string, string>, flagOn = false) =>
    Effect.runSync(
      Effect.either(AppConfig.otlpPush(flagOn)).pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))
      )
    )
  const ok = (env: Record<string, string>, flagOn = false) => {
    const result = resolve(env, flagOn)
    assert.isTrue(Either.isRight(result), String(Either.isLeft(result) ? result.left.message : ""))
    return Either.getOrThrow(result)
  }
  const bad = (env: Record<string, string>, flagOn = false) => {
    const result = resolve(env, flagOn)
    assert.isTrue(Either.isLeft(result), JSON.stringify(env))
    return Either.isLeft(result) ? result.left.message : ""
  }

  it("otlp pushes (as --otlp on); prometheus and none only serve /metrics; unset leaves it to --otlp", () => {
    assert.deepStrictEqual(ok({}), { otlp: false, otlpProtocol: "http/protobuf" })
    assert.deepStrictEqual(ok({}, true), { otlp: true, otlpProtocol: "http/protobuf" })
    assert.isTrue(ok({ OTEL_METRICS_EXPORTER: "otlp" }).otlp)
    assert.isTrue(ok({ OTEL_METRICS_EXPORTER: " Prometheus , OTLP " }).otlp)
    assert.isFalse(ok({ OTEL_METRICS_EXPORTER: "prometheus" }).otlp)
    assert.isFalse(ok({ OTEL_METRICS_EXPORTER: "none" }).otlp)
    // Blank is unset (the specification's rule).
    assert.isTrue(ok({ OTEL_METRICS_EXPORTER: " " }, true).otlp)
    assert.include(bad({ OTEL_METRICS_EXPORTER: "none" }, true), "--otlp on contradicts OTEL_METRICS_EXPORTER=none")
  })

  it("the protocol: the metrics-specific variable, else the general one, else http/protobuf", () => {
    assert.strictEqual(ok({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }).otlpProtocol, "grpc")
    assert.strictEqual(
      ok({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "http/json" }).otlpProtocol,
      "http/json"
    )
    assert.strictEqual(ok({ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "" }).otlpProtocol, "http/protobuf")
    // Checked even when nothing is pushed: a typo shows at once.
    assert.strictEqual(
      bad({ OTEL_EXPORTER_OTLP_PROTOCOL: "http" }),
      'OTEL_EXPORTER_OTLP_PROTOCOL="http": expected one of http/protobuf, http/json, grpc'
    )
  })

  it("bad values end `serve` with one line on stderr and exit 2, before it listens", async () => {
    for (const [env, expected] of [
      [{ OTEL_EXPORTER_OTLP_PROTOCOL: "http" }, 'OTEL_EXPORTER_OTLP_PROTOCOL="http": expected one of'],
      [{ OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: "grpc/json" }, 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL="grpc/json"'],
      [{ OTEL_METRICS_EXPORTER: "otlp,console" }, "console is not supported"],
      [{ OTEL_METRICS_EXPORTER: "none,otlp" }, "none means no exporter"],
      [{ OTEL_METRICS_EXPORTER: "jaeger" }, 'unknown exporter "jaeger"']
    ] as const) {
      const port = await Effect.runPromise(freePort)
      const { code, stdout, stderr } = await cli(["serve", "--port", String(port)], env)
      assert.strictEqual(code, 2, `${JSON.stringify(env)}: ${stderr}`)
      assert.strictEqual(stdout, "")
      // Besides log lines (logfmt), one line saying what is wrong: no stack trace.
      const said = stderr.split("\n").filter((line) => line !== "" && !line.startsWith("timestamp="))
      assert.lengthOf(said, 1, stderr)
      assert.match(said[0]!, /^vm-metrics: OTEL_/, stderr)
      assert.include(said[0], expected)
    }
  }, 120_000)
})
