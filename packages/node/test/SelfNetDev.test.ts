/**
 * The host's TAPs read from the agent's own net/dev (internal/hostNetDev.ts) instead of sysfs: only
 * while that net/dev shows the namespace sysfs shows, with the same numbers, and never a TAP of the
 * same name in another namespace.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { allCounters, type TapCounters } from "@vm-metrics/core/TapReader"
import {
  createNetns,
  createTap,
  deleteNetns,
  deleteTap,
  dropFrames,
  ipLinkStats,
  namespaceSkipReason,
  pushFrames,
  tapSkipReason
} from "@vm-metrics/testing"
import { Either } from "effect"
import { FdBudget } from "../src/internal/fdBudget.js"
import { makeSyncTapReader } from "../src/internal/syncTapReader.js"

type Reader = ReturnType<typeof makeSyncTapReader>

const counters = (stats: ReturnType<typeof ipLinkStats>): TapCounters => ({
  rxBytes: stats.rx.bytes,
  txBytes: stats.tx.bytes,
  rxPackets: stats.rx.packets,
  txPackets: stats.tx.packets,
  rxErrors: stats.rx.errors,
  txErrors: stats.tx.errors,
  rxDropped: stats.rx.dropped,
  txDropped: stats.tx.dropped
})

/**
 * Samples until the reader's namespace check has passed (each sample re-checks with `recheckMs: 0`);
 * bounded: other tests' TAPs coming and going while it compares can make one check fail.
 */
const sampleInUse = (reader: Reader, tap: string, beforeEach = () => {}) => {
  for (let attempt = 0; attempt < 20; attempt++) {
    beforeEach()
    const sample = reader.sampleOne(tap, allCounters)
    if (reader.selfNetDevInUse()) return sample
  }
  throw new Error("the namespace check never passed in the agent's own namespace")
}

const failure = (reader: Reader, tap: string) => {
  const result = reader.sampleOne(tap, allCounters).counters
  return Either.isLeft(result) ? result.left._tag : "read"
}

const tempRoot = () => fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-sys-"))

/** A sysRoot whose class/net links every interface of the real /sys/class/net (the same namespace). */
const linkedSysRoot = () => {
  const root = tempRoot()
  const dir = path.join(root, "class", "net")
  fs.mkdirSync(dir, { recursive: true })
  for (const name of fs.readdirSync("/sys/class/net")) {
    if (fs.lstatSync(`/sys/class/net/${name}`).isSymbolicLink())
      fs.symlinkSync(`/sys/class/net/${name}`, `${dir}/${name}`)
  }
  return root
}

const writeCounters = (root: string, name: string, rx: string, tx: string) => {
  const dir = path.join(root, "class", "net", name, "statistics")
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, "rx_bytes"), rx)
  fs.writeFileSync(path.join(dir, "tx_bytes"), tx)
}

const skip = tapSkipReason()

describe.skipIf(skip !== undefined)("the host's TAPs from the agent's own net/dev", () => {
  it("gives each of the eight counters equal to sysfs and `ip -s -j link`, with one fd for every TAP", () => {
    const tap = createTap()
    const budget = new FdBudget(1000)
    const netDev = makeSyncTapReader("/sys", "/proc", budget, { recheckMs: 0 })
    const sysfs = makeSyncTapReader("/sys", "/proc", budget, { selfNetDev: false })
    try {
      pushFrames(tap, 7, 200, 4) // 7 from the guest (unhandled ethertype: also rx dropped), 4 into it
      dropFrames(tap, 12, 60) // into a guest that never reads: tx dropped
      const viaNetDev = sampleInUse(netDev, tap)
      const viaSysfs = sysfs.sampleOne(tap, allCounters)
      assert.strictEqual(viaNetDev.via, "sysfs") // the namespace sysfs shows: the NIC's labels do not change
      assert.strictEqual(viaSysfs.via, "sysfs")
      const fromNetDev = Either.getOrThrow(viaNetDev.counters)
      const fromSysfs = Either.getOrThrow(viaSysfs.counters)
      const fromIp = counters(ipLinkStats(tap))
      for (const field of Object.keys(fromIp) as Array<keyof TapCounters>) {
        assert.strictEqual(fromNetDev[field], fromSysfs[field], field)
        assert.strictEqual(fromNetDev[field], fromIp[field], field)
      }
      assert.strictEqual(fromNetDev.rxPackets, 7n)
      assert.strictEqual(fromNetDev.txPackets, 4n)
      assert.strictEqual(fromNetDev.rxDropped, 7n)
      assert.isAbove(Number(fromNetDev.txDropped), 0)
      assert.strictEqual(fromNetDev.rxBytes, 7n * BigInt(200 + 14))
      assert.strictEqual(netDev.openTaps(), 0) // no sysfs fd per TAP
      assert.strictEqual(sysfs.openTaps(), 1)
      assert.strictEqual(budget.kept, 1 + 8) // one net/dev for every TAP; the sysfs reader's eight files
    } finally {
      netDev.closeAll()
      sysfs.closeAll()
      deleteTap(tap)
    }
    assert.strictEqual(budget.kept, 0) // closeAll gives every fd back
  })

  it("reports a TAP deleted between reads as TapMissing (never 0), and reads it again once re-created", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys", "/proc", new FdBudget(100), { recheckMs: 0 })
    try {
      pushFrames(tap, 3, 100)
      assert.strictEqual(Either.getOrThrow(sampleInUse(reader, tap).counters).rxPackets, 3n)
      deleteTap(tap)
      assert.strictEqual(failure(reader, tap), "TapMissing")
      createTap(tap)
      pushFrames(tap, 2, 100)
      const back = Either.getOrThrow(sampleInUse(reader, tap).counters)
      assert.deepStrictEqual([back.rxPackets, back.rxBytes], [2n, 2n * 114n])
      reader.release({ name: tap })
      assert.strictEqual(reader.openTaps(), 0)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("reads net/dev once per collection: its chunks share that read, the next collection reads again", () => {
    const tap = createTap()
    let clock = 0 // a check is due only when the test moves the clock
    const reader = makeSyncTapReader("/sys", "/proc", new FdBudget(100), { recheckMs: 1000, now: () => clock })
    const rxPackets = (collection: number) =>
      Either.getOrThrow(reader.sample([{ name: tap }], allCounters, collection)[0]!.counters).rxPackets
    try {
      sampleInUse(reader, tap, () => (clock += 1000))
      const checks = reader.selfNetDevChecks()
      assert.strictEqual(rxPackets(1), 0n)
      pushFrames(tap, 4, 100)
      assert.strictEqual(rxPackets(1), 0n) // a later chunk of collection 1: the same read
      assert.strictEqual(rxPackets(2), 4n)
      deleteTap(tap)
      assert.strictEqual(rxPackets(2), 4n)
      const gone = reader.sample([{ name: tap }], allCounters, 3)[0]!.counters
      assert.strictEqual(Either.isLeft(gone) && gone.left._tag, "TapMissing")
      assert.strictEqual(reader.selfNetDevChecks(), checks) // the missing TAP: sysfs agrees, no check
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("a call without a collection (one VM read alone) reads the TAP's sysfs files, not net/dev and its check", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys", "/proc", new FdBudget(100), { recheckMs: 0 })
    try {
      pushFrames(tap, 3, 100)
      const alone = Either.getOrThrow(reader.sample([{ name: tap }], allCounters)[0]!.counters)
      assert.deepStrictEqual([alone.rxPackets, alone.rxBytes], [3n, 3n * 114n])
      assert.strictEqual(reader.selfNetDevChecks(), 0) // net/dev never read, nor sysfs for every interface
      assert.strictEqual(reader.openTaps(), 1) // its own sysfs files
      pushFrames(tap, 2, 100)
      // A collection reads net/dev (once the check passes: other tests' TAPs may come and go meanwhile).
      const collected = Either.getOrThrow(sampleInUse(reader, tap).counters)
      assert.deepStrictEqual([collected.rxPackets, collected.rxBytes], [5n, 5n * 114n])
      assert.strictEqual(reader.openTaps(), 0) // and gives the sysfs fds back
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("prepare reads net/dev for a collection now: that collection's chunks see the counters as of prepare", () => {
    const tap = createTap()
    let clock = 0
    const reader = makeSyncTapReader("/sys", "/proc", new FdBudget(100), { recheckMs: 1000, now: () => clock })
    const rxPackets = (collection: number) =>
      Either.getOrThrow(reader.sample([{ name: tap }], allCounters, collection)[0]!.counters).rxPackets
    try {
      sampleInUse(reader, tap, () => (clock += 1000))
      reader.prepare(1)
      pushFrames(tap, 3, 100) // after prepare, before the first chunk
      assert.strictEqual(rxPackets(1), 0n)
      reader.prepare(2)
      assert.strictEqual(rxPackets(2), 3n)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("is used when sysfs lists the same interfaces, and dropped at once for a TAP sysfs has and net/dev lacks", () => {
    const root = linkedSysRoot()
    const reader = makeSyncTapReader(root, "/proc", new FdBudget(100), { recheckMs: 0 })
    try {
      sampleInUse(reader, "lo")
      // A TAP only this sysfs shows: the namespaces disagree, so it and every TAP after it come from sysfs.
      writeCounters(root, "ghost0", "41\n", "42\n")
      const ghost = Either.getOrThrow(reader.sampleOne("ghost0").counters)
      assert.deepStrictEqual([ghost.rxBytes, ghost.txBytes], [41n, 42n])
      assert.isFalse(reader.selfNetDevInUse())
      assert.strictEqual(reader.openTaps(), 1) // ghost0's sysfs files
      reader.sampleOne("lo")
      assert.isFalse(reader.selfNetDevInUse()) // the next check sees a name net/dev lacks
      assert.strictEqual(reader.openTaps(), 2) // so lo was read from sysfs too
      fs.rmSync(path.join(root, "class", "net", "ghost0"), { recursive: true })
      sampleInUse(reader, "lo") // alike again: back to net/dev
    } finally {
      reader.closeAll()
      fs.rmSync(root, { recursive: true })
    }
  })

  it("is not used when sysfs lists the same names but its counters do not lie between two net/dev reads", () => {
    const tap = createTap()
    const root = linkedSysRoot()
    const reader = makeSyncTapReader(root, "/proc", new FdBudget(100), { recheckMs: 0 })
    try {
      // The same names, one of them with counters net/dev never showed: another namespace's device.
      fs.unlinkSync(path.join(root, "class", "net", tap))
      writeCounters(root, tap, "18446744073709551615\n", "7\n")
      for (let i = 0; i < 3; i++) {
        const counters = Either.getOrThrow(reader.sampleOne(tap).counters)
        assert.deepStrictEqual([counters.rxBytes, counters.txBytes], [18446744073709551615n, 7n])
        assert.isFalse(reader.selfNetDevInUse())
      }
      assert.strictEqual(reader.selfNetDevChecks(), 3)
    } finally {
      reader.closeAll()
      fs.rmSync(root, { recursive: true })
      deleteTap(tap)
    }
  })

  it("is not used when procRoot has no self (a fake /proc): sysfs is read", () => {
    const root = tempRoot()
    writeCounters(root, "hype-abc", "5\n", "6\n")
    const reader = makeSyncTapReader(root, root, new FdBudget(100), { recheckMs: 0 })
    const counters = Either.getOrThrow(reader.sampleOne("hype-abc").counters)
    assert.deepStrictEqual([counters.rxBytes, counters.txBytes], [5n, 6n])
    assert.isFalse(reader.selfNetDevInUse())
    reader.closeAll()
    fs.rmSync(root, { recursive: true })
  })
})

const nsSkip = skip ?? namespaceSkipReason()

/** The probe (fixtures/selfNetDevProbe.ts) run in network namespace `ns`, with this mount namespace's /sys. */
const probeIn = (ns: string, tap: string, sysRoot?: string) => {
  const script = path.join(import.meta.dirname, "fixtures", "selfNetDevProbe.ts")
  const run = spawnSync(
    "nsenter",
    [
      `--net=/run/netns/${ns}`,
      process.execPath,
      "--import",
      "tsx",
      script,
      tap,
      ...(sysRoot === undefined ? [] : [sysRoot])
    ],
    { encoding: "utf8", timeout: 60_000 }
  )
  assert.strictEqual(run.status, 0, run.stderr)
  return JSON.parse(run.stdout) as {
    via: string
    counters: Record<string, string> | string
    selfNetDevInUse: boolean
    ownNetDevListsTap: boolean
  }
}

const asStrings = (c: TapCounters) => Object.fromEntries(Object.entries(c).map(([k, v]) => [k, String(v)]))

describe.skipIf(nsSkip !== undefined)(
  "an agent in a network namespace that is not sysfs's (a pod without hostNetwork)",
  () => {
    it("reads the host's TAP from sysfs, never the namespace's TAP of the same name", () => {
      const tap = createTap()
      const ns = createNetns()
      const mount = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-nssys-"))
      let mounted = false
      try {
        // The same name in the agent's namespace, with other traffic.
        execFileSync("ip", ["-n", ns, "tuntap", "add", "dev", tap, "mode", "tap"])
        execFileSync("ip", ["netns", "exec", ns, "sh", "-c", `echo 1 > /proc/sys/net/ipv6/conf/${tap}/disable_ipv6`])
        pushFrames(tap, 3, 100)
        pushFrames(tap, 5, 300, 5, ns)
        const host = counters(ipLinkStats(tap))
        const inNs = counters(ipLinkStats(tap, ns))
        assert.notStrictEqual(host.rxPackets, inNs.rxPackets)

        const pod = probeIn(ns, tap)
        assert.isTrue(pod.ownNetDevListsTap) // the wrong TAP was there to be read
        assert.isFalse(pod.selfNetDevInUse)
        assert.strictEqual(pod.via, "sysfs")
        assert.deepStrictEqual(pod.counters, asStrings(host))

        // The namespace's own sysfs (mounted from inside it): now net/dev and sysfs agree, and the
        // namespace's TAP is the one sysfs shows.
        execFileSync("nsenter", [`--net=/run/netns/${ns}`, "mount", "-t", "sysfs", "sysfs", mount])
        mounted = true
        const own = probeIn(ns, tap, mount)
        assert.isTrue(own.selfNetDevInUse)
        assert.deepStrictEqual(own.counters, asStrings(inNs))
      } finally {
        if (mounted) execFileSync("umount", [mount])
        fs.rmSync(mount, { recursive: true, force: true })
        deleteNetns(ns)
        deleteTap(tap)
      }
    })
  }
)
