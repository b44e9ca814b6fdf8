/**
 * End to end, pull: a real process (and a real TAP as root) → NodeReaders → Collector → VmMetrics →
 * Prometheus text on a real HTTP endpoint → `promtool check metrics` and a real Prometheus scraping it
 * every second; the test then asks Prometheus's query API what it stored.
 *
 * Then the real server: two `vm-metrics serve` processes with a token (one with `--metrics-without-auth`)
 * scraped by a real Prometheus whose jobs come from docs/prometheus.md: with the token and `params:` (up),
 * without the token (down, 401), and tokenless against `--metrics-without-auth` (up, /instances still 401).
 * Last, the instances file is swapped for a symlink to a secret-looking file: `/instances` reports the kind
 * and position of the error only, the log has the reason.
 */
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import * as PrometheusText from "@vm-metrics/otel/PrometheusText"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import {
  skipReason,
  spawnChild,
  statCpuSeconds,
  statmRssBytes,
  stopChild,
  TICK_SECONDS,
  tapBytes,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { Context, Effect, Layer, type Scope } from "effect"
import {
  type CliServer,
  Exporter,
  exporterLayer,
  findPrometheus,
  instantQuery,
  pipelineLayer,
  promtoolCheck,
  request,
  type Series,
  serveCli,
  startPrometheus,
  TestVm,
  tapMissing,
  testVmLayer,
  VM_ID,
  VM_NAME
} from "./rig.js"

const { prometheus, promtool } = findPrometheus()
const skipPromtool = skipReason(
  promtool === undefined ? "promtool not found on PATH (apt-get install prometheus)" : undefined,
  "promtool end-to-end test"
)
const skipPrometheus = skipReason(
  prometheus === undefined ? "prometheus not found on PATH (apt-get install prometheus)" : undefined,
  "Prometheus end-to-end tests"
)

const JOB = "vm-metrics-e2e"

/** A real Prometheus scraping the rig's exporter every second. */
class PrometheusServer extends Context.Tag("e2e/PrometheusServer")<
  PrometheusServer,
  { readonly base: string; readonly target: string }
>() {}

const prometheusLayer = Layer.scoped(
  PrometheusServer,
  Effect.gen(function* () {
    const exporter = yield* Exporter
    const dir = yield* tempDir("vm-metrics-prom-")
    const target = `127.0.0.1:${exporter.port}`
    const config = path.join(dir, "prom.yml")
    fs.writeFileSync(
      config,
      [
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}",
        `scrape_configs: [{job_name: ${JOB}, metrics_path: /metrics, static_configs: [{targets: ["${target}"]}]}]`,
        ""
      ].join("\n")
    )
    const { base } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
    return { base, target }
  })
)

const rig = prometheusLayer.pipe(
  Layer.provideMerge(exporterLayer),
  Layer.provideMerge(pipelineLayer),
  Layer.provideMerge(testVmLayer("vmmp"))
)

/** Polls an instant query until Prometheus has the series (Prometheus 2.42 starts scraping a new target within ~5 s). */
const queryUntilPresent = (query: string) =>
  Effect.gen(function* () {
    const { base } = yield* PrometheusServer
    return yield* waitFor(`Prometheus to have ${query}`, () => instantQuery(base, query), { timeout: "20 seconds" })
  })

const only = (series: ReadonlyArray<Series>, what: string): Series => {
  assert.lengthOf(series, 1, `${what}: ${JSON.stringify(series)}`)
  return series[0]!
}

describe.skipIf(skipPromtool)("promtool", () => {
  layer(exporterLayer.pipe(Layer.provideMerge(pipelineLayer), Layer.provideMerge(testVmLayer("vmmc"))), {
    excludeTestServices: true,
    timeout: "30 seconds"
  })((it) => {
    it.effect("`promtool check metrics` accepts the /metrics body of the real pipeline", () =>
      Effect.gen(function* () {
        const exporter = yield* Exporter
        const vm = yield* TestVm
        const { status, contentType, body } = yield* Effect.promise(() => request(exporter.url))
        assert.strictEqual(status, 200)
        assert.strictEqual(contentType, PrometheusText.CONTENT_TYPE)
        // The body is the real pipeline's: the child's CPU counter with its own value.
        const cpu = body.match(/^hypeman_vm_cpu_seconds_total\{instance_id="e2e-vm-1",instance_name="web-1"\} (\S+)$/m)
        assert.isNotNull(cpu, body)
        assert.closeTo(Number(cpu![1]), statCpuSeconds(vm.pid), TICK_SECONDS + 1e-9)
        const checked = promtoolCheck(promtool!, body)
        assert.strictEqual(checked.status, 0, `promtool check metrics exited ${checked.status}:\n${checked.output}`)
      })
    )
  })
})

describe.skipIf(skipPrometheus)("Prometheus scraping the exporter", () => {
  layer(rig, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.effect("stores hypeman_vm_cpu_seconds_total with exactly the VM labels and the child's utime+stime", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const { target } = yield* PrometheusServer
        const cpu = only(yield* queryUntilPresent("hypeman_vm_cpu_seconds_total"), "cpu")
        assert.deepStrictEqual(cpu.metric, {
          __name__: "hypeman_vm_cpu_seconds_total",
          instance_id: VM_ID,
          instance_name: VM_NAME,
          job: JOB,
          instance: target
        })
        const stored = Number(cpu.value[1])
        const expected = statCpuSeconds(vm.pid)
        assert.isAbove(expected, 0, "the child burned CPU before sleeping")
        assert.isAtLeast(stored, 0)
        assert.closeTo(stored, expected, TICK_SECONDS + 1e-9, `stored ${stored}, /proc/${vm.pid}/stat ${expected}`)
      })
    )

    it.effect("stores the allocation, RSS, the service gauges and target_info of the pipeline", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const metrics = yield* VmMetrics.VmMetrics
        const vcpus = only(yield* queryUntilPresent(`hypeman_vm_allocated_vcpus{instance_id="${VM_ID}"}`), "vcpus")
        assert.strictEqual(vcpus.value[1], "2")
        assert.strictEqual(vcpus.metric.instance_name, VM_NAME)
        const memory = only(yield* queryUntilPresent("hypeman_vm_allocated_memory_bytes"), "memory")
        assert.strictEqual(memory.value[1], "1073741824")
        const rss = only(yield* queryUntilPresent("hypeman_vm_memory_rss_bytes"), "rss")
        assert.strictEqual(Number(rss.value[1]), statmRssBytes(vm.pid))
        const observed = only(yield* queryUntilPresent("hypeman_vm_metrics_instances_observed"), "observed")
        assert.strictEqual(observed.value[1], "1")
        const running = only(yield* queryUntilPresent(`hypeman_vm_metrics_instances{state="running"}`), "running")
        assert.strictEqual(running.value[1], "1")
        const info = only(yield* queryUntilPresent("target_info"), "target_info")
        assert.strictEqual(info.metric.service_name, "vm-metrics")
        assert.strictEqual(info.metric.service_version, metrics.resource["service.version"])
        assert.strictEqual(info.metric.host_name, metrics.resource["host.name"])
        assert.strictEqual(info.value[1], "1")
        const up = only(yield* queryUntilPresent(`up{job="${JOB}"}`), "up")
        assert.strictEqual(up.value[1], "1")
      })
    )

    it.effect.skipIf(tapMissing)("stores the TAP's byte counters in the VM's perspective (rx = tx_bytes)", () =>
      Effect.gen(function* () {
        const vm = yield* TestVm
        const bytes = tapBytes(vm.tap!)
        assert.isAtLeast(bytes.vmTx, vm.framed.sentByGuest, "the frames the guest sent")
        assert.isAtLeast(bytes.vmRx, vm.framed.receivedByGuest, "the frames the guest received")
        const rx = only(yield* queryUntilPresent("hypeman_vm_network_rx_bytes_total"), "rx")
        const tx = only(yield* queryUntilPresent("hypeman_vm_network_tx_bytes_total"), "tx")
        assert.strictEqual(rx.metric.instance_id, VM_ID)
        assert.strictEqual(tx.metric.instance_id, VM_ID)
        assert.strictEqual(Number(rx.value[1]), bytes.vmRx)
        assert.strictEqual(Number(tx.value[1]), bytes.vmTx)
      })
    )
  })
})

// ---------------------------------------------------------------------------------------------------
// The real server behind a real Prometheus: tokens, --metrics-without-auth, `params:`, source errors

const REPO = path.resolve(import.meta.dirname, "..", "..", "..")
const DOC_FILE = path.join(REPO, "docs", "prometheus.md")
const TOKEN = "prom-e2e-token-7f3a"
/** What the instances file turns into: a symlink to a file that must never show up in a response. */
const SECRET = "root:*:20200:0:99999:7:::\nsvc:$6$saltsalt$SECRETHASHVALUE:20200:0:99999:7:::\n"

/** `yaml` is a dependency of @vm-metrics/node (pnpm does not hoist it): load it as packages/node does. */
const YAML = createRequire(path.join(REPO, "packages", "node", "package.json"))("yaml") as {
  readonly parse: (text: string) => unknown
  readonly stringify: (value: unknown) => string
}

/** The scrape job of docs/prometheus.md's ```yaml scrape_configs block. */
const docScrapeJob = (): Record<string, any> => {
  const blocks = [...fs.readFileSync(DOC_FILE, "utf8").matchAll(/^```yaml\n(scrape_configs:[\s\S]*?)^```$/gm)]
  assert.lengthOf(blocks, 1, "one scrape_configs block in docs/prometheus.md")
  const config = YAML.parse(blocks[0]![1]!) as { scrape_configs: Array<Record<string, any>> }
  return config.scrape_configs[0]!
}

interface Agent {
  readonly base: string
  readonly target: string
  readonly server: CliServer
  readonly instancesFile: string
}

/** `vm-metrics serve` with a token, over a file listing one VM (a `sleep` child). */
const startAgent = (
  dir: string,
  name: string,
  extraArgs: ReadonlyArray<string>
): Effect.Effect<Agent, never, Scope.Scope> =>
  Effect.gen(function* () {
    const vm = yield* Effect.acquireRelease(
      Effect.sync(() => spawnChild("exec sleep 120")),
      (child) => Effect.promise(() => stopChild(child))
    )
    const instancesFile = path.join(dir, `${name}-vms.json`)
    fs.writeFileSync(
      instancesFile,
      JSON.stringify([{ id: `${name}-vm-1`, name: `${name}-web`, pid: vm.pid, vcpus: 2, memory: "1G" }])
    )
    const tokenFile = path.join(dir, "agent.token")
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    const server = yield* serveCli({
      name: `agent ${name}`,
      args: [
        ...["--otlp", "off", "--source", "file", "--instances-file", instancesFile],
        ...["--auth-token-file", tokenFile, "--max-age", "200ms", ...extraArgs]
      ]
    })
    return { base: server.base, target: server.target, server, instancesFile }
  })

class RealServers extends Context.Tag("e2e/RealServers")<
  RealServers,
  {
    readonly prometheus: string
    /** Token required on /metrics (the default). */
    readonly guarded: Agent
    /** Token configured, but --metrics-without-auth. */
    readonly open: Agent
    readonly dir: string
  }
>() {}

const PARAMS = { module: ["vm"], target: ["hv-1.example"] }

const realServersLayer = Layer.scoped(
  RealServers,
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-real-")
    const [guarded, open] = yield* Effect.all(
      [startAgent(dir, "guarded", []), startAgent(dir, "open", ["--metrics-without-auth"])],
      { concurrency: "unbounded" }
    )
    const promToken = path.join(dir, "prometheus.token")
    fs.writeFileSync(promToken, `${TOKEN}\n`, { mode: 0o600 })
    const doc = docScrapeJob()
    const job = (name: string, target: string, overrides: Record<string, unknown>) => ({
      ...doc,
      job_name: name,
      scrape_interval: "1s",
      scrape_timeout: "1s",
      static_configs: [{ targets: [target] }],
      ...overrides
    })
    const { authorization, ...tokenless } = doc
    const config = path.join(dir, "prom.yml")
    fs.writeFileSync(
      config,
      YAML.stringify({
        global: { scrape_interval: "1s", scrape_timeout: "1s" },
        scrape_configs: [
          // As the doc says, with the token from a file, plus params: as a shared job might add.
          job("with-token", guarded.target, {
            authorization: { ...authorization, credentials_file: promToken },
            params: PARAMS
          }),
          { ...job("without-token", guarded.target, {}), authorization: undefined },
          { ...tokenless, ...job("open-metrics", open.target, { params: PARAMS }), authorization: undefined }
        ].map((one) => Object.fromEntries(Object.entries(one).filter(([, v]) => v !== undefined)))
      })
    )
    const { base } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
    return { prometheus: base, guarded, open, dir }
  })
)

/** `up` of a job once Prometheus has scraped it. */
const upOf = (job: string) =>
  Effect.gen(function* () {
    const { prometheus } = yield* RealServers
    const series = yield* waitFor(`up{job="${job}"}`, () => instantQuery(prometheus, `up{job="${job}"}`), {
      timeout: "30 seconds"
    })
    return only(series, `up of ${job}`).value[1]
  })

const withToken = { headers: { authorization: `Bearer ${TOKEN}` } }

describe.skipIf(skipPrometheus)("the real server scraped by a real Prometheus, as docs/prometheus.md says", () => {
  layer(realServersLayer, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("the doc's scrape job sends the token from credentials_file", () =>
      Effect.sync(() => {
        const doc = docScrapeJob()
        assert.strictEqual(doc.job_name, "vm-metrics")
        assert.deepStrictEqual(Object.keys(doc.authorization ?? {}).sort(), ["credentials_file", "type"])
        assert.strictEqual(doc.authorization.type, "Bearer")
        // deploy/prometheus.yml ships the same block, commented out until the token file exists.
        const deployed = fs.readFileSync(path.join(REPO, "deploy", "prometheus.yml"), "utf8")
        const block = /^(\s*)# authorization:\n((?:\1# {3}.*\n)+)/m.exec(deployed)
        assert.isNotNull(block, "a commented authorization block in deploy/prometheus.yml")
        const uncommented = YAML.parse(`authorization:\n${block![2]!.replaceAll(`${block![1]}#`, "")}`) as {
          authorization: unknown
        }
        assert.deepStrictEqual(uncommented.authorization, doc.authorization)
      })
    )

    it.effect("with the token (and `params:`) the scrape is up and stores the VM; without it, up == 0 (401)", () =>
      Effect.gen(function* () {
        const { prometheus } = yield* RealServers
        assert.strictEqual(yield* upOf("with-token"), "1")
        const cpu = yield* waitFor(
          "the VM's CPU series from the job with the token",
          () => instantQuery(prometheus, `hypeman_vm_cpu_seconds_total{job="with-token"}`),
          { timeout: "20 seconds" }
        )
        assert.strictEqual(only(cpu, "cpu").metric.instance_id, "guarded-vm-1")
        assert.strictEqual(yield* upOf("without-token"), "0")
        const targets = yield* Effect.promise(() => request(`${prometheus}/api/v1/targets`))
        const active = (JSON.parse(targets.body) as { data: { activeTargets: Array<any> } }).data.activeTargets
        const refused = active.find((t) => t.labels.job === "without-token")
        assert.include(refused?.lastError ?? "", "401", JSON.stringify(refused))
        // Prometheus sent its params: the server answered them like a plain GET.
        const withParams = active.find((t) => t.labels.job === "with-token")
        assert.include(withParams?.scrapeUrl ?? "", "module=vm", JSON.stringify(withParams))
      })
    )

    it.effect("--metrics-without-auth: a tokenless Prometheus scrapes /metrics; /instances still needs the token", () =>
      Effect.gen(function* () {
        const { prometheus, open } = yield* RealServers
        assert.strictEqual(yield* upOf("open-metrics"), "1")
        const cpu = yield* waitFor(
          "the VM's CPU series from the tokenless job",
          () => instantQuery(prometheus, `hypeman_vm_cpu_seconds_total{job="open-metrics"}`),
          { timeout: "20 seconds" }
        )
        assert.strictEqual(only(cpu, "cpu").metric.instance_id, "open-vm-1")
        const metrics = yield* Effect.promise(() => request(`${open.base}/metrics?module=vm`))
        assert.strictEqual(metrics.status, 200)
        for (const path of ["/instances", "/instances/open-vm-1/stats", "/openapi.json"]) {
          const refused = yield* Effect.promise(() => request(`${open.base}${path}`))
          assert.strictEqual(refused.status, 401, path)
          assert.deepStrictEqual(JSON.parse(refused.body), {
            code: "unauthorized",
            message: "a valid bearer token is required"
          })
        }
        assert.strictEqual((yield* Effect.promise(() => request(`${open.base}/instances`, withToken))).status, 200)
      })
    )

    it.effect(
      "an instances file swapped for a symlink to a secret: /instances shows the kind only, the log the reason",
      () =>
        Effect.gen(function* () {
          const { guarded, dir } = yield* RealServers
          const secret = path.join(dir, "shadow")
          fs.writeFileSync(secret, SECRET, { mode: 0o600 })
          const link = `${guarded.instancesFile}.new`
          fs.symlinkSync(secret, link)
          fs.renameSync(link, guarded.instancesFile) // atomic, as a config management tool swaps files
          const body = yield* waitFor(
            "a source error in GET /instances",
            async () => {
              const res = await request(`${guarded.base}/instances`, withToken)
              return res.status === 200 && JSON.parse(res.body).source_error !== null ? res.body : undefined
            },
            { timeout: "20 seconds", gone: guarded.server.gone, details: guarded.server.output }
          )
          const parsed = JSON.parse(body)
          // Where the JSON went wrong (the first character), nothing of what is there.
          assert.deepStrictEqual(parsed.source_error, { kind: "parse_error", line: 1, column: 1 })
          // The last good listing is still served.
          assert.deepStrictEqual(
            parsed.instances.map((vm: any) => vm.instance_id),
            ["guarded-vm-1"]
          )
          for (const leak of ["root:", "SECRETHASH", "Unexpected token", dir, "shadow", "vms.json", "/tmp"]) {
            assert.notInclude(body, leak, `the body leaks ${leak}`)
          }
          // The operator's log has the reason, with the path.
          yield* waitFor(
            "the source failure in the server's log",
            async () =>
              /instance source failed/.test(guarded.server.output()) &&
              guarded.server.output().includes(guarded.instancesFile)
                ? true
                : undefined,
            { timeout: "10 seconds", gone: guarded.server.gone, details: guarded.server.output }
          )
        })
    )
  })
})
