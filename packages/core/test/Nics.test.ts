/** Every NIC of a VM through the collector, with in-memory readers: perspective, sums, nulls, groups, netns, epochs. */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import * as Collector from "../src/Collector.js"
import { PermissionDenied } from "../src/Errors.js"
import { type InstanceInfo, tapsOf } from "../src/Instance.js"
import * as InstanceSource from "../src/InstanceSource.js"
import { statLine } from "../src/internal/statLine.js"
import { fallbackKernelInfo } from "../src/Kernel.js"
import { allGroups, defaultGroups, type MetricGroup } from "../src/MetricGroup.js"
import * as ProcReader from "../src/ProcReader.js"
import * as TapReader from "../src/TapReader.js"
import type { VmStats } from "../src/VmStats.js"

const rig = (groups: ReadonlySet<MetricGroup> = new Set(allGroups)) => {
  const procs = ProcReader.makeMemory(fallbackKernelInfo)
  const taps = TapReader.makeMemory()
  const layer = Collector.layer({ maxAge: 0, groups }).pipe(
    Layer.provide(
      Layer.mergeAll(
        ProcReader.layerMemory(procs),
        TapReader.layerMemory(taps),
        InstanceSource.layerMemory(InstanceSource.makeMemory([]))
      )
    )
  )
  return { procs, taps, layer }
}

const running = (pid: number, startTime = 100): ProcReader.MemoryProcess => ({
  stat: statLine({ pid, startTime }),
  statm: "1000 200 50 10 0 300 0\n"
})

const vm = (taps: ReadonlyArray<string>, pid: number | null = 10): InstanceInfo => ({
  id: "vm",
  name: "vm",
  ...(pid === null ? {} : { hypervisorPid: pid }),
  allocatedVcpus: 1,
  allocatedMemoryBytes: 1,
  ...(taps.length === 0 ? {} : { tapDevice: taps[0], tapDevices: taps })
})

/** A TAP's host-side counters: rx = what the host received from the VM. */
const hostTap = (n: number): TapReader.MemoryTap => ({
  rxBytes: `${n * 1000 + 1}\n`,
  txBytes: `${n * 1000 + 2}\n`,
  rxPackets: `${n * 100 + 3}\n`,
  txPackets: `${n * 100 + 4}\n`,
  rxErrors: `${n + 5}\n`,
  txErrors: `${n + 6}\n`,
  rxDropped: `${n + 7}\n`,
  txDropped: `${n + 8}\n`
})

/** The network's unavailable values (the process side's groups have their own). */
const reasons = (stats: VmStats) =>
  stats.unavailable.filter((u) => u.source === "tap" || u.source === "netdev").map((u) => `${u.source}:${u.reason}`)

const netOf = (s: VmStats) => [
  s.netRxBytes,
  s.netTxBytes,
  s.netRxPackets,
  s.netTxPackets,
  s.netRxErrors,
  s.netTxErrors,
  s.netRxDropped,
  s.netTxDropped
]

describe("every NIC of a VM", () => {
  it.effect("per NIC the VM's perspective (rx = TAP tx) for all eight counters; the VM's values are the sums", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.set("t1", hostTap(2))
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats(vm(["t0", "t1"]))
      assert.deepStrictEqual(s.interfaces, [
        {
          name: "t0",
          via: "sysfs",
          rxBytes: 1002n,
          txBytes: 1001n,
          rxPackets: 104n,
          txPackets: 103n,
          rxErrors: 7n,
          txErrors: 6n,
          rxDropped: 9n,
          txDropped: 8n
        },
        {
          name: "t1",
          via: "sysfs",
          rxBytes: 2002n,
          txBytes: 2001n,
          rxPackets: 204n,
          txPackets: 203n,
          rxErrors: 8n,
          txErrors: 7n,
          rxDropped: 10n,
          txDropped: 9n
        }
      ])
      assert.deepStrictEqual(netOf(s), [3004n, 3002n, 308n, 306n, 15n, 13n, 19n, 17n])
      assert.strictEqual(s.tapDevice, "t0")
      assert.deepStrictEqual(reasons(s), [])
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("one NIC: the seed's values are unchanged (the TAP's own, swapped)", () => {
    const r = rig(new Set())
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats({ ...vm([]), tapDevice: "t0" })
      assert.deepStrictEqual(netOf(s), [1002n, 1001n, null, null, null, null, null, null])
      assert.deepStrictEqual(s.interfaces, []) // group off
      assert.deepStrictEqual(r.taps.lastWanted(), TapReader.bytesOnly) // nothing beyond bytes read
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("groups decide what is read and shown: default = bytes + drops, no per-NIC list", () => {
    const r = rig(defaultGroups)
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.set("t1", hostTap(2))
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats(vm(["t0", "t1"]))
      assert.deepStrictEqual(netOf(s), [3004n, 3002n, null, null, null, null, 19n, 17n])
      assert.deepStrictEqual(s.interfaces, [])
      assert.deepStrictEqual(r.taps.lastWanted(), { packets: false, dropped: true })
      const p = rig(new Set(["packets"]))
      p.procs.set(10, running(10))
      p.taps.set("t0", hostTap(1))
      p.taps.set("t1", hostTap(2))
      const packets = yield* Effect.provide(
        Effect.flatMap(Collector.Collector, (c) => c.getInstanceStats(vm(["t0", "t1"]))),
        p.layer
      )
      assert.deepStrictEqual(netOf(packets), [3004n, 3002n, 308n, 306n, 15n, 13n, null, null])
      assert.deepStrictEqual(p.taps.lastWanted(), { packets: true, dropped: false })
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("a NIC that cannot be read: its values null with its reason; every sum null (never a partial sum)", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.set("t2", {
      ...hostTap(3),
      rxDropped: new PermissionDenied({ path: "/sys/class/net/t2/statistics/rx_dropped" })
    })
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats(vm(["t0", "t1", "t2", "bad/name"]))
      assert.deepStrictEqual(netOf(s), [null, null, null, null, null, null, null, null])
      assert.deepStrictEqual(
        s.interfaces.map((nic) => [nic.name, nic.rxBytes]),
        [
          ["t0", 1002n],
          ["t1", null],
          ["t2", null],
          ["bad/name", null]
        ]
      )
      assert.deepStrictEqual(reasons(s), ["tap:tap_missing", "tap:permission_denied", "tap:invalid_tap_name"])
      assert.include(s.unavailable.find((u) => u.source === "tap")?.message, "t1")
      assert.isFalse(r.taps.reads.has("bad/name")) // an invalid name never reaches the reader
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("a TAP only in the VMM's network namespace is read there (via netns), with the VM's own pid only", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.setInNetns(10, "t1", hostTap(2))
    r.taps.setInNetns(99, "t2", hostTap(3)) // another process's namespace: never the VM's
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats(vm(["t0", "t1"]))
      assert.deepStrictEqual(
        s.interfaces.map((nic) => [nic.name, nic.via, nic.rxBytes]),
        [
          ["t0", "sysfs", 1002n],
          ["t1", "netns", 2002n]
        ]
      )
      assert.strictEqual(s.netRxBytes, 3004n)
      const other = yield* collector.getInstanceStats(vm(["t2"]))
      assert.deepStrictEqual(reasons(other), ["tap:tap_missing"])
      const noPid = yield* collector.getInstanceStats(vm(["t1"], null))
      assert.deepStrictEqual(reasons(noPid), ["tap:tap_missing"])
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("a netns reading is discarded when the pid is no longer the VM's process (pid_reused)", () => {
    const r = rig()
    r.procs.set(10, running(10, 100))
    r.taps.setInNetns(10, "t1", hostTap(2))
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const info = vm(["t1"])
      assert.strictEqual((yield* collector.getInstanceStats(info)).netRxBytes, 2002n)
      r.procs.set(10, running(10, 777)) // same pid, another process
      const s = yield* collector.getInstanceStats(info)
      assert.strictEqual(s.state, "exited")
      assert.strictEqual(s.netRxBytes, null)
      assert.deepStrictEqual(s.interfaces[0].rxBytes, null)
      assert.include(reasons(s), "netdev:pid_reused")
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("a failed netns read is reported with source netdev", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.setInNetns(10, "t1", { ...hostTap(2), txPackets: "garbage" })
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      const s = yield* collector.getInstanceStats(vm(["t1"]))
      assert.deepStrictEqual(reasons(s), ["netdev:parse_error"])
      assert.strictEqual(s.interfaces[0].via, "netns")
    }).pipe(Effect.provide(r.layer))
  })

  it.effect(
    "epochs: any NIC's counter going down (packets, drops too) starts a new series; a NIC back after a gap does not",
    () => {
      const r = rig()
      r.procs.set(10, running(10))
      r.taps.set("t0", hostTap(1))
      r.taps.set("t1", hostTap(2))
      return Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const info = vm(["t0", "t1"])
        const epochAfter = (change: () => void) =>
          Effect.gen(function* () {
            change()
            yield* TestClock.adjust("1 second")
            return (yield* collector.getInstanceStats(info)).epoch
          })
        assert.strictEqual(yield* epochAfter(() => {}), 0)
        // t1 unreadable for a while: sums null, no new series; back with the same values: still none.
        assert.strictEqual(yield* epochAfter(() => r.taps.remove("t1")), 0)
        assert.strictEqual(yield* epochAfter(() => r.taps.set("t1", hostTap(2))), 0)
        // Only t1's tx_dropped went down (the bytes grew): a new series all the same.
        assert.strictEqual(yield* epochAfter(() => r.taps.set("t1", { ...hostTap(3), txDropped: "0\n" })), 1)
        // Only t0's rx_packets went down.
        assert.strictEqual(yield* epochAfter(() => r.taps.set("t0", { ...hostTap(1), rxPackets: "1\n" })), 2)
        assert.strictEqual(yield* epochAfter(() => {}), 2)
      }).pipe(Effect.provide(r.layer))
    }
  )

  it.effect("a NIC removed from the VM makes the sums go down: a new series", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.set("t1", hostTap(2))
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      assert.strictEqual((yield* collector.getInstanceStats(vm(["t0", "t1"]))).epoch, 0)
      const one = yield* collector.getInstanceStats(vm(["t0"]))
      assert.strictEqual(one.netRxBytes, 1002n)
      assert.strictEqual(one.epoch, 1)
    }).pipe(Effect.provide(r.layer))
  })

  it.effect("released TAPs: a NIC dropped from the listing is released after a collection", () => {
    const r = rig()
    r.procs.set(10, running(10))
    r.taps.set("t0", hostTap(1))
    r.taps.set("t1", hostTap(2))
    const source = InstanceSource.makeMemory([vm(["t0", "t1"])])
    const layer = Collector.layer({ maxAge: 0, groups: new Set(allGroups) }).pipe(
      Layer.provide(
        Layer.mergeAll(
          ProcReader.layerMemory(r.procs),
          TapReader.layerMemory(r.taps),
          InstanceSource.layerMemory(source)
        )
      )
    )
    return Effect.gen(function* () {
      const collector = yield* Collector.Collector
      yield* collector.refresh
      assert.strictEqual(r.taps.released.size, 0)
      source.set([vm(["t0"])])
      yield* collector.refresh
      assert.deepStrictEqual([...r.taps.released], ["t1"])
    }).pipe(Effect.provide(layer))
  })

  it("tapsOf: tapDevices wins, tapDevice alone otherwise, a name listed twice counts once", () => {
    assert.deepStrictEqual(tapsOf({}), [])
    assert.deepStrictEqual(tapsOf({ tapDevice: "a" }), ["a"])
    assert.deepStrictEqual(tapsOf({ tapDevice: "a", tapDevices: ["a", "b"] }), ["a", "b"])
    assert.deepStrictEqual(tapsOf({ tapDevices: ["a", "b", "a"] }), ["a", "b"])
  })
})
