/**
 * The agent's own process metrics (SelfProcess): read from a real process's /proc directory they equal
 * what the kernel's files say (worked out independently, testing's expectedProcessMetrics); a directory
 * whose files are missing or garbled gives nulls, never 0, with each failure counted by file and reason.
 */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { expectedProcessMetrics, spawnChild, statField, stopChild, waitForPromise } from "@vm-metrics/testing"
import { Effect } from "effect"
import * as SelfProcess from "../src/SelfProcess.js"

describe("SelfProcess", () => {
  it.live("reads a real process's CPU time, RSS, open fds, fd limit and start time from its /proc directory", () =>
    Effect.gen(function* () {
      // A shell that burns CPU, then sleeps under the same pid: its values stop changing.
      const child = spawnChild("ulimit -n 777; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 60")
      try {
        yield* Effect.promise(() =>
          waitForPromise(
            "the child to exec sleep",
            async () =>
              fs.readFileSync(`/proc/${child.pid}/comm`, "utf8").trim() === "sleep" && statField(child.pid, 3) === "S"
                ? true
                : undefined,
            { timeout: "10 seconds" }
          )
        )
        const sample = yield* Effect.flatten(SelfProcess.make({ dir: `/proc/${child.pid}` }))
        const expected = expectedProcessMetrics(child.pid)
        assert.isAbove(expected.cpuSeconds, 0)
        assert.strictEqual(sample.cpuSeconds, expected.cpuSeconds)
        assert.strictEqual(sample.residentMemoryBytes, expected.residentMemoryBytes)
        assert.strictEqual(sample.openFds, expected.openFds)
        assert.strictEqual(sample.maxFds, 777)
        assert.strictEqual(expected.maxFds, 777)
        assert.closeTo(sample.startTimeSeconds!, expected.startTimeSeconds, 1e-6)
        assert.deepStrictEqual(sample.unavailableTotals, [])
      } finally {
        yield* Effect.promise(() => stopChild(child))
      }
    })
  )

  it.effect("/proc/self by default: this process's own values", () =>
    Effect.gen(function* () {
      const sample = yield* Effect.flatten(SelfProcess.make())
      const expected = expectedProcessMetrics(process.pid)
      // This process runs: its CPU time only grows, and the sample was taken first.
      assert.isAbove(sample.cpuSeconds!, 0)
      assert.isAtMost(sample.cpuSeconds!, expected.cpuSeconds)
      assert.strictEqual(sample.maxFds, expected.maxFds)
      assert.closeTo(sample.startTimeSeconds!, expected.startTimeSeconds, 1e-6)
      assert.isAbove(sample.residentMemoryBytes!, 1024 * 1024)
    })
  )

  it.effect("outside procfs the fds are listed: a directory's size is no fd count there", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "self-process-"))
      try {
        fs.mkdirSync(path.join(dir, "fd"))
        for (const fd of ["0", "1", "2"]) fs.writeFileSync(path.join(dir, "fd", fd), "")
        assert.notStrictEqual(fs.statSync(path.join(dir, "fd")).size, 3, "this file system gives sizes apart")
        const sampler = yield* SelfProcess.make({
          dir,
          kernel: { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }
        })
        assert.strictEqual((yield* sampler).openFds, 3)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  )

  it.effect("missing or garbled files are null (never 0) and counted per file and reason, across samples", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "self-process-"))
      try {
        fs.writeFileSync(path.join(dir, "stat"), "no parens here\n")
        fs.writeFileSync(
          path.join(dir, "limits"),
          "Max open files            unlimited            unlimited            files\n"
        )
        const sampler = yield* SelfProcess.make({
          dir,
          kernel: { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }
        })
        yield* sampler
        const sample = yield* sampler
        assert.deepStrictEqual(
          {
            cpu: sample.cpuSeconds,
            rss: sample.residentMemoryBytes,
            fds: sample.openFds,
            max: sample.maxFds,
            start: sample.startTimeSeconds
          },
          { cpu: null, rss: null, fds: null, max: null, start: null }
        )
        // "unlimited" is an answer, not a failure; the others failed twice each.
        assert.sameDeepMembers(
          [...sample.unavailableTotals],
          [
            { source: "self_stat", reason: "parse_error", count: 2 },
            { source: "self_statm", reason: "process_gone", count: 2 },
            { source: "self_fd", reason: "process_gone", count: 2 }
          ]
        )
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  )
})
