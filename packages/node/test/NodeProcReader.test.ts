import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { statLine } from "@vm-metrics/core/ProcReader"
import { Effect, Either } from "effect"
import * as NodeKernel from "../src/NodeKernel.js"
import * as NodeProcReader from "../src/NodeProcReader.js"
import { childrenOf, getconf, psOf, sleepMs, spawnChild, stopChild } from "./helpers.js"

const kernel = Effect.runSync(NodeKernel.readKernelInfo())

describe("NodeKernel", () => {
  it("reads page size and clock ticks from the kernel, as getconf reports them", () => {
    assert.strictEqual(kernel.pageSize, getconf("PAGESIZE"))
    assert.strictEqual(kernel.clockTicksPerSecond, getconf("CLK_TCK"))
    const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync("/proc/stat", "utf8"))![1]) * 1000
    assert.strictEqual(kernel.bootTimeMs, btime)
  })

  it.effect("falls back to 4096 / 100 when auxv is unreadable", () =>
    Effect.gen(function* () {
      const info = yield* NodeKernel.readKernelInfo({ auxvPath: "/nonexistent/auxv", procRoot: "/nonexistent" })
      assert.deepStrictEqual(info, { pageSize: 4096, clockTicksPerSecond: 100, bootTimeMs: null })
    })
  )
})

describe("NodeProcReader on the real /proc", () => {
  it("reads this test process: running, RSS a non-zero multiple of the page size", () => {
    const reader = NodeProcReader.makeSync("/proc")
    const { stat, statm } = reader.sampleOne(process.pid)
    assert.isTrue(Either.isRight(stat) && Either.isRight(statm))
    if (Either.isLeft(stat) || Either.isLeft(statm)) return
    assert.include(["R", "S"], stat.right.state)
    assert.strictEqual(stat.right.comm, fs.readFileSync(`/proc/${process.pid}/comm`, "utf8").trim())
    assert.isTrue(statm.right.rssPages > 0n && statm.right.vmsPages >= statm.right.rssPages)
    const rssBytes = statm.right.rssPages * BigInt(kernel.pageSize)
    assert.strictEqual(rssBytes % BigInt(kernel.pageSize), 0n)
    reader.closeAll()
  })

  it("matches ps for a sleeping child (rss, vsz exactly; start time from stat field 22)", async () => {
    const child = spawnChild("exec sleep 30")
    try {
      await sleepMs(100)
      const reader = NodeProcReader.makeSync("/proc")
      const { stat, statm } = reader.sampleOne(child.pid)
      const ps = psOf(child.pid)
      if (Either.isLeft(stat) || Either.isLeft(statm)) return assert.fail("read failed")
      assert.strictEqual(stat.right.comm, "sleep")
      assert.strictEqual(Number(statm.right.rssPages) * (kernel.pageSize / 1024), ps.rssKiB)
      assert.strictEqual(Number(statm.right.vmsPages) * (kernel.pageSize / 1024), ps.vszKiB)
      const starttime = fs.readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]
      assert.strictEqual(stat.right.startTimeTicks, BigInt(starttime!))
      reader.closeAll()
    } finally {
      await stopChild(child)
    }
  })

  it("sees CPU time grow for a busy child, in step with ps", async () => {
    const child = spawnChild("while :; do :; done")
    try {
      const reader = NodeProcReader.makeSync("/proc")
      const ticks = () => {
        const { stat } = reader.sampleOne(child.pid)
        if (Either.isLeft(stat)) throw stat.left
        return Number(stat.right.utimeTicks + stat.right.stimeTicks)
      }
      const first = ticks()
      await sleepMs(1500)
      const second = ticks() // same kept fd, re-read at offset 0
      assert.isAbove(second, first + kernel.clockTicksPerSecond * 0.2)
      const psSeconds = psOf(child.pid).cpuSeconds
      const ourSeconds = ticks() / kernel.clockTicksPerSecond
      assert.approximately(ourSeconds, psSeconds, 1.01) // ps prints whole seconds
      reader.closeAll()
    } finally {
      await stopChild(child)
    }
  })

  it("reports a child that exits between two reads as ProcessGone and drops its fds", async () => {
    const child = spawnChild("exec sleep 30")
    const reader = NodeProcReader.makeSync("/proc")
    await sleepMs(50)
    assert.isTrue(Either.isRight(reader.sampleOne(child.pid).stat))
    assert.strictEqual(reader.openPids(), 1)
    await stopChild(child) // reaped: the kept fd now reads ESRCH
    const { stat, statm } = reader.sampleOne(child.pid)
    assert.strictEqual(Either.isLeft(stat) && stat.left._tag, "ProcessGone")
    assert.strictEqual(Either.isLeft(statm) && statm.left._tag, "ProcessGone")
    assert.strictEqual(reader.openPids(), 0)
  })

  it("reads a real zombie's state as Z", async () => {
    // sh forks a short sleep, then execs a long one that never waits: the short one becomes a zombie.
    const parent = spawnChild("sleep 0.05 & exec sleep 30")
    try {
      await sleepMs(400)
      const [zombie] = childrenOf(parent.pid)
      assert.isDefined(zombie)
      const { stat } = NodeProcReader.makeSync("/proc").sampleOne(zombie!)
      assert.strictEqual(Either.isRight(stat) && stat.right.state, "Z")
    } finally {
      await stopChild(parent)
    }
  })

  it("rejects pids that are not kernel pids without touching the file system", () => {
    const reader = NodeProcReader.makeSync("/proc")
    for (const pid of [0, -1, 1.5, Number.NaN, 2 ** 23, Number.MAX_SAFE_INTEGER + 2]) {
      const { stat, statm } = reader.sampleOne(pid)
      assert.strictEqual(Either.isLeft(stat) && stat.left._tag, "InvalidPid")
      assert.strictEqual(Either.isLeft(statm) && statm.left._tag, "InvalidPid")
    }
    assert.strictEqual(reader.openPids(), 0)
  })
})

describe("NodeProcReader with another proc root", () => {
  it.scoped("reads <procRoot>/<pid>/stat and statm, and keeps reading fresh content", () =>
    Effect.gen(function* () {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-proc-"))
      fs.mkdirSync(path.join(root, "4242"))
      const write = (utime: number) => {
        // Rewrite in place: the kept fd must see the new content on its next read at offset 0.
        fs.writeFileSync(path.join(root, "4242", "stat"), statLine({ pid: 4242, comm: "a) (b c", utime, stime: 5 }))
      }
      write(10)
      fs.writeFileSync(path.join(root, "4242", "statm"), "300 120 10 1 0 50 0\n")
      const reader = yield* NodeProcReader.make({ procRoot: root, kernel })
      const [first] = yield* reader.sample([4242])
      assert.strictEqual(Either.isRight(first!.stat) && first!.stat.right.comm, "a) (b c")
      assert.strictEqual(Either.isRight(first!.stat) && first!.stat.right.utimeTicks, 10n)
      assert.deepStrictEqual(Either.getOrThrow(first!.statm), { vmsPages: 300n, rssPages: 120n })
      write(12345)
      const [second] = yield* reader.sample([4242])
      assert.strictEqual(Either.isRight(second!.stat) && second!.stat.right.utimeTicks, 12345n)
      const [missing] = yield* reader.sample([4243])
      assert.strictEqual(Either.isLeft(missing!.stat) && missing!.stat.left._tag, "ProcessGone")
      fs.rmSync(root, { recursive: true })
    })
  )

  it.effect("refuses a root that could climb out of itself, with a typed error", () =>
    Effect.gen(function* () {
      for (const procRoot of ["relative/proc", "/host/../etc", "/proc/\u0000x"]) {
        const result = yield* Effect.either(Effect.scoped(NodeProcReader.make({ procRoot, kernel })))
        assert.strictEqual(Either.isLeft(result) && result.left._tag, "InvalidRoot")
      }
    })
  )
})
