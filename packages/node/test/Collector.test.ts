/** The core collector over the real Linux readers: real processes, real TAP devices. */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import { Effect, Layer } from "effect"
import * as NodeReaders from "../src/NodeReaders.js"
import {
  createTap,
  deleteTap,
  ipLinkBytes,
  psOf,
  pushFrames,
  sleepMs,
  spawnChild,
  stopChild,
  tapSkipReason
} from "./helpers.js"

const skipTap = tapSkipReason()

/** Paths of the fds this process holds open under /proc/<pid>/ or /sys/class/net/<tap>/. */
const openFilesOf = (needle: string): Array<string> =>
  fs
    .readdirSync("/proc/self/fd")
    .map((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`)
      } catch {
        return ""
      }
    })
    .filter((target) => target.includes(needle))

const collectorWith = (memory: InstanceSource.MemoryInstanceSource) =>
  Collector.layer({ maxAge: 0 }).pipe(
    Layer.provide(Layer.merge(NodeReaders.layer(), InstanceSource.layerMemory(memory))),
    Layer.orDie
  )

const vm = (id: string, pid: number | undefined, tapDevice?: string): InstanceInfo => ({
  id,
  name: `vm-${id}`,
  ...(pid === undefined ? {} : { hypervisorPid: pid }),
  ...(tapDevice === undefined ? {} : { tapDevice }),
  allocatedVcpus: 2,
  allocatedMemoryBytes: 1024 * 1024 * 1024
})

describe("Collector over real processes", () => {
  it.live("reports a real child's usage, then 'exited' once it is gone, and closes its fds", () =>
    Effect.gen(function* () {
      const child = spawnChild("exec sleep 30")
      yield* Effect.promise(() => sleepMs(100))
      const memory = InstanceSource.makeMemory([vm("a", child.pid)])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = (yield* collector.refresh).stats[0]!
        assert.strictEqual(first.state, "running")
        assert.strictEqual(Number(first.memoryRssBytes) / 1024, psOf(child.pid).rssKiB)
        assert.isNotNull(first.processStartTimeMs)
        assert.isAtMost(Math.abs(first.processStartTimeMs! - Date.now()), 5_000)
        assert.lengthOf(openFilesOf(`/proc/${child.pid}/`), 2)

        yield* Effect.promise(() => stopChild(child))
        const second = (yield* collector.refresh).stats[0]!
        assert.strictEqual(second.state, "exited")
        assert.isNull(second.cpuUsec)
        assert.isNull(second.memoryRssBytes)
        assert.deepStrictEqual(
          second.unavailable.map((u) => `${u.source}:${u.reason}`),
          ["stat:process_gone", "statm:process_gone"]
        )
        assert.lengthOf(openFilesOf(`/proc/${child.pid}/`), 0)
      }).pipe(Effect.provide(collectorWith(memory)))
    })
  )

  it.live("starts a new epoch when another process takes the instance's place (PID reuse / VMM restart)", () =>
    Effect.gen(function* () {
      const first = spawnChild("exec sleep 30")
      yield* Effect.promise(() => sleepMs(1100)) // starttime has 10 ms ticks: make the two differ
      const second = spawnChild("exec sleep 30")
      yield* Effect.promise(() => sleepMs(50))
      const memory = InstanceSource.makeMemory([vm("a", first.pid)])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const a = (yield* collector.refresh).stats[0]!
        const again = (yield* collector.refresh).stats[0]!
        memory.set([vm("a", second.pid)])
        const b = (yield* collector.refresh).stats[0]!
        assert.strictEqual(a.epoch, 0)
        assert.strictEqual(again.epoch, 0)
        assert.strictEqual(b.epoch, 1)
        assert.isTrue(b.processStartTicks! > a.processStartTicks!)
        assert.lengthOf(openFilesOf(`/proc/${first.pid}/`), 0) // the old pid's fds were released
      }).pipe(Effect.provide(collectorWith(memory)))
      yield* Effect.promise(() => Promise.all([stopChild(first), stopChild(second)]))
    })
  )

  it.live("one vanished instance does not fail the collection of the others", () =>
    Effect.gen(function* () {
      const child = spawnChild("exec sleep 30")
      const memory = InstanceSource.makeMemory([vm("a", child.pid), vm("b", 4_194_000), vm("c", process.pid)])
      const snapshot = yield* Effect.flatMap(Collector.Collector, (c) => c.refresh).pipe(
        Effect.provide(collectorWith(memory))
      )
      assert.deepStrictEqual(
        snapshot.stats.map((s) => s.state),
        ["running", "exited", "running"]
      )
      yield* Effect.promise(() => stopChild(child))
    })
  )
})

describe.skipIf(skipTap !== undefined)("Collector over a real TAP", () => {
  it.live("reports rx/tx exactly, from the VM's point of view, and releases the TAP's fds", () =>
    Effect.gen(function* () {
      const tap = createTap()
      const memory = InstanceSource.makeMemory([vm("t", process.pid, tap)])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        // The guest sends 20 frames and receives 7: a missing or double swap would show.
        const pushed = pushFrames(tap, 20, 500, 7)
        assert.strictEqual(pushed.received_by_guest, 7)
        const stats = (yield* collector.refresh).stats[0]!
        const host = ipLinkBytes(tap)
        assert.strictEqual(stats.netRxBytes, host.tx) // the VM received what the host transmitted
        assert.strictEqual(stats.netTxBytes, host.rx)
        assert.strictEqual(stats.netRxBytes, 7n * 514n)
        assert.strictEqual(stats.netTxBytes, 20n * 514n)
        assert.lengthOf(openFilesOf(`/net/${tap}/`), 2)
        memory.set([])
        yield* collector.refresh
        assert.lengthOf(openFilesOf(`/net/${tap}/`), 0)
      }).pipe(Effect.provide(collectorWith(memory)), Effect.ensuring(Effect.sync(() => deleteTap(tap))))
    })
  )
})
