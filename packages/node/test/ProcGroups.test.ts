/**
 * The process side of the metric groups over real processes (testing's fake-vmm.py stands in for a
 * hypervisor): the memory breakdown and disk bytes equal what the kernel shows the test, vCPU threads
 * named as Cloud Hypervisor, Firecracker and QEMU name them are found and read, a vCPU thread that
 * waits for a CPU shows it as delay, hugetlb pages are counted outside RSS, and threads are listed
 * again when one exits but not on every sample.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import { allGroups, type MetricGroup } from "@vm-metrics/core/MetricGroup"
import type { VmStats } from "@vm-metrics/core/VmStats"
import {
  type FakeVmm,
  type FakeVmmOptions,
  hasCommand,
  isRoot,
  run,
  runToEnd,
  skipReason,
  sleepMs,
  startFakeVmm,
  stopChild
} from "@vm-metrics/testing"
import { Effect, Either, Layer, ManagedRuntime } from "effect"
import { FdBudget } from "../src/internal/fdBudget.js"
import { makeSyncProcReader } from "../src/internal/syncProcReader.js"
import * as NodeReaders from "../src/NodeReaders.js"

const READER = path.resolve(import.meta.dirname, "../src/internal/syncProcReader.ts")

const MiB = 1024n * 1024n
const REPO = path.resolve(import.meta.dirname, "../../..")
const skipPython = skipReason(hasCommand("python3") ? undefined : "needs python3 (fake-vmm.py)", "process group tests")

const fakes: Array<FakeVmm> = []
const start = async (options: FakeVmmOptions) => {
  const fake = await startFakeVmm(options)
  fakes.push(fake)
  return fake
}
// Each test's fakes go with it: a busy vCPU thread left spinning (one at nice −20, pinned to core 0) would
// starve the rest of a loaded CI run.
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((fake) => fake.stop()))
})

/** A collector over the real readers for the fakes, with the given groups; `collect` reads them all now. */
const collectorFor = (pids: ReadonlyArray<number>, groups: ReadonlySet<MetricGroup> = new Set(allGroups)) => {
  const infos: Array<InstanceInfo> = pids.map((pid, i) => ({
    id: `vm${i}`,
    name: `vm-${i}`,
    hypervisorPid: pid,
    allocatedVcpus: 2,
    allocatedMemoryBytes: 1 << 30
  }))
  const source = InstanceSource.makeMemory(infos)
  const runtime = ManagedRuntime.make(
    Collector.layer({ maxAge: 0, groups }).pipe(
      Layer.provide(Layer.merge(NodeReaders.layer(), InstanceSource.layerMemory(source))),
      Layer.orDie
    )
  )
  return {
    source,
    collect: (): Promise<ReadonlyArray<VmStats>> =>
      runtime.runPromise(
        Effect.map(
          Effect.flatMap(Collector.Collector, (c) => c.refresh),
          (s) => s.stats
        )
      ),
    dispose: () => runtime.dispose()
  }
}

/** The kB lines of /proc/<pid>/status, read by the test itself, in bytes. */
const statusBytes = (pid: number): Record<string, bigint> => {
  const values: Record<string, bigint> = {}
  for (const match of fs.readFileSync(`/proc/${pid}/status`, "utf8").matchAll(/^(\w+):\s+(\d+) kB$/gm)) {
    values[match[1]] = BigInt(match[2]) * 1024n
  }
  return values
}

/** `/proc/<pid>/io` as the test reads it. */
const ioOf = (pid: number): Record<string, bigint> =>
  Object.fromEntries(
    fs
      .readFileSync(`/proc/${pid}/io`, "utf8")
      .trim()
      .split("\n")
      .map((line) => {
        const [key, value] = line.split(": ")
        return [key, BigInt(value)]
      })
  )

/** A thread's schedstat as the test reads it: [run ns, wait ns]. */
const schedstatOf = (pid: number, tid: number): [bigint, bigint] => {
  const [runNs, waitNs] = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").trim().split(" ")
  return [BigInt(runNs), BigInt(waitNs)]
}

const reasons = (stats: VmStats) => stats.unavailable.map((u) => `${u.source}:${u.reason}`)

const between = (value: bigint | null | undefined, low: bigint, high: bigint, what: string) => {
  assert.isTrue(
    value !== null && value !== undefined && value >= low && value <= high,
    `${what}: ${low} ≤ ${value} ≤ ${high}`
  )
}

describe.skipIf(skipPython !== undefined)("metric groups over real processes", () => {
  it("memory: the breakdown equals /proc/<pid>/status of the same process", async () => {
    const fake = await start({ allocMib: 64 })
    const collector = collectorFor([fake.pid])
    try {
      const before = statusBytes(fake.pid)
      const [stats] = await collector.collect()
      const after = statusBytes(fake.pid)
      assert.deepStrictEqual(reasons(stats), ["tasks:no_vcpu_threads"]) // python has no vCPU threads
      const lines = [
        ["memoryAnonBytes", "RssAnon"],
        ["memoryFileBytes", "RssFile"],
        ["memoryShmemBytes", "RssShmem"],
        ["memorySwapBytes", "VmSwap"],
        ["memoryHugetlbBytes", "HugetlbPages"]
      ] as const
      for (const [field, line] of lines) {
        const [low, high] = [before[line], after[line]].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
        between(stats[field], low, high, `${field} = ${line}`)
      }
      assert.isTrue(stats.memoryAnonBytes! >= 64n * MiB, "the 64 MiB the fake touched are anonymous")
    } finally {
      await collector.dispose()
    }
  })

  it("disk: an O_DIRECT write of 8 MiB grows diskWriteBytes by ≥ 8 MiB, equal to /proc/<pid>/io", async () => {
    fs.mkdirSync(path.join(REPO, ".rig"), { recursive: true })
    // Under the repository (a disk), not the temp dir (which may be tmpfs, where O_DIRECT fails).
    const dir = fs.mkdtempSync(path.join(REPO, ".rig", "disk-"))
    const fake = await start({})
    const collector = collectorFor([fake.pid], new Set(["disk"]))
    try {
      const [first] = await collector.collect()
      assert.deepStrictEqual(reasons(first), [])
      const written = await fake.command(`write ${dir} 8`)
      assert.isUndefined(written.error, `the write failed: ${written.error}`)
      const before = ioOf(fake.pid)
      const [second] = await collector.collect()
      const after = ioOf(fake.pid)
      between(second.diskWriteBytes, before.write_bytes, after.write_bytes, "write_bytes")
      between(second.diskReadBytes, before.read_bytes, after.read_bytes, "read_bytes")
      assert.isTrue(second.diskWriteBytes! - first.diskWriteBytes! >= 8n * MiB, "grew by at least the 8 MiB written")
      assert.strictEqual(second.epoch, 0)
    } finally {
      await collector.dispose()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it.each([
    ["Cloud Hypervisor", ["vcpu0", "vcpu1"]],
    ["Firecracker", ["fc_vcpu 0", "fc_vcpu 1"]],
    ["QEMU with debug-threads=on", ["CPU 0/KVM", "CPU 1/KVM"]]
  ] as const)("%s thread names: each vCPU found, its run and delay equal its schedstat", async (_, names) => {
    const fake = await start({ threads: [{ name: names[0], busy: true }, names[1]], unnamed: 1 })
    const collector = collectorFor([fake.pid])
    try {
      const tids = names.map((name) => fake.threads[name])
      const before = tids.map((tid) => schedstatOf(fake.pid, tid))
      const [stats] = await collector.collect()
      const after = tids.map((tid) => schedstatOf(fake.pid, tid))
      assert.deepStrictEqual(reasons(stats), [])
      assert.deepStrictEqual(
        stats.vcpus.map((v) => [v.vcpu, v.tid]),
        [
          [0, tids[0]],
          [1, tids[1]]
        ]
      )
      for (let i = 0; i < 2; i++) {
        between(stats.vcpus[i].runNs, before[i][0], after[i][0], `vCPU ${i} run`)
        between(stats.vcpus[i].delayNs, before[i][1], after[i][1], `vCPU ${i} delay`)
        assert.isNotNull(stats.vcpus[i].seriesStartTimeMs)
      }
      assert.isTrue(stats.vcpus[0].runNs > 0n, "the busy vCPU thread ran")
      between(stats.cpuDelayNs, before[0][1] + before[1][1], after[0][1] + after[1][1], "delay sum")
    } finally {
      await collector.dispose()
    }
  })

  it("threads that keep the process's name (QEMU without debug-threads=on): vcpu_threads_unnamed, null delay", async () => {
    const fake = await start({ unnamed: 2 })
    const collector = collectorFor([fake.pid])
    try {
      const [stats] = await collector.collect()
      assert.deepStrictEqual(reasons(stats), ["tasks:vcpu_threads_unnamed"])
      assert.isNull(stats.cpuDelayNs)
      assert.deepStrictEqual(stats.vcpus, [])
      assert.isNotNull(stats.systemUsec) // the other values are read
    } finally {
      await collector.dispose()
    }
  })
})

const skipTaskset = skipReason(
  hasCommand("taskset") ? undefined : "needs taskset (util-linux) to pin threads",
  "CPU contention test"
)

describe.skipIf(skipPython !== undefined || skipTaskset !== undefined)("vCPU delay under CPU contention", () => {
  /** The busy vCPU thread's delay growth over a ~3 s window, as a share of the wall time, from the collector. */
  const delayShare = async (collector: ReturnType<typeof collectorFor>, pid: number, tid: number) => {
    const [first] = await collector.collect()
    const startNs = process.hrtime.bigint()
    await sleepMs(3000) // the measuring window, no readiness wait
    const before = schedstatOf(pid, tid)
    const [second] = await collector.collect()
    const after = schedstatOf(pid, tid)
    const wallNs = process.hrtime.bigint() - startNs
    const vcpu = second.vcpus.find((v) => v.tid === tid)
    between(vcpu?.delayNs, before[1], after[1], "delay = the thread's schedstat, read by the test")
    between(second.cpuDelayNs, before[1], after[1], "the VM's delay (one vCPU)")
    return Number(second.cpuDelayNs! - first.cpuDelayNs!) / Number(wallNs)
  }

  /**
   * This machine is shared and loaded, so the vCPU thread and the hog are made to outweigh the rest of
   * it: nice −20, each in a session of its own whose autogroup (when the kernel groups by session)
   * gets nice −20 too. Then "alone" means alone on core 0, and the hog is its only true rival.
   */
  const favour = (pid: number, tid = pid) => {
    run("renice", ["-n", "-20", "-p", String(tid)])
    if (fs.existsSync(`/proc/${pid}/autogroup`)) fs.writeFileSync(`/proc/${pid}/autogroup`, "-20")
  }

  it("a CPU-bound process pinned to the busy vCPU thread's core: delay grows by ≥ 30 % of wall time", async () => {
    const fake = await start({ threads: [{ name: "vcpu0", busy: true }], ownSession: true })
    const tid = fake.threads.vcpu0
    run("taskset", ["-pc", "0", String(tid)])
    favour(fake.pid, tid)
    const collector = collectorFor([fake.pid], new Set(["cpu", "vcpu"]))
    try {
      const alone = await delayShare(collector, fake.pid, tid)
      const hog = spawn("taskset", ["-c", "0", "sh", "-c", "while :; do :; done"], { stdio: "ignore", detached: true })
      let contended: number
      try {
        if (hog.pid === undefined) return assert.fail("could not start the CPU hog")
        favour(hog.pid)
        contended = await delayShare(collector, fake.pid, tid)
      } finally {
        await stopChild(hog)
      }
      // Two busy threads of equal weight on one core: each waits about half the time.
      assert.isAtLeast(contended, 0.3, `delay share with a CPU hog on its core (alone: ${alone.toFixed(3)})`)
      // Alone it waits for hardly anything (measured here: under 1 %, on a loaded machine).
      assert.isBelow(alone, 0.1, `delay share alone ${alone.toFixed(3)}, contended ${contended.toFixed(3)}`)
    } finally {
      await collector.dispose()
    }
  })
})

/** The hugetlb page size this kernel uses by default, in bytes. */
const hugePageBytes = (): bigint => {
  const match = /^Hugepagesize:\s+(\d+) kB$/m.exec(fs.readFileSync("/proc/meminfo", "utf8"))
  return match === null ? 0n : BigInt(match[1]) * 1024n
}

const skipHugetlb = skipReason(
  !isRoot
    ? "needs root to reserve hugetlb pages (sysctl vm.nr_hugepages)"
    : hugePageBytes() === 0n
      ? "the kernel has no hugetlb pages"
      : undefined,
  "hugetlb test"
)

describe.skipIf(skipPython !== undefined || skipHugetlb !== undefined)("hugetlb guest RAM", () => {
  it("pages mapped with MAP_HUGETLB are in memoryHugetlbBytes and not in RSS", async () => {
    const saved = fs.readFileSync("/proc/sys/vm/nr_hugepages", "utf8").trim()
    const pages = 4
    fs.writeFileSync("/proc/sys/vm/nr_hugepages", String(Number(saved) + pages))
    try {
      const reserved = Number(fs.readFileSync("/proc/sys/vm/nr_hugepages", "utf8").trim()) - Number(saved)
      if (reserved < pages) {
        const missing = `the kernel reserved ${reserved} of ${pages} hugetlb pages (memory too fragmented?)`
        if (process.env.CI === "true") assert.fail(missing)
        console.warn(`skipping the hugetlb test: ${missing}`)
        return
      }
      const huge = await start({ hugetlbPages: pages })
      const plain = await start({}) // the same script without them: what RSS is without hugetlb pages
      assert.isNull(huge.hugetlbError, `mmap(MAP_HUGETLB) failed: ${huge.hugetlbError}`)
      const collector = collectorFor([huge.pid, plain.pid], new Set(["memory"]))
      try {
        const [withHuge, without] = await collector.collect()
        const size = BigInt(pages) * hugePageBytes()
        assert.strictEqual(withHuge.memoryHugetlbBytes, size)
        assert.strictEqual(without.memoryHugetlbBytes, 0n)
        assert.strictEqual(withHuge.memoryHugetlbBytes, statusBytes(huge.pid).HugetlbPages)
        // RSS (statm) and the Rss lines do not hold them: both processes are within a few MiB.
        const rssGap = withHuge.memoryRssBytes! - without.memoryRssBytes!
        assert.isBelow(Number(rssGap), Number(size) / 2, `RSS ${withHuge.memoryRssBytes} vs ${without.memoryRssBytes}`)
        const rssLines = withHuge.memoryAnonBytes! + withHuge.memoryFileBytes! + withHuge.memoryShmemBytes!
        assert.strictEqual(rssLines, statusBytes(huge.pid).VmRSS)
      } finally {
        await collector.dispose()
      }
    } finally {
      await Promise.all(fakes.splice(0).map((fake) => fake.stop())) // their pages go back before the pool shrinks
      fs.writeFileSync("/proc/sys/vm/nr_hugepages", saved)
    }
  })
})

/** Paths of the fds this process holds open under /proc/<pid>/. */
const openFilesOf = (pid: number): Array<string> =>
  fs
    .readdirSync("/proc/self/fd")
    .map((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`)
      } catch {
        return ""
      }
    })
    .filter((target) => target.startsWith(`/proc/${pid}/`))
    .map((target) => target.slice(`/proc/${pid}/`.length))
    .sort()

describe.skipIf(skipPython !== undefined)("kept files", () => {
  it("only the enabled groups' files are kept open, and all are closed when the VM leaves the listing", async () => {
    const fake = await start({ threads: ["vcpu0", "vcpu1"] })
    const [t0, t1] = [fake.threads.vcpu0, fake.threads.vcpu1]
    const seed = collectorFor([fake.pid], new Set())
    try {
      await seed.collect()
      assert.deepStrictEqual(openFilesOf(fake.pid), ["stat", "statm"])
    } finally {
      await seed.dispose()
    }
    const all = collectorFor([fake.pid])
    try {
      await all.collect()
      await all.collect()
      const schedstats = [`task/${t0}/schedstat`, `task/${t1}/schedstat`]
      assert.deepStrictEqual(openFilesOf(fake.pid), ["io", "stat", "statm", "status", ...schedstats].sort())
      all.source.set([])
      await all.collect()
      assert.deepStrictEqual(openFilesOf(fake.pid), [])
    } finally {
      await all.dispose()
    }
  })
})

describe.skipIf(skipPython !== undefined)("vCPU threads are listed rarely", () => {
  it.each([
    ["its kept fd reads ESRCH", undefined],
    ["read by path, no room in the fd budget: ENOENT", 0]
  ] as const)("a replaced thread is found at once (%s); an added one only at the next listing", async (_, fds) => {
    const fake = await start({ threads: ["vcpu0", "vcpu1"] })
    const reader = makeSyncProcReader("/proc", {
      relistEvery: 3,
      ...(fds === undefined ? {} : { fdBudget: new FdBudget(fds) })
    })
    const vcpusOf = () => {
      const threads = reader.sampleOne(fake.pid, { vcpuThreads: true }).vcpuThreads
      if (threads === undefined || Either.isLeft(threads)) return assert.fail(`no vCPU threads: ${String(threads)}`)
      return threads.right.map((t) => [t.vcpu, t.tid, Either.isRight(t.schedstat)])
    }
    try {
      assert.deepStrictEqual(vcpusOf(), [
        [0, fake.threads.vcpu0, true],
        [1, fake.threads.vcpu1, true]
      ]) // sample 1 lists
      const replaced = (await fake.command("replace vcpu1")) as { old: number; new: number }
      assert.deepStrictEqual(vcpusOf(), [
        [0, fake.threads.vcpu0, true],
        [1, replaced.new, true]
      ]) // sample 2: thread 1's fd read ESRCH, listed again at once
      const added = (await fake.command("add vcpu2")) as { new: number }
      assert.lengthOf(vcpusOf(), 2) // sample 3: no listing, the new thread is not seen yet
      assert.lengthOf(vcpusOf(), 2) // sample 4
      assert.deepStrictEqual(vcpusOf()[2], [2, added.new, true]) // sample 5: the third after the last listing
    } finally {
      reader.closeAll()
    }
  })
})

const skipUsers = skipReason(
  !isRoot
    ? "needs root to read as another user (setpriv)"
    : !hasCommand("setpriv")
      ? "needs setpriv (util-linux)"
      : undefined,
  "another user's process test"
)

describe.skipIf(skipPython !== undefined || skipUsers !== undefined)("another user's process", () => {
  it("io needs ptrace access: a reader as nobody gets permission_denied for io, status and threads still read", async () => {
    const fake = await start({ threads: ["vcpu0"] }) // runs as root
    const script = `
import { makeSyncProcReader } from ${JSON.stringify(READER)}
const s = makeSyncProcReader("/proc").sampleOne(Number(process.argv[1]), { status: true, io: true, vcpuThreads: true })
const tag = (e) => (e._tag === "Right" ? "ok" : typeof e.left === "string" ? e.left : e.left._tag)
console.log(JSON.stringify([tag(s.stat), tag(s.status), tag(s.io), tag(s.vcpuThreads)]))
`
    const result = await runToEnd(
      "setpriv",
      [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        process.execPath,
        "--import",
        "tsx",
        "--input-type=module",
        "-e",
        script,
        String(fake.pid)
      ],
      REPO
    )
    assert.strictEqual(result.status, 0, result.output)
    assert.deepStrictEqual(JSON.parse(result.stdout), ["ok", "ok", "PermissionDenied", "ok"])
    // As root (this test) the same file reads.
    const asRoot = makeSyncProcReader("/proc")
    const io = asRoot.sampleOne(fake.pid, { io: true }).io
    asRoot.closeAll()
    assert.isTrue(io !== undefined && Either.isRight(io))
  })
})
