/**
 * The process side of the metric groups over the in-memory reader: which files each group reads,
 * the values, a failed read (null + reason, never 0), new series on a counter going down or the vCPU
 * threads changing, and a replaced vCPU thread's own series.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import * as Collector from "../src/Collector.js"
import { PermissionDenied, ProcessGone } from "../src/Errors.js"
import type { InstanceInfo } from "../src/Instance.js"
import * as InstanceSource from "../src/InstanceSource.js"
import { type StatLine, statLine } from "../src/internal/statLine.js"
import type { KernelInfo } from "../src/Kernel.js"
import { allGroups, defaultGroups, type MetricGroup } from "../src/MetricGroup.js"
import * as ProcReader from "../src/ProcReader.js"
import * as TapReader from "../src/TapReader.js"
import type { VmStats } from "../src/VmStats.js"

const bootTimeMs = 1_700_000_000_000
const kernel: KernelInfo = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs }
const PID = 10

const rig = (groups: ReadonlySet<MetricGroup>) => {
  const procs = ProcReader.makeMemory(kernel)
  const source = InstanceSource.makeMemory([
    { id: "a", name: "vm-a", hypervisorPid: PID, allocatedVcpus: 2, allocatedMemoryBytes: 1 << 30 } as InstanceInfo
  ])
  const layer = Collector.layer({ groups }).pipe(
    Layer.provide(
      Layer.mergeAll(
        ProcReader.layerMemory(procs),
        TapReader.layerMemory(TapReader.makeMemory()),
        InstanceSource.layerMemory(source)
      )
    )
  )
  return { procs, layer }
}

const status = (kB: { anon?: number; file?: number; shmem?: number; swap?: number; huge?: number } = {}) =>
  [
    "Name:\tqemu-system-x86",
    "State:\tS (sleeping)",
    `VmRSS:\t${(kB.anon ?? 0) + (kB.file ?? 0) + (kB.shmem ?? 0)} kB`,
    `RssAnon:\t${kB.anon ?? 1000} kB`,
    `RssFile:\t${kB.file ?? 200} kB`,
    `RssShmem:\t${kB.shmem ?? 30} kB`,
    `HugetlbPages:\t${kB.huge ?? 0} kB`,
    `VmSwap:\t${kB.swap ?? 4} kB`,
    "Threads:\t4",
    ""
  ].join("\n")

const io = (read: bigint | number, write: bigint | number) =>
  `rchar: 9999\nwchar: 8888\nsyscr: 1\nsyscw: 2\nread_bytes: ${read}\nwrite_bytes: ${write}\ncancelled_write_bytes: 0\n`

const task = (tid: number, comm: string, run: number, wait: number, startTicks = 600): ProcReader.MemoryTask => ({
  tid,
  comm: `${comm}\n`,
  startTicks: BigInt(startTicks),
  schedstat: `${run} ${wait} ${run === 0 ? 0 : 7}\n`
})

const vmm = (
  fields: {
    stat?: Omit<StatLine, "pid">
    status?: string | ProcReader.MemoryProcess["status"]
    io?: ProcReader.MemoryProcess["io"]
    tasks?: ProcReader.MemoryProcess["tasks"]
  } = {}
): ProcReader.MemoryProcess => ({
  stat: statLine({ pid: PID, startTime: 500, utime: 300, stime: 120, majorFaults: 17, ...fields.stat }),
  statm: "1000 200 50 10 0 300 0\n",
  status: fields.status ?? status(),
  io: fields.io ?? io(4096, 8192),
  tasks: fields.tasks ?? [
    task(PID, "cloud-hyperviso", 5000, 100),
    task(11, "vcpu0", 3_000_000, 400),
    task(12, "vcpu1", 2_000_000, 600),
    task(13, "http-server", 10, 1)
  ]
})

const reasons = (stats: VmStats) => stats.unavailable.map((u) => `${u.source}:${u.reason}`)

const collect = Effect.flatMap(Collector.Collector, (collector) => collector.refresh).pipe(
  Effect.map((snapshot) => snapshot.stats[0])
)

describe("metric groups: process side", () => {
  it.effect("no group: none of the groups' files is read and their values are null", () => {
    const r = rig(new Set())
    r.procs.set(PID, vmm())
    return Effect.gen(function* () {
      const stats = yield* collect
      for (const file of ["status", "io", "tasks", "schedstat"] as const)
        assert.strictEqual(r.procs.fileReads(PID, file), 0)
      assert.strictEqual(r.procs.fileReads(PID, "stat"), 1)
      assert.strictEqual(stats.cpuUsec, 4_200_000n) // the seed's values stay
      for (const key of ["systemUsec", "majorFaults", "cpuDelayNs", "memoryAnonBytes", "diskWriteBytes"] as const) {
        assert.isNull(stats[key], key)
      }
      assert.deepStrictEqual(stats.vcpus, [])
      assert.deepStrictEqual(stats.unavailable, [])
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("each group reads only its files", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[MetricGroup, ReadonlyArray<"status" | "io" | "tasks">]> = [
        ["memory", ["status"]],
        ["disk", ["io"]],
        ["cpu", ["tasks"]],
        ["vcpu", ["tasks"]],
        ["packets", []],
        ["network", []],
        ["interfaces", []]
      ]
      for (const [group, files] of cases) {
        const r = rig(new Set([group]))
        r.procs.set(PID, vmm())
        yield* collect.pipe(Effect.provide(r.layer))
        for (const file of ["status", "io", "tasks"] as const) {
          assert.strictEqual(r.procs.fileReads(PID, file), files.includes(file) ? 1 : 0, `${group} reads ${file}`)
        }
      }
    })
  )

  it.effect("all groups: every value, in bytes, µs and ns", () => {
    const r = rig(new Set(allGroups))
    r.procs.set(PID, vmm({ status: status({ anon: 1000, file: 200, shmem: 30, swap: 4, huge: 4096 }) }))
    return Effect.gen(function* () {
      const stats = yield* collect
      assert.deepStrictEqual(stats.unavailable, [])
      assert.strictEqual(stats.systemUsec, 1_200_000n) // 120 ticks at 100 Hz
      assert.strictEqual(stats.majorFaults, 17n)
      assert.strictEqual(stats.memoryAnonBytes, 1000n * 1024n)
      assert.strictEqual(stats.memoryFileBytes, 200n * 1024n)
      assert.strictEqual(stats.memoryShmemBytes, 30n * 1024n)
      assert.strictEqual(stats.memorySwapBytes, 4n * 1024n)
      assert.strictEqual(stats.memoryHugetlbBytes, 4096n * 1024n)
      assert.strictEqual(stats.diskReadBytes, 4096n)
      assert.strictEqual(stats.diskWriteBytes, 8192n)
      assert.strictEqual(stats.cpuDelayNs, 1000n) // 400 + 600: the vCPU threads only
      assert.deepStrictEqual(stats.vcpus, [
        { vcpu: 0, tid: 11, runNs: 3_000_000n, delayNs: 400n, seriesStartTimeMs: bootTimeMs + 6000 },
        { vcpu: 1, tid: 12, runNs: 2_000_000n, delayNs: 600n, seriesStartTimeMs: bootTimeMs + 6000 }
      ])
      assert.strictEqual(r.procs.fileReads(PID, "schedstat"), 2)
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("the default groups: cpu delay but no per-vCPU list, no major faults", () => {
    const r = rig(defaultGroups)
    r.procs.set(PID, vmm())
    return Effect.gen(function* () {
      const stats = yield* collect
      assert.strictEqual(stats.cpuDelayNs, 1000n)
      assert.strictEqual(stats.systemUsec, 1_200_000n)
      assert.deepStrictEqual(stats.vcpus, [])
      assert.isNull(stats.majorFaults)
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("vcpu alone: the per-vCPU list without the delay sum; packets alone: major faults only", () =>
    Effect.gen(function* () {
      const vcpu = rig(new Set(["vcpu"]))
      vcpu.procs.set(PID, vmm())
      const perVcpu = yield* collect.pipe(Effect.provide(vcpu.layer))
      assert.deepStrictEqual(
        perVcpu.vcpus.map((v) => [v.vcpu, v.delayNs]),
        [
          [0, 400n],
          [1, 600n]
        ]
      )
      assert.isNull(perVcpu.cpuDelayNs)
      assert.isNull(perVcpu.systemUsec)
      const packets = rig(new Set(["packets"]))
      packets.procs.set(PID, vmm())
      const faults = yield* collect.pipe(Effect.provide(packets.layer))
      assert.strictEqual(faults.majorFaults, 17n)
      assert.isNull(faults.systemUsec)
      assert.deepStrictEqual(faults.vcpus, [])
    })
  )

  describe("a failed read is null with its reason, never 0", () => {
    it.effect("status refused, io refused (another user's process): memory and disk null, counted", () => {
      const r = rig(new Set(allGroups))
      r.procs.set(
        PID,
        vmm({
          status: new PermissionDenied({ path: "/proc/10/status" }),
          io: new PermissionDenied({ path: "/proc/10/io" })
        })
      )
      return Effect.gen(function* () {
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), ["status:permission_denied", "io:permission_denied"])
        for (const key of ["memoryAnonBytes", "memoryHugetlbBytes", "diskReadBytes", "diskWriteBytes"] as const) {
          assert.isNull(stats[key], key)
        }
        assert.strictEqual(stats.cpuDelayNs, 1000n) // the rest is read
        const snapshot = yield* Effect.flatMap(Collector.Collector, (c) => c.refresh)
        assert.deepInclude(snapshot.unavailableTotals, { source: "io", reason: "permission_denied", count: 2 })
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("status unparsable, io missing its lines: parse_error for each", () => {
      const r = rig(new Set(allGroups))
      r.procs.set(PID, vmm({ status: "RssAnon:\tlots kB\n", io: "rchar: 1\n" }))
      return Effect.gen(function* () {
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), ["status:parse_error", "io:parse_error"])
        assert.isNull(stats.memoryAnonBytes)
        assert.isNull(stats.diskReadBytes)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a status line beyond 2^64 − 1 bytes is null with out_of_range, the others kept", () => {
      const r = rig(new Set(["memory"]))
      r.procs.set(PID, vmm({ status: status().replace("VmSwap:\t4 kB", "VmSwap:\t18446744073709551615 kB") }))
      return Effect.gen(function* () {
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), ["status:out_of_range"])
        assert.isNull(stats.memorySwapBytes)
        assert.strictEqual(stats.memoryAnonBytes, 1000n * 1024n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("threads carrying the process's name (QEMU without debug-threads): vcpu_threads_unnamed", () => {
      const r = rig(new Set(allGroups))
      const qemu = "qemu-system-x86"
      r.procs.set(PID, vmm({ tasks: [task(PID, qemu, 1, 1), task(11, qemu, 5, 5), task(12, qemu, 5, 5)] }))
      return Effect.gen(function* () {
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), ["tasks:vcpu_threads_unnamed"])
        assert.include(stats.unavailable[0].message, "debug-threads=on")
        assert.isNull(stats.cpuDelayNs)
        assert.deepStrictEqual(stats.vcpus, [])
        assert.strictEqual(stats.systemUsec, 1_200_000n)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("no vCPU thread at all: no_vcpu_threads; a failed listing: its reason", () =>
      Effect.gen(function* () {
        const none = rig(new Set(["cpu"]))
        none.procs.set(PID, vmm({ tasks: [task(PID, "firecracker", 1, 1), task(11, "fc_api", 1, 1)] }))
        assert.deepStrictEqual(reasons(yield* collect.pipe(Effect.provide(none.layer))), ["tasks:no_vcpu_threads"])
        const refused = rig(new Set(["cpu"]))
        refused.procs.set(PID, vmm({ tasks: new PermissionDenied({ path: "/proc/10/task" }) }))
        const stats = yield* collect.pipe(Effect.provide(refused.layer))
        assert.deepStrictEqual(reasons(stats), ["tasks:permission_denied"])
        assert.isNull(stats.cpuDelayNs)
      })
    )

    it.effect("one vCPU thread unreadable: the sum is null, the other vCPU is still listed", () => {
      const r = rig(new Set(allGroups))
      const tasks = [
        task(PID, "cloud-hyperviso", 1, 1),
        task(11, "vcpu0", 3000, 400),
        { ...task(12, "vcpu1", 0, 0), schedstat: new ProcessGone({ pid: 12, path: "/proc/10/task/12/schedstat" }) }
      ]
      r.procs.set(PID, vmm({ tasks }))
      return Effect.gen(function* () {
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), ["schedstat:process_gone"])
        assert.isNull(stats.cpuDelayNs)
        assert.deepStrictEqual(
          stats.vcpus.map((v) => [v.vcpu, v.delayNs]),
          [[0, 400n]]
        )
      }).pipe(Effect.provide(r.layer))
    })

    it.effect(
      "a kernel without schedstat accounting (every vCPU thread reads 0 0 0): schedstat_disabled, not 0",
      () => {
        const r = rig(new Set(allGroups))
        const tasks = [task(PID, "firecracker", 0, 0), task(11, "fc_vcpu 0", 0, 0), task(12, "fc_vcpu 1", 0, 0)]
        r.procs.set(PID, vmm({ tasks }))
        return Effect.gen(function* () {
          const stats = yield* collect
          assert.deepStrictEqual(reasons(stats), ["schedstat:schedstat_disabled"])
          assert.isNull(stats.cpuDelayNs)
          assert.deepStrictEqual(stats.vcpus, [])
        }).pipe(Effect.provide(r.layer))
      }
    )

    it.effect("a reused pid: every requested file is pid_reused, no value of the other process", () => {
      const r = rig(new Set(allGroups))
      r.procs.set(PID, vmm())
      return Effect.gen(function* () {
        yield* collect
        r.procs.set(PID, vmm({ stat: { startTime: 900 } }))
        const stats = yield* collect
        assert.deepStrictEqual(reasons(stats), [
          "stat:pid_reused",
          "statm:pid_reused",
          "status:pid_reused",
          "io:pid_reused",
          "tasks:pid_reused"
        ])
        for (const key of ["systemUsec", "majorFaults", "cpuDelayNs", "memoryAnonBytes", "diskWriteBytes"] as const) {
          assert.isNull(stats[key], key)
        }
        assert.deepStrictEqual(stats.vcpus, [])
      }).pipe(Effect.provide(r.layer))
    })
  })

  describe("series", () => {
    const step = (r: ReturnType<typeof rig>, process: ProcReader.MemoryProcess) =>
      Effect.gen(function* () {
        yield* TestClock.adjust("10 seconds")
        r.procs.set(PID, process)
        return yield* collect
      })

    it.effect("disk bytes going down under the same process: new epoch from the previous sample", () => {
      const r = rig(new Set(allGroups))
      return Effect.gen(function* () {
        const first = yield* step(r, vmm({ io: io(100, 5000) }))
        const grown = yield* step(r, vmm({ io: io(200, 6000) }))
        assert.strictEqual(first.epoch, 0)
        assert.strictEqual(grown.epoch, 0)
        assert.strictEqual(grown.seriesStartTimeMs, bootTimeMs + 5000)
        const down = yield* step(r, vmm({ io: io(200, 10) }))
        assert.strictEqual(down.epoch, 1)
        assert.strictEqual(down.seriesStartTimeMs, grown.sampledAtMs)
        const after = yield* step(r, vmm({ io: io(300, 20) }))
        assert.strictEqual(after.epoch, 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect.each([
      ["stime", vmm({ stat: { stime: 119 } })],
      ["majflt", vmm({ stat: { majorFaults: 16 } })],
      [
        "a vCPU thread's delay",
        vmm({
          tasks: [
            task(PID, "cloud-hyperviso", 1, 1),
            task(11, "vcpu0", 3_000_000, 399),
            task(12, "vcpu1", 2_000_000, 600)
          ]
        })
      ]
    ] as const)("%s going down: new epoch", ([, lower]) => {
      const r = rig(new Set(allGroups))
      return Effect.gen(function* () {
        assert.strictEqual((yield* step(r, vmm())).epoch, 0)
        assert.strictEqual((yield* step(r, vmm())).epoch, 0)
        assert.strictEqual((yield* step(r, lower)).epoch, 1)
      }).pipe(Effect.provide(r.layer))
    })

    it.effect("a replaced vCPU thread starts its own series; the VM's delay sum starts a new one", () => {
      const r = rig(new Set(allGroups))
      const threads = (vcpu1: ProcReader.MemoryTask) => [
        task(PID, "cloud-hyperviso", 1, 1),
        task(11, "vcpu0", 3_000_000, 400),
        vcpu1
      ]
      return Effect.gen(function* () {
        const first = yield* step(r, vmm({ tasks: threads(task(12, "vcpu1", 2_000_000, 600, 600)) }))
        const again = yield* step(r, vmm({ tasks: threads(task(12, "vcpu1", 2_500_000, 700, 600)) }))
        assert.strictEqual(again.epoch, 0)
        assert.deepStrictEqual(
          again.vcpus.map((v) => v.seriesStartTimeMs),
          [bootTimeMs + 6000, bootTimeMs + 6000]
        )
        // vCPU 1 now runs on thread 20, started at 1234 ticks: its counters start from its start.
        const replaced = yield* step(r, vmm({ tasks: threads(task(20, "vcpu1", 50, 900, 1234)) }))
        const vcpu1 = replaced.vcpus.find((v) => v.vcpu === 1)
        assert.deepStrictEqual(vcpu1, {
          vcpu: 1,
          tid: 20,
          runNs: 50n,
          delayNs: 900n,
          seriesStartTimeMs: bootTimeMs + 12_340
        })
        assert.strictEqual(replaced.vcpus.find((v) => v.vcpu === 0)?.seriesStartTimeMs, bootTimeMs + 6000)
        // The sum went up (400 + 900 > 400 + 700), yet it sums another thread now: a new series.
        assert.strictEqual(replaced.cpuDelayNs, 1300n)
        assert.strictEqual(replaced.epoch, 1)
        assert.strictEqual(replaced.seriesStartTimeMs, again.sampledAtMs)
        assert.strictEqual(first.epoch, 0)
      }).pipe(Effect.provide(r.layer))
    })
  })
})
