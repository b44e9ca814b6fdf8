/**
 * Discovery's cadence through Main's graph (`--discovery-interval`): known VMs are read on every
 * collection, the listing of /proc is taken again only once it is the interval old, or on refresh
 * (SIGHUP). Real fake-hypervisor processes (FakeHypervisors: copies of sh named qemu-system-x86_64);
 * the listing's age runs on the TestClock, so nothing here races the wall clock.
 */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import { isRoot, sleepMs } from "@vm-metrics/testing"
import { type Fleet, startFleet } from "@vm-metrics/testing/FakeHypervisors"
import { skipReason } from "@vm-metrics/testing/Skip"
import { Duration, Effect, Layer, Option, TestClock } from "effect"
import * as AppConfig from "../src/AppConfig.js"
import * as Main from "../src/Main.js"

const skip = skipReason(
  isRoot ? undefined : "needs root: discovery trusts only a root-owned fake hypervisor binary",
  "discovery cadence test over real processes"
)

/** Waits (bounded) until the process is a zombie or gone: a SIGKILL is delivered asynchronously. */
const waitDead = async (pid: number) => {
  for (let i = 0; i < 500; i++) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
      if (stat[stat.lastIndexOf(")") + 2] === "Z") return
    } catch {
      return
    }
    await sleepMs(20)
  }
  throw new Error(`process ${pid} did not die`)
}

describe("discovery cadence", () => {
  it.effect.skipIf(skip !== undefined)(
    "a new VM appears only once the listing is --discovery-interval old; a killed one leaves at the next collection (which lists again); refresh lists at once",
    () => {
      const fleets: Array<Fleet> = []
      const start = (tapPrefix: string) =>
        Effect.promise(async () => {
          const fleet = await startFleet(1, { tapPrefix })
          fleets.push(fleet)
          return fleet.vms[0]!.pid
        })
      const stateOf = (snapshot: Collector.Snapshot, pid: number) =>
        snapshot.stats.find((vm) => vm.pid === pid)?.state ?? "not listed"
      return Effect.gen(function* () {
        const a = yield* start("dca")
        const collector = yield* Collector.Collector
        assert.strictEqual(stateOf(yield* collector.collect, a), "running")

        const b = yield* start("dcb")
        yield* TestClock.adjust("4999 millis")
        const reused = yield* collector.collect
        assert.deepStrictEqual([stateOf(reused, a), stateOf(reused, b)], ["running", "not listed"])

        fleets[0]!.stop()
        yield* Effect.promise(() => waitDead(a))
        const afterKill = yield* collector.collect
        // Found exited in a reused listing: the collection lists again at once, and the VM is gone (the new
        // one is listed now, and read from the next collection on).
        assert.deepStrictEqual([stateOf(afterKill, a), stateOf(afterKill, b)], ["not listed", "not listed"])

        yield* TestClock.adjust("1 millis")
        const relisted = yield* collector.collect
        assert.deepStrictEqual([stateOf(relisted, a), stateOf(relisted, b)], ["not listed", "running"])

        const c = yield* start("dcc")
        assert.strictEqual(stateOf(yield* collector.collect, c), "not listed")
        assert.strictEqual(stateOf(yield* collector.refresh, c), "running")
      }).pipe(
        Effect.provide(
          Main.layerCollect({ discoveryInterval: "5 seconds", maxAge: 0, groups: new Set() }).pipe(Layer.orDie)
        ),
        Effect.ensuring(
          Effect.sync(() => {
            for (const fleet of fleets) fleet.stop()
          })
        )
      )
    },
    120_000
  )

  it.effect(
    "--discovery-interval is read as a duration (default 5s; 0s lists on every collection); a bad one names the flag",
    () =>
      Effect.gen(function* () {
        const input: AppConfig.CollectInput = {
          source: "discovery",
          instancesFile: Option.none(),
          libvirtRunDir: "/run/libvirt/qemu",
          maxAge: "1s",
          procRoot: "/proc",
          sysRoot: "/sys",
          discoveryUids: []
        }
        const millis = (config: AppConfig.CollectConfig) => Duration.toMillis(Duration.decode(config.discoveryInterval))
        assert.strictEqual(millis(yield* AppConfig.resolveCollect(input)), 5000)
        assert.strictEqual(millis(yield* AppConfig.resolveCollect({ ...input, discoveryInterval: "0s" })), 0)
        const error = yield* Effect.flip(AppConfig.resolveCollect({ ...input, discoveryInterval: "soon" }))
        assert.include(error.message, "--discovery-interval")
      })
  )
})
