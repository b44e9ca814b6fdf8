import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { afterAll, assert, describe, it } from "@effect/vitest"
import type { ProcStat } from "@vm-metrics/core/ProcStat"
import { removeTempDirs, sleepMs, trustedFakeBinary } from "@vm-metrics/testing"
import { Either } from "effect"
import { FreshStats, SIGHTING_MS } from "../src/internal/freshStats.js"
import { makeScanner } from "../src/internal/processScanner.js"
import { makeSyncProcReader } from "../src/internal/syncProcReader.js"

/** A clock the test moves. */
const manualClock = () => {
  let now = 1000
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms
    }
  }
}

const text = (offer: { readonly bytes: Buffer; readonly length: number } | undefined) =>
  offer === undefined ? undefined : offer.bytes.toString("latin1", 0, offer.length)

describe("FreshStats", () => {
  it("gives an offer once, only when it is fresh and newer than the reader's last read", () => {
    const clock = manualClock()
    const fresh = new FreshStats(200, clock.now)
    fresh.offer(7, Buffer.from("7 (a) S 1"), 9)
    assert.strictEqual(text(fresh.take(7, Number.NEGATIVE_INFINITY)), "7 (a) S 1")
    assert.isUndefined(fresh.take(7, Number.NEGATIVE_INFINITY), "taken once")
    assert.isUndefined(fresh.take(8, Number.NEGATIVE_INFINITY), "no offer for that pid")

    clock.advance(10)
    fresh.offer(7, Buffer.from("7 (a) R 2"), 9)
    assert.isUndefined(fresh.take(7, clock.now()), "the reader read it itself since")
    clock.advance(10)
    fresh.offer(7, Buffer.from("7 (a) R 3"), 9)
    clock.advance(201)
    assert.isUndefined(fresh.take(7, Number.NEGATIVE_INFINITY), "older than 200 ms")

    fresh.offer(7, Buffer.from("7 (a) S 4"), 9)
    const at = clock.now()
    clock.advance(200)
    const offer = fresh.take(7, at - 1)
    assert.strictEqual(text(offer), "7 (a) S 4")
    assert.strictEqual(offer?.at, at)
  })

  it("keeps one buffer per pid, grown for a longer line, and drops it when discovery forgets the pid", () => {
    const fresh = new FreshStats()
    const long = Buffer.from(`9 (${"x".repeat(700)}) S`)
    fresh.offer(9, Buffer.from("9 (a) S"), 7)
    fresh.offer(9, long, long.length)
    assert.strictEqual(text(fresh.take(9, Number.NEGATIVE_INFINITY)), long.toString("latin1"))
    fresh.offer(9, Buffer.from("9 (b) S trailing bytes not offered"), 7)
    assert.strictEqual(text(fresh.take(9, Number.NEGATIVE_INFINITY)), "9 (b) S")
    assert.strictEqual(fresh.size, 1)
    fresh.forget(9)
    assert.strictEqual(fresh.size, 0)
    assert.isUndefined(fresh.take(9, Number.NEGATIVE_INFINITY))
  })
})

const running = (startTimeTicks: bigint, comm = "qemu-system-x86", state = "S"): ProcStat => ({
  comm,
  state,
  majorFaults: 0n,
  utimeTicks: 1n,
  stimeTicks: 1n,
  startTimeTicks,
  guestTimeTicks: 0n
})

describe("FreshStats sightings", () => {
  it("vouch for the same process (start time and comm) seen running within SIGHTING_MS, nothing else", () => {
    const clock = manualClock()
    const fresh = new FreshStats(200, clock.now)
    fresh.sight(7, clock.now(), running(500n))
    assert.isTrue(fresh.sawRunning(7, 500n, "qemu-system-x86"))
    assert.isFalse(fresh.sawRunning(7, 501n, "qemu-system-x86"), "another start time: a reused pid")
    assert.isFalse(fresh.sawRunning(7, 500n, "bash"), "another comm: an exec()")
    assert.isFalse(fresh.sawRunning(8, 500n, "qemu-system-x86"), "never seen")
    clock.advance(SIGHTING_MS)
    assert.isTrue(fresh.sawRunning(7, 500n, "qemu-system-x86"), "as old as allowed")
    clock.advance(1)
    assert.isFalse(fresh.sawRunning(7, 500n, "qemu-system-x86"), "older than SIGHTING_MS")
    fresh.sight(7, clock.now(), running(500n))
    assert.isTrue(fresh.sawRunning(7, 500n, "qemu-system-x86"), "seen again: the same object updated")
    assert.strictEqual(fresh.sighted, 1)
  })

  it("are cleared by a failed read, a process not running, the reader's release and discovery's forget", () => {
    const fresh = new FreshStats()
    const seen = () => fresh.sawRunning(7, 500n, "qemu-system-x86")
    fresh.sight(7, fresh.now(), running(500n))
    fresh.sight(7, fresh.now(), undefined)
    assert.isFalse(seen(), "a failed read")
    for (const state of ["Z", "X"]) {
      fresh.sight(7, fresh.now(), running(500n))
      fresh.sight(7, fresh.now(), running(500n, "qemu-system-x86", state))
      assert.isFalse(seen(), `state ${state}`)
    }
    fresh.sight(7, fresh.now(), { ...running(500n), startTimeTicks: null })
    assert.isFalse(seen(), "no start time: nothing to bind it to the process")
    fresh.sight(7, fresh.now(), running(500n))
    fresh.unsight(7)
    assert.isFalse(seen(), "the reader released the pid")
    fresh.sight(7, fresh.now(), running(500n))
    fresh.forget(7)
    assert.isFalse(seen(), "discovery forgot the pid")
    assert.strictEqual(fresh.sighted, 0)
  })
})

afterAll(removeTempDirs)

/**
 * Offers stay fresh this long in the tests over real processes (the age rule has its own test above), so
 * that a loaded machine pausing between a scan and a sample does not decide them.
 */
const FRESH_ENOUGH = 60_000

/** A busy real process that /proc names qemu-system-x86 (a copy of sh that discovery trusts). */
const busyQemu = async (): Promise<ChildProcess & { pid: number }> => {
  const binary = trustedFakeBinary()
  const child = spawn(binary, ["-c", "while :; do :; done", "-name", "fresh", "-smp", "1", "-m", "64M"], {
    stdio: "ignore"
  }) as ChildProcess & { pid: number }
  for (let i = 0; i < 600; i++) {
    if (fs.readFileSync(`/proc/${child.pid}/comm`, "latin1") === "qemu-system-x86\n") return child
    await sleepMs(50) // up to 30 s: a loaded machine may be slow to exec
  }
  child.kill("SIGKILL")
  throw new Error("the fake QEMU never showed its comm")
}

/** How many of our fds are open on a file of `pid`. */
const fdsOn = (pid: number, file: string) =>
  fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`) === `/proc/${pid}/${file}`
    } catch {
      return false
    }
  }).length

const ticksOf = (sample: ReturnType<ReturnType<typeof makeSyncProcReader>["sampleOne"]>) => {
  if (Either.isLeft(sample.stat)) throw new Error(`stat: ${sample.stat.left._tag}`)
  return sample.stat.right.utimeTicks + sample.stat.right.stimeTicks
}

/**
 * A busy fake QEMU, a scanner and `readers` proc readers sharing one FreshStats, handed to `body`; all
 * stopped and closed after it.
 */
const withScanAndReaders = async (
  readers: number,
  body: (
    child: ChildProcess & { pid: number },
    scanner: ReturnType<typeof makeScanner>,
    readers: Array<ReturnType<typeof makeSyncProcReader>>,
    fresh: FreshStats
  ) => Promise<void> | void
) => {
  const child = await busyQemu()
  // Sightings too stay fresh for FRESH_ENOUGH: their age rule has its own test above.
  const fresh = new FreshStats(FRESH_ENOUGH, undefined, FRESH_ENOUGH)
  const scanner = makeScanner("/proc", [], { fresh })
  const made = Array.from({ length: readers }, () => makeSyncProcReader("/proc", { fresh }))
  try {
    await body(child, scanner, made, fresh)
  } finally {
    child.kill("SIGKILL")
    for (const reader of made) reader.closeAll()
    scanner.close()
  }
}

describe("discovery's stat read serves the collection that follows", () => {
  it("a sample right after a scan takes the scan's read (no stat fd of the reader's); later ones read it", () =>
    withScanAndReaders(1, (child, scanner, [reader]) => {
      const listed = Either.getOrThrow(scanner.scan())
      assert.isTrue(listed.some((vm) => vm.hypervisorPid === child.pid))
      assert.strictEqual(fdsOn(child.pid, "stat"), 1, "discovery's kept fd")
      const first = reader.sampleOne(child.pid)
      assert.strictEqual(Either.isRight(first.stat) && first.stat.right.comm, "qemu-system-x86")
      assert.isTrue(Either.isRight(first.statm))
      assert.strictEqual(fdsOn(child.pid, "stat"), 1, "taken from the scan: the reader opened no stat")
      const second = reader.sampleOne(child.pid) // no scan since: read by the reader
      assert.strictEqual(fdsOn(child.pid, "stat"), 2)
      assert.isTrue(ticksOf(second) >= ticksOf(first))
    }))

  it("a busy process's CPU time never goes back across scans, samples and a second reader, interleaved", () =>
    withScanAndReaders(2, async (child, scanner, readers) => {
      const last = [0n, 0n]
      let taken = 0
      for (let round = 0; round < 300; round++) {
        if (round % 3 !== 2) Either.getOrThrow(scanner.scan())
        const which = round % 5 === 4 ? 1 : 0
        const before = fdsOn(child.pid, "stat")
        const ticks = ticksOf(readers[which]!.sampleOne(child.pid))
        if (fdsOn(child.pid, "stat") === before && round > 3) taken++
        assert.isTrue(ticks >= last[which]!, `round ${round}: ${ticks} after ${last[which]}`)
        last[which] = ticks
        if (round % 50 === 0) await sleepMs(20) // let the process run
      }
      assert.isAbove(Number(last[0]), 0, "the process ran")
      assert.isAbove(taken, 100, "most samples after a scan took its read")
    }))

  it("a pid that exits after a scan is read as gone at the next, not served from the earlier scan", () =>
    withScanAndReaders(1, async (child, scanner, [reader]) => {
      Either.getOrThrow(scanner.scan()) // offers a read nobody takes
      child.kill("SIGKILL")
      await new Promise((resolve) => child.once("exit", resolve))
      const listed = Either.getOrThrow(scanner.scan())
      assert.isFalse(listed.some((vm) => vm.hypervisorPid === child.pid))
      const { stat } = reader.sampleOne(child.pid)
      assert.strictEqual(Either.isLeft(stat) && stat.left._tag, "ProcessGone")
    }))
})

describe("the collection's stat read serves the rescan that follows (sightings)", () => {
  const exited = (child: ChildProcess) => new Promise((resolve) => child.once("exit", resolve))
  const listedPids = (scanner: ReturnType<typeof makeScanner>) =>
    Either.getOrThrow(scanner.scan()).map((vm) => vm.hypervisorPid)

  it("a rescan right after a sample reads nothing for the hypervisor the reader saw, and lists it", () =>
    withScanAndReaders(1, (child, scanner, [reader]) => {
      assert.include(listedPids(scanner), child.pid)
      assert.strictEqual(scanner.counters().sighted, 0, "the first scan inspects it")
      reader.sampleOne(child.pid) // takes the scan's read
      reader.sampleOne(child.pid) // reads it itself
      assert.include(listedPids(scanner), child.pid)
      assert.strictEqual(scanner.counters().sighted, 1, "the one hypervisor this reader sampled")
    }))

  it("a hypervisor whose last sample failed is read by the rescan itself, and dropped", () =>
    withScanAndReaders(1, async (child, scanner, [reader]) => {
      listedPids(scanner)
      reader.sampleOne(child.pid)
      child.kill("SIGKILL")
      await exited(child)
      const { stat } = reader.sampleOne(child.pid)
      assert.strictEqual(Either.isLeft(stat) && stat.left._tag, "ProcessGone")
      assert.notInclude(listedPids(scanner), child.pid)
      assert.strictEqual(scanner.counters().sighted, 0)
    }))

  it("a sighting of another process at the pid (a reused pid: another start time) vouches for nothing", () =>
    withScanAndReaders(1, (child, scanner, [reader], fresh) => {
      listedPids(scanner)
      reader.sampleOne(child.pid) // takes the first scan's read
      const { stat } = reader.sampleOne(child.pid)
      if (Either.isLeft(stat)) return assert.fail(stat.left._tag)
      fresh.sight(child.pid, fresh.now(), { ...stat.right, startTimeTicks: (stat.right.startTimeTicks ?? 0n) + 1n })
      assert.include(listedPids(scanner), child.pid)
      assert.strictEqual(scanner.counters().sighted, 0, "the rescan read the process's stat itself")
    }))
})
