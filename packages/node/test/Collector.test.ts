/** The core collector over the real Linux readers: real processes, real TAP devices. */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import {
  createTap,
  deleteTap,
  ipLinkBytes,
  namespaceSkipReason,
  psOf,
  pushFrames,
  sleepMs,
  spawnChild,
  statFieldOf,
  stopChild,
  tapSkipReason
} from "@vm-metrics/testing"
import * as PidNamespace from "@vm-metrics/testing/PidNamespace"
import { Effect, Layer } from "effect"
import * as NodeReaders from "../src/NodeReaders.js"

const skipTap = tapSkipReason()
const skipNamespaces = namespaceSkipReason()

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

const collectorWith = (memory: InstanceSource.MemoryInstanceSource, readers: NodeReaders.Options = {}) =>
  Collector.layer({ maxAge: 0 }).pipe(
    Layer.provide(Layer.merge(NodeReaders.layer(readers), InstanceSource.layerMemory(memory))),
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
        // stat and statm, and the default groups' status and io (sleep has no vCPU thread to keep)
        assert.lengthOf(openFilesOf(`/proc/${child.pid}/`), 4)

        yield* Effect.promise(() => stopChild(child))
        const second = (yield* collector.refresh).stats[0]!
        assert.strictEqual(second.state, "exited")
        assert.isNull(second.cpuUsec)
        assert.isNull(second.memoryRssBytes)
        assert.deepStrictEqual(
          second.unavailable.map((u) => `${u.source}:${u.reason}`),
          ["stat:process_gone", "statm:process_gone", "status:process_gone", "io:process_gone", "tasks:process_gone"]
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
        // rx/tx bytes, and rx/tx dropped for the default groups' `network`: nothing more.
        assert.lengthOf(openFilesOf(`/net/${tap}/`), 4)
        memory.set([])
        yield* collector.refresh
        assert.lengthOf(openFilesOf(`/net/${tap}/`), 0)
        // Sysfs alone: the agent's own net/dev keeps no file per TAP (SelfNetDev.test.ts).
      }).pipe(
        Effect.provide(collectorWith(memory, { selfNetDev: false })),
        Effect.ensuring(Effect.sync(() => deleteTap(tap)))
      )
    })
  )
})

describe.skipIf(skipTap !== undefined)("getInstanceStats over the agent's own net/dev", () => {
  it.live("reads the TAP now, not the net/dev of the collection before it", () =>
    Effect.gen(function* () {
      const tap = createTap()
      const info = vm("g", process.pid, tap)
      const memory = InstanceSource.makeMemory([info])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        pushFrames(tap, 3, 100, 0)
        const collected = (yield* collector.refresh).stats[0]!
        assert.strictEqual(collected.netTxBytes, 3n * 114n)
        pushFrames(tap, 4, 100, 0) // after the collection
        const now = yield* collector.getInstanceStats(info)
        assert.strictEqual(now.netTxBytes, 7n * 114n)
        assert.strictEqual(now.netTxBytes, ipLinkBytes(tap).rx)
      }).pipe(Effect.provide(collectorWith(memory)), Effect.ensuring(Effect.sync(() => deleteTap(tap))))
    })
  )
})

/** The namespace's commands: "start N" a sleep as pid N, "busy N" one that burns CPU first, "kill N", "cpu N". */
const pidNamespace = () =>
  PidNamespace.pidNamespace(`
        start) echo $((n - 1)) > /proc/sys/kernel/ns_last_pid; sleep 1000 & echo "started $!" ;;
        busy) echo $((n - 1)) > /proc/sys/kernel/ns_last_pid
          sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i + 1)); done; exec sleep 1000' & echo "busy $!" ;;
        kill) kill -9 "$n"; wait "$n"; sleep 0.05; echo "killed $n" ;;
        cpu) until [ "$(cut -d' ' -f3 /proc/$n/stat)" = S ]; do sleep 0.05; done; echo "cpu $(cut -d' ' -f14 /proc/$n/stat)" ;;`)

describe.skipIf(skipNamespaces !== undefined)("a reused pid is never the VM", () => {
  it.live("in a fresh PID namespace: the VM's pid taken by another process → exited/pid_reused, nulls", () =>
    Effect.gen(function* () {
      const ns = yield* Effect.acquireRelease(
        Effect.promise(() => pidNamespace()),
        (n) => Effect.promise(n.stop)
      )
      const send = (command: string) => Effect.promise(() => ns.send(command))
      assert.strictEqual(yield* send("start 100"), "started 100")
      const memory = InstanceSource.makeMemory([vm("a", 100)])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const first = (yield* collector.refresh).stats[0]!
        assert.strictEqual(first.state, "running")
        assert.strictEqual(first.epoch, 0)
        assert.isNotNull(first.memoryRssBytes)
        const pinned = first.processStartTicks!

        // The VM dies; a busy newcomer gets exactly the same pid.
        assert.strictEqual(yield* send("kill 100"), "killed 100")
        assert.strictEqual(yield* send("busy 100"), "busy 100")
        const newcomerCpu = Number((yield* send("cpu 100")).split(" ")[1])
        assert.isAbove(newcomerCpu, 0, "the newcomer burned CPU the VM never did")
        const newcomerStart = BigInt(statFieldOf(fs.readFileSync(`${ns.procRoot}/100/stat`, "latin1"), 22))
        assert.notStrictEqual(newcomerStart, pinned)

        for (let i = 0; i < 2; i++) {
          const reused = yield* collector.refresh
          const a = reused.stats[0]!
          assert.strictEqual(a.pid, 100)
          assert.strictEqual(a.state, "exited")
          assert.isNull(a.cpuUsec)
          assert.isNull(a.memoryRssBytes)
          assert.isNull(a.memoryVmsBytes)
          assert.isNull(a.processStartTicks)
          assert.strictEqual(a.epoch, 0)
          assert.deepStrictEqual(
            a.unavailable.map((u) => `${u.source}:${u.reason}`),
            ["stat:pid_reused", "statm:pid_reused", "status:pid_reused", "io:pid_reused", "tasks:pid_reused"]
          )
          assert.deepInclude(reused.unavailableTotals, { source: "stat", reason: "pid_reused", count: i + 1 })
        }

        // A restart: the source names another pid. New epoch, that process's values.
        assert.strictEqual(yield* send("start 200"), "started 200")
        memory.set([vm("a", 200)])
        const restarted = (yield* collector.refresh).stats[0]!
        assert.strictEqual(restarted.state, "running")
        assert.strictEqual(restarted.epoch, 1)
        assert.isBelow(Number(restarted.cpuUsec), newcomerCpu * 10_000, "a fresh sleep, not the busy newcomer")
        assert.isTrue(restarted.processStartTicks! > newcomerStart)
      }).pipe(Effect.provide(collectorWith(memory, { procRoot: ns.procRoot })))
    }).pipe(Effect.scoped)
  )
})

describe.skipIf(skipTap !== undefined)("a TAP recreated under the same VMM starts a new series", () => {
  it.live("its counters start over: a new epoch and a new series start, the process start unchanged", () =>
    Effect.gen(function* () {
      const tap = createTap()
      const memory = InstanceSource.makeMemory([vm("t", process.pid, tap)])
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        pushFrames(tap, 20, 500, 7)
        const before = (yield* collector.refresh).stats[0]!
        assert.strictEqual(before.netTxBytes, 20n * 514n)
        assert.strictEqual(before.epoch, 0)
        assert.strictEqual(before.seriesStartTimeMs, before.processStartTimeMs)

        yield* Effect.sleep("5 millis") // the reset's sample time is after the one before it
        pushFrames(tap, 4, 500, 1)
        const grown = (yield* collector.refresh).stats[0]!
        assert.strictEqual(grown.netTxBytes, 24n * 514n)
        assert.strictEqual(grown.epoch, 0)

        // Deleted and created again with the same name, under the same process.
        deleteTap(tap)
        createTap(tap)
        pushFrames(tap, 2, 500, 1)
        yield* Effect.sleep("5 millis")
        const recreated = (yield* collector.refresh).stats[0]!
        assert.deepStrictEqual(ipLinkBytes(tap), { rx: 2n * 514n, tx: 514n })
        assert.strictEqual(recreated.netTxBytes, 2n * 514n)
        assert.strictEqual(recreated.pid, process.pid)
        assert.strictEqual(recreated.processStartTimeMs, before.processStartTimeMs)
        assert.strictEqual(recreated.epoch, 1)
        assert.strictEqual(recreated.seriesStartTimeMs, grown.sampledAtMs)
        assert.isAbove(recreated.seriesStartTimeMs!, before.processStartTimeMs!)
        assert.isBelow(recreated.seriesStartTimeMs!, recreated.sampledAtMs)

        pushFrames(tap, 1, 500, 1)
        const after = (yield* collector.refresh).stats[0]!
        assert.strictEqual(after.epoch, 1)
        assert.strictEqual(after.seriesStartTimeMs, grown.sampledAtMs)
      }).pipe(Effect.provide(collectorWith(memory)), Effect.ensuring(Effect.sync(() => deleteTap(tap))))
    })
  )
})
