/**
 * Every NIC of a VM, end to end with real components: real TAPs with real frames through them, a
 * discovered fake QEMU with two `-netdev tap`, an instances file with `taps: [..]`, a libvirt status
 * file with two `<interface>`s, and a TAP moved into a network namespace with its fake VMM. Each NIC's
 * values equal `ip -s -j link` of its TAP (the VM's perspective: swapped), the VM's are their sums.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { allGroups } from "@vm-metrics/core/MetricGroup"
import type { NicStats, VmStats } from "@vm-metrics/core/VmStats"
import {
  createNetns,
  createTap,
  deleteNetns,
  deleteTap,
  dropFrames,
  hasCommand,
  ipLinkStats,
  makeTempDir,
  moveTapToNetns,
  pushFrames,
  removeTempDirs,
  sendIntoTap,
  skipReason,
  stopChild,
  tapSkipReason,
  trustedFakeBinary,
  waitFor
} from "@vm-metrics/testing"
import { Effect, Layer } from "effect"
import * as Discovery from "../src/Discovery.js"
import * as LibvirtSource from "../src/LibvirtSource.js"
import * as NodeReaders from "../src/NodeReaders.js"
import * as StaticFileSource from "../src/StaticFileSource.js"
import { bridgeInterface, ethernetInterface, statusXml, userInterface } from "./fixtures/libvirt.js"

afterAll(removeTempDirs)

const skip = tapSkipReason()

/** Starts `argv` (optionally under `ip netns exec`), waiting until its comm is `comm` (it has exec'd). */
const startProcess = (argv: ReadonlyArray<string>, comm: string, netns?: string) =>
  Effect.gen(function* () {
    const [command, ...args] = netns === undefined ? argv : ["ip", "netns", "exec", netns, ...argv]
    const child = spawn(command, args, { stdio: ["pipe", "ignore", "ignore"] }) as ChildProcess & { pid: number }
    yield* waitFor(
      `${comm} to start`,
      () => (fs.readFileSync(`/proc/${child.pid}/comm`, "utf8") === `${comm}\n` ? true : undefined),
      { timeout: "10 seconds", interval: "20 millis" }
    )
    return child
  })

/** A NIC as `ip -s -j link` shows its TAP, turned to the VM's perspective. */
const expectedNic = (name: string, via: NicStats["via"], netns?: string): NicStats => {
  const { rx, tx } = ipLinkStats(name, netns)
  return {
    name,
    via,
    rxBytes: tx.bytes,
    txBytes: rx.bytes,
    rxPackets: tx.packets,
    txPackets: rx.packets,
    rxErrors: tx.errors,
    txErrors: rx.errors,
    rxDropped: tx.dropped,
    txDropped: rx.dropped
  }
}

/** The VM's sums must be the sums of its NICs, field by field. */
const assertSums = (vm: VmStats) => {
  const sum = (field: keyof Omit<NicStats, "name" | "via">) =>
    vm.interfaces.reduce((total, nic) => total + (nic[field] ?? assert.fail(`${nic.name}.${field} is null`)), 0n)
  assert.deepStrictEqual(
    [
      vm.netRxBytes,
      vm.netTxBytes,
      vm.netRxPackets,
      vm.netTxPackets,
      vm.netRxErrors,
      vm.netTxErrors,
      vm.netRxDropped,
      vm.netTxDropped
    ],
    [
      sum("rxBytes"),
      sum("txBytes"),
      sum("rxPackets"),
      sum("txPackets"),
      sum("rxErrors"),
      sum("txErrors"),
      sum("rxDropped"),
      sum("txDropped")
    ]
  )
}

/** Traffic both ways plus drops both ways, different per TAP so that a swap or a mix-up shows. */
const traffic = (tap: string, k: number, netns?: string) => {
  const pushed = pushFrames(tap, 3 + k, 100 + 10 * k, 2 + k, netns)
  assert.strictEqual(pushed.received_by_guest, 2 + k)
  dropFrames(tap, 6 + 2 * k, 50, netns)
}

/** One fresh collection with every group on, through the given source and the real readers. */
const collectAll = (source: Layer.Layer<InstanceSource>) =>
  Effect.gen(function* () {
    const collector = yield* Collector.Collector
    return (yield* collector.refresh).stats
  }).pipe(
    Effect.provide(
      Collector.layer({ maxAge: 0, groups: new Set(allGroups) }).pipe(
        Layer.provide(Layer.merge(source, NodeReaders.layer())),
        Layer.orDie
      )
    )
  )

const find = (stats: ReadonlyArray<VmStats>, predicate: (vm: VmStats) => boolean): VmStats => {
  const found = stats.find(predicate)
  return found ?? assert.fail("the VM is not in the snapshot")
}

describe.skipIf(skip !== undefined)("every NIC of a VM, with real TAPs", () => {
  it.live("a discovered fake QEMU with two -netdev tap: per-NIC values = ip -s -j link of each TAP, VM = sums", () =>
    Effect.gen(function* () {
      const [tap0, tap1] = [createTap(), createTap()]
      const binary = trustedFakeBinary()
      let child: (ChildProcess & { pid: number }) | undefined
      try {
        traffic(tap0, 1)
        traffic(tap1, 4)
        child = yield* startProcess(
          [
            binary,
            ...["-c", "read -r _", "-name", "nics-vm", "-m", "64"],
            ...["-netdev", `tap,id=n0,ifname=${tap0},script=no`, "-netdev", `tap,id=n1,ifname=${tap1},script=no`]
          ],
          "qemu-system-x86"
        )
        const pid = child.pid
        const vm = find(yield* collectAll(Discovery.layer()), (s) => s.pid === pid)
        assert.strictEqual(vm.tapDevice, tap0)
        assert.deepStrictEqual(vm.interfaces, [expectedNic(tap0, "sysfs"), expectedNic(tap1, "sysfs")])
        assertSums(vm)
        // Perspective: what the guest sent is the TAP's rx, packets and drops included.
        assert.strictEqual(vm.interfaces[1].txPackets, 7n)
        assert.strictEqual(vm.interfaces[1].rxPackets, 6n)
        assert.isAbove(Number(vm.interfaces[1].rxDropped), 0) // the guest never read: backpressure
        // Unequal drops both ways, so the equality with the swapped `ip` values above proves the swap.
        assert.notStrictEqual(vm.interfaces[1].rxDropped, vm.interfaces[1].txDropped)
        assert.deepStrictEqual(
          vm.unavailable.filter((u) => u.source === "tap" || u.source === "netdev"),
          []
        )
      } finally {
        if (child !== undefined) yield* Effect.promise(() => stopChild(child as ChildProcess))
        deleteTap(tap0)
        deleteTap(tap1)
      }
    })
  )

  it.live("an instances file entry with taps: [a, b]: per-NIC values = ip -s -j link, VM = sums", () =>
    Effect.gen(function* () {
      const [tap0, tap1] = [createTap(), createTap()]
      try {
        traffic(tap0, 2)
        traffic(tap1, 0)
        const file = path.join(makeTempDir("vm-metrics-nics-"), "instances.json")
        fs.writeFileSync(
          file,
          JSON.stringify([{ id: "file-vm", pid: process.pid, taps: [tap0, tap1], vcpus: 1, memory: "64M" }])
        )
        const vm = find(yield* collectAll(StaticFileSource.layer({ path: file })), (s) => s.instanceId === "file-vm")
        assert.deepStrictEqual(vm.interfaces, [expectedNic(tap0, "sysfs"), expectedNic(tap1, "sysfs")])
        assertSums(vm)
      } finally {
        deleteTap(tap0)
        deleteTap(tap1)
      }
    })
  )

  it.live("a libvirt domain with two interfaces (and a user-mode one): per-NIC values = ip -s -j link", () =>
    Effect.gen(function* () {
      const [tap0, tap1] = [createTap(), createTap()]
      try {
        traffic(tap0, 3)
        traffic(tap1, 1)
        const runDir = makeTempDir("vm-metrics-nics-libvirt-")
        fs.writeFileSync(
          path.join(runDir, "lv.xml"),
          statusXml({
            name: "lv",
            uuid: "3e1f2d4c-5b6a-4978-8d9e-0a1b2c3d4e5f",
            pid: process.pid,
            interfaces: [ethernetInterface(tap0), userInterface, bridgeInterface(tap1)]
          })
        )
        const vm = find(yield* collectAll(LibvirtSource.layer({ runDir })), (s) => s.instanceName === "lv")
        assert.deepStrictEqual(vm.interfaces, [expectedNic(tap0, "sysfs"), expectedNic(tap1, "sysfs")])
        assertSums(vm)
      } finally {
        deleteTap(tap0)
        deleteTap(tap1)
      }
    })
  )

  it.live(
    "a TAP moved into a network namespace with its fake VMM is read via /proc/<pid>/net/dev and equals ip -n <ns> -s -j link",
    () =>
      Effect.gen(function* () {
        const [hostTap, nsTap] = [createTap(), createTap()]
        const ns = createNetns()
        const binary = trustedFakeBinary()
        let child: (ChildProcess & { pid: number }) | undefined
        try {
          moveTapToNetns(nsTap, ns)
          traffic(hostTap, 1)
          traffic(nsTap, 3, ns)
          child = yield* startProcess(
            [
              binary,
              ...["-c", "read -r _", "-name", "netns-vm", "-m", "64"],
              ...["-netdev", `tap,id=n0,ifname=${nsTap}`, "-netdev", `tap,id=n1,ifname=${hostTap}`]
            ],
            "qemu-system-x86",
            ns
          )
          const pid = child.pid
          const vm = find(yield* collectAll(Discovery.layer()), (s) => s.pid === pid)
          assert.deepStrictEqual(vm.interfaces, [expectedNic(nsTap, "netns", ns), expectedNic(hostTap, "sysfs")])
          assertSums(vm)
          assert.isFalse(fs.existsSync(`/sys/class/net/${nsTap}`)) // not on the host: only its VMM's namespace has it
        } finally {
          if (child !== undefined) yield* Effect.promise(() => stopChild(child as ChildProcess))
          deleteNetns(ns)
          deleteTap(nsTap)
          deleteTap(hostTap)
        }
      })
  )
})

const qemuSkip = skipReason(
  skip ?? (hasCommand("qemu-system-x86_64") ? undefined : "qemu-system-x86_64 is not installed"),
  "real QEMU NIC tests"
)

/** Whether process `pid` holds TAP `tap` open (tun's fdinfo names the interface: `iff:\t<name>`). */
const holdsTap = (pid: number, tap: string): true | undefined => {
  for (const fd of fs.readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8").includes(`iff:\t${tap}\n`)) return true
    } catch {
      // closed meanwhile
    }
  }
  return undefined
}

/**
 * A real QEMU, paused before the guest runs (`-S`, TCG), with a virtio NIC on each TAP: it holds the TAPs
 * but its NICs take nothing, so every frame sent into a TAP beyond its queue is a tx drop.
 */
const startQemu = (name: string, taps: ReadonlyArray<string>, netns?: string) =>
  Effect.gen(function* () {
    const nics = taps.flatMap((tap, i) => [
      ...["-netdev", `tap,id=n${i},ifname=${tap},script=no,downscript=no`],
      ...["-device", `virtio-net-pci,netdev=n${i},mac=52:54:00:12:34:${String(10 + i)}`]
    ])
    const child = yield* startProcess(
      [
        "qemu-system-x86_64",
        ...["-name", name, "-accel", "tcg", "-m", "64", "-S", "-nodefaults", "-nographic"],
        ...["-display", "none", "-monitor", "none", "-serial", "none"],
        ...nics
      ],
      "qemu-system-x86",
      netns
    )
    for (const tap of taps) {
      yield* waitFor(`QEMU to open ${tap}`, () => holdsTap(child.pid, tap), {
        timeout: "20 seconds",
        interval: "50 millis"
      })
    }
    return child
  })

/** A TAP with a short queue (2 frames), up: frames a VMM does not take are dropped soon. */
const shortQueueTap = (netns?: string) => {
  const tap = createTap()
  execFileSync("ip", ["link", "set", "dev", tap, "txqueuelen", "2", "up"])
  if (netns !== undefined) {
    moveTapToNetns(tap, netns)
    execFileSync("ip", ["-n", netns, "link", "set", "dev", tap, "up"])
  }
  return tap
}

describe.skipIf(qemuSkip !== undefined)("every NIC of a real QEMU", () => {
  it.live("two -netdev tap on one QEMU: per-NIC values = ip -s -j link of each TAP, drops swapped, VM = sums", () =>
    Effect.gen(function* () {
      const taps = [shortQueueTap(), shortQueueTap()]
      let child: (ChildProcess & { pid: number }) | undefined
      try {
        child = yield* startQemu("real-nics", taps)
        sendIntoTap(taps[0], 10, 100)
        sendIntoTap(taps[1], 25, 60)
        const pid = child.pid
        const vm = find(yield* collectAll(Discovery.layer()), (s) => s.pid === pid)
        assert.deepStrictEqual(vm.interfaces, [expectedNic(taps[0], "sysfs"), expectedNic(taps[1], "sysfs")])
        assertSums(vm)
        // The frames never reached the guest: the TAPs' tx drops are the VM's rx drops.
        assert.isAbove(Number(vm.interfaces[0].rxDropped), 0)
        assert.isAbove(Number(vm.interfaces[1].rxDropped), Number(vm.interfaces[0].rxDropped))
        assert.strictEqual(vm.netRxDropped, ipLinkStats(taps[0]).tx.dropped + ipLinkStats(taps[1]).tx.dropped)
      } finally {
        if (child !== undefined) yield* Effect.promise(() => stopChild(child as ChildProcess))
        for (const tap of taps) deleteTap(tap)
      }
    })
  )

  it.live(
    "a QEMU in its own network namespace with its TAPs: both read via /proc/<pid>/net/dev = ip -n <ns> -s -j link",
    () =>
      Effect.gen(function* () {
        const ns = createNetns()
        const taps = [shortQueueTap(ns), shortQueueTap(ns)]
        let child: (ChildProcess & { pid: number }) | undefined
        try {
          child = yield* startQemu("netns-nics", taps, ns)
          sendIntoTap(taps[0], 7, 100, ns)
          sendIntoTap(taps[1], 19, 80, ns)
          const pid = child.pid
          const vm = find(yield* collectAll(Discovery.layer()), (s) => s.pid === pid)
          assert.deepStrictEqual(vm.interfaces, [expectedNic(taps[0], "netns", ns), expectedNic(taps[1], "netns", ns)])
          assertSums(vm)
          assert.isAbove(Number(vm.netRxDropped), 0)
        } finally {
          if (child !== undefined) yield* Effect.promise(() => stopChild(child as ChildProcess))
          deleteNetns(ns)
          for (const tap of taps) deleteTap(tap)
        }
      })
  )
})
