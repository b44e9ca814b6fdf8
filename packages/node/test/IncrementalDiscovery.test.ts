/**
 * Incremental discovery over real processes in a fresh PID namespace, where pids are handed out on
 * demand (`ns_last_pid`), so "the same pid, another process, between two scans" is deterministic.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { afterAll, assert, describe, it } from "@effect/vitest"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { childrenOf, namespaceSkipReason, removeTempDirs, sleepMs, trustedFakeBinary } from "@vm-metrics/testing"
import * as PidNamespace from "@vm-metrics/testing/PidNamespace"
import { Effect, Either } from "effect"
import * as Discovery from "../src/Discovery.js"
import * as Scanner from "../src/internal/processScanner.js"

const skipNamespaces = namespaceSkipReason()

afterAll(removeTempDirs)

/**
 * A fresh PID namespace whose init is a shell taking commands on stdin: `other N` starts a `sleep`
 * as pid N, `vm N NAME` a fake QEMU (`-name NAME`, stopped by itself so it stays) as pid N, `late N
 * NAME` a shell as pid N that stops itself and, once `cont N` continues it, execs that fake QEMU;
 * `kill N` kills and reaps pid N. Its /proc is reached through the init's root.
 */
const pidNamespace = async (binary: string) => {
  const { procRoot, send, stop } = await PidNamespace.pidNamespace(
    `
        other) echo $((n - 1)) > /proc/sys/kernel/ns_last_pid; sleep 1000 & echo "other $!" ;;
        vm) echo $((n - 1)) > /proc/sys/kernel/ns_last_pid
          "$BIN" -c 'kill -STOP $$' -name "$name" -smp 2 & echo "vm $!" ;;
        late) echo $((n - 1)) > /proc/sys/kernel/ns_last_pid
          sh -c 'kill -STOP $$; exec "$BIN" -c "kill -STOP \\$\\$" -name "$0" -smp 2' "$name" & echo "late $!" ;;
        cont) kill -CONT "$n"; echo "continued $n" ;;
        kill) kill -9 "$n"; { wait "$n"; } 2>/dev/null; echo "killed $n" ;;`,
    { BIN: binary }
  )
  /** Waits (bounded) until pid `n` has exec'd the fake QEMU and stopped itself: its comm and cmdline are final. */
  const settled = async (n: number) => {
    for (let i = 0; i < 400; i++) {
      const stat = fs.readFileSync(`${procRoot}/${n}/stat`, "latin1")
      if (stat.startsWith(`${n} (qemu-system-x86) T`)) return
      await sleepMs(25)
    }
    throw new Error(`pid ${n} did not become a stopped fake QEMU`)
  }
  /** Waits (bounded) until pid `n` runs `comm`: a forked shell's child answers before its exec. */
  const running = async (n: number, comm: string) => {
    for (let i = 0; i < 400; i++) {
      if (fs.readFileSync(`${procRoot}/${n}/stat`, "latin1").startsWith(`${n} (${comm}) `)) return
      await sleepMs(25)
    }
    throw new Error(`pid ${n} did not become ${comm}`)
  }
  return { procRoot, send, settled, running, stop }
}

/** Our fds open on a process's comm, stat, cmdline or status under any /proc, as `<pid>/<file>`. */
const keptProcFds = (): Array<string> => {
  const found: Array<string> = []
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    let target: string
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`)
    } catch {
      continue
    }
    const match = /\/(\d+)\/(comm|stat|cmdline|status)$/.exec(target)
    if (match !== null) found.push(`${match[1]}/${match[2]}`)
  }
  return found.sort()
}

const vm = (name: string, pid: number): InstanceInfo => ({
  id: name,
  name,
  hypervisorPid: pid,
  allocatedVcpus: 2,
  allocatedMemoryBytes: 128 * 1024 * 1024
})

if (skipNamespaces !== undefined) console.warn(`skipping incremental discovery tests: ${skipNamespaces}`)

describe.skipIf(skipNamespaces !== undefined)("incremental discovery over real processes", () => {
  it("reads a pid once, sees a pid reused between two scans as the new process, drops vanished pids", async () => {
    const ns = await pidNamespace(trustedFakeBinary())
    const before = new Set(keptProcFds())
    const kept = () => keptProcFds().filter((fd) => !before.has(fd))
    const scanner = Scanner.makeScanner(ns.procRoot)
    try {
      const scan = () => Either.getOrThrow(scanner.scan())
      const inspected = () => scanner.counters().inspected

      // pid 1 (the namespace's shell) and a sleep as pid 100: neither is a VM, both are remembered.
      assert.strictEqual(await ns.send("other 100"), "other 100")
      await ns.running(100, "sleep")
      assert.deepStrictEqual(scan(), [])
      assert.strictEqual(scanner.cached(), 2)
      assert.strictEqual(scanner.known(), 0)
      assert.strictEqual(inspected(), 2)

      // A steady-state rescan reads nothing afresh.
      assert.deepStrictEqual(scan(), [])
      assert.strictEqual(inspected(), 2)

      // The sleep dies and a VM gets pid 100 before the next scan: the listing shows the VM.
      assert.strictEqual(await ns.send("kill 100"), "killed 100")
      assert.strictEqual(await ns.send("vm 100 vm-a"), "vm 100")
      await ns.settled(100)
      const withA = scan()
      assert.deepStrictEqual(withA, [vm("vm-a", 100)])
      assert.strictEqual(inspected(), 3)
      assert.strictEqual(scanner.known(), 1)
      assert.strictEqual(scanner.cached(), 2)

      // Known: not read again, and the very same derived object is listed.
      const again = scan()
      assert.strictEqual(again[0], withA[0])
      assert.strictEqual(inspected(), 3)

      // Another VM with the same comm takes pid 100 between two scans: it is the new one.
      assert.strictEqual(await ns.send("kill 100"), "killed 100")
      assert.strictEqual(await ns.send("vm 100 vm-b"), "vm 100")
      await ns.settled(100)
      assert.deepStrictEqual(scan(), [vm("vm-b", 100)])
      assert.strictEqual(inspected(), 4)

      // The fds kept for the VM (its stat) and the shell (its comm); a vanished pid's are closed.
      assert.deepStrictEqual(kept(), ["1/comm", "100/stat"])
      assert.strictEqual(await ns.send("kill 100"), "killed 100")
      assert.deepStrictEqual(scan(), [])
      assert.strictEqual(scanner.cached(), 1)
      assert.strictEqual(scanner.known(), 0)
      assert.strictEqual(inspected(), 4)
      assert.deepStrictEqual(kept(), ["1/comm"])
      scanner.close()
      assert.strictEqual(scanner.cached(), 0)
      assert.deepStrictEqual(kept(), [])
    } finally {
      scanner.close()
      await ns.stop()
    }
  })

  it("sees a remembered process that execs into a hypervisor (same pid, same start time)", async () => {
    const ns = await pidNamespace(trustedFakeBinary())
    const scanner = Scanner.makeScanner(ns.procRoot)
    try {
      assert.strictEqual(await ns.send("late 100 vm-late"), "late 100")
      for (let i = 0; i < 400 && !fs.readFileSync(`${ns.procRoot}/100/stat`, "latin1").startsWith("100 (sh) T"); i++) {
        await sleepMs(25)
      }
      const startOf = () => fs.readFileSync(`${ns.procRoot}/100/stat`, "latin1").split(") ")[1]!.split(" ")[19]
      const start = startOf()
      assert.deepStrictEqual(Either.getOrThrow(scanner.scan()), [])
      assert.strictEqual(scanner.cached(), 2)
      assert.strictEqual(await ns.send("cont 100"), "continued 100")
      await ns.settled(100)
      assert.strictEqual(startOf(), start)
      assert.deepStrictEqual(Either.getOrThrow(scanner.scan()), [vm("vm-late", 100)])
    } finally {
      scanner.close()
      await ns.stop()
    }
  })

  it("with a comm fd budget of 2, keeps 2 + 1 per hypervisor fds and still sees reuse and exec by path", async () => {
    const ns = await pidNamespace(trustedFakeBinary())
    const before = new Set(keptProcFds())
    const kept = () => keptProcFds().filter((fd) => !before.has(fd))
    const scanner = Scanner.makeScanner(ns.procRoot, [], { keptCommFds: 2 })
    try {
      const scan = () => Either.getOrThrow(scanner.scan())
      const vmPids = new Set<string>()
      const otherCommFds = () => kept().filter((fd) => !vmPids.has(fd.split("/")[0]!)).length
      for (const n of [100, 101, 102]) {
        assert.strictEqual(await ns.send(`other ${n}`), `other ${n}`)
        await ns.running(n, "sleep")
      }
      assert.strictEqual(await ns.send("late 103 vm-late"), "late 103")
      for (let i = 0; i < 400 && !fs.readFileSync(`${ns.procRoot}/103/stat`, "latin1").startsWith("103 (sh) T"); i++) {
        await sleepMs(25)
      }
      assert.strictEqual(await ns.send("vm 200 vm-a"), "vm 200")
      await ns.settled(200)

      // Six processes (the shell, three sleeps, the stopped sh, the VM): two comm fds, one (stat) for the VM.
      assert.deepStrictEqual(scan(), [vm("vm-a", 200)])
      vmPids.add("200")
      assert.strictEqual(scanner.cached(), 6)
      assert.strictEqual(otherCommFds(), 2)
      assert.includeMembers(kept(), ["200/stat"])
      assert.strictEqual(kept().length, 2 + scanner.known())

      // pid 102 (beyond the budget: no fd) is reused by a VM, pid 103 (no fd) execs one: both are seen.
      assert.strictEqual(await ns.send("kill 102"), "killed 102")
      assert.strictEqual(await ns.send("vm 102 vm-b"), "vm 102")
      await ns.settled(102)
      assert.strictEqual(await ns.send("cont 103"), "continued 103")
      await ns.settled(103)
      assert.deepStrictEqual(scan(), [vm("vm-a", 200), vm("vm-b", 102), vm("vm-late", 103)])
      vmPids.add("102").add("103")
      assert.strictEqual(scanner.known(), 3)
      assert.strictEqual(otherCommFds(), 2)
      assert.includeMembers(kept(), ["102/stat", "103/stat", "200/stat"])
      assert.strictEqual(kept().length, 2 + scanner.known())

      // A steady rescan reads nothing afresh; a vanished VM without kept comm is dropped.
      const inspected = scanner.counters().inspected
      assert.strictEqual(scan().length, 3)
      assert.strictEqual(scanner.counters().inspected, inspected)
      assert.strictEqual(await ns.send("kill 102"), "killed 102")
      assert.deepStrictEqual(scan(), [vm("vm-a", 200), vm("vm-late", 103)])
      scanner.close()
      assert.deepStrictEqual(kept(), [])
    } finally {
      scanner.close()
      await ns.stop()
    }
  })

  it("lists every hypervisor when the fd limit is below the host's process count and its hypervisors' files (a scan in a child after prlimit --nofile)", async () => {
    const LIMIT = 64
    const binary = trustedFakeBinary()
    // Enough processes that the comm fds alone would exceed the limit.
    const padding = spawn("sh", ["-c", "i=0; while [ $i -lt 150 ]; do sleep 1000 & i=$((i + 1)); done; wait"], {
      stdio: "ignore",
      detached: true
    })
    const qemu = spawn(binary, ["-c", "kill -STOP $$", "-name", "fdlimit-vm", "-smp", "2"], { stdio: "ignore" })
    // More hypervisors than the limit has fds for their status and cmdline: those fds are shed too.
    const pads = Array.from({ length: 40 }, (_, i) =>
      spawn(binary, ["-c", "kill -STOP $$", "-name", `fdpad-${i}`], { stdio: "ignore" })
    )
    try {
      for (let i = 0; i < 400 && childrenOf(padding.pid!).length < 150; i++) await sleepMs(25)
      assert.strictEqual(childrenOf(padding.pid!).length, 150)
      for (const child of [qemu, ...pads]) {
        for (let i = 0; i < 400 && !fs.readFileSync(`/proc/${child.pid}/stat`, "latin1").includes(") T "); i++) {
          await sleepMs(25)
        }
      }
      const script = path.join(import.meta.dirname, "fixtures", "scanAtFdLimit.ts")
      const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["pipe", "pipe", "inherit"] })
      const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
      const exited = new Promise<number | null>((resolve) => child.once("exit", resolve))
      let report: string | undefined
      try {
        assert.strictEqual((await lines.next()).value, "ready")
        const lowered = spawnSync("prlimit", [`--pid=${child.pid}`, `--nofile=${LIMIT}:${LIMIT}`], { encoding: "utf8" })
        assert.strictEqual(lowered.status, 0, lowered.stderr)
        child.stdin!.write("go\n")
        report = (await lines.next()).value
        assert.strictEqual(await exited, 0)
      } finally {
        child.kill("SIGKILL")
      }
      const result = JSON.parse(report ?? "null") as {
        first: Array<string>
        second: Array<string>
        processes: number
        limit: number
      }
      assert.strictEqual(result.limit, LIMIT)
      assert.isAbove(result.processes, LIMIT)
      for (const name of ["fdlimit-vm", ...pads.map((_, i) => `fdpad-${i}`)]) {
        assert.include(result.first, name)
        assert.include(result.second, name)
      }
    } finally {
      qemu.kill("SIGKILL")
      for (const pad of pads) pad.kill("SIGKILL")
      process.kill(-padding.pid!, "SIGKILL")
    }
  }, 120_000)

  it("the Discovery layer closes its kept fds when its scope closes", async () => {
    const ns = await pidNamespace(trustedFakeBinary())
    const before = new Set(keptProcFds())
    const kept = () => keptProcFds().filter((fd) => !before.has(fd))
    try {
      assert.strictEqual(await ns.send("vm 100 vm-a"), "vm 100")
      await ns.settled(100)
      const listed = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const source = yield* Discovery.make({ procRoot: ns.procRoot })
            const listing = yield* source.list
            assert.deepStrictEqual(kept(), ["1/comm", "100/stat"])
            return listing
          })
        )
      )
      assert.deepStrictEqual(listed, [vm("vm-a", 100)])
      assert.deepStrictEqual(kept(), [])
    } finally {
      await ns.stop()
    }
  })
})
