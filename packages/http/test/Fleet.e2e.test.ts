/**
 * The deploy/ directory, checked, and the fleet model it describes run for real:
 *
 * - deploy/vm-metrics.service: parsed, its hardening directives present (and the ones that would break
 *   the service absent), `systemd-analyze verify` / `security --offline` when systemd is installed,
 *   and the capability comment re-proved against the kernel (stat/statm of another user's process
 *   need no capability; a hidepid=invisible /proc needs CAP_SYS_PTRACE).
 * - deploy/prometheus.yml (`promtool check config` as shipped) and deploy/otel-collector.yaml (shape).
 * - A fleet: two spawned `vm-metrics serve` agents, each with its own host identity
 *   (OTEL_RESOURCE_ATTRIBUTES=host.name=host-a / host-b, OTEL_SERVICE_NAME) and a real child process
 *   as its VM (--source file), behind the bearer token, and one real Prometheus scraping both with a
 *   config derived from deploy/prometheus.yml: same job, file_sd and relabelling; only the target
 *   file, the token file and a 1 s interval are changed. The fleet queries then run on Prometheus.
 *
 * The agents listen on 127.0.0.1 and 127.0.0.2 (both loopback on Linux): `host` is derived from the
 * scrape address, so two agents on one address would be one host.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import {
  freePort,
  isRoot,
  type Server,
  skipReason,
  spawnChild,
  statCpuSeconds,
  stopChild,
  TICK_SECONDS,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { Context, Effect, Layer, type Scope } from "effect"
import { findPrometheus, instantQuery, request, type Series, serveCli, serverEnv, startPrometheus } from "./rig.js"

const REPO = path.resolve(import.meta.dirname, "..", "..", "..")
const DEPLOY = path.join(REPO, "deploy")
const BIN = path.join(REPO, "dist", "vm-metrics.mjs")

/**
 * `yaml` is a dependency of @vm-metrics/node, not of this package, and pnpm does not hoist it: load it
 * the way packages/node resolves it.
 */
const YAML = createRequire(path.join(REPO, "packages", "node", "package.json"))("yaml") as {
  readonly parse: (text: string) => unknown
  readonly stringify: (value: unknown) => string
}

const which = (command: string): string | undefined => {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" })
  return found.status === 0 && found.stdout.trim() !== "" ? found.stdout.trim() : undefined
}

const run = (command: string, args: ReadonlyArray<string>) => {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 30_000 })
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` }
}

const { prometheus, promtool } = findPrometheus()
const skipPromtool = skipReason(
  promtool === undefined ? "promtool not found on PATH (apt-get install prometheus)" : undefined,
  "promtool checks of deploy/prometheus.yml"
)
const skipFleet = skipReason(
  prometheus === undefined || promtool === undefined
    ? "prometheus and promtool not found on PATH (apt-get install prometheus)"
    : undefined,
  "fleet end-to-end test"
)
const skipCapabilities = skipReason(
  !isRoot
    ? "needs root to drop capabilities and mount a hidepid /proc"
    : which("setpriv") === undefined || which("unshare") === undefined
      ? "needs setpriv and unshare (util-linux)"
      : undefined,
  "capability check of deploy/vm-metrics.service"
)
/** Optional: .ci/run does not install systemd, so its absence is a skip even under CI. */
const systemdAnalyze = which("systemd-analyze")
if (systemdAnalyze === undefined) {
  console.warn("skipping `systemd-analyze verify` of deploy/vm-metrics.service: systemd-analyze not found")
}

// ---------------------------------------------------------------------------------------------------
// deploy/vm-metrics.service

type UnitFile = ReadonlyMap<string, ReadonlyMap<string, ReadonlyArray<string>>>

/**
 * A systemd unit file as systemd reads it: `[Section]`, `Key=value` (a repeated key adds to the list,
 * an empty value resets it), `#`/`;` comment lines, a trailing backslash continues a line.
 */
const parseUnit = (text: string): UnitFile => {
  const sections = new Map<string, Map<string, Array<string>>>()
  let current: Map<string, Array<string>> | undefined
  let pending = ""
  text.split("\n").forEach((raw, index) => {
    const line = (pending === "" ? raw.trim() : `${pending} ${raw.trim()}`).trim()
    pending = ""
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return
    if (line.endsWith("\\")) {
      pending = line.slice(0, -1)
      return
    }
    const header = /^\[([A-Za-z]+)\]$/.exec(line)
    if (header !== null) {
      current = new Map()
      sections.set(header[1]!, current)
      return
    }
    const eq = line.indexOf("=")
    if (current === undefined || eq <= 0) throw new Error(`line ${index + 1} is not Key=value in a section: ${raw}`)
    const key = line.slice(0, eq).trim()
    const value = line.slice(eq + 1).trim()
    current.set(key, value === "" ? [] : [...(current.get(key) ?? []), value])
  })
  return sections
}

const UNIT_PATH = path.join(DEPLOY, "vm-metrics.service")

describe("deploy/vm-metrics.service", () => {
  const unit = parseUnit(fs.readFileSync(UNIT_PATH, "utf8"))
  const values = (section: string, key: string): ReadonlyArray<string> => unit.get(section)?.get(key) ?? []
  const value = (key: string) => values("Service", key).at(-1)
  const words = (key: string) => new Set(values("Service", key).flatMap((v) => v.split(/\s+/)))
  const isYes = (key: string) => ["yes", "true", "on", "1"].includes((value(key) ?? "").toLowerCase())

  it("runs `vm-metrics serve` as a dedicated unprivileged user, restarting on failure", () => {
    assert.deepStrictEqual([...unit.keys()], ["Unit", "Service", "Install"])
    const exec = (value("ExecStart") ?? "").split(/\s+/)
    assert.isTrue(path.isAbsolute(exec[0]!), `ExecStart needs an absolute program: ${exec[0]}`)
    assert.strictEqual(exec[0], "/usr/bin/vm-metrics", "the executable, where the Debian package installs it")
    assert.strictEqual(exec.at(-1), "serve")
    assert.isTrue(isYes("DynamicUser"), "DynamicUser=yes")
    assert.strictEqual(value("User"), "vm-metrics")
    assert.include(values("Service", "EnvironmentFile"), "-/etc/default/vm-metrics")
    assert.strictEqual(value("Restart"), "on-failure")
    assert.strictEqual(
      value("RestartPreventExitStatus"),
      "2 5",
      "a usage error (2) or an address it cannot listen on (5) must not restart-loop (Shutdown.e2e.test.ts)"
    )
    assert.deepStrictEqual(values("Install", "WantedBy"), ["multi-user.target"])
  })

  it("has exactly CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, and the hardening directives", () => {
    const capabilities = new Set(["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"])
    assert.deepStrictEqual(words("AmbientCapabilities"), capabilities)
    assert.deepStrictEqual(words("CapabilityBoundingSet"), capabilities)
    for (const key of [
      "NoNewPrivileges",
      "ProtectHome",
      "PrivateTmp",
      "ProtectKernelTunables",
      "ProtectKernelModules",
      "ProtectKernelLogs"
    ]) {
      assert.isTrue(isYes(key), `${key}=yes`)
    }
    assert.strictEqual(value("ProtectSystem"), "strict")
    assert.include([...words("ReadOnlyPaths")], "/")
    assert.deepStrictEqual(words("RestrictAddressFamilies"), new Set(["AF_INET", "AF_INET6", "AF_UNIX"]))
    assert.strictEqual(value("ProtectProc"), "default", "other users' hypervisor processes must stay visible")
  })

  it("has none of the settings that would break it", () => {
    // invisible/noaccess/ptraceable /proc hides the hypervisors; ProcSubset=pid hides /proc/stat (boot
    // time); V8's JIT needs W+X memory; capabilities in a user namespace do not reach host processes.
    assert.notInclude(["invisible", "noaccess", "ptraceable"], value("ProtectProc"))
    assert.notStrictEqual(value("ProcSubset"), "pid")
    for (const key of ["MemoryDenyWriteExecute", "PrivateUsers", "PrivateNetwork"]) {
      assert.isFalse(isYes(key), `${key}=yes would break vm-metrics`)
    }
  })

  it.skipIf(systemdAnalyze === undefined)("`systemd-analyze verify` and `security --offline` accept it", () => {
    // A copy whose ExecStart names this machine's node: verify checks that the program exists.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-unit-"))
    try {
      const copy = path.join(dir, "vm-metrics.service")
      fs.writeFileSync(
        copy,
        fs.readFileSync(UNIT_PATH, "utf8").replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`)
      )
      const verified = run(systemdAnalyze!, ["verify", copy])
      assert.strictEqual(verified.status, 0, verified.output)
      assert.notInclude(verified.output, "vm-metrics.service", verified.output)
      // --threshold is the exposure × 10: fail above 3.0 ("OK" ends at 3.9). 2.1 when written.
      const security = run(systemdAnalyze!, ["security", "--offline=true", "--threshold=30", copy])
      assert.strictEqual(security.status, 0, security.output.split("\n").slice(-3).join("\n"))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  describe.skipIf(skipCapabilities)("the capability comment, re-proved", () => {
    it(
      "another user's stat/statm/status need no capability, its io does; a hidepid=invisible /proc needs CAP_SYS_PTRACE",
      () =>
        Effect.gen(function* () {
          const dir = yield* tempDir("vm-metrics-caps-")
          // The "hypervisor": a process of another user (nobody) that holds no capabilities.
          const vm = yield* Effect.acquireRelease(
            Effect.sync(() => spawnChild("exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 60")),
            (child) => Effect.promise(() => stopChild(child))
          )
          yield* waitFor(
            "the child to run sleep as nobody",
            async () => {
              const status = fs.readFileSync(`/proc/${vm.pid}/status`, "utf8")
              return /^Name:\s+sleep$/m.test(status) && /^Uid:\s+65534\s/m.test(status) ? true : undefined
            },
            { timeout: "10 seconds" }
          )
          const vms = path.join(dir, "vms.json")
          fs.writeFileSync(vms, JSON.stringify([{ id: "cap-vm", pid: vm.pid, vcpus: 1, memory: "64M" }]))
          const hidden = path.join(dir, "proc")
          fs.mkdirSync(hidden)
          const stats = [BIN, "stats", "cap-vm", "--source", "file", "--instances-file", vms]
          // uid 0 with an empty bounding set has no capability after exec: an unprivileged reader of
          // another user's process (it cannot follow /proc/<pid>/root, as the control shows). It drops
          // group 0 too, because hidepid lets the group of the mount's gid= (default 0) see everything.
          const unprivileged = ["--regid=65534", "--clear-groups", "--inh-caps=-all"]
          const noCaps = [...unprivileged, "--bounding-set=-all"]
          const ptraceOnly = [...unprivileged, "--bounding-set=-all,+sys_ptrace"]
          const inHidepid = (caps: ReadonlyArray<string>) => [
            "-m",
            "sh",
            "-c",
            `mount -t proc -o hidepid=invisible proc "$0" && exec setpriv "$@"`,
            hidden,
            ...caps,
            process.execPath,
            ...stats,
            "--proc-root",
            hidden
          ]
          const [privileged, withoutCaps, control, hidepidNoCaps, hidepidPtrace] = yield* Effect.promise(() =>
            Promise.all([
              runAsync(process.execPath, stats),
              runAsync("setpriv", [...noCaps, process.execPath, ...stats]),
              runAsync("setpriv", [...noCaps, "ls", `/proc/${vm.pid}/root/`]),
              runAsync("unshare", inHidepid(noCaps)),
              runAsync("unshare", inHidepid(ptraceOnly))
            ])
          )
          assert.notStrictEqual(control.status, 0, "without capabilities /proc/<pid>/root must be denied")
          assert.include(control.output, "Permission denied")
          const json = (result: { status: number | null; stdout: string; output: string }, what: string) => {
            assert.strictEqual(result.status, 0, `${what}: ${result.output}`)
            return JSON.parse(result.stdout) as Record<string, unknown>
          }
          const reference = json(privileged, "as root")
          assert.strictEqual(reference.state, "running")
          const plain = json(withoutCaps, "without capabilities")
          for (const field of [
            "state",
            "pid",
            "cpu_seconds",
            "memory_rss_bytes",
            "memory_vms_bytes",
            "process_start_time"
          ]) {
            assert.deepStrictEqual(plain[field], reference[field], field)
          }
          // What an unprivileged reader misses: only /proc/<pid>/io (the disk group; 0400 behind the ptrace
          // check). `sleep` has no vCPU threads, for root too.
          const reasons = (json: Record<string, unknown>) =>
            (json.unavailable as ReadonlyArray<{ source: string; reason: string }>).map(
              (u) => `${u.source}:${u.reason}`
            )
          assert.deepStrictEqual(reasons(reference), ["tasks:no_vcpu_threads"])
          assert.deepStrictEqual(reasons(plain).sort(), ["io:permission_denied", "tasks:no_vcpu_threads"])
          const hiddenNoCaps = json(hidepidNoCaps, "hidepid, without capabilities")
          // Issue 8 item 7: hidepid hides the live process from a reader without capabilities; it is
          // unknown (permission_denied), never exited, and its values are null, never 0.
          assert.strictEqual(hiddenNoCaps.state, "unknown", "a hidden process is not an exited one")
          assert.isNull(hiddenNoCaps.cpu_seconds)
          assert.isNull(hiddenNoCaps.memory_rss_bytes)
          // Every file of the default groups is refused the same way (none of them is "gone").
          assert.deepStrictEqual(reasons(hiddenNoCaps).sort(), [
            "io:permission_denied",
            "stat:permission_denied",
            "statm:permission_denied",
            "status:permission_denied",
            "tasks:permission_denied"
          ])
          const hiddenPtrace = json(hidepidPtrace, "hidepid, CAP_SYS_PTRACE")
          assert.strictEqual(hiddenPtrace.state, "running")
          assert.deepStrictEqual(hiddenPtrace.memory_rss_bytes, reference.memory_rss_bytes)
        }).pipe(Effect.scoped, Effect.runPromise),
      120_000
    ) // five CLIs at once on a loaded 2-core CI machine
  })
})

const runAsync = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ status: number | null; stdout: string; output: string }>((resolve) => {
    const child = spawn(command, args, { cwd: REPO, env: serverEnv(), stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 100_000)
    child.on("error", (error) => (stderr += `spawn error: ${error.message}\n`))
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, output: `${stdout}${stderr}` })
    })
  })

// ---------------------------------------------------------------------------------------------------
// deploy/prometheus.yml and deploy/otel-collector.yaml

interface ScrapeConfig {
  readonly job_name: string
  readonly scrape_interval?: string
  readonly scrape_timeout?: string
  readonly metrics_path?: string
  readonly authorization?: { readonly type?: string; readonly credentials_file?: string }
  readonly file_sd_configs?: ReadonlyArray<{
    readonly files: ReadonlyArray<string>
    readonly refresh_interval?: string
  }>
  readonly static_configs?: ReadonlyArray<unknown>
  readonly relabel_configs?: ReadonlyArray<Readonly<Record<string, unknown>>>
}

interface PrometheusConfig {
  readonly global?: Readonly<Record<string, unknown>>
  readonly scrape_configs: ReadonlyArray<ScrapeConfig>
}

const PROMETHEUS_PATH = path.join(DEPLOY, "prometheus.yml")
const JOB = "vm-metrics"

const deployedPrometheus = (): PrometheusConfig =>
  YAML.parse(fs.readFileSync(PROMETHEUS_PATH, "utf8")) as PrometheusConfig

const deployedJob = (config: PrometheusConfig): ScrapeConfig => {
  const jobs = config.scrape_configs.filter((job) => job.job_name === JOB)
  assert.lengthOf(jobs, 1, `one scrape job named ${JOB}`)
  return jobs[0]!
}

/**
 * The deployed config with this machine's targets: the job's file_sd reads `targetsGlob`, the scrape
 * sends the token in `tokenFile` (the commented-out `authorization` block), and everything is scraped
 * every second so the test does not wait 15 s. The relabelling is kept as shipped.
 */
const deriveConfig = (deployed: PrometheusConfig, targetsGlob: string, tokenFile: string): PrometheusConfig => {
  const job = deployedJob(deployed)
  return {
    ...deployed,
    global: { ...deployed.global, scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    scrape_configs: [
      {
        ...job,
        scrape_interval: "1s",
        scrape_timeout: "1s",
        authorization: { type: "Bearer", credentials_file: tokenFile },
        file_sd_configs: (job.file_sd_configs ?? []).map((sd) => ({ ...sd, files: [targetsGlob] }))
      }
    ]
  }
}

describe("deploy/prometheus.yml", () => {
  it("scrapes the vm-metrics job every 15 s from file_sd, with the host relabelling", () => {
    const config = deployedPrometheus()
    const job = deployedJob(config)
    assert.strictEqual(config.global?.scrape_interval, "15s")
    assert.strictEqual(job.scrape_interval, "15s")
    assert.strictEqual(job.metrics_path, "/metrics")
    assert.lengthOf(job.file_sd_configs ?? [], 1)
    const rules = (job.relabel_configs ?? []).filter((rule) => rule.target_label === "host")
    assert.lengthOf(rules, 1, "one rule sets host")
    const rule = rules[0]!
    assert.deepStrictEqual(rule.source_labels, ["host", "__address__"])
    // Prometheus anchors the regex (RE2); this pattern means the same in JavaScript. The fleet test
    // below runs it on Prometheus for 127.0.0.x addresses and an explicit label.
    const regex = new RegExp(`^(?:${String(rule.regex)})$`)
    const hostOf = (labels: string) => regex.exec(labels)?.[1]
    assert.strictEqual(hostOf(";hv-01.example.net:9464"), "hv-01.example.net")
    assert.strictEqual(hostOf(";10.0.7.12:9464"), "10.0.7.12")
    assert.strictEqual(hostOf(";[2001:db8::1]:9464"), "[2001:db8::1]")
    assert.strictEqual(hostOf(";hv-02"), "hv-02")
    assert.isUndefined(hostOf("hv-03;10.0.7.12:9464"), "an explicit host label is kept")
    assert.strictEqual(rule.replacement, "$1")
  })

  it.skipIf(skipPromtool)("`promtool check config` accepts it as shipped", () => {
    const checked = run(promtool!, ["check", "config", PROMETHEUS_PATH])
    assert.strictEqual(checked.status, 0, checked.output)
    assert.include(checked.output, "SUCCESS")
  })
})

describe("deploy/otel-collector.yaml", () => {
  it("otlp over HTTP on 4318 → batch → prometheusremotewrite with the resource turned into labels", () => {
    const config = YAML.parse(fs.readFileSync(path.join(DEPLOY, "otel-collector.yaml"), "utf8")) as {
      receivers: { otlp: { protocols: { http: { endpoint: string } } } }
      processors: Record<string, { attributes?: ReadonlyArray<Record<string, string>> }>
      exporters: Record<string, { endpoint?: string; resource_to_telemetry_conversion?: { enabled: boolean } }>
      service: {
        pipelines: { metrics: { receivers: Array<string>; processors: Array<string>; exporters: Array<string> } }
      }
    }
    assert.match(config.receivers.otlp.protocols.http.endpoint, /:4318$/)
    const pipeline = config.service.pipelines.metrics
    assert.deepStrictEqual(pipeline.receivers, ["otlp"])
    assert.strictEqual(pipeline.processors.at(-1), "batch", "batch last, after the processors that change data")
    for (const name of pipeline.processors) assert.property(config.processors, name)
    assert.deepStrictEqual(pipeline.exporters, ["prometheusremotewrite"])
    const exporter = config.exporters.prometheusremotewrite!
    assert.match(exporter.endpoint ?? "", /^https?:\/\/.+\/api\/v1\/write$/)
    assert.isTrue(exporter.resource_to_telemetry_conversion?.enabled, "host.name must become a label")
    assert.deepInclude(config.processors.resource?.attributes ?? [], {
      key: "host",
      from_attribute: "host.name",
      action: "upsert"
    })
  })
})

// ---------------------------------------------------------------------------------------------------
// The fleet

const TOKEN = "fleet-e2e-token"
const SERVICE_NAME = "vm-metrics-fleet-e2e"

interface AgentSpec {
  readonly hostName: string
  readonly address: string
  readonly vmId: string
  readonly vmName: string
  readonly vcpus: number
}

const SPECS: ReadonlyArray<AgentSpec> = [
  { hostName: "host-a", address: "127.0.0.1", vmId: "a-vm-1", vmName: "web-a", vcpus: 2 },
  { hostName: "host-b", address: "127.0.0.2", vmId: "b-vm-1", vmName: "web-b", vcpus: 4 }
]

interface Agent extends AgentSpec {
  /** host:port, as Prometheus scrapes it. */
  readonly target: string
  /** The pid of the agent's "hypervisor", a `sleep` child of this test. */
  readonly vmPid: number
  readonly server: Server
}

class Fleet extends Context.Tag("e2e/Fleet")<
  Fleet,
  {
    readonly agents: ReadonlyArray<Agent>
    /** A target nobody listens on, given an explicit `host` label in its target group. */
    readonly deadTarget: string
    readonly prometheus: string
    readonly deployed: PrometheusConfig
    readonly derived: PrometheusConfig
    readonly promtoolCheck: { readonly status: number | null; readonly output: string }
  }
>() {}

/** `vm-metrics serve` as a user starts it, with its own environment; SIGTERM (then SIGKILL) on release. */
const startAgent = (spec: AgentSpec, dir: string, tokenFile: string): Effect.Effect<Agent, never, Scope.Scope> =>
  Effect.gen(function* () {
    const vm = yield* Effect.acquireRelease(
      Effect.sync(() => spawnChild("exec sleep 60")),
      (child) => Effect.promise(() => stopChild(child))
    )
    const instances = path.join(dir, `${spec.hostName}-vms.json`)
    fs.writeFileSync(
      instances,
      JSON.stringify([{ id: spec.vmId, name: spec.vmName, pid: vm.pid, vcpus: spec.vcpus, memory: "1G" }])
    )
    const server = yield* serveCli({
      name: `agent ${spec.hostName}`,
      host: spec.address,
      args: ["--source", "file", "--instances-file", instances, "--auth-token-file", tokenFile, "--otlp", "off"],
      env: {
        OTEL_SERVICE_NAME: SERVICE_NAME,
        OTEL_RESOURCE_ATTRIBUTES: `host.name=${spec.hostName},deployment.environment=e2e`
      }
    })
    return { ...spec, target: server.target, vmPid: vm.pid, server }
  })

const fleetLayer = Layer.scoped(
  Fleet,
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-fleet-")
    const tokenFile = path.join(dir, "token")
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    const agents = yield* Effect.all(
      SPECS.map((spec) => startAgent(spec, dir, tokenFile)),
      { concurrency: "unbounded" }
    )
    yield* Effect.all(
      agents.map((agent) =>
        waitFor(
          `${agent.server.name} /healthz`,
          async () => ((await request(`http://${agent.target}/healthz`)).status === 200 ? true : undefined),
          { timeout: "30 seconds", gone: agent.server.gone, details: agent.server.output }
        )
      ),
      { concurrency: "unbounded" }
    )
    const deadTarget = `127.0.0.1:${yield* freePort}`

    const targets = path.join(dir, "targets")
    fs.mkdirSync(targets)
    fs.writeFileSync(
      path.join(targets, "fleet.yml"),
      YAML.stringify([
        { targets: agents.map((agent) => agent.target) },
        { targets: [deadTarget], labels: { host: "host-c" } }
      ])
    )
    const deployed = deployedPrometheus()
    const derived = deriveConfig(deployed, path.join(targets, "*.yml"), tokenFile)
    const config = path.join(dir, "prometheus.yml")
    fs.writeFileSync(config, YAML.stringify(derived))
    const checked = run(promtool!, ["check", "config", config])

    const { base } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
    return { agents, deadTarget, prometheus: base, deployed, derived, promtoolCheck: checked }
  })
)

/** Polls an instant query until it returns at least `count` series (first scrapes come within ~2 s). */
const queryUntil = (query: string, count: number) =>
  Effect.gen(function* () {
    const { prometheus } = yield* Fleet
    return yield* waitFor(
      `Prometheus to return ${count} series for ${query}`,
      async () => {
        const series = await instantQuery(prometheus, query)
        return series !== undefined && series.length >= count ? series : undefined
      },
      { timeout: "20 seconds" }
    )
  })

/** label value → sample value, asserting the label is unique. */
const byLabel = (series: ReadonlyArray<Series>, label: string): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const one of series) {
    const key = one.metric[label]
    assert.isDefined(key, `${label} on ${JSON.stringify(one.metric)}`)
    assert.notProperty(out, key!, `${label}=${key} twice: ${JSON.stringify(series)}`)
    out[key!] = one.value[1]
  }
  return out
}

describe.skipIf(skipFleet)("a fleet: two agents, one Prometheus with the config of deploy/", () => {
  layer(fleetLayer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("each agent serves its own VM and host identity, only with the bearer token", () =>
      Effect.gen(function* () {
        const { agents } = yield* Fleet
        for (const agent of agents) {
          const url = `http://${agent.target}/metrics`
          const refused = yield* Effect.promise(() => request(url))
          assert.strictEqual(refused.status, 401)
          const { status, body } = yield* Effect.promise(() =>
            request(url, { headers: { authorization: `Bearer ${TOKEN}` } })
          )
          assert.strictEqual(status, 200, body)
          assert.include(
            body,
            `hypeman_vm_allocated_vcpus{instance_id="${agent.vmId}",instance_name="${agent.vmName}"} ${agent.vcpus}\n`
          )
          assert.match(body, new RegExp(`^target_info\\{[^}]*host_name="${agent.hostName}"`, "m"))
          assert.notInclude(body, agents.find((other) => other !== agent)!.vmId)
        }
      })
    )

    it.effect("the derived config keeps the deployed job and relabelling, and `promtool check config` accepts it", () =>
      Effect.gen(function* () {
        const { deployed, derived, promtoolCheck } = yield* Fleet
        assert.strictEqual(promtoolCheck.status, 0, promtoolCheck.output)
        const [shipped, used] = [deployedJob(deployed), deployedJob(derived)]
        assert.deepStrictEqual(used.relabel_configs, shipped.relabel_configs)
        assert.strictEqual(used.metrics_path, shipped.metrics_path)
        assert.strictEqual(used.file_sd_configs?.[0]?.refresh_interval, shipped.file_sd_configs?.[0]?.refresh_interval)
      })
    )

    it.effect("sum by (host) (hypeman_vm_allocated_vcpus): exactly the two hosts, host from the scrape address", () =>
      Effect.gen(function* () {
        const { agents } = yield* Fleet
        const sums = byLabel(yield* queryUntil("sum by (host) (hypeman_vm_allocated_vcpus)", 2), "host")
        assert.deepStrictEqual(sums, Object.fromEntries(agents.map((agent) => [agent.address, String(agent.vcpus)])))
      })
    )

    it.effect("count by (host) (hypeman_vm_cpu_seconds_total) is 1 per host, each its own child's CPU time", () =>
      Effect.gen(function* () {
        const { agents } = yield* Fleet
        const counts = byLabel(yield* queryUntil("count by (host) (hypeman_vm_cpu_seconds_total)", 2), "host")
        assert.deepStrictEqual(counts, Object.fromEntries(agents.map((agent) => [agent.address, "1"])))
        const cpu = yield* queryUntil("hypeman_vm_cpu_seconds_total", 2)
        assert.lengthOf(cpu, 2)
        for (const agent of agents) {
          const series = cpu.find((one) => one.metric.host === agent.address)!
          assert.deepStrictEqual(series.metric, {
            __name__: "hypeman_vm_cpu_seconds_total",
            instance_id: agent.vmId,
            instance_name: agent.vmName,
            host: agent.address,
            instance: agent.target,
            job: JOB
          })
          assert.closeTo(Number(series.value[1]), statCpuSeconds(agent.vmPid), TICK_SECONDS + 1e-9)
        }
      })
    )

    it.effect("target_info carries each agent's host.name; joined, the vCPUs add up per host_name", () =>
      Effect.gen(function* () {
        const { agents } = yield* Fleet
        const info = yield* queryUntil("target_info", 2)
        assert.lengthOf(info, 2, JSON.stringify(info))
        for (const agent of agents) {
          const series = info.find((one) => one.metric.host === agent.address)
          assert.isDefined(series, `target_info of ${agent.target}: ${JSON.stringify(info)}`)
          assert.strictEqual(series!.metric.host_name, agent.hostName)
          assert.strictEqual(series!.metric.service_name, SERVICE_NAME)
          assert.strictEqual(series!.metric.deployment_environment, "e2e")
          assert.strictEqual(series!.metric.service_instance_id, agent.hostName)
          assert.strictEqual(series!.value[1], "1")
        }
        const joined = byLabel(
          yield* queryUntil(
            "sum by (host_name) (hypeman_vm_allocated_vcpus * on (job, instance) group_left (host_name) target_info)",
            2
          ),
          "host_name"
        )
        assert.deepStrictEqual(joined, Object.fromEntries(agents.map((agent) => [agent.hostName, String(agent.vcpus)])))
      })
    )

    it.effect("up by host: both agents up; an explicit host label in a target group wins over the address", () =>
      Effect.gen(function* () {
        const { agents } = yield* Fleet
        const up = byLabel(yield* queryUntil(`up{job="${JOB}"}`, 3), "host")
        assert.deepStrictEqual(up, {
          ...Object.fromEntries(agents.map((agent) => [agent.address, "1"])),
          "host-c": "0"
        })
      })
    )
  })
})
