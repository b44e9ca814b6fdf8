/**
 * Metric groups in the export: which families each group adds (names, kinds, units, labels), values
 * converted exactly (µs and ns to seconds, bytes as exact integers), a group that is off exports nothing,
 * the Prometheus text and the OTel producer agree, and the label budget counts series and drops groups
 * opt-in first, never the seed's.
 */
import { assert, describe, it } from "@effect/vitest"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics"
import * as Collector from "@vm-metrics/core/Collector"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import { allGroups, defaultGroups, type MetricGroup } from "@vm-metrics/core/MetricGroup"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { noGroupValues, type VmStats } from "@vm-metrics/core/VmStats"
import { Effect, Layer, Logger, LogLevel } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import { countSeries, labeledFamilies, vmFamilies } from "../src/Catalog.js"
import * as LabelBudget from "../src/LabelBudget.js"
import * as MetricOptions from "../src/MetricOptions.js"
import { toScopeMetrics } from "../src/OtelData.js"
import * as OtelValue from "../src/OtelValue.js"
import { makeRenderer } from "../src/PrometheusText.js"
import * as VmMetrics from "../src/VmMetrics.js"
import { vm as fixtureVm, makeWorld, parseExposition } from "./fixtures.js"

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

const options = (groups: Iterable<MetricGroup>) => ({ ...MetricOptions.defaults, groups: new Set(groups) })

/** A VM with every group's value read; `n` shifts the values so VMs differ. */
const vmStats = (id: string, n: number, over: Partial<VmStats> = {}): VmStats => ({
  instanceId: id,
  instanceName: `name-${id}`,
  state: "running",
  pid: 100 + n,
  tapDevice: `tap-${id}`,
  processStartTicks: 500n,
  processStartTimeMs: 1_700_000_005_000,
  seriesStartTimeMs: 1_700_000_005_000,
  epoch: 0,
  sampledAtMs: 1_700_000_100_000,
  cpuUsec: 3_000_000n + BigInt(n),
  guestUsec: 2_500_000n,
  memoryRssBytes: 4096n,
  memoryVmsBytes: 8192n,
  netRxBytes: 10n,
  netTxBytes: 20n,
  allocatedVcpus: 2,
  allocatedMemoryBytes: 1024 ** 3,
  unavailable: [],
  ...noGroupValues,
  systemUsec: 250_000n,
  cpuDelayNs: 1_500_000_001n,
  majorFaults: 7n,
  memoryAnonBytes: 1000n,
  memoryFileBytes: 2000n,
  memoryShmemBytes: 3000n,
  memorySwapBytes: 2n ** 53n + 1n,
  memoryHugetlbBytes: 2n * 1024n ** 3n,
  diskReadBytes: 11n,
  diskWriteBytes: 12n,
  netRxPackets: 13n,
  netTxPackets: 14n,
  netRxErrors: 15n,
  netTxErrors: 16n,
  netRxDropped: 17n,
  netTxDropped: 18n,
  vcpus: [
    { vcpu: 0, tid: 200, runNs: 1_000_000_000n, delayNs: 250_000_000n, seriesStartTimeMs: 1_700_000_005_000 },
    { vcpu: 1, tid: 301, runNs: 2_000_000_000n, delayNs: 1_250_000_001n, seriesStartTimeMs: 1_700_000_090_000 }
  ],
  interfaces: [
    {
      name: `tap-${id}`,
      via: "sysfs",
      rxBytes: 10n,
      txBytes: 20n,
      rxPackets: 1n,
      txPackets: 2n,
      rxErrors: 0n,
      txErrors: 0n,
      rxDropped: 3n,
      txDropped: 0n
    },
    {
      name: "eth1",
      via: "netns",
      rxBytes: 0n,
      txBytes: 2n ** 64n - 1n,
      rxPackets: null,
      txPackets: 5n,
      rxErrors: 0n,
      txErrors: 0n,
      rxDropped: 0n,
      txDropped: 0n
    }
  ],
  ...over
})

const snapshotOf = (stats: ReadonlyArray<VmStats>, sequence = 1): Collector.Snapshot => ({
  sequence,
  sampledAtMs: 1_700_000_100_000,
  durationMs: 1,
  stats,
  sourceError: null,
  sourceErrorsTotal: 0,
  sourceIgnored: [],
  unavailableTotals: []
})

const noCounts = { budgetTransitions: 0, dropped: [] }

const render = (groups: Iterable<MetricGroup>, stats: ReadonlyArray<VmStats>) =>
  parseExposition(makeRenderer(options(groups), { "service.name": "t" })(snapshotOf(stats), noCounts))

const familiesIn = (samples: Map<string, string>) =>
  new Set(
    [...samples.keys()]
      .map((key) => key.slice(0, key.indexOf("{")))
      .filter((n) => n.startsWith("hypeman_vm_") && !n.includes("_metrics_"))
  )

const SEED = [
  "hypeman_vm_cpu_seconds_total",
  "hypeman_vm_allocated_vcpus",
  "hypeman_vm_memory_rss_bytes",
  "hypeman_vm_memory_vms_bytes",
  "hypeman_vm_allocated_memory_bytes",
  "hypeman_vm_network_rx_bytes_total",
  "hypeman_vm_network_tx_bytes_total",
  "hypeman_vm_memory_utilization_ratio"
]

const BY_GROUP: Record<MetricGroup, ReadonlyArray<string>> = {
  cpu: [
    "hypeman_vm_cpu_guest_seconds_total",
    "hypeman_vm_cpu_system_seconds_total",
    "hypeman_vm_cpu_delay_seconds_total"
  ],
  memory: [
    "hypeman_vm_memory_anon_bytes",
    "hypeman_vm_memory_file_bytes",
    "hypeman_vm_memory_shmem_bytes",
    "hypeman_vm_memory_swap_bytes",
    "hypeman_vm_memory_hugetlb_bytes"
  ],
  disk: ["hypeman_vm_disk_read_bytes_total", "hypeman_vm_disk_write_bytes_total"],
  network: ["hypeman_vm_network_rx_dropped_total", "hypeman_vm_network_tx_dropped_total"],
  packets: [
    "hypeman_vm_network_rx_packets_total",
    "hypeman_vm_network_tx_packets_total",
    "hypeman_vm_network_rx_errors_total",
    "hypeman_vm_network_tx_errors_total",
    "hypeman_vm_major_page_faults_total"
  ],
  vcpu: ["hypeman_vm_vcpu_seconds_total", "hypeman_vm_vcpu_delay_seconds_total"],
  interfaces: ["rx", "tx"].flatMap((d) =>
    ["bytes", "packets", "errors", "dropped"].map((w) => `hypeman_vm_network_interface_${d}_${w}_total`)
  )
}

describe("metric groups in the export", () => {
  it("each group adds exactly its families; a group that is off adds none; the seed is always there", () => {
    const vm = vmStats("a", 0)
    assert.deepStrictEqual(familiesIn(render([], [vm]).samples), new Set(SEED))
    for (const group of allGroups) {
      assert.deepStrictEqual(familiesIn(render([group], [vm]).samples), new Set([...SEED, ...BY_GROUP[group]]), group)
    }
    const all = familiesIn(render(allGroups, [vm]).samples)
    assert.strictEqual(all.size, SEED.length + Object.values(BY_GROUP).flat().length)
  })

  it("the default groups add 12 series per VM, none per vCPU or NIC", () => {
    const one = render(defaultGroups, [vmStats("a", 0)]).samples
    const seedOnly = render([], [vmStats("a", 0)]).samples
    const perVm = (samples: Map<string, string>) => [...samples.keys()].filter((k) => k.includes('instance_id="a"'))
    assert.strictEqual(perVm(one).length - perVm(seedOnly).length, 12)
    const counted = countSeries(options(defaultGroups), [vmStats("a", 0)])
    for (const group of defaultGroups) assert.strictEqual(counted.groups.get(group), BY_GROUP[group].length, group)
  })

  it("values: seconds from µs and ns, bytes and counts exact (also above 2^53), per-vCPU and per-NIC labels", () => {
    const { samples, meta } = render(allGroups, [vmStats("a", 0)])
    const at = (name: string, extra = "") =>
      samples.get(`${name}{instance_id="a",instance_name="name-a"${extra === "" ? "" : `,${extra}`}}`)
    assert.strictEqual(at("hypeman_vm_cpu_guest_seconds_total"), "2.5")
    assert.strictEqual(at("hypeman_vm_cpu_system_seconds_total"), "0.25")
    assert.strictEqual(at("hypeman_vm_cpu_delay_seconds_total"), "1.500000001")
    assert.strictEqual(at("hypeman_vm_memory_swap_bytes"), "9007199254740993")
    assert.strictEqual(at("hypeman_vm_memory_hugetlb_bytes"), String(2 * 1024 ** 3))
    assert.strictEqual(at("hypeman_vm_major_page_faults_total"), "7")
    assert.strictEqual(at("hypeman_vm_network_rx_dropped_total"), "17")
    assert.strictEqual(at("hypeman_vm_vcpu_seconds_total", 'vcpu="1"'), "2")
    assert.strictEqual(at("hypeman_vm_vcpu_delay_seconds_total", 'vcpu="0"'), "0.25")
    assert.strictEqual(at("hypeman_vm_vcpu_delay_seconds_total", 'vcpu="1"'), "1.250000001")
    assert.strictEqual(
      at("hypeman_vm_network_interface_tx_bytes_total", 'interface="eth1",via="netns"'),
      "18446744073709551615"
    )
    assert.strictEqual(at("hypeman_vm_network_interface_rx_dropped_total", 'interface="tap-a",via="sysfs"'), "3")
    // A NIC value that could not be read is absent, not 0.
    assert.isUndefined(at("hypeman_vm_network_interface_rx_packets_total", 'interface="eth1",via="netns"'))
    assert.strictEqual(meta.get("TYPE hypeman_vm_memory_swap_bytes"), "gauge")
    assert.strictEqual(meta.get("TYPE hypeman_vm_cpu_delay_seconds_total"), "counter")
    assert.strictEqual(meta.get("TYPE hypeman_vm_network_interface_rx_bytes_total"), "counter")
  })

  it("a null value (group off in the collector, or unread) is absent, never 0", () => {
    const vm = vmStats("a", 0, { ...noGroupValues, guestUsec: null })
    const { samples } = render(allGroups, [vm])
    assert.deepStrictEqual(familiesIn(samples), new Set(SEED))
  })

  it("the OTel producer carries the same families, units, labels and values; per-vCPU series start with their thread", () => {
    const opts = options(allGroups)
    const drops = OtelValue.makeDropCounter()
    const scope = toScopeMetrics(opts, snapshotOf([vmStats("a", 0)]), 0, drops, 1_700_000_000_000)
    const byName = new Map(scope.metrics.map((m) => [m.descriptor.name, m]))
    for (const family of [...vmFamilies(opts), ...labeledFamilies(opts)]) {
      const metric = byName.get(family.name)
      assert.isDefined(metric, family.name)
      assert.strictEqual(metric!.descriptor.unit, family.unit, family.name)
    }
    assert.strictEqual(byName.get("hypeman_vm_cpu_delay_seconds_total")!.dataPoints[0]!.value, 1.500000001)
    const vcpuDelay = byName.get("hypeman_vm_vcpu_delay_seconds_total")!.dataPoints
    assert.deepStrictEqual(
      vcpuDelay.map((p) => [p.attributes.vcpu, p.value, p.startTime[0]]),
      [
        ["0", 0.25, 1_700_000_005],
        ["1", 1.250000001, 1_700_000_090]
      ]
    )
    const nicTx = byName.get("hypeman_vm_network_interface_tx_bytes_total")!.dataPoints
    // 2^64 − 1 cannot go over OTel exactly: left out and counted, the other NIC's value goes.
    assert.deepStrictEqual(
      nicTx.map((p) => [p.attributes.interface, p.attributes.via, p.value]),
      [["tap-a", "sysfs", 20]]
    )
    assert.deepStrictEqual(drops.totals(), [
      { metric: "hypeman_vm_memory_swap_bytes", reason: "out_of_range", count: 1 },
      { metric: "hypeman_vm_network_interface_tx_bytes_total", reason: "out_of_range", count: 1 }
    ])
    // 2^53 + 1 bytes of swap is not a double either.
    assert.lengthOf(byName.get("hypeman_vm_memory_swap_bytes")!.dataPoints, 0)
  })
})

describe("label budget: series counted, groups dropped opt-in first, never the seed", () => {
  const everything = options(allGroups)
  // Per VM: seed 8, cpu 3, memory 5, disk 2, network 2, packets 5, vcpu 2 × 2 threads, interfaces 8 + 7
  // (one NIC value unread): 44.
  const two = [vmStats("a", 0), vmStats("b", 1)]

  it("countSeries counts the values read, per group; a VM without them counts only its seed", () => {
    const count = countSeries(everything, two)
    assert.strictEqual(count.seed, 16)
    assert.deepStrictEqual(Object.fromEntries(count.groups), {
      cpu: 6,
      memory: 10,
      disk: 4,
      network: 4,
      packets: 10,
      vcpu: 8,
      interfaces: 30
    })
    const bare = countSeries(everything, [vmStats("c", 2, { ...noGroupValues, guestUsec: null, netRxBytes: null })])
    assert.strictEqual(bare.seed, 7)
    for (const [group, n] of bare.groups) assert.strictEqual(n, 0, group)
  })

  it("fit drops in DROP_ORDER only as many groups as needed, never the seed", () => {
    const count = countSeries(everything, two)
    const all = new Set(allGroups)
    const full = LabelBudget.fit(count, all, 1_000_000)
    assert.deepStrictEqual(full.kept, all)
    assert.strictEqual(full.series, 88)
    // Room for everything but the vCPU series: vcpu goes first, alone.
    const noVcpu = LabelBudget.fit(count, all, 80)
    assert.deepStrictEqual([...noVcpu.kept].sort(), ["cpu", "disk", "interfaces", "memory", "network", "packets"])
    assert.strictEqual(noVcpu.series, 80)
    // One series short of the defaults plus packets: interfaces, then packets go too.
    assert.deepStrictEqual([...LabelBudget.fit(count, all, 49).kept].sort(), ["cpu", "disk", "memory", "network"])
    // Below the default set: the default groups go, network first, cpu last.
    assert.deepStrictEqual([...LabelBudget.fit(count, all, 39).kept].sort(), ["cpu", "disk", "memory"])
    const seedOnly = LabelBudget.fit(count, all, 1)
    assert.strictEqual(seedOnly.kept.size, 0)
    assert.strictEqual(seedOnly.series, 16, "the seed stays, over budget or not")
    assert.deepStrictEqual(LabelBudget.DROP_ORDER.slice(0, 3), ["vcpu", "interfaces", "packets"])
  })

  it.effect("the guardrail drops and restores groups, logs each change once and counts the drops per group", () => {
    const logs: Array<string> = []
    const capture = Logger.make(({ logLevel, message }) => {
      logs.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    })
    // 60 series: 1 VM with every group fits (44), 2 do not (88).
    const budget = LabelBudget.make(3, {
      enabled: new Set(allGroups),
      seriesBudget: 60,
      count: (stats) => countSeries(everything, stats)
    })
    return Effect.gen(function* () {
      yield* budget.observeStats([two[0]!])
      assert.deepStrictEqual(budget.groups(), new Set(allGroups))
      yield* budget.observeStats(two)
      // Without vcpu (8) and interfaces (30) 2 VMs make 50 series: packets stays.
      assert.deepStrictEqual([...budget.groups()].sort(), ["cpu", "disk", "memory", "network", "packets"])
      yield* budget.observeStats(two) // still over: nothing new logged or counted
      yield* budget.observeStats([two[0]!])
      assert.deepStrictEqual(budget.groups(), new Set(allGroups))
      yield* budget.observeStats(two)
      assert.deepStrictEqual(budget.groupDrops(), [
        { group: "vcpu", count: 2 },
        { group: "interfaces", count: 2 }
      ])
      const changes = logs.filter((l) => l.includes("metric group"))
      assert.deepStrictEqual(changes, [
        "WARN metric group vcpu dropped: over the series budget",
        "WARN metric group interfaces dropped: over the series budget",
        "INFO metric group vcpu restored: within the series budget",
        "INFO metric group interfaces restored: within the series budget",
        "WARN metric group vcpu dropped: over the series budget",
        "WARN metric group interfaces dropped: over the series budget"
      ])
      assert.strictEqual(budget.transitions(), 0, "2 instances are within an instance budget of 3")
    }).pipe(
      Effect.provide(Logger.replace(Logger.defaultLogger, capture)),
      Effect.provide(Logger.minimumLogLevel(LogLevel.Debug))
    )
  })

  it("the renderer leaves out what the budget dropped, and the drop counter is exported", () => {
    const opts = options(allGroups)
    const text = makeRenderer(opts, {})(
      snapshotOf([vmStats("a", 0)]),
      { ...noCounts, groupDrops: [{ group: "vcpu", count: 1 }] },
      new Set<MetricGroup>(["cpu", "interfaces"])
    )
    const { samples } = parseExposition(text)
    assert.deepStrictEqual(familiesIn(samples), new Set([...SEED, ...BY_GROUP.cpu, ...BY_GROUP.interfaces]))
    assert.strictEqual(samples.get('hypeman_vm_metrics_groups_dropped_total{group="vcpu"}'), "1")
  })
})

describe("VmMetrics with the metric groups and a series budget (real collector, in-memory readers)", () => {
  const withGroups = new Set<MetricGroup>([...defaultGroups, "vcpu"])
  const world = makeWorld([fixtureVm("a", 10)])
  const setVmm = (pid: number) =>
    world.proc.set(pid, {
      stat: statLine({ pid, utime: 100, stime: 20, startTime: 500 }),
      statm: "1000 100 0 0 0 0 0\n",
      status: "VmSwap:\t0 kB\nRssAnon:\t300 kB\nRssFile:\t100 kB\nRssShmem:\t0 kB\nHugetlbPages:\t0 kB\n",
      io: "rchar: 0\nwchar: 0\nread_bytes: 0\nwrite_bytes: 4096\n",
      tasks: [
        { tid: pid, comm: "qemu-system-x86", schedstat: "1 0 1\n" },
        { tid: pid + 1, comm: "CPU 0/KVM", schedstat: "1000 2000 1\n" },
        { tid: pid + 2, comm: "CPU 1/KVM", schedstat: "3000 4000 1\n" }
      ]
    })
  setVmm(10)
  setVmm(20)
  world.setTap("hype-a", 1, 2)
  world.setTap("hype-b", 1, 2)
  const collector = Collector.layer({ maxAge: "0 millis", groups: withGroups }).pipe(
    Layer.provide(
      Layer.mergeAll(
        InstanceSource.layerMemory(world.source),
        ProcReader.layerMemory(world.proc),
        TapReader.layerMemory(world.taps)
      )
    )
  )
  // Per VM: seed 8, cpu 3, memory 5, disk 2, network 2, vcpu 2 × 2 = 24; two VMs 48, without vcpu 40.
  const metrics = VmMetrics.layer({ metrics: { groups: withGroups, seriesBudget: 40 } }).pipe(
    Layer.provideMerge(collector)
  )

  it.effect("over the series budget the vcpu group leaves every export path and is counted; it comes back", () =>
    Effect.gen(function* () {
      const service = yield* VmMetrics.VmMetrics
      const text = Effect.map(service.prometheusText, (t) => parseExposition(t).samples)
      const one = yield* text
      assert.strictEqual(
        one.get('hypeman_vm_vcpu_delay_seconds_total{instance_id="a",instance_name="name-a",vcpu="1"}'),
        "0.000004"
      )
      assert.strictEqual(
        one.get('hypeman_vm_cpu_delay_seconds_total{instance_id="a",instance_name="name-a"}'),
        "0.000006"
      )
      world.source.set([fixtureVm("a", 10), fixtureVm("b", 20)])
      const two = yield* text
      assert.isFalse(
        [...two.keys()].some((k) => k.startsWith("hypeman_vm_vcpu_")),
        "vcpu dropped"
      )
      assert.isDefined(two.get('hypeman_vm_cpu_delay_seconds_total{instance_id="b",instance_name="name-b"}'))
      assert.strictEqual(two.get('hypeman_vm_metrics_groups_dropped_total{group="vcpu"}'), "1")
      const reader = new TestReader({ metricProducers: [service.producer] })
      new MeterProvider({ readers: [reader] })
      const exported = (yield* Effect.promise(() => reader.collect())).resourceMetrics.scopeMetrics.flatMap(
        (s) => s.metrics
      )
      const names = exported.filter((m) => m.dataPoints.length > 0).map((m) => m.descriptor.name)
      assert.notInclude(names, "hypeman_vm_vcpu_seconds_total")
      assert.include(names, "hypeman_vm_memory_anon_bytes")
      // Instruments on a caller's Meter leave it out too.
      const meterReader = new TestReader()
      const provider = new MeterProvider({ readers: [meterReader] })
      yield* service.registerOn(provider.getMeter("test"))
      const observed = (yield* Effect.promise(() => meterReader.collect())).resourceMetrics.scopeMetrics.flatMap(
        (s) => s.metrics
      )
      const observedNames = observed.filter((m) => m.dataPoints.length > 0).map((m) => m.descriptor.name)
      assert.notInclude(observedNames, "hypeman_vm_vcpu_delay_seconds_total")
      assert.include(observedNames, "hypeman_vm_cpu_delay_seconds_total")
      world.source.set([fixtureVm("a", 10)])
      const back = yield* text
      const again = (yield* Effect.promise(() => meterReader.collect())).resourceMetrics.scopeMetrics.flatMap(
        (s) => s.metrics
      )
      const perVcpu = again.find((m) => m.descriptor.name === "hypeman_vm_vcpu_delay_seconds_total")
      assert.deepStrictEqual(
        perVcpu?.dataPoints.map((p) => [p.attributes.instance_id, p.attributes.vcpu, p.value]),
        [
          ["a", "0", 0.000002],
          ["a", "1", 0.000004]
        ]
      )
      assert.isDefined(back.get('hypeman_vm_vcpu_seconds_total{instance_id="a",instance_name="name-a",vcpu="0"}'))
      assert.strictEqual(back.get('hypeman_vm_metrics_groups_dropped_total{group="vcpu"}'), "1")
    }).pipe(Effect.scoped, Effect.provide(metrics))
  )
})

describe("every group through the three paths: the direct text and the OTel SDK agree", () => {
  it.scoped("on every name, HELP, TYPE, label and value, per vCPU and per NIC included", () => {
    const world = makeWorld([fixtureVm("a", 10, { tapDevices: ["hype-a", "hype-a2"] })])
    world.proc.set(10, {
      stat: statLine({ pid: 10, utime: 250, stime: 30, startTime: 500, majorFaults: 9 }),
      statm: "1000 100 0 0 0 0 0\n",
      status: "VmSwap:\t8 kB\nRssAnon:\t300 kB\nRssFile:\t100 kB\nRssShmem:\t4 kB\nHugetlbPages:\t2048 kB\n",
      io: "rchar: 0\nwchar: 0\nread_bytes: 4096\nwrite_bytes: 8192\n",
      tasks: [
        { tid: 10, comm: "qemu-system-x86", schedstat: "1 0 1\n" },
        { tid: 11, comm: "CPU 0/KVM", schedstat: "1500000000 2000 1\n" },
        { tid: 12, comm: "CPU 1/KVM", schedstat: "3000 250000000 1\n" }
      ]
    })
    const counters = (n: number) => ({
      rxBytes: `${n}\n`,
      txBytes: `${n + 1}\n`,
      rxPackets: `${n + 2}\n`,
      txPackets: `${n + 3}\n`,
      rxErrors: "0\n",
      txErrors: "1\n",
      rxDropped: `${n + 4}\n`,
      txDropped: `${n + 5}\n`
    })
    world.taps.set("hype-a", counters(100))
    world.taps.set("hype-a2", counters(200))
    const all = new Set(allGroups)
    const collector = Collector.layer({ maxAge: "1 second", groups: all }).pipe(
      Layer.provide(
        Layer.mergeAll(
          InstanceSource.layerMemory(world.source),
          ProcReader.layerMemory(world.proc),
          TapReader.layerMemory(world.taps)
        )
      )
    )
    return Effect.gen(function* () {
      const metrics = yield* VmMetrics.VmMetrics
      const snapshot = yield* Effect.flatMap(Collector.Collector, (c) => c.refresh)
      const direct = parseExposition(yield* metrics.render(snapshot))
      assert.strictEqual(
        direct.samples.get(
          'hypeman_vm_network_interface_tx_dropped_total{instance_id="a",instance_name="name-a",interface="hype-a2",via="sysfs"}'
        ),
        "204",
        "the VM's tx is the TAP's rx"
      )
      assert.deepStrictEqual(familiesIn(direct.samples), new Set([...SEED, ...Object.values(BY_GROUP).flat()]))
      const serializer = new PrometheusSerializer(undefined, false, undefined, false, true)
      const viaInstruments = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true })
      const provider = new MeterProvider({ readers: [viaInstruments] })
      yield* metrics.registerOn(provider.getMeter("x"))
      const viaProducer = new PrometheusExporter({
        preventServerStart: true,
        withoutScopeInfo: true,
        metricProducers: [metrics.producer]
      })
      new MeterProvider({ readers: [viaProducer] })
      const withoutTarget = (m: Map<string, string>) => new Map([...m].filter(([k]) => !k.startsWith("target_info")))
      for (const exporter of [viaInstruments, viaProducer]) {
        const { resourceMetrics } = yield* Effect.promise(() => exporter.collect())
        const sdk = parseExposition(serializer.serialize(resourceMetrics))
        assert.deepStrictEqual(withoutTarget(sdk.samples), withoutTarget(direct.samples))
        for (const [key, value] of direct.meta)
          if (!key.endsWith(" target_info")) assert.strictEqual(sdk.meta.get(key), value, key)
      }
    }).pipe(Effect.provide(VmMetrics.layer({ metrics: { groups: all } }).pipe(Layer.provideMerge(collector))))
  })
})
