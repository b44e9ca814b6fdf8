/**
 * Churn, with the real binary: hypervisor processes that start, burn some CPU and exit every few tens
 * of ms for 15 s, under a dozen names (so the same VM id comes back as another process again and
 * again), some on a real TAP, some naming a TAP that does not exist, while a client reads `/instances`
 * and `/metrics` as fast as they answer. The agent runs with discovery, collecting every 200 ms.
 *
 * - Every answer is a 200: no 5xx, no dropped connection.
 * - One process's CPU counter never goes down (per id, pid and process start time).
 * - An id listed twice in a row as two different processes (a VM its supervisor restarted at once) has
 *   two different epochs (two series).
 * - Once every such process has exited, none is listed, and the agent holds no fd of theirs.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { createTap, deleteTap, removeTempDirs, tapSkipReason, trustedFakeBinary } from "@vm-metrics/testing"
import { afterAll } from "vitest"
import { get, type Served, serve, stop, until } from "./cliRig.js"

const skip = tapSkipReason()
const CHURN_MS = 15_000
const NAMES = 12
/** A prefix of this run's VM names, so parallel tests and leftovers never mix in. */
const tag = `ch${process.pid % 10_000}`
/** The real TAPs three of the names are on (testing's createTap: unique names, made in the test). */
const taps: Array<string> = []

interface Listed {
  readonly instance_id: string
  readonly pid: number | null
  readonly epoch: number
  readonly process_start_time: string | null
  readonly cpu_seconds: number | null
}

const ours = (body: string): Array<Listed> =>
  (JSON.parse(body) as { instances: Array<Listed> }).instances.filter((vm) => vm.instance_id.startsWith(`${tag}-`))

/** The pids whose /proc files the agent holds open (its fds' targets under /proc/<pid>/). */
const procPidsHeldBy = (agent: number): Set<number> => {
  const held = new Set<number>()
  for (const fd of fs.readdirSync(`/proc/${agent}/fd`)) {
    try {
      const match = /^\/proc\/(\d+)\//.exec(fs.readlinkSync(`/proc/${agent}/fd/${fd}`))
      if (match !== null) held.add(Number(match[1]))
    } catch {
      // closed meanwhile
    }
  }
  return held
}

describe.skipIf(skip !== undefined)("vm-metrics serve under churn (discovery)", () => {
  afterAll(() => {
    removeTempDirs()
    for (const tap of taps) deleteTap(tap)
  })

  it("lists, counts and forgets processes that come and go, with no error, no counter going back and no fd kept", async () => {
    for (let i = 0; i < 3; i++) taps.push(createTap())
    const binary = trustedFakeBinary()
    const children = new Set<ChildProcess>()
    const spawned = new Set<number>()
    let served: Served | undefined
    try {
      served = await serve(["--interval", "200ms", "--discovery-interval", "200ms"])
      const agent = served.child.pid!
      let spawning = true
      /** One fake: busy for a random number of loop turns (a few to tens of ms of CPU), then a short sleep. */
      const start = (name: string, nic: ReadonlyArray<string>, sleep: string): ChildProcess => {
        const turns = 2_000 + Math.floor(Math.random() * 30_000)
        const script = `i=0; while [ "$i" -lt ${turns} ]; do i=$((i+1)); done; sleep ${sleep}`
        const child = spawn(binary, ["-c", script, "-name", name, "-smp", "2", "-m", "256M", ...nic], {
          stdio: "ignore"
        })
        if (child.pid !== undefined) spawned.add(child.pid)
        children.add(child)
        child.once("exit", () => children.delete(child))
        child.once("error", () => children.delete(child)) // not started (EAGAIN under load): no exit follows
        return child
      }
      const ended = (child: ChildProcess) =>
        new Promise((resolve) => {
          child.once("exit", resolve)
          child.once("error", resolve)
        })
      // Processes that come and go under a dozen names, every 40 ms.
      const churn = (async () => {
        for (let k = 0; spawning; k++) {
          const n = k % NAMES
          const nic =
            n < 3 ? ["-netdev", `tap,id=n0,ifname=${taps[n]}`] : n < 5 ? ["-netdev", `tap,id=n0,ifname=${tag}gone`] : []
          start(`${tag}-${n}`, nic, "0.2")
          await new Promise((resolve) => setTimeout(resolve, 40))
        }
      })()
      // VMs that a supervisor restarts as soon as they exit: the same id, another process, often with no
      // collection in between, so the agent still remembers the id when it sees the new process.
      const restarter = async (name: string) => {
        while (spawning) await ended(start(name, [], "0.4"))
      }
      const restarters = Promise.all([restarter(`${tag}-r0`), restarter(`${tag}-r1`)])

      const failures: Array<string> = []
      const lastOfProcess = new Map<string, number>()
      let previous = new Map<string, Listed>()
      const pidsOfId = new Map<string, Set<number>>()
      let reads = 0
      let restarts = 0
      const churnEnds = Date.now() + CHURN_MS
      while (Date.now() < churnEnds) {
        const instances = await get(`${served.base}/instances`)
        const metrics = await get(`${served.base}/metrics`)
        reads++
        if (instances.status !== 200) failures.push(`/instances: ${instances.status} ${instances.body.slice(0, 200)}`)
        if (metrics.status !== 200) failures.push(`/metrics: ${metrics.status} ${metrics.body.slice(0, 200)}`)
        if (instances.status !== 200) continue
        const now = new Map<string, Listed>()
        for (const vm of ours(instances.body)) {
          now.set(vm.instance_id, vm)
          if (vm.pid === null) continue
          const pids = pidsOfId.get(vm.instance_id) ?? new Set()
          pidsOfId.set(vm.instance_id, pids.add(vm.pid))
          const key = `${vm.instance_id} pid ${vm.pid} started ${vm.process_start_time}`
          const before = lastOfProcess.get(key)
          if (vm.cpu_seconds !== null) {
            if (before !== undefined && vm.cpu_seconds < before) {
              failures.push(`${key}: cpu_seconds went from ${before} to ${vm.cpu_seconds}`)
            }
            lastOfProcess.set(key, vm.cpu_seconds)
          }
          const last = previous.get(vm.instance_id)
          if (last !== undefined && last.pid !== null && last.pid !== vm.pid) {
            restarts++
            if (last.epoch === vm.epoch) {
              failures.push(`${vm.instance_id}: pid ${last.pid} then ${vm.pid} under the same epoch ${vm.epoch}`)
            }
          }
        }
        previous = now
      }
      spawning = false
      await Promise.all([churn, restarters])
      assert.deepStrictEqual(failures, [], `${failures.length} failures in ${reads} reads`)
      // The churn was real: many processes seen, and ids that came back as other processes.
      const seen = [...pidsOfId.values()].reduce((n, pids) => n + pids.size, 0)
      assert.isAtLeast(seen, 20, `processes seen in ${reads} reads`)
      assert.isAtLeast(Math.max(...[...pidsOfId.values()].map((pids) => pids.size)), 3, "an id seen as 3+ processes")
      assert.isAtLeast(restarts, 3, "ids listed twice in a row as two processes")

      for (const child of children) child.kill("SIGKILL")
      const gone = await until("no churned VM listed and none of their /proc files held", 60_000, async () => {
        const listed = await get(`${served!.base}/instances`)
        if (listed.status !== 200) return undefined
        const held = [...procPidsHeldBy(agent)].filter((pid) => spawned.has(pid))
        return ours(listed.body).length === 0 && held.length === 0 ? true : undefined
      }).catch((error: Error) => error.message)
      assert.strictEqual(gone, true, `${gone}\nheld: ${[...procPidsHeldBy(agent)].filter((pid) => spawned.has(pid))}`)
      assert.isFalse(served.exited(), served.output())
    } finally {
      for (const child of children) child.kill("SIGKILL")
      if (served !== undefined) await stop(served.child)
    }
  }, 180_000)
})
