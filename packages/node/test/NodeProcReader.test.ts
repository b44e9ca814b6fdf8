import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import {
  childrenOf,
  getconf,
  makeTempDir,
  namespaceSkipReason,
  psOf,
  removeTempDirs,
  runToEnd,
  sleepMs,
  spawnChild,
  statField,
  stopChild
} from "@vm-metrics/testing"
import { Effect, Either } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import { hasSysPtrace, hidepidOf, superOptionsAt } from "../src/internal/procVisibility.js"
import { makeSyncProcReader } from "../src/internal/syncProcReader.js"
import * as NodeKernel from "../src/NodeKernel.js"
import * as NodeProcReader from "../src/NodeProcReader.js"

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
    const reader = makeSyncProcReader("/proc")
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
      const reader = makeSyncProcReader("/proc")
      const { stat, statm } = reader.sampleOne(child.pid)
      const ps = psOf(child.pid)
      if (Either.isLeft(stat) || Either.isLeft(statm)) return assert.fail("read failed")
      assert.strictEqual(stat.right.comm, "sleep")
      assert.strictEqual(Number(statm.right.rssPages) * (kernel.pageSize / 1024), ps.rssKiB)
      assert.strictEqual(Number(statm.right.vmsPages) * (kernel.pageSize / 1024), ps.vszKiB)
      assert.strictEqual(stat.right.startTimeTicks, BigInt(statField(child.pid, 22)), "starttime, stat field 22")
      reader.closeAll()
    } finally {
      await stopChild(child)
    }
  })

  it("sees CPU time grow for a busy child, in step with ps", async () => {
    const child = spawnChild("while :; do :; done")
    try {
      const reader = makeSyncProcReader("/proc")
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
    const reader = makeSyncProcReader("/proc")
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
      const { stat } = makeSyncProcReader("/proc").sampleOne(zombie!)
      assert.strictEqual(Either.isRight(stat) && stat.right.state, "Z")
    } finally {
      await stopChild(parent)
    }
  })

  it("rejects pids that are not kernel pids without touching the file system", () => {
    const reader = makeSyncProcReader("/proc")
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

const skipNamespaces = namespaceSkipReason()
const REPO = path.resolve(import.meta.dirname, "../../..")
const READER = path.resolve(import.meta.dirname, "../src/internal/syncProcReader.ts")

/** A reader in a child process: prints, per pid, the tag of each file's result ("ok" when read). */
const readerScript = `
import { makeSyncProcReader } from ${JSON.stringify(READER)}
const [root, ...pids] = process.argv.slice(1)
const reader = makeSyncProcReader(root)
const tag = (e) => (e._tag === "Right" ? "ok" : e.left._tag)
console.log(JSON.stringify(pids.map((pid) => { const s = reader.sampleOne(Number(pid)); return [tag(s.stat), tag(s.statm)] })))
`

describe("hidden is not gone (hidepid)", () => {
  afterAll(removeTempDirs)

  it("reads the hidepid mode and its group from real mountinfo lines", async () => {
    // Real lines, from a proc mounted here with these options (skipped where mounting is impossible).
    const samples: Array<[string, string]> = [
      ["hidepid=invisible,gid=4", "rw,gid=4,hidepid=invisible"],
      ["hidepid=2", "rw,hidepid=invisible"],
      ["hidepid=ptraceable", "rw,hidepid=ptraceable"],
      ["hidepid=1", "rw,hidepid=noaccess"]
    ]
    if (skipNamespaces === undefined) {
      for (const [options, shown] of samples) {
        const dir = makeTempDir("vm-metrics-mi-")
        const result = await runToEnd("unshare", [
          "-m",
          "sh",
          "-c",
          'mount -t proc -o "$1" proc "$0" && cat /proc/self/mountinfo',
          dir,
          options
        ])
        assert.strictEqual(result.status, 0, result.output)
        assert.strictEqual(superOptionsAt(result.stdout, dir), shown)
      }
    }
    assert.deepStrictEqual(hidepidOf("rw,gid=4,hidepid=invisible"), { hidepid: 2, gid: 4 })
    assert.deepStrictEqual(hidepidOf("rw,hidepid=ptraceable"), { hidepid: 4, gid: 0 })
    assert.deepStrictEqual(hidepidOf("rw,hidepid=noaccess"), { hidepid: 1, gid: 0 })
    assert.deepStrictEqual(hidepidOf("rw"), { hidepid: 0, gid: 0 })
    const spaced = "65 45 0:39 / /tmp/a\\040b rw - proc proc rw,hidepid=invisible\n"
    assert.strictEqual(superOptionsAt(spaced, "/tmp/a b"), "rw,hidepid=invisible")
    assert.isTrue(hasSysPtrace("CapEff:\t000001fffeffffff\n"))
    assert.isFalse(hasSysPtrace("CapEff:\t0000000000000000\n"))
    assert.isTrue(hasSysPtrace("CapEff:\t0000000000080000\n"))
  })

  it.skipIf(skipNamespaces !== undefined)(
    "without capabilities over a hidepid=invisible /proc: another user's live process is PermissionDenied, a gone one ProcessGone",
    async () => {
      const vm = spawnChild("exec setpriv --reuid=65534 --regid=65534 --clear-groups sleep 60")
      const gone = spawnChild("exit 0")
      try {
        await stopChild(gone)
        for (let i = 0; i < 200 && !/^Uid:\s+65534\s/m.test(fs.readFileSync(`/proc/${vm.pid}/status`, "utf8")); i++) {
          await sleepMs(25)
        }
        const dir = makeTempDir("vm-metrics-hidepid-")
        // uid 0 without any capability and outside group 0 (the mount's gid, which sees everything).
        const unprivileged = ["--regid=65534", "--clear-groups", "--inh-caps=-all"]
        const run = (caps: ReadonlyArray<string>, pidNamespace: boolean) =>
          runToEnd(
            "unshare",
            [
              "-m",
              "sh",
              "-c",
              'mount -t proc -o hidepid=invisible proc "$0" && exec "$@"',
              dir,
              ...(pidNamespace ? ["unshare", "--pid", "--fork"] : []),
              "setpriv",
              ...unprivileged,
              ...caps,
              process.execPath,
              "--import",
              "tsx",
              "--input-type=module",
              "-e",
              readerScript,
              dir,
              String(vm.pid),
              String(gone.pid)
            ],
            REPO
          )
        const [noCaps, ptrace, foreign] = await Promise.all([
          run(["--bounding-set=-all"], false),
          run(["--bounding-set=-all,+sys_ptrace"], false),
          // The reader in a pid namespace of its own: the hidepid proc is another namespace's, kill(2)
          // cannot tell, so a missing pid may be hidden and is never called gone.
          run(["--bounding-set=-all"], true)
        ])
        for (const r of [noCaps, ptrace, foreign]) assert.strictEqual(r.status, 0, r.output)
        assert.deepStrictEqual(JSON.parse(noCaps.stdout), [
          ["PermissionDenied", "PermissionDenied"],
          ["ProcessGone", "ProcessGone"]
        ])
        assert.deepStrictEqual(JSON.parse(ptrace.stdout), [
          ["ok", "ok"],
          ["ProcessGone", "ProcessGone"]
        ])
        assert.deepStrictEqual(JSON.parse(foreign.stdout), [
          ["PermissionDenied", "PermissionDenied"],
          ["PermissionDenied", "PermissionDenied"]
        ])
      } finally {
        await stopChild(vm)
      }
    }
  )
})
