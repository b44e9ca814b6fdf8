import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, HashMap, Layer, Logger, Option, TestClock } from "effect"
import * as Collector from "../src/Collector.js"
import { InstanceSourceError, PermissionDenied, ReadFailed } from "../src/Errors.js"
import type { InstanceInfo } from "../src/Instance.js"
import * as InstanceSource from "../src/InstanceSource.js"
import { type StatLine, statLine } from "../src/internal/statLine.js"
import { fallbackKernelInfo, type KernelInfo } from "../src/Kernel.js"
import * as ProcReader from "../src/ProcReader.js"
import * as TapReader from "../src/TapReader.js"
import { cpuSeconds, memoryUtilizationRatio, type VmStats } from "../src/VmStats.js"

const U64_MAX = 18446744073709551615n
const GiB = 1024 * 1024 * 1024

interface Rig {
  readonly procs: ProcReader.MemoryProcReader
  readonly taps: TapReader.MemoryTapReader
  readonly source: InstanceSource.MemoryInstanceSource
  readonly layer: Layer.Layer<Collector.Collector>
}

const rig = (
  options: {
    readonly kernel?: KernelInfo
    readonly instances?: ReadonlyArray<InstanceInfo>
    readonly collector?: Collector.Options
  } = {}
): Rig => {
  const procs = ProcReader.makeMemory(options.kernel ?? fallbackKernelInfo)
  const taps = TapReader.makeMemory()
  const source = InstanceSource.makeMemory(options.instances ?? [])
  // The seed's values only, unless a test names its groups (the groups' reads are tested in ProcGroups.test.ts).
  const layer = Collector.layer({ groups: new Set(), ...options.collector }).pipe(
    Layer.provide(
      Layer.mergeAll(ProcReader.layerMemory(procs), TapReader.layerMemory(taps), InstanceSource.layerMemory(source))
    )
  )
  return { procs, taps, source, layer }
}

const vm = (id: string, fields: Partial<InstanceInfo> = {}): InstanceInfo => ({
  id,
  name: `name-${id}`,
  allocatedVcpus: 2,
  allocatedMemoryBytes: GiB,
  ...fields
})

/** A running process: stat from statLine, statm "1000 200 …". */
const running = (
  pid: number,
  line: Omit<StatLine, "pid"> = {},
  statm = "1000 200 50 10 0 300 0\n"
): ProcReader.MemoryProcess => ({ stat: statLine({ pid, ...line }), statm })

const tap = (rx: string, tx: string): TapReader.MemoryTap => ({ rxBytes: rx, txBytes: tx })

const reasons = (stats: VmStats) => stats.unavailable.map((u) => `${u.source}:${u.reason}`)

const byId = (stats: ReadonlyArray<VmStats>, id: string): VmStats => {
  const found = stats.find((s) => s.instanceId === id)
  if (found === undefined) return assert.fail(`no stats for ${id}`)
  return found
}

describe("Collector", () => {
  describe("unit conversion", () => {
    it.effect("CPU time is utime + stime in ticks: 100 + 50 at 100 Hz → cpuUsec 1_500_000", () => {
      const r = rig()
      r.procs.set(10, running(10, { utime: 100, stime: 50 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const stats = yield* collector.getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.cpuUsec, 1_500_000n)
        assert.strictEqual(cpuSeconds(stats), 1.5)
        assert.strictEqual(stats.state, "running")
        assert.deepStrictEqual(stats.unavailable, [])
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a 250 Hz kernel converts ticks with 250, not a hard-coded 100", () => {
      const r = rig({ kernel: { clockTicksPerSecond: 250, pageSize: 4096, bootTimeMs: null } })
      r.procs.set(10, running(10, { utime: 100, stime: 50, guestTime: 25 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const stats = yield* collector.getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.cpuUsec, 600_000n)
        assert.strictEqual(stats.guestUsec, 100_000n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("guest_time is converted to µs too", () => {
      const r = rig()
      r.procs.set(10, running(10, { utime: 300, stime: 20, guestTime: 250 }))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.cpuUsec, 3_200_000n)
        assert.strictEqual(stats.guestUsec, 2_500_000n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("memory is statm pages × page size: 1000 200 with 4096-byte pages → vms 4096000, rss 819200", () => {
      const r = rig()
      r.procs.set(10, running(10, {}, "1000 200 50 10 0 300 0\n"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.memoryVmsBytes, 4_096_000n)
        assert.strictEqual(stats.memoryRssBytes, 819_200n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("memory uses the kernel's page size: 1000 200 with 16 KiB pages → vms 16384000, rss 3276800", () => {
      const r = rig({ kernel: { clockTicksPerSecond: 100, pageSize: 16384, bootTimeMs: null } })
      r.procs.set(10, running(10, {}, "1000 200 50 10 0 300 0\n"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(
          vm("a", { hypervisorPid: 10, allocatedMemoryBytes: 6_553_600 })
        )
        assert.strictEqual(stats.memoryVmsBytes, 16_384_000n)
        assert.strictEqual(stats.memoryRssBytes, 3_276_800n)
        assert.strictEqual(memoryUtilizationRatio(stats), 0.5)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("network is seen from the VM: TAP host rx 111 / tx 222 → VM netRx 222, netTx 111", () => {
      const r = rig()
      r.procs.set(10, running(10))
      r.taps.set("hype-a", tap("111\n", "222\n"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(
          vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })
        )
        assert.strictEqual(stats.netRxBytes, 222n)
        assert.strictEqual(stats.netTxBytes, 111n)
        assert.strictEqual(stats.tapDevice, "hype-a")
        assert.strictEqual(r.taps.reads.get("hype-a"), 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("huge counters: TAP counter 2^64 − 1 comes out exactly", () => {
      const r = rig()
      r.taps.set("hype-a", tap("18446744073709551615\n", "9007199254740993\n"))
      r.procs.set(10, running(10, { utime: U64_MAX, stime: 0 }))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(
          vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })
        )
        assert.strictEqual(stats.netTxBytes, 18446744073709551615n)
        assert.strictEqual(stats.netRxBytes, 9007199254740993n)
        assert.strictEqual(stats.cpuUsec, (U64_MAX * 1_000_000n) / 100n)
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("statm × page size beyond uint64", () => {
    it.effect("above 2^64 − 1 bytes → null with statm:out_of_range, counted; 2^64 − 1 itself is kept", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 10 }), vm("b", { hypervisorPid: 11 })] })
      // 18446744073709551615 pages × 4096 was shown as 75557863725914323415040 bytes.
      r.procs.set(10, running(10, { utime: 1 }, `${U64_MAX} ${U64_MAX} 0 0 0 0 0\n`))
      // (2^64 − 4096) / 4096 + … : exactly the last page that fits, and one page more.
      const lastPage = (U64_MAX + 1n) / 4096n - 1n
      r.procs.set(11, running(11, { utime: 1 }, `${lastPage + 1n} ${lastPage} 0 0 0 0 0\n`))
      return Effect.gen(function* () {
        const snapshot = yield* (yield* Collector.Collector).collectAll
        const a = byId(snapshot.stats, "a")
        assert.strictEqual(a.state, "running")
        assert.isNull(a.memoryRssBytes)
        assert.isNull(a.memoryVmsBytes)
        assert.isNull(memoryUtilizationRatio(a))
        assert.strictEqual(a.cpuUsec, 10_000n)
        assert.deepStrictEqual(reasons(a), ["statm:out_of_range", "statm:out_of_range"])
        const b = byId(snapshot.stats, "b")
        assert.strictEqual(b.memoryRssBytes, U64_MAX + 1n - 4096n)
        assert.isNull(b.memoryVmsBytes)
        assert.deepStrictEqual(reasons(b), ["statm:out_of_range"])
        assert.deepInclude(snapshot.unavailableTotals, { source: "statm", reason: "out_of_range", count: 3 })
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("a kernel counter that goes down starts a new series", () => {
    const bootTimeMs = 1_700_000_000_000
    const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs }

    it.effect("a TAP recreated under the same process: new epoch, series start = the previous sample", () => {
      const r = rig({ kernel, instances: [vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })] })
      r.procs.set(10, running(10, { startTime: 500, utime: 10 }))
      r.taps.set("hype-a", tap("1000\n", "2000\n"))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* TestClock.adjust("10 seconds")
        const first = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(first.epoch, 0)
        assert.strictEqual(first.processStartTimeMs, bootTimeMs + 5000)
        assert.strictEqual(first.seriesStartTimeMs, bootTimeMs + 5000)

        yield* TestClock.adjust("10 seconds")
        r.taps.set("hype-a", tap("1500\n", "2500\n"))
        const grown = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(grown.epoch, 0)
        assert.strictEqual(grown.seriesStartTimeMs, bootTimeMs + 5000)

        // Deleted and created again: the counters start from 0 while the process stays.
        yield* TestClock.adjust("10 seconds")
        r.taps.set("hype-a", tap("7\n", "9\n"))
        r.procs.set(10, running(10, { startTime: 500, utime: 11 }))
        const reset = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(reset.state, "running")
        assert.strictEqual(reset.epoch, 1)
        assert.strictEqual(reset.seriesStartTimeMs, grown.sampledAtMs)
        assert.isTrue(reset.seriesStartTimeMs! < reset.sampledAtMs)
        assert.strictEqual(reset.processStartTimeMs, bootTimeMs + 5000)
        assert.strictEqual(reset.netRxBytes, 9n)

        yield* TestClock.adjust("10 seconds")
        r.taps.set("hype-a", tap("8\n", "10\n"))
        const after = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(after.epoch, 1)
        assert.strictEqual(after.seriesStartTimeMs, grown.sampledAtMs)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect(
      "a TAP missing for a while, then back with smaller counters: one new series; equal values keep it",
      () => {
        const r = rig({ kernel, instances: [vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })] })
        r.procs.set(10, running(10, { startTime: 500 }))
        r.taps.set("hype-a", tap("100\n", "100\n"))
        return Effect.gen(function* () {
          const collector = yield* Collector.Collector
          assert.strictEqual(byId((yield* collector.refresh).stats, "a").epoch, 0)
          assert.strictEqual(byId((yield* collector.refresh).stats, "a").epoch, 0) // unchanged is no reset
          r.taps.remove("hype-a")
          yield* TestClock.adjust("1 second")
          const missing = byId((yield* collector.refresh).stats, "a")
          assert.strictEqual(missing.epoch, 0)
          assert.isNull(missing.netRxBytes)
          r.taps.set("hype-a", tap("100\n", "3\n"))
          yield* TestClock.adjust("1 second")
          const back = byId((yield* collector.refresh).stats, "a")
          assert.strictEqual(back.epoch, 1)
          assert.strictEqual(back.seriesStartTimeMs, missing.sampledAtMs)
        }).pipe(Effect.provide(r.layer))
      }
    )

    it.effect("a restart (new pid) starts the series at the new process's start time again", () => {
      const r = rig({ kernel, instances: [vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })] })
      r.procs.set(10, running(10, { startTime: 500 }))
      r.procs.set(20, running(20, { startTime: 900 }))
      r.taps.set("hype-a", tap("100\n", "100\n"))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* TestClock.adjust("20 seconds")
        yield* collector.refresh
        r.taps.set("hype-a", tap("1\n", "1\n"))
        yield* TestClock.adjust("1 second")
        const reset = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(reset.epoch, 1)
        assert.strictEqual(reset.seriesStartTimeMs, 20_000)
        r.source.set([vm("a", { hypervisorPid: 20, tapDevice: "hype-a" })])
        const restarted = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(restarted.epoch, 2)
        assert.strictEqual(restarted.seriesStartTimeMs, bootTimeMs + 9000)
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("what is read", () => {
    it.effect("no tapDevice → net values null, no TAP read, no tap unavailable entry", () => {
      const r = rig()
      r.procs.set(10, running(10))
      r.taps.set("hype-a", tap("1", "2"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.isNull(stats.netRxBytes)
        assert.isNull(stats.netTxBytes)
        assert.isNull(stats.tapDevice)
        assert.strictEqual(r.taps.reads.size, 0)
        assert.deepStrictEqual(stats.unavailable, [])
        assert.strictEqual(stats.state, "running")
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("no pid → no-process, usage null (not 0 as in the Go original), nothing read", () => {
      const r = rig()
      r.procs.set(10, running(10))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(
          vm("stopped", { name: "db", allocatedVcpus: 4, allocatedMemoryBytes: 2 * GiB })
        )
        assert.strictEqual(stats.state, "no-process")
        assert.isNull(stats.pid)
        assert.isNull(stats.cpuUsec)
        assert.isNull(stats.guestUsec)
        assert.isNull(stats.memoryRssBytes)
        assert.isNull(stats.memoryVmsBytes)
        assert.isNull(stats.netRxBytes)
        assert.isNull(stats.netTxBytes)
        assert.isNull(stats.processStartTicks)
        assert.isNull(memoryUtilizationRatio(stats))
        assert.strictEqual(stats.instanceId, "stopped")
        assert.strictEqual(stats.instanceName, "db")
        assert.strictEqual(stats.allocatedVcpus, 4)
        assert.strictEqual(stats.allocatedMemoryBytes, 2 * GiB)
        assert.deepStrictEqual(stats.unavailable, [])
        assert.strictEqual(r.procs.reads.size, 0)
        assert.strictEqual(r.taps.reads.size, 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("no pid but a TAP: the TAP is still read", () => {
      const r = rig()
      r.taps.set("hype-a", tap("5", "6"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { tapDevice: "hype-a" }))
        assert.strictEqual(stats.state, "no-process")
        assert.strictEqual(stats.netRxBytes, 6n)
        assert.strictEqual(stats.netTxBytes, 5n)
        assert.strictEqual(r.procs.reads.size, 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("invalid TAP names are never handed to the TapReader", () => {
      const r = rig()
      r.procs.set(10, running(10))
      r.procs.set(11, running(11))
      r.taps.set("../../etc", tap("1", "2"))
      r.taps.set("hype-x/y", tap("1", "2"))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        for (const [id, pid, name] of [
          ["a", 10, "../../etc"],
          ["b", 11, "hype-x/y"]
        ] as const) {
          const stats = yield* collector.getInstanceStats(vm(id, { hypervisorPid: pid, tapDevice: name }))
          assert.deepStrictEqual(reasons(stats), ["tap:invalid_tap_name"])
          assert.isNull(stats.netRxBytes)
          assert.isNull(stats.netTxBytes)
          assert.strictEqual(stats.state, "running")
          assert.isFalse(r.taps.reads.has(name))
        }
        assert.strictEqual(r.taps.reads.size, 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("an invalid TAP name between valid ones keeps the others aligned", () => {
      const r = rig()
      r.taps.set("hype-a", tap("1", "2"))
      r.taps.set("hype-c", tap("3", "4"))
      r.source.set([
        vm("a", { tapDevice: "hype-a" }),
        vm("b", { tapDevice: "bad name" }),
        vm("n"),
        vm("c", { tapDevice: "hype-c" })
      ])
      return Effect.gen(function* () {
        const { stats } = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(
          stats.map((s) => [s.instanceId, s.netRxBytes, s.netTxBytes, reasons(s)]),
          [
            ["a", 2n, 1n, []],
            ["b", null, null, ["tap:invalid_tap_name"]],
            ["n", null, null, []],
            ["c", 4n, 3n, []]
          ]
        )
        assert.deepStrictEqual([...r.taps.reads.keys()].sort(), ["hype-a", "hype-c"])
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("partial failures (a failed read is null, never 0)", () => {
    it.effect("stat unparsable, statm fine → cpu null with stat:parse_error, memory filled", () => {
      const r = rig()
      r.procs.set(10, { stat: "garbage without parens", statm: "1000 200 0 0 0 0 0\n" })
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.isNull(stats.cpuUsec)
        assert.isNull(stats.guestUsec)
        assert.isNull(stats.processStartTicks)
        assert.strictEqual(stats.memoryRssBytes, 819_200n)
        assert.strictEqual(stats.memoryVmsBytes, 4_096_000n)
        assert.strictEqual(stats.state, "running")
        assert.strictEqual(stats.unavailable.length, 1)
        assert.strictEqual(stats.unavailable[0].source, "stat")
        assert.strictEqual(stats.unavailable[0].reason, "parse_error")
        assert.include(stats.unavailable[0].message, "/proc/<pid>/stat")
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("statm unparsable, stat fine → memory null with statm:parse_error, cpu filled", () => {
      const r = rig()
      r.procs.set(10, { stat: statLine({ pid: 10, utime: 1, stime: 1 }), statm: "1000\n" })
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.cpuUsec, 20_000n)
        assert.isNull(stats.memoryRssBytes)
        assert.isNull(stats.memoryVmsBytes)
        assert.isNull(memoryUtilizationRatio(stats))
        assert.deepStrictEqual(reasons(stats), ["statm:parse_error"])
        assert.strictEqual(stats.state, "running")
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("tx_bytes unreadable → both net values null with one tap entry, proc values unaffected", () => {
      const r = rig()
      r.procs.set(10, running(10, { utime: 100, stime: 50 }))
      r.taps.set("hype-a", { rxBytes: "111\n", txBytes: new ReadFailed({ path: "tx_bytes", code: "EIO" }) })
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(
          vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })
        )
        assert.isNull(stats.netRxBytes)
        assert.isNull(stats.netTxBytes)
        assert.deepStrictEqual(reasons(stats), ["tap:read_failed"])
        assert.strictEqual(stats.cpuUsec, 1_500_000n)
        assert.strictEqual(stats.memoryRssBytes, 819_200n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("rx_bytes unparsable → both net values null with tap:parse_error", () => {
      const r = rig()
      r.taps.set("hype-a", tap("lots\n", "222\n"))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { tapDevice: "hype-a" }))
        assert.isNull(stats.netRxBytes)
        assert.isNull(stats.netTxBytes)
        assert.deepStrictEqual(reasons(stats), ["tap:parse_error"])
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("missing TAP device → tap:tap_missing", () => {
      const r = rig()
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { tapDevice: "hype-gone" }))
        assert.isNull(stats.netRxBytes)
        assert.isNull(stats.netTxBytes)
        assert.deepStrictEqual(reasons(stats), ["tap:tap_missing"])
        assert.strictEqual(r.taps.reads.get("hype-gone"), 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("unavailableTotals count failed reads by source and reason, cumulatively", () => {
      const r = rig({
        instances: [
          vm("a", { hypervisorPid: 10 }),
          vm("b", { hypervisorPid: 11, tapDevice: "hype-b" }),
          vm("c", { hypervisorPid: 12, tapDevice: "hype-c" })
        ]
      })
      r.procs.set(10, { stat: "broken", statm: "1 1" })
      r.procs.set(11, { stat: "broken too", statm: "1 1" })
      r.procs.set(12, running(12))
      r.taps.set("hype-c", tap("1", "2"))
      const totals = (snapshot: Collector.Snapshot) =>
        Object.fromEntries(snapshot.unavailableTotals.map((t) => [`${t.source}:${t.reason}`, t.count]))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = yield* collector.collectAll
        assert.deepStrictEqual(totals(first), { "stat:parse_error": 2, "tap:tap_missing": 1 })
        const second = yield* collector.refresh
        assert.strictEqual(second.sequence, 2)
        assert.deepStrictEqual(totals(second), { "stat:parse_error": 4, "tap:tap_missing": 2 })
        assert.strictEqual(second.unavailableTotals.length, 2)
        // the first snapshot is not mutated afterwards
        assert.deepStrictEqual(totals(first), { "stat:parse_error": 2, "tap:tap_missing": 1 })
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("process state", () => {
    it.effect("process gone (pid unknown to the reader) → exited, process_gone for stat and statm", () => {
      const r = rig()
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 999 }))
        assert.strictEqual(stats.state, "exited")
        assert.strictEqual(stats.pid, 999)
        assert.deepStrictEqual(reasons(stats), ["stat:process_gone", "statm:process_gone"])
        assert.isNull(stats.cpuUsec)
        assert.isNull(stats.memoryRssBytes)
        assert.isNull(stats.memoryVmsBytes)
        assert.strictEqual(r.procs.reads.get(999), 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("zombie (state Z) → exited, not_running, cpu and memory null", () => {
      const r = rig()
      r.procs.set(10, running(10, { state: "Z", utime: 100, stime: 50 }))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.state, "exited")
        assert.deepStrictEqual(reasons(stats), ["stat:not_running", "statm:not_running"])
        assert.isNull(stats.cpuUsec)
        assert.isNull(stats.memoryRssBytes)
        assert.isNull(stats.memoryVmsBytes)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("dead task (state X) → exited", () => {
      const r = rig()
      r.procs.set(10, running(10, { state: "X" }))
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.state, "exited")
        assert.isNull(stats.cpuUsec)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("permission denied on both files → unknown", () => {
      const r = rig()
      r.procs.set(10, {
        stat: new PermissionDenied({ path: "/proc/10/stat" }),
        statm: new PermissionDenied({ path: "/proc/10/statm" })
      })
      return Effect.gen(function* () {
        const stats = yield* (yield* Collector.Collector).getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(stats.state, "unknown")
        assert.deepStrictEqual(reasons(stats), ["stat:permission_denied", "statm:permission_denied"])
        assert.isNull(stats.cpuUsec)
        assert.isNull(stats.memoryRssBytes)
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("process identity (pid + start time)", () => {
    it.effect("the same pid with another starttime is pid_reused (exited, nulls), until a new pid", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 10, tapDevice: "hype-a" })] })
      r.procs.set(10, running(10, { startTime: 1000, utime: 7 }))
      r.taps.set("hype-a", tap("5\n", "6\n"))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = byId((yield* collector.collectAll).stats, "a")
        assert.strictEqual(first.epoch, 0)
        assert.strictEqual(first.processStartTicks, 1000n)
        assert.isNull(first.processStartTimeMs)

        const same = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(same.epoch, 0)
        assert.strictEqual(same.processStartTicks, 1000n)

        // Another process took pid 10: its CPU and RSS are never the VM's.
        r.procs.set(10, running(10, { startTime: 2000, utime: 900 }, "9000 8000 0 0 0 0 0\n"))
        for (let i = 0; i < 2; i++) {
          const snapshot = yield* collector.refresh
          const reused = byId(snapshot.stats, "a")
          assert.strictEqual(reused.state, "exited")
          assert.strictEqual(reused.epoch, 0)
          assert.isNull(reused.cpuUsec)
          assert.isNull(reused.guestUsec)
          assert.isNull(reused.memoryRssBytes)
          assert.isNull(reused.memoryVmsBytes)
          assert.isNull(reused.processStartTicks)
          assert.deepStrictEqual(reasons(reused), ["stat:pid_reused", "statm:pid_reused"])
          assert.strictEqual(reused.netRxBytes, 6n) // the TAP is still the VM's own
          assert.deepInclude(snapshot.unavailableTotals, { source: "stat", reason: "pid_reused", count: i + 1 })
        }

        // The source names another pid: a restart, a new epoch, counters from the new process.
        r.procs.set(11, running(11, { startTime: 2500, utime: 3 }))
        r.source.set([vm("a", { hypervisorPid: 11, tapDevice: "hype-a" })])
        const restarted = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(restarted.state, "running")
        assert.strictEqual(restarted.epoch, 1)
        assert.strictEqual(restarted.processStartTicks, 2500n)
        assert.strictEqual(restarted.cpuUsec, 30_000n)
        assert.deepStrictEqual(restarted.unavailable, [])
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a start time given by the source is checked from the first reading", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 10, hypervisorStartTicks: 1000 })] })
      r.procs.set(10, running(10, { startTime: 1001, utime: 5 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const wrong = byId((yield* collector.collectAll).stats, "a")
        assert.strictEqual(wrong.state, "exited")
        assert.isNull(wrong.cpuUsec)
        assert.deepStrictEqual(reasons(wrong), ["stat:pid_reused", "statm:pid_reused"])

        // The source now knows the process at that pid started at 1001: a restart it vouches for.
        r.source.set([vm("a", { hypervisorPid: 10, hypervisorStartTicks: 1001 })])
        const vouched = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(vouched.state, "running")
        assert.strictEqual(vouched.epoch, 1)
        assert.strictEqual(vouched.cpuUsec, 50_000n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a new pid for the same instance starts a new epoch even with the same starttime", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 10 })] })
      r.procs.set(10, running(10, { startTime: 1000 }))
      r.procs.set(20, running(20, { startTime: 1000 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        assert.strictEqual(byId((yield* collector.collectAll).stats, "a").epoch, 0)
        r.source.set([vm("a", { hypervisorPid: 20 })])
        const moved = byId((yield* collector.refresh).stats, "a")
        assert.strictEqual(moved.epoch, 1)
        assert.strictEqual(moved.pid, 20)
        assert.isTrue(r.procs.released.has(10))
        assert.isFalse(r.procs.released.has(20))
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("epochs are per instance", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 10 }), vm("b", { hypervisorPid: 11 })] })
      r.procs.set(10, running(10, { startTime: 1000 }))
      r.procs.set(11, running(11, { startTime: 1000 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.collectAll
        r.procs.set(12, running(12, { startTime: 5000 }))
        r.source.set([vm("a", { hypervisorPid: 12 }), vm("b", { hypervisorPid: 11 })])
        const { stats } = yield* collector.refresh
        assert.strictEqual(byId(stats, "a").epoch, 1)
        assert.strictEqual(byId(stats, "b").epoch, 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("with a known boot time, processStartTimeMs = bootTimeMs + ticks × 1000 / hz", () => {
      const bootTimeMs = 1_700_000_000_000
      const r = rig({ kernel: { clockTicksPerSecond: 250, pageSize: 4096, bootTimeMs } })
      r.procs.set(10, running(10, { startTime: 2000 }))
      r.procs.set(11, running(11, { startTime: 1 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const a = yield* collector.getInstanceStats(vm("a", { hypervisorPid: 10 }))
        assert.strictEqual(a.processStartTicks, 2000n)
        assert.strictEqual(a.processStartTimeMs, bootTimeMs + 8000)
        const b = yield* collector.getInstanceStats(vm("b", { hypervisorPid: 11 }))
        assert.strictEqual(b.processStartTimeMs, bootTimeMs + 4)
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("collectAll", () => {
    it.effect("stats keep the source order", () => {
      const r = rig({
        instances: [vm("c", { hypervisorPid: 3 }), vm("a", { hypervisorPid: 1 }), vm("b", { hypervisorPid: 2 })]
      })
      r.procs.set(1, running(1, { utime: 1 }))
      r.procs.set(2, running(2, { utime: 2 }))
      r.procs.set(3, running(3, { utime: 3 }))
      return Effect.gen(function* () {
        const snapshot = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(
          snapshot.stats.map((s) => [s.instanceId, s.pid, s.cpuUsec]),
          [
            ["c", 3, 30_000n],
            ["a", 1, 10_000n],
            ["b", 2, 20_000n]
          ]
        )
        assert.strictEqual(snapshot.sequence, 1)
        assert.isNull(snapshot.sourceError)
        assert.strictEqual(snapshot.sourceErrorsTotal, 0)
        assert.deepStrictEqual(snapshot.unavailableTotals, [])
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("source order is kept across chunks", () => {
      const ids = Array.from({ length: 7 }, (_, i) => `vm${i}`)
      const r = rig({
        instances: ids.map((id, i) => vm(id, { hypervisorPid: 100 + i, tapDevice: `hype-${i}` })),
        collector: { chunkSize: 3 }
      })
      ids.forEach((_, i) => {
        r.procs.set(100 + i, running(100 + i, { utime: i }))
        r.taps.set(`hype-${i}`, tap(String(i), String(i * 10)))
      })
      return Effect.gen(function* () {
        const { stats } = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(
          stats.map((s) => [s.instanceId, s.cpuUsec, s.netRxBytes, s.netTxBytes]),
          ids.map((id, i) => [id, BigInt(i) * 10_000n, BigInt(i * 10), BigInt(i)])
        )
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("an empty source gives empty stats and no error", () => {
      const r = rig()
      return Effect.gen(function* () {
        const snapshot = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(snapshot.stats, [])
        assert.isNull(snapshot.sourceError)
        assert.strictEqual(snapshot.sourceErrorsTotal, 0)
        assert.strictEqual(snapshot.sequence, 1)
        assert.strictEqual(r.source.calls(), 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("InstanceSource.layerEmpty gives empty stats", () =>
      Effect.gen(function* () {
        const snapshot = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(snapshot.stats, [])
        assert.isNull(snapshot.sourceError)
      }).pipe(
        Effect.provide(
          Collector.layer().pipe(
            Layer.provide(
              Layer.mergeAll(
                InstanceSource.layerEmpty,
                ProcReader.layerMemory(ProcReader.makeMemory()),
                TapReader.layerMemory(TapReader.makeMemory())
              )
            )
          )
        )
      )
    )

    it.effect("one instance failing never fails collectAll (3 instances, the middle one gone)", () => {
      const r = rig({
        instances: [vm("a", { hypervisorPid: 1 }), vm("b", { hypervisorPid: 2 }), vm("c", { hypervisorPid: 3 })]
      })
      r.procs.set(1, running(1, { utime: 1 }))
      r.procs.set(3, running(3, { utime: 3 }))
      return Effect.gen(function* () {
        const { stats } = yield* (yield* Collector.Collector).collectAll
        assert.strictEqual(stats.length, 3)
        assert.deepStrictEqual(
          stats.map((s) => [s.instanceId, s.state, s.cpuUsec]),
          [
            ["a", "running", 10_000n],
            ["b", "exited", null],
            ["c", "running", 30_000n]
          ]
        )
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a removed instance disappears and its pid and TAP are released", () => {
      const r = rig({
        instances: [
          vm("a", { hypervisorPid: 1, tapDevice: "hype-a" }),
          vm("b", { hypervisorPid: 2, tapDevice: "hype-b" })
        ]
      })
      r.procs.set(1, running(1))
      r.procs.set(2, running(2))
      r.taps.set("hype-a", tap("1", "1"))
      r.taps.set("hype-b", tap("2", "2"))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = yield* collector.collectAll
        assert.deepStrictEqual(
          first.stats.map((s) => s.instanceId),
          ["a", "b"]
        )
        assert.strictEqual(r.procs.released.size, 0)
        assert.strictEqual(r.taps.released.size, 0)

        r.source.set([vm("a", { hypervisorPid: 1, tapDevice: "hype-a" })])
        const second = yield* collector.refresh
        assert.deepStrictEqual(
          second.stats.map((s) => s.instanceId),
          ["a"]
        )
        assert.deepStrictEqual([...r.procs.released], [2])
        assert.deepStrictEqual([...r.taps.released], ["hype-b"])
        assert.strictEqual(r.procs.reads.get(2), 1)
        assert.strictEqual(r.procs.reads.get(1), 2)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a removed and re-added instance starts again at epoch 0", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 })] })
      r.procs.set(1, running(1, { startTime: 100 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.collectAll
        r.procs.set(2, running(2, { startTime: 200 }))
        r.source.set([vm("a", { hypervisorPid: 2 })])
        assert.strictEqual(byId((yield* collector.refresh).stats, "a").epoch, 1)
        r.source.set([])
        assert.deepStrictEqual((yield* collector.refresh).stats, [])
        r.source.set([vm("a", { hypervisorPid: 1 })])
        assert.strictEqual(byId((yield* collector.refresh).stats, "a").epoch, 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a failing source is reported; the last good listing is read; recovery clears the error", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 }), vm("b", { hypervisorPid: 2 })] })
      r.procs.set(1, running(1, { utime: 1 }))
      r.procs.set(2, running(2, { utime: 2 }))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const good = yield* collector.collectAll
        assert.isNull(good.sourceError)

        r.source.set([vm("z", { hypervisorPid: 1 })]) // not seen: the source fails before returning it
        r.source.fail(new InstanceSourceError({ reason: "boom" }))
        r.procs.set(1, running(1, { utime: 5 }))
        const failed = yield* collector.refresh
        assert.strictEqual(failed.sequence, 2)
        assert.isNotNull(failed.sourceError)
        assert.strictEqual(failed.sourceError?._tag, "InstanceSourceError")
        assert.strictEqual(failed.sourceError?.reason, "boom")
        assert.strictEqual(failed.sourceErrorsTotal, 1)
        // the last good listing is read again, with fresh values
        assert.deepStrictEqual(
          failed.stats.map((s) => [s.instanceId, s.cpuUsec]),
          [
            ["a", 50_000n],
            ["b", 20_000n]
          ]
        )
        assert.strictEqual(r.procs.released.size, 0)

        const failedAgain = yield* collector.refresh
        assert.strictEqual(failedAgain.sourceErrorsTotal, 2)

        r.source.fail(undefined)
        const recovered = yield* collector.refresh
        assert.isNull(recovered.sourceError)
        assert.strictEqual(recovered.sourceErrorsTotal, 2)
        assert.deepStrictEqual(
          recovered.stats.map((s) => s.instanceId),
          ["z"]
        )
        assert.strictEqual(r.source.calls(), 4)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a failing source is logged when it starts failing and when its reason changes, its end once", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 })] })
      r.procs.set(1, running(1, { utime: 1 }))
      const logs: Array<string> = []
      const logger = Logger.make(({ logLevel, message, annotations }) => {
        const reason = HashMap.get(annotations, "reason").pipe(Option.getOrElse(() => "-"))
        logs.push(`${logLevel.label} ${String(message)} ${String(reason)}`)
      })
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.collectAll
        r.source.fail(new InstanceSourceError({ reason: "boom" }))
        for (let i = 0; i < 3; i++) yield* collector.refresh
        r.source.fail(new InstanceSourceError({ reason: "bang" }))
        const failed = yield* collector.refresh
        r.source.fail(undefined)
        yield* collector.refresh
        yield* collector.refresh
        r.source.fail(new InstanceSourceError({ reason: "boom" }))
        yield* collector.refresh
        assert.strictEqual(failed.sourceErrorsTotal, 4) // every failure is counted, logged or not
        const warning =
          "WARN instance source failed; reading the last good listing (logged again when the reason changes)"
        assert.deepStrictEqual(logs, [
          `${warning} boom`,
          `${warning} bang`,
          "INFO instance source lists again -",
          `${warning} boom`
        ])
      }).pipe(Effect.provide(r.layer), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    })

    it.effect("logSourceFailures: false logs nothing of a failing source, and still reports and counts it", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 })], collector: { logSourceFailures: false } })
      r.procs.set(1, running(1, { utime: 1 }))
      const logs: Array<string> = []
      const logger = Logger.make(({ message }) => logs.push(String(message)))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        r.source.fail(new InstanceSourceError({ reason: "boom" }))
        const failed = yield* collector.refresh
        r.source.fail(undefined)
        yield* collector.refresh
        assert.strictEqual(failed.sourceError?.reason, "boom")
        assert.strictEqual(failed.sourceErrorsTotal, 1)
        assert.deepStrictEqual(logs, [])
      }).pipe(Effect.provide(r.layer), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
    })

    it.effect("a source that fails on the first call gives empty stats with the error", () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 })] })
      r.source.fail(new InstanceSourceError({ reason: "not ready" }))
      return Effect.gen(function* () {
        const snapshot = yield* (yield* Collector.Collector).collectAll
        assert.deepStrictEqual(snapshot.stats, [])
        assert.strictEqual(snapshot.sourceError?.reason, "not ready")
        assert.strictEqual(snapshot.sourceErrorsTotal, 1)
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("caching and sharing", () => {
    it.effect("collectAll within maxAge reuses the snapshot; at maxAge it collects again", () => {
      const r = rig({ collector: { maxAge: "1 second" } })
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = yield* collector.collectAll
        assert.strictEqual(first.sequence, 1)
        assert.strictEqual(first.sampledAtMs, 0)

        yield* TestClock.adjust("999 millis")
        const cached = yield* collector.collectAll
        assert.strictEqual(cached.sequence, 1)
        assert.strictEqual(cached, first)
        assert.strictEqual(r.source.calls(), 1)

        yield* TestClock.adjust("1 millis")
        const fresh = yield* collector.collectAll
        assert.strictEqual(fresh.sequence, 2)
        assert.strictEqual(fresh.sampledAtMs, 1000)
        assert.strictEqual(r.source.calls(), 2)

        yield* TestClock.adjust("5 seconds")
        assert.strictEqual((yield* collector.collectAll).sequence, 3)
        assert.strictEqual(r.source.calls(), 3)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("the default maxAge is 1 second", () => {
      const r = rig()
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.collectAll
        yield* TestClock.adjust("500 millis")
        assert.strictEqual((yield* collector.collectAll).sequence, 1)
        yield* TestClock.adjust("500 millis")
        assert.strictEqual((yield* collector.collectAll).sequence, 2)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("refresh always collects", () => {
      const r = rig({ collector: { maxAge: "1 hour" } })
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        assert.strictEqual((yield* collector.collectAll).sequence, 1)
        assert.strictEqual((yield* collector.refresh).sequence, 2)
        assert.strictEqual((yield* collector.refresh).sequence, 3)
        assert.strictEqual((yield* collector.collectAll).sequence, 3)
        assert.strictEqual(r.source.calls(), 3)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("latest is None before the first collection and the last snapshot after", () => {
      const r = rig()
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        assert.isTrue(Option.isNone(yield* collector.latest))
        assert.strictEqual(r.source.calls(), 0)
        const first = yield* collector.collectAll
        assert.deepStrictEqual(yield* collector.latest, Option.some(first))
        const second = yield* collector.refresh
        const latest = yield* collector.latest
        assert.isTrue(Option.isSome(latest) && latest.value === second)
        assert.strictEqual(r.source.calls(), 2)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("getInstanceStats does not create a snapshot", () => {
      const r = rig()
      r.procs.set(1, running(1))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.getInstanceStats(vm("a", { hypervisorPid: 1 }))
        assert.isTrue(Option.isNone(yield* collector.latest))
        assert.strictEqual(r.source.calls(), 0)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("10 concurrent callers share one in-flight collection over a slow source", () => {
      let calls = 0
      const procs = ProcReader.makeMemory()
      procs.set(1, running(1, { utime: 7 }))
      const slowList = Effect.sleep("100 millis").pipe(
        Effect.zipRight(
          Effect.sync(() => {
            calls++
            return [vm("a", { hypervisorPid: 1 })]
          })
        )
      )
      const layer = Collector.layer().pipe(
        Layer.provide(
          Layer.mergeAll(
            InstanceSource.layerEffect(slowList),
            ProcReader.layerMemory(procs),
            TapReader.layerMemory(TapReader.makeMemory())
          )
        )
      )
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const fiber = yield* Effect.all(
          Array.from({ length: 10 }, () => collector.collectAll),
          {
            concurrency: "unbounded"
          }
        ).pipe(Effect.fork)
        yield* TestClock.adjust("50 millis")
        assert.isTrue(Option.isNone(yield* collector.latest))
        assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)))
        yield* TestClock.adjust("50 millis")
        const snapshots = yield* Fiber.join(fiber)
        assert.strictEqual(snapshots.length, 10)
        assert.deepStrictEqual(
          snapshots.map((s) => s.sequence),
          Array.from({ length: 10 }, () => 1)
        )
        assert.isTrue(snapshots.every((s) => s === snapshots[0]))
        assert.strictEqual(calls, 1)
        assert.strictEqual(procs.reads.get(1), 1)
        assert.strictEqual(snapshots[0].stats[0].cpuUsec, 70_000n)

        // refresh while a collection is in flight joins it
        const a = yield* Effect.fork(collector.refresh)
        const b = yield* Effect.fork(collector.refresh)
        yield* TestClock.adjust("100 millis")
        const [sa, sb] = [yield* Fiber.join(a), yield* Fiber.join(b)]
        assert.strictEqual(sa.sequence, 2)
        assert.strictEqual(sb, sa)
        assert.strictEqual(calls, 2)
      }).pipe(Effect.provide(layer))
    })

    it.effect("an interrupted caller does not orphan the collection it started", () => {
      let calls = 0
      const slowList = Effect.sleep("100 millis").pipe(
        Effect.zipRight(
          Effect.sync((): ReadonlyArray<InstanceInfo> => {
            calls++
            return []
          })
        )
      )
      const layer = Collector.layer().pipe(
        Layer.provide(
          Layer.mergeAll(
            InstanceSource.layerEffect(slowList),
            ProcReader.layerMemory(ProcReader.makeMemory()),
            TapReader.layerMemory(TapReader.makeMemory())
          )
        )
      )
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = yield* Effect.fork(collector.collectAll)
        yield* TestClock.adjust("10 millis")
        const exit = yield* Fiber.interrupt(first)
        assert.isTrue(Exit.isInterrupted(exit))
        const second = yield* Effect.fork(collector.collectAll)
        yield* TestClock.adjust("90 millis")
        const snapshot = yield* Fiber.join(second)
        assert.strictEqual(snapshot.sequence, 1)
        assert.strictEqual(calls, 1)
        assert.isTrue(Option.isSome(yield* collector.latest))
      }).pipe(Effect.provide(layer))
    })
  })
})

describe("Collector slices", () => {
  /** How many setImmediate callbacks (event-loop turns) ran while `effect` ran. */
  const turnsDuring = <A, R>(effect: Effect.Effect<A, never, R>) =>
    Effect.gen(function* () {
      let turns = 0
      let handle: NodeJS.Immediate | undefined
      const tick = () => {
        turns++
        handle = setImmediate(tick)
      }
      handle = setImmediate(tick)
      turns = 0
      yield* effect.pipe(Effect.ensuring(Effect.sync(() => clearImmediate(handle))))
      return turns
    })

  const thousand = (collector?: Collector.Options) => {
    const instances = Array.from({ length: 1000 }, (_, i) => vm(`vm${i}`, { hypervisorPid: 1000 + i }))
    const r = rig({ instances, ...(collector === undefined ? {} : { collector }) })
    for (let i = 0; i < 1000; i++) r.procs.set(1000 + i, running(1000 + i))
    return r
  }

  it.live("a collection of 1,000 VMs lets the event loop run between its chunks (at least once per 64 VMs)", () => {
    const r = thousand()
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const turns = yield* turnsDuring(collector.refresh)
      assert.isAtLeast(turns, 1000 / 64 - 1)
      assert.lengthOf((yield* collector.latest).pipe(Option.getOrThrow).stats, 1000)
    }).pipe(Effect.provide(r.layer))
  })

  it.live("Effect.yieldNow() between chunks is no turn of the event loop (Effect resumes in a microtask)", () => {
    const r = thousand({ yieldToHost: Effect.yieldNow() })
    return Effect.gen(function* () {
      assert.strictEqual(yield* turnsDuring(Effect.flatMap(Collector.Collector, (c) => c.refresh)), 0)
    }).pipe(Effect.provide(r.layer))
  })
})

describe("Collector and TapReader.prepare", () => {
  /** The memory reader with `prepare`, logging prepares, samples and the event-loop turns between them. */
  const preparing = (instances: ReadonlyArray<InstanceInfo>) => {
    const memory = TapReader.makeMemory()
    const log: Array<string> = []
    const reader = TapReader.TapReader.of({
      ...memory.reader,
      sample: (requests, wanted, collection) =>
        Effect.zipRight(
          Effect.sync(() => log.push(`sample ${collection} ${requests.map((r) => r.name).join(",")}`)),
          memory.reader.sample(requests, wanted, collection)
        ),
      prepare: (collection) => Effect.sync(() => void log.push(`prepare ${collection}`))
    })
    const procs = ProcReader.makeMemory(fallbackKernelInfo)
    for (const info of instances)
      if (info.hypervisorPid !== undefined) procs.set(info.hypervisorPid, running(info.hypervisorPid))
    const turn = Effect.async<void>((resume) => {
      const handle = setImmediate(() => {
        log.push("turn")
        resume(Effect.void)
      })
      return Effect.sync(() => clearImmediate(handle))
    })
    const layer = Collector.layer({ groups: new Set(), chunkSize: 1, yieldToHost: turn }).pipe(
      Layer.provide(
        Layer.mergeAll(
          ProcReader.layerMemory(procs),
          Layer.succeed(TapReader.TapReader, reader),
          InstanceSource.layerMemory(InstanceSource.makeMemory(instances))
        )
      )
    )
    return { log, layer }
  }

  it.live(
    "the shared read comes first, once per collection, with a turn of the event loop before the first chunk",
    () => {
      const r = preparing([vm("a", { hypervisorPid: 11, tapDevice: "tap-a" }), vm("b", { hypervisorPid: 12 })])
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        yield* collector.refresh
        yield* collector.refresh
        assert.deepStrictEqual(r.log, [
          "prepare 1",
          "turn",
          "sample 1 tap-a",
          "turn",
          "sample 1 ",
          "prepare 2",
          "turn",
          "sample 2 tap-a",
          "turn",
          "sample 2 "
        ])
      }).pipe(Effect.provide(r.layer))
    }
  )

  it.live("no VM with a TAP: nothing to prepare", () => {
    const r = preparing([vm("a", { hypervisorPid: 11 })])
    return Effect.gen(function* () {
      yield* Effect.flatMap(Collector.Collector, (c) => c.refresh)
      assert.deepStrictEqual(r.log, ["sample 1 "])
    }).pipe(Effect.provide(r.layer))
  })
})

describe("Collector listMaxAge", () => {
  it.effect(
    "collect reuses a listing younger than listMaxAge and reads its VMs again; a VM found gone lists again",
    () => {
      const r = rig({ instances: [vm("a", { hypervisorPid: 1 })], collector: { listMaxAge: "5 seconds" } })
      r.procs.set(1, running(1))
      r.procs.set(2, running(2))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = yield* collector.collect
        assert.deepStrictEqual(
          first.stats.map((s) => [s.instanceId, s.state]),
          [["a", "running"]]
        )
        assert.strictEqual(r.source.calls(), 1)

        // a's process is gone, b is new: the reused listing finds a exited, so the collection lists again
        // at once: a is gone from the snapshot (the source no longer lists it), b is listed, read next time
        r.procs.remove(1)
        r.source.set([vm("b", { hypervisorPid: 2 })])
        yield* TestClock.adjust("4999 millis")
        const reused = yield* collector.collect
        assert.strictEqual(reused.sequence, 2)
        assert.deepStrictEqual(reused.stats, [])
        assert.strictEqual(r.source.calls(), 2)

        yield* TestClock.adjust("1 millis")
        const relisted = yield* collector.collect
        assert.deepStrictEqual(
          relisted.stats.map((s) => [s.instanceId, s.state]),
          [["b", "running"]]
        )
        assert.strictEqual(r.source.calls(), 2)

        // a source that still lists an exited VM (a file) is listed again once, when the VM is first found
        // exited (right after the refresh's own listing too), and not again for it: once exited, it stays
        r.source.set([vm("b", { hypervisorPid: 2 }), vm("d", { hypervisorPid: 4 })])
        assert.lengthOf((yield* collector.refresh).stats, 2)
        assert.strictEqual(r.source.calls(), 4)
        const exitedOnce = yield* collector.collect
        assert.deepStrictEqual(
          exitedOnce.stats.map((s) => [s.instanceId, s.state]),
          [
            ["b", "running"],
            ["d", "exited"]
          ]
        )
        assert.strictEqual(r.source.calls(), 4)

        // refresh lists whatever the listing's age; so does collectAll once the snapshot is older than maxAge
        r.source.set([vm("b", { hypervisorPid: 2 }), vm("c")])
        assert.lengthOf((yield* collector.refresh).stats, 2)
        assert.strictEqual(r.source.calls(), 5)
      }).pipe(Effect.provide(r.layer))
    }
  )

  it.effect("a listing made just before that still shows a VM now exited is made again at once", () => {
    // Discovery may list a process from the reader's last sight of it (up to 1.5 s old): the collection
    // that reads it as exited lists again, and the source, having seen it gone meanwhile, drops it.
    const a = vm("a", { hypervisorPid: 1 })
    const b = vm("b", { hypervisorPid: 2 })
    let listings = 0
    const source = InstanceSource.layerEffect(Effect.sync(() => (++listings <= 2 ? [a, b] : [b])))
    const procs = ProcReader.makeMemory(fallbackKernelInfo)
    procs.set(1, running(1))
    procs.set(2, running(2))
    const layer = Collector.layer({ groups: new Set() }).pipe(
      Layer.provide(
        Layer.mergeAll(ProcReader.layerMemory(procs), TapReader.layerMemory(TapReader.makeMemory()), source)
      )
    )
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      assert.lengthOf((yield* collector.refresh).stats, 2)
      assert.strictEqual(listings, 1)
      procs.remove(1) // the second listing still shows a: a moment behind
      const after = yield* collector.refresh
      assert.deepStrictEqual(
        after.stats.map((s) => [s.instanceId, s.state]),
        [["b", "running"]]
      )
      assert.strictEqual(listings, 3, "the refresh's listing, and once more for a")
      assert.deepStrictEqual(
        (yield* collector.refresh).stats.map((s) => s.instanceId),
        ["b"]
      )
      assert.strictEqual(listings, 4, "b running: no second listing")
    }).pipe(Effect.provide(layer))
  })

  it.effect("a failed listing is not reused: the next collection lists again", () => {
    const r = rig({ instances: [vm("a")], collector: { listMaxAge: "1 hour" } })
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      yield* collector.collect
      yield* TestClock.adjust("2 hours")
      r.source.fail(new InstanceSourceError({ kind: "unavailable", reason: "down" }))
      assert.isNotNull((yield* collector.collect).sourceError)
      r.source.fail(undefined)
      r.source.set([vm("b")])
      const next = yield* collector.collect
      assert.isNull(next.sourceError)
      assert.deepStrictEqual(
        next.stats.map((s) => s.instanceId),
        ["b"]
      )
      assert.strictEqual(r.source.calls(), 3)
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("a refresh during a collection that reuses its listing waits for it, then lists", () => {
    // Two chunks with a 100 ms pause between them keep the collection in flight on the TestClock.
    const r = rig({
      instances: [vm("a"), vm("b")],
      collector: { listMaxAge: "1 hour", chunkSize: 1, yieldToHost: Effect.sleep("100 millis") }
    })
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const first = yield* Effect.fork(collector.collect)
      yield* TestClock.adjust("100 millis")
      assert.strictEqual((yield* Fiber.join(first)).sequence, 1)
      assert.strictEqual(r.source.calls(), 1)

      r.source.set([vm("a"), vm("b"), vm("c")])
      const reusing = yield* Effect.fork(collector.collect)
      const refreshing = yield* Effect.fork(collector.refresh)
      const joining = yield* Effect.fork(collector.collect)
      yield* TestClock.adjust("100 millis")
      const reused = yield* Fiber.join(reusing)
      assert.strictEqual(reused.sequence, 2)
      assert.lengthOf(reused.stats, 2)
      assert.strictEqual(yield* Fiber.join(joining), reused)
      yield* TestClock.adjust("200 millis")
      const refreshed = yield* Fiber.join(refreshing)
      assert.strictEqual(refreshed.sequence, 3)
      assert.lengthOf(refreshed.stats, 3)
      assert.strictEqual(r.source.calls(), 2)
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("without listMaxAge every collection lists (the library's default)", () => {
    const r = rig({ instances: [vm("a")] })
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      yield* collector.collect
      yield* collector.collect
      yield* collector.collectAll
      assert.strictEqual(r.source.calls(), 2)
    }).pipe(Effect.provide(r.layer))
  })
})

describe("Collector interruption", () => {
  const emptyLayer = () =>
    Collector.layer().pipe(
      Layer.provide(
        Layer.mergeAll(
          InstanceSource.layerStatic([]),
          ProcReader.layerMemory(ProcReader.makeMemory()),
          TapReader.layerMemory(TapReader.makeMemory())
        )
      )
    )

  /**
   * Regression: `collect` once recorded `inflight` and forked the collection in two interruptible
   * steps; a caller interrupted between them left a Deferred nobody completed, and every later
   * `collectAll`/`refresh` waited forever. The scan moves the caller's yield point
   * (maxOpsBeforeYield) across that window and interrupts the caller there.
   */
  it.live("a caller interrupted right after claiming the in-flight slot does not wedge the collector", () =>
    Effect.gen(function* () {
      const wedgedAt: Array<number> = []
      for (let maxOps = 10; maxOps <= 200; maxOps++) {
        const wedged = yield* Effect.gen(function* () {
          const collector = yield* Collector.Collector
          const caller = yield* Effect.fork(collector.collectAll.pipe(Effect.withMaxOpsBeforeYield(maxOps)))
          yield* Effect.yieldNow()
          yield* Fiber.interrupt(caller)
          const next = yield* collector.refresh.pipe(Effect.timeoutOption("200 millis"))
          return Option.isNone(next)
        }).pipe(Effect.provide(emptyLayer()))
        if (wedged) wedgedAt.push(maxOps)
      }
      assert.deepStrictEqual(wedgedAt, [])
    })
  )
})

describe("InstanceSource", () => {
  it.effect("fromLister derives TAP names from ids only when networking is enabled", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromLister(
        Effect.succeed([
          {
            id: "ABCD1234EFGH5678",
            name: "web",
            hypervisorPid: 10,
            networkEnabled: true,
            allocatedVcpus: 2,
            allocatedMemoryBytes: GiB
          },
          {
            id: "qilviffnqzck2jrim1x6s2b1",
            name: "db",
            networkEnabled: false,
            allocatedVcpus: 1,
            allocatedMemoryBytes: 0
          }
        ])
      )
      const list = yield* source.list
      assert.deepStrictEqual(list, [
        {
          id: "ABCD1234EFGH5678",
          name: "web",
          hypervisorPid: 10,
          tapDevice: "hype-abcd1234",
          allocatedVcpus: 2,
          allocatedMemoryBytes: GiB
        },
        { id: "qilviffnqzck2jrim1x6s2b1", name: "db", allocatedVcpus: 1, allocatedMemoryBytes: 0 }
      ])
    })
  )

  it.effect("fromEffect wraps a typed failure into InstanceSourceError", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromEffect(Effect.fail("manager unavailable"))
      const exit = yield* Effect.exit(source.list)
      assert.isTrue(Exit.isFailure(exit) && !Exit.isInterrupted(exit))
      const error = yield* Effect.flip(source.list)
      assert.strictEqual(error._tag, "InstanceSourceError")
      assert.strictEqual(error.reason, "manager unavailable")
    })
  )

  it.effect("fromEffect describes a plain-object failure as JSON", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromEffect(Effect.fail({ code: "ECONNRESET" }))
      const error = yield* Effect.flip(source.list)
      assert.strictEqual(error.reason, '{"code":"ECONNRESET"}')
    })
  )

  it.effect("fromEffect uses the message of an Error failure", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromEffect(Effect.fail(new Error("ECONNREFUSED")))
      const error = yield* Effect.flip(source.list)
      assert.strictEqual(error._tag, "InstanceSourceError")
      assert.strictEqual(error.reason, "ECONNREFUSED")
    })
  )

  it.effect("fromEffect keeps an InstanceSourceError as it is", () =>
    Effect.gen(function* () {
      const original = new InstanceSourceError({ reason: "own" })
      const source = yield* InstanceSource.fromEffect(Effect.fail(original))
      assert.strictEqual(yield* Effect.flip(source.list), original)
    })
  )

  it.effect("fromEffect turns a defect (Effect.die) into a typed InstanceSourceError, not a crash", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromEffect(Effect.die(new Error("kaboom")))
      const exit = yield* Effect.exit(source.list)
      if (Exit.isSuccess(exit)) return assert.fail("expected a failure")
      const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
      assert.isDefined(failure)
      assert.strictEqual(failure?._tag, "InstanceSourceError")
      assert.strictEqual(failure?.reason, "kaboom")
    })
  )

  it.effect("fromEffect wraps a thrown exception inside Effect.sync", () =>
    Effect.gen(function* () {
      const source = yield* InstanceSource.fromEffect(
        Effect.sync((): ReadonlyArray<InstanceInfo> => {
          throw new TypeError("cannot read properties of undefined")
        })
      )
      const error = yield* Effect.flip(source.list)
      assert.strictEqual(error.reason, "cannot read properties of undefined")
    })
  )

  it.effect("a defecting source is reported in the snapshot and the collection succeeds", () => {
    const procs = ProcReader.makeMemory()
    const layer = Collector.layer().pipe(
      Layer.provide(
        Layer.mergeAll(
          InstanceSource.layerEffect(Effect.die("listing exploded")),
          ProcReader.layerMemory(procs),
          TapReader.layerMemory(TapReader.makeMemory())
        )
      )
    )
    return Effect.gen(function* () {
      const snapshot = yield* (yield* Collector.Collector).collectAll
      assert.strictEqual(snapshot.sourceError?.reason, "listing exploded")
      assert.strictEqual(snapshot.sourceErrorsTotal, 1)
      assert.deepStrictEqual(snapshot.stats, [])
    }).pipe(Effect.provide(layer))
  })

  it.effect("fromManager and layerStatic list what they are given", () =>
    Effect.gen(function* () {
      const instances = [vm("a", { hypervisorPid: 1, tapDevice: "hype-a" })]
      const manager = yield* InstanceSource.fromManager({ listRunningInstancesInfo: Effect.succeed(instances) })
      assert.deepStrictEqual(yield* manager.list, instances)
      const fixed = yield* InstanceSource.InstanceSource.pipe(Effect.provide(InstanceSource.layerStatic(instances)))
      assert.deepStrictEqual(yield* fixed.list, instances)
    })
  )

  it.effect("fromEffect provides the context captured at construction", () =>
    Effect.gen(function* () {
      class Inventory extends Effect.Tag("test/Inventory")<
        Inventory,
        { readonly all: ReadonlyArray<InstanceInfo> }
      >() {}
      const source = yield* InstanceSource.fromEffect(Effect.map(Inventory, (inventory) => inventory.all)).pipe(
        Effect.provideService(Inventory, { all: [vm("from-context")] })
      )
      const list = yield* source.list
      assert.deepStrictEqual(
        list.map((i) => i.id),
        ["from-context"]
      )
    })
  )
})
