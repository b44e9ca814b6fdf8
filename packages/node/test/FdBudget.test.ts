/**
 * The readers' shared fd budget (internal/fdBudget.ts): the module alone over real files, and the proc
 * and TAP readers in a child whose open-files limit is lower than the files of its VMs (real stopped
 * processes with real TAPs): every value equals the kernel's, no read fails for want of an fd, and the
 * child's fd count stays under its limit.
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as readline from "node:readline"
import { assert, describe, it } from "@effect/vitest"
import { parseProcIoText } from "@vm-metrics/core/ProcIo"
import { parseProcStatText } from "@vm-metrics/core/ProcStat"
import { parseProcStatmText } from "@vm-metrics/core/ProcStatm"
import { parseProcStatusText } from "@vm-metrics/core/ProcStatus"
import { tapSkipReason } from "@vm-metrics/testing"
import { type Fleet, startFleet } from "@vm-metrics/testing/FakeHypervisors"
import { Effect, Either } from "effect"
import { budgetFor, FdBudget, parseSoftLimit, sharedFdBudget } from "../src/internal/fdBudget.js"
import { KeptFile, ReadBuffer } from "../src/internal/keptFile.js"
import * as NodeProcReader from "../src/NodeProcReader.js"

const FILE = "/proc/self/limits" // any file this process can open

describe("FdBudget", () => {
  it("parses the soft open-files limit and gives the readers the collector's half less a reserve (discovery's comm fds, at most a quarter)", () => {
    const limits = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             63704                63704                processes ",
      "Max open files            20000                524288               files     "
    ].join("\n")
    assert.strictEqual(parseSoftLimit(limits), 20_000)
    assert.strictEqual(parseSoftLimit(limits.replace("20000 ", "unlimited ")), null)
    assert.strictEqual(parseSoftLimit("Max processes 1 1 processes"), null)
    assert.strictEqual(parseSoftLimit(fs.readFileSync("/proc/self/limits", "latin1")), realSoftLimit())
    assert.strictEqual(budgetFor(20_000), 10_000 - 1_024 - 64)
    // A large limit leaves discovery more comm fds (a 64th of the limit, at most 8,192), out of the readers' half.
    assert.strictEqual(budgetFor(131_072), 65_536 - 2_048 - 64)
    assert.strictEqual(budgetFor(1_048_576), 524_288 - 8_192 - 64)
    assert.strictEqual(budgetFor(256), 128 - 32)
    assert.strictEqual(budgetFor(null), Number.MAX_SAFE_INTEGER)
  })

  it("keeps fds while under budget, reads by path beyond it, and a closed file gives its fd back", () => {
    const budget = new FdBudget(2)
    const buffer = new ReadBuffer()
    const files = [0, 1, 2].map(() => new KeptFile(FILE, "ESRCH", budget))
    const expected = fs.readFileSync(FILE, "latin1")
    const texts = files.map((file) => {
      const length = file.read(buffer)
      assert.isNumber(length)
      return buffer.bytes.toString("latin1", 0, length as number)
    })
    assert.deepStrictEqual(texts, [expected, expected, expected])
    assert.deepStrictEqual(
      files.map((file) => file.isOpen),
      [true, true, false]
    )
    assert.strictEqual(budget.kept, 2)
    assert.strictEqual(budget.byPath, 1)
    files[0].close()
    assert.strictEqual(budget.kept, 1)
    assert.isNumber(files[2].read(buffer))
    assert.isTrue(files[2].isOpen) // the room given back is taken by the next read
    assert.strictEqual(budget.byPath, 1)
    for (const file of files) file.close()
    assert.strictEqual(budget.kept, 0)
  })

  it("at the fd limit sheds the older half of its kept fds and keeps at most that many from then on", () => {
    const budget = new FdBudget(100)
    const buffer = new ReadBuffer()
    const files = Array.from({ length: 6 }, () => new KeptFile(FILE, "ESRCH", budget))
    for (const file of files) assert.isNumber(file.read(buffer))
    assert.strictEqual(budget.kept, 6)
    assert.isTrue(budget.shed())
    assert.deepStrictEqual(
      files.map((file) => file.isOpen),
      [false, false, false, true, true, true]
    )
    assert.strictEqual(budget.max, 3)
    assert.strictEqual(budget.exhausted, 1)
    // The shed files still read, by path.
    for (const file of files) assert.isNumber(file.read(buffer))
    assert.strictEqual(budget.kept, 3)
    assert.strictEqual(budget.byPath, 3)
    for (const file of files) file.close()
    assert.strictEqual(budget.kept, 0)
    assert.isFalse(budget.shed()) // nothing kept, nothing to free
    assert.strictEqual(budget.max, 0)
  })

  it("a file that cannot be opened reads its errno code, kept or by path", () => {
    const buffer = new ReadBuffer()
    assert.strictEqual(new KeptFile("/proc/0/stat", "ESRCH", new FdBudget(1)).read(buffer), "ENOENT")
    assert.strictEqual(new KeptFile("/proc/0/stat", "ESRCH", new FdBudget(0)).read(buffer), "ENOENT")
  })
})

describe("NodeProcReader fds", () => {
  it.scoped("reports the shared budget: a sampled pid's stat and statm kept, given back on release", () =>
    Effect.gen(function* () {
      const reader = yield* NodeProcReader.make()
      const fds = () => reader.fds?.() ?? assert.fail("no fds")
      const before = fds()
      assert.strictEqual(sharedFdBudget().kept, before.kept)
      yield* reader.sample([process.pid])
      assert.strictEqual(fds().kept, before.kept + 2)
      yield* reader.release(process.pid)
      assert.deepStrictEqual(fds(), before)
    })
  )
})

const realSoftLimit = () => {
  const match = /^Max open files\s+(\S+)/m.exec(fs.readFileSync("/proc/self/limits", "latin1"))
  return match === null || match[1] === "unlimited" ? null : Number(match[1])
}

const LIMIT = 256
/** Eight files per VM with the default groups (stat, statm, status, io; four TAP counters): 960 > LIMIT. */
const VMS = 120

interface Report {
  readonly values: {
    readonly procs: ReadonlyArray<Record<"stat" | "statm" | "status" | "io", unknown>>
    readonly taps: ReadonlyArray<unknown>
  }
  readonly errors: ReadonlyArray<string>
  readonly maxFds: number
  readonly limit: number
  readonly kept: number
  readonly max: number
  readonly byPath: number
  readonly exhausted: number
  readonly keptAfterRelease: number
  readonly fdsLeft: number
}

/** Runs the fixture over the fleet with its fd limit lowered to LIMIT once loaded. */
const readInChild = async (fleet: Fleet, budget: number | null): Promise<Report> => {
  const script = path.join(import.meta.dirname, "fixtures", "readAtFdLimit.ts")
  const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["pipe", "pipe", "inherit"] })
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve))
  try {
    assert.strictEqual((await lines.next()).value, "ready")
    const lowered = spawnSync("prlimit", [`--pid=${child.pid}`, `--nofile=${LIMIT}:${LIMIT}`], { encoding: "utf8" })
    assert.strictEqual(lowered.status, 0, lowered.stderr)
    const input = { pids: fleet.vms.map((vm) => vm.pid), taps: fleet.vms.map((vm) => vm.tap), budget }
    child.stdin!.write(`${JSON.stringify(input)}\n`)
    const report = (await lines.next()).value as string
    assert.strictEqual(await exited, 0)
    return JSON.parse(report) as Report
  } finally {
    child.kill("SIGKILL")
  }
}

/** A parsed value as the fixture prints it (bigints as strings). */
const plain = (value: unknown): unknown =>
  JSON.parse(JSON.stringify(value, (_, v) => (typeof v === "bigint" ? String(v) : v)))

const kernelProc = (pid: number) => {
  const read = <A>(file: string, parse: (text: string) => Either.Either<A, unknown>) =>
    plain(Either.getOrThrow(parse(fs.readFileSync(`/proc/${pid}/${file}`, "latin1"))))
  return {
    stat: read("stat", parseProcStatText),
    statm: read("statm", parseProcStatmText),
    status: read("status", parseProcStatusText),
    io: read("io", parseProcIoText)
  }
}

const kernelTap = (tap: string) => {
  const counter = (file: string) => fs.readFileSync(`/sys/class/net/${tap}/statistics/${file}`, "latin1").trim()
  return {
    rxBytes: counter("rx_bytes"),
    txBytes: counter("tx_bytes"),
    rxPackets: null,
    txPackets: null,
    rxErrors: null,
    txErrors: null,
    rxDropped: counter("rx_dropped"),
    txDropped: counter("tx_dropped")
  }
}

const skip = tapSkipReason() ?? (spawnSync("prlimit", ["--version"]).status === 0 ? undefined : "needs prlimit")

describe.skipIf(skip !== undefined)("readers under a low open-files limit (a child after prlimit --nofile)", () => {
  /** Stopped fakes: their values hold still, so the kernel's before and after bracket exactly. */
  const withFleet = async (body: (fleet: Fleet) => Promise<void>) => {
    const fleet = await startFleet(VMS, { tapPrefix: "vmfd", timeoutMs: 60_000 })
    try {
      await body(fleet)
    } finally {
      fleet.stop()
    }
  }

  const assertKernelValues = (fleet: Fleet, report: Report, before: unknown) => {
    const now = {
      procs: fleet.vms.map((vm) => kernelProc(vm.pid)),
      taps: fleet.vms.map((vm) => kernelTap(vm.tap!))
    }
    assert.deepStrictEqual(now, before, "the stopped fakes' values held still")
    assert.deepStrictEqual(report.values, now)
  }

  it("with the budget sized from the limit: kept fds within it, the rest by path, every value the kernel's", async () => {
    await withFleet(async (fleet) => {
      const before = {
        procs: fleet.vms.map((vm) => kernelProc(vm.pid)),
        taps: fleet.vms.map((vm) => kernelTap(vm.tap!))
      }
      const report = await readInChild(fleet, null)
      assert.strictEqual(report.limit, LIMIT)
      assert.deepStrictEqual(report.errors, [])
      assertKernelValues(fleet, report, before)
      assert.strictEqual(report.max, budgetFor(LIMIT))
      assert.strictEqual(report.kept, budgetFor(LIMIT))
      assert.isAbove(report.byPath, 0)
      assert.strictEqual(report.exhausted, 0)
      assert.isBelow(report.maxFds, LIMIT)
      assert.strictEqual(report.keptAfterRelease, 0)
      assert.strictEqual(report.fdsLeft, 0)
    })
  }, 180_000)

  it("with a budget above the limit: EMFILE sheds kept fds and the read is retried by path, never failed", async () => {
    await withFleet(async (fleet) => {
      const before = {
        procs: fleet.vms.map((vm) => kernelProc(vm.pid)),
        taps: fleet.vms.map((vm) => kernelTap(vm.tap!))
      }
      const report = await readInChild(fleet, 1_000_000)
      assert.strictEqual(report.limit, LIMIT)
      assert.deepStrictEqual(report.errors, [])
      assertKernelValues(fleet, report, before)
      assert.isAtLeast(report.exhausted, 1)
      assert.isBelow(report.max, LIMIT)
      assert.isAbove(report.byPath, 0)
      assert.isBelow(report.maxFds, LIMIT)
      assert.strictEqual(report.keptAfterRelease, 0)
      assert.strictEqual(report.fdsLeft, 0)
    })
  }, 180_000)
})
