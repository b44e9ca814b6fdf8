/**
 * The Grafana dashboard (`dashboards/vm-metrics.json`) and the PromQL of `docs/prometheus.md` and
 * `docs/alerts.yml`:
 *
 * - the dashboard against Grafana's dashboard JSON Schema, generated here from `@grafana/schema`'s types
 *   (cached in the temp dir by version), and a broken copy against it, so the check can fail;
 * - end to end: a real busy process, a sleeping one with 0 allocated memory, a listed VM whose process
 *   does not exist, a starved one (a busy loop at nice 19 on the busy one's CPU; both name their thread like a
 *   vCPU) (and, as root, a real TAP with frames pushed through twice, and frames dropped on their way in) →
 *   the real collector (default groups and packets), readers
 *   and VmMetrics → `/metrics` → a real Prometheus scraping every second with `docs/alerts.yml` loaded and the
 *   `host` relabelling of `deploy/prometheus.yml`. Then every panel target with the
 *   template variables substituted as Grafana would, both template variable queries, every recipe of the
 *   doc and every alert rule run against it;
 * - `promtool check rules docs/alerts.yml`.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it, layer } from "@effect/vitest"
import type * as Collector from "@vm-metrics/core/Collector"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import type * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import {
  createTap,
  deleteTap,
  dropFrames,
  ipLinkStats,
  pushFrames,
  skipReason,
  spawnChild,
  statmRssBytes,
  stopChild,
  tapBytes,
  tempDir,
  waitFor
} from "@vm-metrics/testing"
import { Ajv, type ErrorObject } from "ajv"
import { Context, Effect, Layer } from "effect"
import { createGenerator } from "ts-json-schema-generator"
import * as AppConfig from "../src/AppConfig.js"
import * as Main from "../src/Main.js"
import {
  Exporter,
  exporterLayer,
  findPrometheus,
  instantQuery,
  request,
  type Series,
  startPrometheus,
  tapMissing
} from "./rig.js"

const ROOT = path.resolve(import.meta.dirname, "../../..")
const DASHBOARD_FILE = path.join(ROOT, "dashboards/vm-metrics.json")
const DOC_FILE = path.join(ROOT, "docs/prometheus.md")
const ALERTS_FILE = path.join(ROOT, "docs/alerts.yml")
const DEPLOY_PROMETHEUS_FILE = path.join(ROOT, "deploy/prometheus.yml")

/** `yaml` is a dependency of @vm-metrics/node (pnpm does not hoist it): load it as packages/node does. */
const YAML = createRequire(path.join(ROOT, "packages/node/package.json"))("yaml") as {
  readonly parse: (text: string) => unknown
}

interface ScrapeJob {
  readonly job_name: string
  readonly authorization?: { readonly type?: string; readonly credentials_file?: string }
  readonly relabel_configs?: ReadonlyArray<Readonly<Record<string, unknown>>>
}

/** The `vm-metrics` job of deploy/prometheus.yml. */
const deployedJob = (): ScrapeJob => {
  const config = YAML.parse(fs.readFileSync(DEPLOY_PROMETHEUS_FILE, "utf8")) as { scrape_configs: Array<ScrapeJob> }
  const jobs = config.scrape_configs.filter((job) => job.job_name === "vm-metrics")
  assert.lengthOf(jobs, 1, "one vm-metrics job in deploy/prometheus.yml")
  return jobs[0]!
}

/** The label deploy/prometheus.yml's relabelling writes the host into (`host`). */
const deployedHostLabel = (): string => {
  const targets = (deployedJob().relabel_configs ?? []).map((rule) => String(rule.target_label))
  assert.include(targets, "host", "deploy/prometheus.yml relabels a host label")
  return "host"
}

// ---------------------------------------------------------------------------------------------------
// The dashboard JSON, loosely typed: the schema check is what types it.

interface Target {
  readonly datasource?: unknown
  readonly expr: string
  readonly legendFormat?: string
  readonly refId: string
}

interface Panel {
  readonly id: number
  readonly type: string
  readonly title: string
  readonly datasource?: unknown
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number }
  readonly fieldConfig?: { readonly defaults: { readonly unit?: string; readonly min?: number; readonly max?: number } }
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
}

interface Variable {
  readonly name: string
  readonly type: string
  readonly query?: unknown
  readonly datasource?: unknown
  readonly multi?: boolean
  readonly includeAll?: boolean
  readonly allValue?: string
}

interface Dashboard {
  readonly uid: string
  readonly refresh: string
  readonly schemaVersion: number
  readonly templating: { readonly list: ReadonlyArray<Variable> }
  readonly panels: ReadonlyArray<Panel>
}

const readDashboard = (): Dashboard => JSON.parse(fs.readFileSync(DASHBOARD_FILE, "utf8")) as Dashboard

/** Every panel, rows' nested panels included, rows themselves excluded. */
const allPanels = (dashboard: Dashboard): ReadonlyArray<Panel> =>
  dashboard.panels.flatMap((panel) => (panel.type === "row" ? (panel.panels ?? []) : [panel]))

const allTargets = (dashboard: Dashboard) =>
  allPanels(dashboard).flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })))

/** Grafana's reference to the `datasource` variable (a Grafana placeholder, not a JS template). */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
const DATASOURCE_VARIABLE = "${datasource}"
const DATASOURCE = { type: "prometheus", uid: DATASOURCE_VARIABLE }

// ---------------------------------------------------------------------------------------------------
// Grafana's dashboard schema, generated from @grafana/schema's TypeScript types (test-rig §5)

const require = createRequire(import.meta.url)
const versionOfPackage = (name: string): string =>
  (JSON.parse(fs.readFileSync(require.resolve(`${name}/package.json`), "utf8")) as { version: string }).version

let schemaMemo: object | undefined
/**
 * The JSON Schema of `Dashboard` in `@grafana/schema`'s `raw/dashboard/x/types.gen.d.ts`, generated with
 * ts-json-schema-generator (`--no-type-check`), cached in the temp dir under both packages' versions (the
 * generation takes ~2 s; a cached copy ~10 ms). Written to a temporary name and renamed, so concurrent runs
 * never read half a file.
 */
const dashboardSchema = (): object => {
  if (schemaMemo !== undefined) return schemaMemo
  const grafana = versionOfPackage("@grafana/schema")
  const generator = versionOfPackage("ts-json-schema-generator")
  const cache = path.join(os.tmpdir(), `vm-metrics-grafana-dashboard-schema-${grafana}-tsjsg-${generator}.json`)
  try {
    schemaMemo = JSON.parse(fs.readFileSync(cache, "utf8")) as object
    return schemaMemo
  } catch {
    // not cached yet, or unreadable: generate it
  }
  const types = path.join(
    path.dirname(require.resolve("@grafana/schema/package.json")),
    "dist/types/raw/dashboard/x/types.gen.d.ts"
  )
  const schema = createGenerator({ path: types, type: "Dashboard", skipTypeCheck: true }).createSchema("Dashboard")
  const partial = `${cache}.${process.pid}.tmp`
  fs.writeFileSync(partial, JSON.stringify(schema))
  fs.renameSync(partial, cache)
  schemaMemo = schema
  return schema
}

const describeErrors = (errors: ReadonlyArray<ErrorObject> | null | undefined) =>
  (errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`).join("\n")

describe("dashboards/vm-metrics.json", () => {
  it("is valid against Grafana's Dashboard schema generated from @grafana/schema", () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(dashboardSchema())
    const valid = validate(readDashboard())
    assert.isTrue(valid, `schema errors:\n${describeErrors(validate.errors)}`)
  })

  it("a broken copy is invalid, so the check can fail", () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(dashboardSchema())
    const broken = JSON.parse(fs.readFileSync(DASHBOARD_FILE, "utf8"))
    delete broken.schemaVersion
    broken.panels[1].gridPos.w = "12"
    broken.templating.list[0].definition = "not a field of VariableModel"
    assert.isFalse(validate(broken))
    const errors = describeErrors(validate.errors)
    assert.include(errors, "must have required property 'schemaVersion'")
    assert.include(errors, "/panels/1/gridPos/w must be number")
    assert.include(errors, "/templating/list/0 must NOT have additional properties")
  })

  it("has the uid, refresh, schema version, variables, and the datasource variable everywhere", () => {
    const dashboard = readDashboard()
    assert.strictEqual(dashboard.uid, "vm-metrics-overview")
    assert.strictEqual(dashboard.refresh, "10s")
    assert.isAtLeast(dashboard.schemaVersion, 39)

    const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]))
    assert.deepStrictEqual([...variables.keys()], ["datasource", "host", "vm"])
    const datasource = variables.get("datasource")!
    assert.strictEqual(datasource.type, "datasource")
    assert.strictEqual(datasource.query, "prometheus")
    // The host variable lists the label deploy/prometheus.yml creates, and every panel filters on it.
    const host = variables.get("host")!
    assert.strictEqual(host.type, "query")
    assert.strictEqual(/^label_values\(\w+,\s*(\w+)\)$/.exec(String(host.query))?.[1], deployedHostLabel())
    const vm = variables.get("vm")!
    assert.strictEqual(vm.type, "query")
    assert.strictEqual(vm.query, 'label_values(hypeman_vm_allocated_vcpus{host=~"$host"}, instance_name)')
    for (const v of [host, vm]) {
      assert.isTrue(v.multi, v.name)
      assert.isTrue(v.includeAll, v.name)
      assert.deepStrictEqual(v.datasource, DATASOURCE, v.name)
    }

    // Every panel and target uses ${datasource}; no other data source uid appears anywhere.
    const panels = allPanels(dashboard)
    assert.isAtLeast(panels.length, 11)
    for (const panel of panels) {
      assert.deepStrictEqual(panel.datasource, DATASOURCE, panel.title)
      assert.isAbove(panel.targets?.length ?? 0, 0, `${panel.title} has no targets`)
      for (const target of panel.targets ?? []) assert.deepStrictEqual(target.datasource, DATASOURCE, panel.title)
    }
    const uids: Array<string> = []
    JSON.stringify(dashboard, (key, value) => {
      if (key === "uid") uids.push(value)
      return value
    })
    assert.deepStrictEqual([...new Set(uids)].sort(), [DATASOURCE_VARIABLE, "vm-metrics-overview"])

    // Unique ids, inside the 24-column grid.
    const ids = dashboard.panels.flatMap((p) => [p.id, ...(p.panels ?? []).map((n) => n.id)])
    assert.strictEqual(new Set(ids).size, ids.length, "panel ids are unique")
    for (const panel of panels) assert.isAtMost(panel.gridPos.x + panel.gridPos.w, 24, panel.title)

    // Only labels a plain scrape has (resource attributes live on target_info only); ratios not clipped.
    for (const { panel, target } of allTargets(dashboard)) {
      assert.notMatch(
        target.expr,
        /deployment_environment_name|service_instance_id|service_name|host_name/,
        panel.title
      )
    }
    for (const { panel, target } of allTargets(dashboard)) {
      assert.include(target.expr, 'host=~"$host"', `${panel.title} filters on the host label`)
      assert.notInclude(target.expr, 'instance=~"$host"', `${panel.title}: instance is host:port, not the host`)
      assert.notInclude(target.expr, "clamp_min", `${panel.title}: a 0 allocation is left out, not divided by 1`)
      assert.notInclude(target.legendFormat ?? "", "{{instance}}", `${panel.title}: legends name the host`)
    }
    for (const panel of panels.filter((p) => p.fieldConfig?.defaults.unit === "percentunit")) {
      assert.isUndefined(panel.fieldConfig?.defaults.max, `${panel.title} must not clip ratios`)
    }

    // The panels of the brief, by what they query.
    const exprs = allTargets(dashboard).map(({ target }) => target.expr)
    for (const wanted of [
      /^rate\(hypeman_vm_cpu_seconds_total\{[^}]*\}\[\$__rate_interval\]\)$/,
      /^rate\(hypeman_vm_cpu_seconds_total.* \/ on\(instance, instance_id\) group_left\(\) \(hypeman_vm_allocated_vcpus/,
      /^hypeman_vm_memory_rss_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_vms_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_rss_bytes.* \/ on\(instance, instance_id\) group_left\(\) \(hypeman_vm_allocated_memory_bytes\{[^}]*\} > 0\)$/,
      /^rate\(hypeman_vm_network_rx_bytes_total/,
      /^rate\(hypeman_vm_network_tx_bytes_total/,
      /hypeman_vm_metrics_collection_duration_seconds/,
      /rate\(hypeman_vm_metrics_read_errors_total/,
      /hypeman_vm_metrics_instances_observed/,
      /hypeman_vm_metrics_instances\{/,
      /hypeman_vm_metrics_label_budget_exceeded_total/,
      /hypeman_vm_metrics_source_errors_total/,
      // Inside the VM (the metric groups of issue 11).
      /^rate\(hypeman_vm_cpu_delay_seconds_total\{[^}]*\}\[\$__rate_interval\]\) \/ on\(instance, instance_id\) group_left\(\) \(hypeman_vm_allocated_vcpus\{[^}]*\} > 0\)$/,
      /^rate\(hypeman_vm_cpu_guest_seconds_total/,
      /^rate\(hypeman_vm_cpu_system_seconds_total/,
      /^hypeman_vm_memory_anon_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_file_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_shmem_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_hugetlb_bytes\{[^}]*\}$/,
      /^hypeman_vm_memory_swap_bytes\{[^}]*\}$/,
      /^rate\(hypeman_vm_major_page_faults_total/,
      /^rate\(hypeman_vm_disk_read_bytes_total/,
      /^rate\(hypeman_vm_disk_write_bytes_total/,
      /^rate\(hypeman_vm_network_rx_packets_total/,
      /^rate\(hypeman_vm_network_tx_packets_total/,
      /^rate\(hypeman_vm_network_rx_dropped_total/,
      /^rate\(hypeman_vm_network_tx_dropped_total/
    ]) {
      assert.isTrue(
        exprs.some((expr) => wanted.test(expr)),
        `no panel queries ${wanted}:\n${exprs.join("\n")}`
      )
    }
  })
})

// ---------------------------------------------------------------------------------------------------
// Prerequisites of the end-to-end part

const { prometheus, promtool } = findPrometheus()
const skipPrometheus = skipReason(
  prometheus === undefined ? "prometheus not found on PATH (apt-get install prometheus)" : undefined,
  "dashboard and PromQL end-to-end tests"
)
const skipPromtool = skipReason(
  promtool === undefined ? "promtool not found on PATH (apt-get install prometheus)" : undefined,
  "promtool check rules"
)

// ---------------------------------------------------------------------------------------------------
// The rig: two listed VMs, the real pipeline, /metrics, a real Prometheus with the rules loaded

/** The scrape job of the rig; docs/alerts.yml expects this name. */
const JOB = "vm-metrics"

/** A real busy process: a dash loop that never sleeps (so the starved VM beside it waits nearly always, whatever
 * the load on the host), at most one core of its 2 vCPUs, and only 1 MiB allocated,
 * so its RSS (~1.7 MB of dash) is above its allocation: the ratio panel must show it above 1, unclipped. */
const BUSY = { id: "dash-busy-1", name: "busy-1", vcpus: 2, memoryBytes: 1024 * 1024 }

/**
 * A listed VM whose process cannot exist (4194304 = 2^22 is PID_MAX_LIMIT, the kernel never hands it out,
 * and vm-metrics accepts it) and whose TAP does not exist: every collection counts read errors
 * stat/process_gone, statm/process_gone and tap/tap_missing, so the read-error panel has series.
 */
const GHOST = { id: "dash-ghost-1", name: "ghost-1", pid: 4_194_304, vcpus: 1, memoryBytes: 256 * 1024 * 1024 }

/** A real sleeping process whose allocated memory is unknown (0): every ratio must leave it out. */
const ZERO = { id: "dash-zero-1", name: "zero-1", vcpus: 1, memoryBytes: 0 }

/**
 * A starved VM: a shell whose one thread is named like a vCPU (`vcpu0`), spinning at nice 19 on the CPU the
 * busy VM is pinned to. The busy shell is always runnable, so it waits nearly always (nice 19 weighs 15 against
 * 1024): its vCPU delay per vCPU is far above the starvation alert's 10 %.
 */
const STARVED = { id: "dash-starved-1", name: "starved-1", vcpus: 1, memoryBytes: 256 * 1024 * 1024 }

/** How many VMs the rig lists, and how many of them run. */
const LISTED = 4
const RUNNING = 3

/** The first CPU this process may run on (both the busy and the starved VM are pinned to it). */
const firstCpu = (): number => {
  const allowed = /^Cpus_allowed_list:\s*(\d+)/m.exec(fs.readFileSync("/proc/self/status", "utf8"))
  return Number(allowed?.[1] ?? 0)
}

/** Every third listing fails, so the source-error panel and alert have data (the last good listing is read). */
const SOURCE_FAILS_EVERY = 3

/** With three instances listed, a budget of 1 is exceeded at the first collection: one transition. */
const LABEL_BUDGET = 1

/** What each rule of docs/alerts.yml does in this rig. */
const ALERT_STATES = new Map<string, "inactive" | "pending" | "firing">([
  ["VmCpuSaturated", "inactive"], // one shell on 2 vCPUs: ≤ 0.5, and [5m] over a few seconds of samples
  ["VmRssAboveAllocation", "pending"], // BUSY's RSS > its 1 MiB (for: 10m)
  ["VmVcpuStarved", "pending"], // STARVED waits most of the time (for: 5m)
  ["VmSwapping", "inactive"], // nothing is swapped out
  ["VmGuestReceiveBackpressure", "pending"], // as root, frames dropped into BUSY's TAP (for: 5m); else no TAP
  ["VmMetricsReadErrors", "pending"], // GHOST (for: 10m)
  ["VmMetricsSourceErrors", "pending"], // SOURCE_FAILS_EVERY (for: 5m)
  ["VmMetricsLabelBudgetExceeded", "firing"], // born at 1, no for
  ["VmMetricsDown", "inactive"],
  ["VmMetricsAbsent", "inactive"]
])

describe.skipIf(skipPromtool)("docs/alerts.yml", () => {
  it("passes `promtool check rules`", () => {
    const result = spawnSync(promtool!, ["check", "rules", ALERTS_FILE], { encoding: "utf8", timeout: 10_000 })
    const output = `${result.stdout}${result.stderr}`
    assert.strictEqual(result.status, 0, output)
    assert.include(output, `SUCCESS: ${ALERT_STATES.size} rules found`)
  })

  it("the doc's scrape configuration passes `promtool check config`, with the token and deploy's host relabelling", () => {
    const yaml = [...fs.readFileSync(DOC_FILE, "utf8").matchAll(/^```yaml\n(scrape_configs:[\s\S]*?)^```$/gm)]
    assert.lengthOf(yaml, 1, "one scrape_configs block")
    const job = (YAML.parse(yaml[0]![1]!) as { scrape_configs: Array<ScrapeJob> }).scrape_configs[0]!
    // /metrics needs the token when the agent has one: the doc's job sends it.
    assert.strictEqual(job.authorization?.type, "Bearer")
    const credentials = job.authorization?.credentials_file
    assert.isString(credentials)
    assert.deepStrictEqual(job.relabel_configs, deployedJob().relabel_configs, "the same host label as deploy/")
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-dash-config-"))
    try {
      const file = path.join(dir, "prometheus.yml")
      // promtool checks that the credentials file exists: point it at one here.
      const tokenFile = path.join(dir, "vm-metrics.token")
      fs.writeFileSync(tokenFile, "token\n")
      fs.writeFileSync(file, yaml[0]![1]!.replace(credentials!, tokenFile))
      const result = spawnSync(promtool!, ["check", "config", file], { encoding: "utf8", timeout: 10_000 })
      assert.strictEqual(result.status, 0, `${result.stdout}${result.stderr}`)
      assert.include(yaml[0]![1], `job_name: ${JOB} `, "the job name the alert rules expect")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("is included verbatim in docs/prometheus.md", () => {
    const yaml = [...fs.readFileSync(DOC_FILE, "utf8").matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1])
    assert.include(yaml, fs.readFileSync(ALERTS_FILE, "utf8"))
  })
})

class Rig extends Context.Tag("e2e/DashboardRig")<
  Rig,
  {
    readonly busyPid: number
    readonly zeroPid: number
    /** Undefined when TAPs cannot be created here (not root). */
    readonly tap: string | undefined
    readonly infos: ReadonlyArray<InstanceInfo>
  }
>() {}

const rigVmsLayer = Layer.scoped(
  Rig,
  Effect.gen(function* () {
    const cpu = firstCpu()
    // Each names its one thread like a Cloud Hypervisor vCPU thread, so its run-queue delay is read.
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawnChild(`printf vcpu0 > /proc/$$/comm; taskset -cp ${cpu} $$ > /dev/null; while :; do :; done`)
      ),
      (child) => Effect.promise(() => stopChild(child))
    )
    const starved = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawnChild(
          `printf vcpu0 > /proc/$$/comm; renice -n 19 -p $$ > /dev/null; taskset -cp ${cpu} $$ > /dev/null; while :; do :; done`
        )
      ),
      (child) => Effect.promise(() => stopChild(child))
    )
    const sleeper = yield* Effect.acquireRelease(
      Effect.sync(() => spawnChild("exec sleep 300")),
      (child) => Effect.promise(() => stopChild(child))
    )
    const suffix = String(process.pid % 100000)
    const ghostTap = `vmmg${suffix}`
    if (fs.existsSync(`/sys/class/net/${ghostTap}`))
      throw new Error(`${ghostTap} exists, the ghost VM needs a missing TAP`)
    let tap: string | undefined
    if (tapMissing === undefined) {
      tap = yield* Effect.acquireRelease(
        Effect.sync(() => createTap(`vmmd${suffix}`)),
        (name) => Effect.sync(() => deleteTap(name))
      )
      const pushed = pushFrames(tap, 7, 300, 5)
      if (pushed.received_by_guest !== 5) throw new Error(`the TAP delivered ${pushed.received_by_guest} of 5 frames`)
    }
    const infos: ReadonlyArray<InstanceInfo> = [
      {
        id: BUSY.id,
        name: BUSY.name,
        hypervisorPid: child.pid,
        ...(tap === undefined ? {} : { tapDevice: tap }),
        allocatedVcpus: BUSY.vcpus,
        allocatedMemoryBytes: BUSY.memoryBytes
      },
      {
        id: GHOST.id,
        name: GHOST.name,
        hypervisorPid: GHOST.pid,
        tapDevice: ghostTap,
        allocatedVcpus: GHOST.vcpus,
        allocatedMemoryBytes: GHOST.memoryBytes
      },
      {
        id: ZERO.id,
        name: ZERO.name,
        hypervisorPid: sleeper.pid,
        allocatedVcpus: ZERO.vcpus,
        allocatedMemoryBytes: ZERO.memoryBytes
      },
      {
        id: STARVED.id,
        name: STARVED.name,
        hypervisorPid: starved.pid,
        allocatedVcpus: STARVED.vcpus,
        allocatedMemoryBytes: STARVED.memoryBytes
      }
    ]
    return { busyPid: child.pid, zeroPid: sleeper.pid, tap, infos }
  }).pipe(Effect.orDie)
)

/**
 * The real collector over the real Linux readers, VmMetrics on top (label budget 1). Not rig.ts's
 * pipelineLayer, which lists exactly one TestVm: this rig lists two VMs and a source that sometimes fails.
 */
const rigPipelineLayer: Layer.Layer<VmMetrics.VmMetrics | Collector.Collector, never, Rig> = Layer.unwrapEffect(
  Effect.map(Rig, ({ infos }) => {
    let listings = 0
    const list = Effect.suspend(() =>
      ++listings % SOURCE_FAILS_EVERY === 0
        ? Effect.fail(new InstanceSourceError({ reason: "injected by the dashboard test" }))
        : Effect.succeed(infos)
    )
    return Main.layerPipeline(
      {
        maxAge: "500 millis",
        groups: new Set([...AppConfig.defaults.groups, "packets"]),
        metrics: { ...AppConfig.defaults.metrics, labelBudget: LABEL_BUDGET }
      },
      { source: InstanceSource.layerEffect(list) }
    ).pipe(Layer.orDie)
  })
)

class PrometheusServer extends Context.Tag("e2e/DashboardPrometheus")<
  PrometheusServer,
  {
    readonly base: string
    readonly target: string
    /** The host label the relabelling gives the target: its address without the port. */
    readonly host: string
  }
>() {}

const numberOf = (series: Series) => Number(series.value[1])

/** Samples Prometheus holds for the exporter in the last minute. */
const samplesStored = async (base: string): Promise<number> => {
  const series = await instantQuery(base, `count_over_time(hypeman_vm_metrics_instances_observed{job="${JOB}"}[1m])`)
  return series === undefined ? 0 : Number(series[0]!.value[1])
}

/**
 * A real Prometheus scraping the exporter every second and evaluating docs/alerts.yml every second. The layer
 * is ready when Prometheus holds at least 7 samples (6 s) and, as root, a second push of frames through the
 * TAP (the first was before the first scrape) is stored, so a rate over the last 10 s sees the counters move.
 */
const rigPrometheusLayer = Layer.scoped(
  PrometheusServer,
  Effect.gen(function* () {
    const exporter = yield* Exporter
    const rig = yield* Rig
    const dir = yield* tempDir("vm-metrics-dash-")
    const target = `127.0.0.1:${exporter.port}`
    const config = path.join(dir, "prom.yml")
    fs.writeFileSync(
      config,
      [
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}",
        `rule_files: [${JSON.stringify(ALERTS_FILE)}]`,
        // The relabelling as deployed: every series gets host = the target's address without the port.
        `scrape_configs: ${JSON.stringify([
          {
            job_name: JOB,
            metrics_path: "/metrics",
            static_configs: [{ targets: [target] }],
            relabel_configs: deployedJob().relabel_configs
          }
        ])}`,
        ""
      ].join("\n")
    )
    const { base, server } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
    // Prometheus 2.42 applies new targets after ~5 s.
    yield* waitFor("7 samples (6 s) in Prometheus", async () => ((await samplesStored(base)) >= 7 ? true : undefined), {
      timeout: "25 seconds",
      gone: server.gone,
      details: server.output
    })
    if (rig.tap !== undefined) {
      // The second push, stored by Prometheus: a rate over the last 10 s sees the counters move.
      const pushed = pushFrames(rig.tap, 11, 500, 9)
      if (pushed.received_by_guest !== 9) throw new Error(`the TAP delivered ${pushed.received_by_guest} of 9 frames`)
      // Frames into the TAP that the "guest" never reads: dropped on their way in (backpressure).
      dropFrames(rig.tap, 20, 100)
      const vmRxDropped = Number(ipLinkStats(rig.tap).tx.dropped)
      if (vmRxDropped === 0) throw new Error("no frame was dropped on its way into the TAP")
      const { vmRx, vmTx } = tapBytes(rig.tap)
      yield* waitFor(
        "the second push of frames and the drops in Prometheus",
        async () => {
          const rx = await instantQuery(base, `hypeman_vm_network_rx_bytes_total{instance_id="${BUSY.id}"}`)
          const tx = await instantQuery(base, `hypeman_vm_network_tx_bytes_total{instance_id="${BUSY.id}"}`)
          const dropped = await instantQuery(base, `hypeman_vm_network_rx_dropped_total{instance_id="${BUSY.id}"}`)
          return rx !== undefined &&
            tx !== undefined &&
            dropped !== undefined &&
            numberOf(rx[0]!) === vmRx &&
            numberOf(tx[0]!) === vmTx &&
            numberOf(dropped[0]!) === vmRxDropped
            ? true
            : undefined
        },
        { timeout: "10 seconds", gone: server.gone, details: server.output }
      )
    }
    return { base, target, host: "127.0.0.1" }
  })
)

const rig = rigPrometheusLayer.pipe(
  Layer.provideMerge(exporterLayer),
  Layer.provideMerge(rigPipelineLayer),
  Layer.provideMerge(rigVmsLayer)
)

// ---------------------------------------------------------------------------------------------------
// Grafana's variable interpolation, as far as these queries need it

/** Grafana's regex escaping of a multi-value variable's value inside a PromQL string (`.` → `\\.`). */
const grafanaRegexEscape = (value: string) => value.replace(/\\/g, "\\\\\\\\").replace(/[$^*{}[\]'+?.()|]/g, "\\\\$&")

interface Selection {
  readonly host: string
  readonly vm: string
}

const interpolate = (expr: string, selection: Selection): string => {
  const out = expr
    .replace(/\$\{datasource\}|\$datasource\b/g, "prometheus")
    .replace(/\$\{host\}|\$host\b/g, selection.host)
    .replace(/\$\{vm\}|\$vm\b/g, selection.vm)
    // Wide enough for a scrape or two missed on a loaded machine (a source error comes every 3 s).
    .replace(/\$\{__rate_interval\}|\$__rate_interval\b/g, "10s")
    .replace(/\$\{__interval\}|\$__interval\b/g, "1s")
  assert.notInclude(out, "$", `an unknown variable is left in ${out}`)
  return out
}

/** The label names a legend format refers to (`{{instance_name}} RX` → instance_name). */
const legendLabels = (legend: string | undefined) =>
  [...(legend ?? "").matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1]!)

const find = (series: ReadonlyArray<Series>, labels: Readonly<Record<string, string>>) =>
  series.find((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v))

/** The PromQL of docs/prometheus.md: every ```promql block; `condition` blocks may be empty when all is well. */
const docQueries = () =>
  [...fs.readFileSync(DOC_FILE, "utf8").matchAll(/^```promql( condition)?\n([\s\S]*?)^```$/gm)].map((m) => ({
    query: m[2]!.trim(),
    condition: m[1] !== undefined
  }))

const isNetwork = (query: string) => /hypeman_vm_network_/.test(query)

describe.skipIf(skipPrometheus)("the dashboard, the recipes and the alerts against a real Prometheus", () => {
  layer(rig, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("every panel target returns sane series, for All and for one host and VM", () =>
      Effect.gen(function* () {
        const { base, target: scrapeTarget, host } = yield* PrometheusServer
        const { busyPid, zeroPid, tap } = yield* Rig
        const hostCores = os.availableParallelism()
        const selections: ReadonlyArray<Selection & { readonly label: string }> = [
          { label: "All", host: ".*", vm: ".*" },
          { label: "one host, one VM", host: grafanaRegexEscape(host), vm: grafanaRegexEscape(BUSY.name) }
        ]
        const targets = allTargets(readDashboard())
        for (const selection of selections) {
          for (const { panel, target } of targets) {
            const expr = interpolate(target.expr, selection)
            const what = `${panel.title} [${target.refId}] (${selection.label}): ${expr}`
            const series = yield* Effect.promise(() => instantQuery(base, expr)) // throws on an invalid query
            if (series === undefined && isNetwork(expr) && tap === undefined) {
              yield* Effect.log(`no network series without a TAP (not root): ${what}`)
              continue
            }
            assert.isDefined(series, `no series: ${what}`)
            const perVm = /instance_name=~/.test(target.expr)
            for (const s of series!) {
              const value = numberOf(s)
              const where = `${what} → ${JSON.stringify(s)}`
              assert.isTrue(Number.isFinite(value), `not finite: ${where}`)
              assert.isAtLeast(value, 0, where)
              for (const label of legendLabels(target.legendFormat)) {
                assert.property(s.metric, label, `legend ${target.legendFormat} needs ${label}: ${where}`)
              }
              if (selection.host !== ".*") {
                assert.strictEqual(s.metric.host ?? host, host, where) // aggregations drop it
                assert.strictEqual(s.metric.instance ?? scrapeTarget, scrapeTarget, where)
              }
              if (perVm && selection.vm !== ".*") assert.strictEqual(s.metric.instance_name, BUSY.name, where)
              if (panel.fieldConfig?.defaults.unit === "s") assert.isBelow(value, 5, where)
            }
            const busy = () => {
              const found = find(series!, { instance_name: BUSY.name })
              assert.isDefined(found, `no series of ${BUSY.name}: ${what}`)
              return numberOf(found!)
            }
            // What each panel must show in this rig, by what it queries.
            if (/^rate\(hypeman_vm_cpu_seconds_total\{[^}]*\}\[10s\]\)$/.test(expr)) {
              for (const s of series!) assert.isAtMost(numberOf(s), hostCores, `cores ≤ host cores: ${what}`)
              assert.isAbove(busy(), 0, `the busy VM uses CPU: ${what}`)
              assert.isAtMost(busy(), 1.05, `one single-threaded shell uses at most one core: ${what}`)
            } else if (/hypeman_vm_cpu_seconds_total.*hypeman_vm_allocated_vcpus/.test(expr)) {
              assert.isAbove(busy(), 0, what)
              assert.isAtMost(busy(), hostCores / BUSY.vcpus, what)
            } else if (/^hypeman_vm_memory_rss_bytes\{[^}]*\}$/.test(expr)) {
              // The busy VM's RSS in bytes, as the kernel counts it now (a dash loop's RSS hardly moves).
              assert.closeTo(busy(), statmRssBytes(busyPid), statmRssBytes(busyPid) * 0.25, what)
              assert.isUndefined(
                find(series!, { instance_name: GHOST.name }),
                `no memory series of a gone process: ${what}`
              )
            } else if (/^hypeman_vm_memory_vms_bytes\{[^}]*\}$/.test(expr)) {
              assert.isAbove(busy(), 0, what)
              assert.isUndefined(
                find(series!, { instance_name: GHOST.name }),
                `no memory series of a gone process: ${what}`
              )
            } else if (/hypeman_vm_memory_rss_bytes.*\/.*hypeman_vm_allocated_memory_bytes/.test(expr)) {
              assert.isAbove(busy(), 1, `RSS above a 1 MiB allocation, not clipped at 1: ${what}`)
              // A VM with 0 allocated memory has no ratio (the alerts' `> 0`), not its RSS divided by 1.
              assert.isAbove(statmRssBytes(zeroPid), 0, "the zero-allocation VM is resident")
              assert.isUndefined(find(series!, { instance_name: ZERO.name }), `no ratio for 0 allocated: ${what}`)
              for (const s of series!) assert.isBelow(numberOf(s), 1000, `a sane ratio: ${JSON.stringify(s)}`)
            } else if (/hypeman_vm_cpu_delay_seconds_total.*hypeman_vm_allocated_vcpus/.test(expr)) {
              // Every VM whose thread is named like a vCPU has a delay; a sleep has no vCPU thread.
              busy()
              assert.isUndefined(find(series!, { instance_name: ZERO.name }), `no vCPU thread, no delay: ${what}`)
              if (selection.vm === ".*") {
                const starved = find(series!, { instance_name: STARVED.name })
                assert.isDefined(starved, `the starved VM: ${what}`)
                assert.isAbove(numberOf(starved!), 0.1, `it waits for its CPU most of the time: ${what}`)
                assert.isAtMost(numberOf(starved!), 1.05, `at most all of the time: ${what}`)
              }
            } else if (/^hypeman_vm_memory_(anon|file)_bytes/.test(expr)) {
              // A shell is resident: anonymous and file-backed pages, together at most its RSS.
              assert.isAbove(busy(), 0, what)
              assert.isAtMost(busy(), statmRssBytes(busyPid) * 1.25, what)
            } else if (isNetwork(expr)) {
              assert.isAbove(busy(), 0, `frames pushed (and dropped) within the last 10 s: ${what}`)
            } else if (/hypeman_vm_metrics_read_errors_total/.test(expr)) {
              for (const [source, reason] of [
                ["stat", "process_gone"],
                ["statm", "process_gone"],
                ["tap", "tap_missing"]
              ] as const) {
                const errors = find(series!, { source, reason })
                assert.isDefined(errors, `${source}/${reason}: ${what}`)
                assert.isAbove(numberOf(errors!), 0, `${source}/${reason} per second: ${what}`)
              }
            } else if (/hypeman_vm_metrics_source_errors_total/.test(expr)) {
              assert.isAbove(numberOf(series![0]!), 0, `every ${SOURCE_FAILS_EVERY}rd listing fails: ${what}`)
            } else if (/hypeman_vm_metrics_instances_observed/.test(expr)) {
              assert.strictEqual(numberOf(series![0]!), LISTED, what)
            } else if (/hypeman_vm_metrics_instances\{/.test(expr)) {
              const byState = Object.fromEntries(series!.map((s) => [s.metric.state, numberOf(s)]))
              assert.deepStrictEqual(byState, { running: RUNNING, exited: 1, "no-process": 0, unknown: 0 }, what)
            } else if (/hypeman_vm_metrics_label_budget_exceeded_total/.test(expr)) {
              assert.strictEqual(
                numberOf(series![0]!),
                1,
                `${LISTED} instances over a budget of ${LABEL_BUDGET}: ${what}`
              )
            }
          }
        }
      })
    )

    it.effect("the host variable lists the host label of deploy/prometheus.yml; the vm variable the VM names", () =>
      Effect.gen(function* () {
        const { base, host } = yield* PrometheusServer
        const variables = new Map(readDashboard().templating.list.map((v) => [v.name, v]))
        /** label_values(selector, label) the way Grafana's Prometheus data source runs it. */
        const labelValues = (query: string) =>
          Effect.promise(async () => {
            const parsed = /^label_values\((.+),\s*(\w+)\)$/.exec(interpolate(query, { host: ".*", vm: ".*" }))
            assert.isNotNull(parsed, query)
            const url = `${base}/api/v1/label/${parsed![2]}/values?match[]=${encodeURIComponent(parsed![1]!)}`
            const { status, body } = await request(url)
            assert.strictEqual(status, 200, body)
            return (JSON.parse(body) as { data: Array<string> }).data
          })
        assert.deepStrictEqual(yield* labelValues(String(variables.get("host")!.query)), [host])
        assert.deepStrictEqual(yield* labelValues(String(variables.get("vm")!.query)), [
          BUSY.name,
          GHOST.name,
          STARVED.name,
          ZERO.name
        ])
        // The doc names the same variable queries.
        const doc = fs.readFileSync(DOC_FILE, "utf8")
        for (const name of ["host", "vm"]) assert.include(doc, String(variables.get(name)!.query))
      })
    )

    it.effect("every ```promql recipe of docs/prometheus.md is valid and returns series", () =>
      Effect.gen(function* () {
        const { base } = yield* PrometheusServer
        const { tap } = yield* Rig
        const queries = docQueries()
        assert.isAtLeast(queries.length, 12, "the doc's recipes")
        assert.isTrue(
          queries.some((q) => q.condition),
          "a condition block"
        )
        for (const { query, condition } of queries) {
          const series = yield* Effect.promise(() => instantQuery(base, query)) // throws on an invalid query
          if (condition) continue // valid is all a condition must be while all is well
          if (series === undefined && isNetwork(query) && tap === undefined) {
            yield* Effect.log(`no network series without a TAP (not root): ${query}`)
            continue
          }
          assert.isDefined(series, `no series: ${query}`)
          for (const s of series!) {
            assert.isTrue(Number.isFinite(numberOf(s)), `${query} → ${JSON.stringify(s)}`)
            assert.isAtLeast(numberOf(s), 0, `${query} → ${JSON.stringify(s)}`)
          }
        }
      })
    )

    it.effect("Prometheus evaluates every rule of docs/alerts.yml, and the rig's alerts are the expected ones", () =>
      Effect.gen(function* () {
        const { base } = yield* PrometheusServer
        const { tap } = yield* Rig
        // Without a TAP (not root) there is no drop to alert on.
        const expected = (name: string) =>
          name === "VmGuestReceiveBackpressure" && tap === undefined ? "inactive" : ALERT_STATES.get(name)
        interface Rule {
          readonly name: string
          readonly query: string
          readonly state: string
          readonly health: string
          readonly lastError?: string
          readonly lastEvaluation: string
        }
        const rulesNow = async () => {
          const { status, body } = await request(`${base}/api/v1/rules?type=alert`)
          assert.strictEqual(status, 200, body)
          const groups = (JSON.parse(body) as { data: { groups: Array<{ rules: Array<Rule> }> } }).data.groups
          return groups.flatMap((g) => g.rules)
        }
        // Rules are evaluated every second; wait until each is healthy and in its expected state.
        let last: ReadonlyArray<Rule> = []
        const rules = yield* waitFor(
          "every alert rule healthy and in its expected state",
          async () => {
            last = await rulesNow()
            return last.length === ALERT_STATES.size &&
              last.every((r) => r.health === "ok" && expected(r.name) === r.state)
              ? last
              : undefined
          },
          { timeout: "15 seconds" }
        ).pipe(
          Effect.catchAllDefect((defect) =>
            Effect.die(new Error(`${String(defect)}\nrules: ${JSON.stringify(last, null, 1)}`))
          )
        )
        assert.deepStrictEqual(
          rules.map((r) => r.name),
          [...ALERT_STATES.keys()]
        )
        for (const rule of rules) {
          assert.strictEqual(rule.lastError ?? "", "", rule.name)
          // The condition with its threshold, through the query API at the instant the rule was evaluated
          // (a later instant may see other data): firing/pending ⇔ series.
          const withThreshold = yield* Effect.promise(() => instantQuery(base, rule.query, rule.lastEvaluation))
          const active = expected(rule.name) !== "inactive"
          assert.strictEqual(withThreshold !== undefined, active, `${rule.name}: ${rule.query}`)
          // Without the threshold (the part before a final `<op> <number>`): the signal exists in this rig.
          const final = /^([\s\S]*?)\s*(?:==|!=|>=|<=|>|<)\s*-?\d+(?:\.\d+)?\s*$/.exec(rule.query)
          if (final === null) continue // VmMetricsLabelBudgetExceeded (an `or`) and VmMetricsAbsent (absent())
          const signal = yield* Effect.promise(() => instantQuery(base, final[1]!, rule.lastEvaluation))
          if (signal === undefined && isNetwork(final[1]!) && tap === undefined) {
            yield* Effect.log(`no network series without a TAP (not root): ${rule.name}`)
            continue
          }
          assert.isDefined(signal, `${rule.name} without threshold: ${final[1]}`)
          for (const s of signal!)
            assert.isTrue(Number.isFinite(numberOf(s)) && numberOf(s) >= 0, `${rule.name}: ${JSON.stringify(s)}`)
        }
      })
    )
  })
})
