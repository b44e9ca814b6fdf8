import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { allCounters, bytesOnly, type TapRequest, type TapWanted } from "@vm-metrics/core/TapReader"
import {
  createNetns,
  createTap,
  deleteNetns,
  deleteTap,
  dropFrames,
  ipLinkBytes,
  ipLinkStats,
  moveTapToNetns,
  pushFrames,
  stopChild,
  sysCounter,
  tapSkipReason,
  waitFor
} from "@vm-metrics/testing"
import { Effect, Either } from "effect"
import { makeSyncTapReader } from "../src/internal/syncTapReader.js"

/** The counters of one TAP read alone; throws on a failed read. */
const read = (reader: ReturnType<typeof makeSyncTapReader>, tap: TapRequest | string, wanted?: TapWanted) =>
  Either.getOrThrow(reader.sampleOne(tap, wanted).counters)

const bytes = (reader: ReturnType<typeof makeSyncTapReader>, tap: string) => {
  const { rxBytes, txBytes } = read(reader, tap)
  return { rxBytes, txBytes }
}

const failure = (reader: ReturnType<typeof makeSyncTapReader>, tap: TapRequest | string) => {
  const result = reader.sampleOne(tap).counters
  return Either.isLeft(result) ? result.left._tag : "read"
}

const skip = tapSkipReason()

describe.skipIf(skip !== undefined)("NodeTapReader on a real TAP", () => {
  it("reads exact host-side counters that grow as frames pass, on kept fds", () => {
    const tap = createTap()
    // Sysfs alone: the agent's own net/dev (SelfNetDev.test.ts) would stand in for these files here.
    const reader = makeSyncTapReader("/sys", "/proc", undefined, { selfNetDev: false })
    try {
      assert.deepStrictEqual(bytes(reader, tap), { rxBytes: 0n, txBytes: 0n })
      const pushed = pushFrames(tap, 50, 986)
      assert.strictEqual(pushed.received_by_guest, 50)
      const after = bytes(reader, tap)
      const expected = BigInt(50 * pushed.frame_bytes)
      // The guest sent 50 frames: the host received them (rx); the host sent 50 into the guest (tx).
      assert.deepStrictEqual(after, { rxBytes: expected, txBytes: expected })
      const ip = ipLinkBytes(tap)
      assert.deepStrictEqual({ rxBytes: ip.rx, txBytes: ip.tx }, after)
      assert.strictEqual(reader.openTaps(), 1)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("reports a deleted TAP as TapMissing, and reads it again once re-created", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys")
    try {
      assert.isTrue(Either.isRight(reader.sampleOne(tap).counters))
      deleteTap(tap)
      assert.strictEqual(failure(reader, tap), "TapMissing")
      assert.strictEqual(reader.openTaps(), 0)
      createTap(tap) // same name, new device: a kept fd of the old one would read ENODEV forever
      pushFrames(tap, 3, 100)
      const back = read(reader, tap)
      assert.strictEqual(back.rxBytes, sysCounter(tap, "rx_bytes"))
      assert.strictEqual(back.rxBytes, 3n * 114n)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })
})

describe.skipIf(skip !== undefined)("NodeTapReader across TAP re-creation", () => {
  it("re-opens by path when a kept fd reads ENODEV (TAP deleted and created again between reads)", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys", "/proc", undefined, { selfNetDev: false })
    try {
      assert.isTrue(Either.isRight(reader.sampleOne(tap).counters))
      deleteTap(tap)
      createTap(tap)
      pushFrames(tap, 2, 100)
      assert.deepStrictEqual(bytes(reader, tap), { rxBytes: 228n, txBytes: 228n })
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })
})

describe("NodeTapReader input checks", () => {
  it("rejects hostile names before any path is built", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-sys-"))
    const reader = makeSyncTapReader(root)
    for (const name of ["", "../../../etc", "..", ".", "a/b", "eth0:1", "tap 0", "tap\u0000", "täp", "x".repeat(16)]) {
      assert.strictEqual(failure(reader, name), "InvalidTapName", name)
      // With a pid too: a hostile name never reaches /proc/<pid>/net/dev either.
      assert.strictEqual(failure(reader, { name, pid: process.pid }), "InvalidTapName", name)
    }
    assert.strictEqual(reader.openTaps(), 0)
    fs.rmSync(root, { recursive: true })
  })

  it("reads <sysRoot>/class/net/<tap>/statistics and types a malformed counter as ParseError", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-sys-"))
    const dir = path.join(root, "class", "net", "hype-abc", "statistics")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "rx_bytes"), "18446744073709551615\n")
    fs.writeFileSync(path.join(dir, "tx_bytes"), "42\n")
    const reader = makeSyncTapReader(root)
    assert.deepStrictEqual(bytes(reader, "hype-abc"), { rxBytes: 18446744073709551615n, txBytes: 42n })
    fs.writeFileSync(path.join(dir, "tx_bytes"), "garbage\n")
    assert.strictEqual(failure(reader, "hype-abc"), "ParseError")
    assert.strictEqual(failure(reader, "hype-none"), "TapMissing")
    // A pid outside the kernel's range never becomes part of a /proc path.
    for (const pid of [0, -1, Number.NaN, 1.5])
      assert.strictEqual(failure(reader, { name: "hype-none", pid }), "TapMissing")
    assert.strictEqual(reader.openNetDevs(), 0)
    reader.closeAll()
    fs.rmSync(root, { recursive: true })
  })
})

const counters = (stats: ReturnType<typeof ipLinkStats>) => ({
  rxBytes: stats.rx.bytes,
  txBytes: stats.tx.bytes,
  rxPackets: stats.rx.packets,
  txPackets: stats.tx.packets,
  rxErrors: stats.rx.errors,
  txErrors: stats.tx.errors,
  rxDropped: stats.rx.dropped,
  txDropped: stats.tx.dropped
})

describe.skipIf(skip !== undefined)("NodeTapReader: all eight counters", () => {
  it("reads packets, errors and drops only when wanted; all eight equal `ip -s -j link` of the TAP", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys")
    try {
      pushFrames(tap, 7, 200, 4) // 7 from the guest (unhandled ethertype: also rx dropped), 4 into it
      dropFrames(tap, 12, 60) // into a guest that never reads: tx dropped
      const all = read(reader, tap, allCounters)
      assert.deepStrictEqual(all, counters(ipLinkStats(tap)))
      assert.strictEqual(all.rxPackets, 7n)
      assert.strictEqual(all.rxDropped, 7n)
      assert.isAbove(Number(all.txDropped), 0)
      const seed = read(reader, tap, bytesOnly)
      assert.deepStrictEqual(seed, {
        ...all,
        rxPackets: null,
        txPackets: null,
        rxErrors: null,
        txErrors: null,
        rxDropped: null,
        txDropped: null
      })
      const drops = read(reader, tap, { packets: false, dropped: true })
      assert.deepStrictEqual([drops.rxPackets, drops.rxDropped, drops.txDropped], [null, all.rxDropped, all.txDropped])
      assert.strictEqual(reader.sampleOne(tap).via, "sysfs")
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })
})

describe.skipIf(skip !== undefined)("NodeTapReader: a TAP in the VMM's network namespace", () => {
  it.live("reads the whole of a net/dev that spans several pages (80 interfaces in the namespace)", () =>
    Effect.gen(function* () {
      const ns = createNetns()
      const reader = makeSyncTapReader("/sys", "/proc")
      const vmm = spawn("ip", ["netns", "exec", ns, "sleep", "60"], { stdio: "ignore" }) as ChildProcess & {
        pid: number
      }
      try {
        const names = Array.from({ length: 80 }, (_, i) => `vmmpage${i}`)
        execFileSync("ip", ["-n", ns, "-batch", "-"], {
          input: names.map((name) => `tuntap add dev ${name} mode tap`).join("\n")
        })
        const ownNs = fs.readlinkSync("/proc/self/ns/net")
        yield* waitFor(
          "the fake VMM to run in its namespace",
          () => (fs.readlinkSync(`/proc/${vmm.pid}/ns/net`) !== ownNs ? true : undefined),
          { timeout: "10 seconds", interval: "20 millis" }
        )
        assert.isAbove(fs.readFileSync(`/proc/${vmm.pid}/net/dev`).length, 2 * 4096)
        const last = names[names.length - 1]
        const samples = reader.sample(
          names.map((name) => ({ name, pid: vmm.pid })),
          allCounters
        )
        assert.deepStrictEqual(
          samples.map((s) => s.via),
          names.map(() => "netns")
        )
        assert.deepStrictEqual(Either.getOrThrow(samples[samples.length - 1].counters), counters(ipLinkStats(last, ns)))
      } finally {
        yield* Effect.promise(() => stopChild(vmm))
        reader.closeAll()
        deleteNetns(ns)
      }
    })
  )

  it.live("is read from /proc/<pid>/net/dev of the VM's pid (via netns) and equals `ip -n <ns> -s -j link`", () =>
    Effect.gen(function* () {
      const tap = createTap()
      const ns = createNetns()
      const reader = makeSyncTapReader("/sys", "/proc")
      // The fake VMM: `ip netns exec` enters the namespace and execs sleep under the same pid.
      const vmm = spawn("ip", ["netns", "exec", ns, "sleep", "60"], { stdio: "ignore" }) as ChildProcess & {
        pid: number
      }
      try {
        moveTapToNetns(tap, ns)
        assert.isFalse(fs.existsSync(`/sys/class/net/${tap}`))
        const ownNs = fs.readlinkSync("/proc/self/ns/net")
        yield* waitFor(
          "the fake VMM to run in its namespace",
          () => (fs.readlinkSync(`/proc/${vmm.pid}/ns/net`) !== ownNs ? true : undefined),
          { timeout: "10 seconds", interval: "20 millis" }
        )
        pushFrames(tap, 5, 300, 3, ns)
        dropFrames(tap, 9, 40, ns)
        const first = reader.sampleOne({ name: tap, pid: vmm.pid }, allCounters)
        assert.strictEqual(first.via, "netns")
        const read1 = Either.getOrThrow(first.counters)
        assert.deepStrictEqual(read1, counters(ipLinkStats(tap, ns)))
        assert.strictEqual(read1.rxPackets, 5n)
        assert.isAbove(Number(read1.txDropped), 0)
        assert.strictEqual(reader.openNetDevs(), 1)
        assert.strictEqual(reader.openTaps(), 0) // nothing of the host's sysfs is kept for it

        // Without the VM's pid, or with a pid in the host's namespace, the TAP is simply missing.
        assert.strictEqual(failure(reader, tap), "TapMissing")
        assert.strictEqual(failure(reader, { name: tap, pid: process.pid }), "TapMissing")

        pushFrames(tap, 2, 100, 2, ns)
        const second = reader.sampleOne({ name: tap, pid: vmm.pid }, allCounters)
        assert.strictEqual(second.via, "netns")
        assert.deepStrictEqual(Either.getOrThrow(second.counters), counters(ipLinkStats(tap, ns)))
        assert.strictEqual(Either.getOrThrow(second.counters).rxPackets, 7n)

        reader.release({ name: tap, pid: vmm.pid })
        assert.strictEqual(reader.openNetDevs(), 0)

        yield* Effect.promise(() => stopChild(vmm))
        const gone = reader.sampleOne({ name: tap, pid: vmm.pid })
        assert.strictEqual(Either.isLeft(gone.counters) && gone.counters.left._tag, "TapMissing")
      } finally {
        yield* Effect.promise(() => stopChild(vmm))
        reader.closeAll()
        deleteNetns(ns) // deletes the TAP with it
        deleteTap(tap)
      }
    })
  )
})
