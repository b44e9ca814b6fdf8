/**
 * `vm-metrics top` in a real terminal (tmux): it draws on the alternate screen and gives the shell's
 * screen back however it ends (q, Ctrl-C, SIGTERM); no line is ever wrapped, at any width; a resize
 * redraws at once to the new width. The one VM is this test's own process, listed by a file source under
 * a long name. The refresh interval is an hour, so only the resize can cause the redraw seen.
 * Needs tmux; skips with a message otherwise and fails instead under CI=true.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { hasCommand, skipReason, waitForPromise } from "@vm-metrics/testing"
import { nodeArgs, REPO_ROOT, serverBin } from "./rig.js"

const skip = skipReason(hasCommand("tmux") ? undefined : "needs tmux", "vm-metrics top terminal tests")

const VM_ID = "3f9c2a61-7d4e-4b8a-9e0f-1c2d3e4f5a6b"
const VM_NAME = "customer-analytics-warehouse-replica-eu-west-2-primary"
/** What the shell prints before top starts: it must be back on the screen once top has ended. */
const BEFORE = "shell-screen-before-top"

const tmux = (...args: ReadonlyArray<string>) => execFileSync("tmux", args, { encoding: "utf8" })
const quote = (arg: string) => `'${arg.replaceAll("'", `'\\''`)}'`

let dir = ""
beforeAll(() => {
  if (skip !== undefined) return
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-top-term-"))
  const vms = [{ id: VM_ID, name: VM_NAME, pid: process.pid, vcpus: 2, memory: "1G" }]
  fs.writeFileSync(path.join(dir, "vms.json"), JSON.stringify(vms))
})
afterAll(() => {
  if (dir !== "") fs.rmSync(dir, { recursive: true, force: true })
})

/**
 * A detached tmux session `width`×30 whose shell prints BEFORE, runs top, then prints how top ended and
 * stays (so the screen after top can be read); killed by `close`.
 */
const session = (name: string, width: number) => {
  const top = [process.execPath, ...nodeArgs(serverBin()), "top", "--interval", "3600s"]
  const args = ["--source", "file", "--instances-file", path.join(dir, "vms.json")]
  const script = `clear; echo ${BEFORE}; ${[...top, ...args].map(quote).join(" ")}; echo "top-ended $?"; sleep 600`
  tmux("new-session", "-d", "-s", name, "-x", String(width), "-y", "30", "-c", REPO_ROOT, script)
  return {
    /** The visible screen; -J joins the lines the terminal wrapped, so a wrapped line shows up longer. */
    screen: () => tmux("capture-pane", "-p", "-J", "-t", name),
    alternate: () => tmux("display-message", "-p", "-t", name, "#{alternate_on}").trim() === "1",
    keys: (...keys: ReadonlyArray<string>) => tmux("send-keys", "-t", name, ...keys),
    resize: (columns: number) => tmux("resize-window", "-t", name, "-x", String(columns), "-y", "30"),
    /** The pid of top itself: the only child of the pane's shell. */
    topPid: () => {
      const shell = tmux("display-message", "-p", "-t", name, "#{pane_pid}").trim()
      return Number(execFileSync("ps", ["-o", "pid=", "--ppid", shell], { encoding: "utf8" }).trim())
    },
    close: () => {
      try {
        tmux("kill-session", "-t", name)
      } catch {
        // already gone
      }
    }
  }
}
type Session = ReturnType<typeof session>

/** Waits (≤ 20 s) until the screen passes `check`; the last screen in the failure. */
const screenWhere = (s: Session, what: string, check: (screen: string) => boolean) => {
  let last = ""
  return waitForPromise(
    what,
    () => {
      last = s.screen()
      return check(last) ? last : undefined
    },
    { timeout: "20 seconds", interval: "100 millis", details: () => last }
  )
}

/** The screen's non-blank lines, without the blanks -J keeps at their ends. */
const lines = (screen: string) =>
  screen
    .split("\n")
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0)
const longest = (screen: string) => Math.max(...lines(screen).map((line) => Array.from(line).length))
const vmRow = (screen: string) => lines(screen).find((line) => line.startsWith("customer-"))

/** Top is up on the alternate screen, the shell's screen hidden, the VM's row drawn. */
const awaitTop = async (s: Session) => {
  const screen = await screenWhere(s, "top's first screen", (text) => vmRow(text) !== undefined)
  assert.isTrue(s.alternate(), "top draws on the alternate screen")
  assert.notInclude(screen, BEFORE)
  return screen
}

/** Top has ended with `status`; the shell's screen is back, the alternate screen left. */
const awaitShell = async (s: Session, status: number) => {
  const screen = await screenWhere(s, "the shell after top", (text) => text.includes("top-ended"))
  assert.include(screen, `top-ended ${status}`)
  assert.include(screen, BEFORE, "the shell's screen is restored")
  assert.notInclude(screen, "vm-metrics top —", "nothing of top is left on the shell's screen")
  assert.isFalse(s.alternate(), "the alternate screen is left")
}

describe.skipIf(skip !== undefined)("vm-metrics top in a terminal", () => {
  it("fits 200, then 60, then 40 columns without wrapping; a resize redraws at once; q gives the screen back", async () => {
    const s = session(`vmtop-fit-${process.pid}`, 200)
    try {
      const wide = await awaitTop(s)
      assert.include(vmRow(wide), VM_NAME)
      assert.include(vmRow(wide), VM_ID)
      assert.isAtMost(longest(wide), 200, wide)

      // Resized: redrawn within the hour-long interval, so by the resize. tmux itself only cuts the old
      // lines, so each wait is for what only top's redraw writes: a name cut with "…", the columns left.
      s.resize(60)
      const narrow = await screenWhere(s, "top redrawn for 60 columns", (text) =>
        /^customer-analy\S*… /.test(vmRow(text) ?? "")
      )
      assert.isAtMost(longest(narrow), 60, narrow)
      assert.notInclude(narrow, VM_ID)

      s.resize(40)
      const titles40 = /^NAME +CORES +RSS +RX\/s +TX\/s$/
      const narrower = await screenWhere(s, "top redrawn for 40 columns", (text) => titles40.test(lines(text)[2] ?? ""))
      assert.isAtMost(longest(narrower), 40, narrower)
      assert.match(lines(narrower)[0]!, /^vm-metrics top — this host — .*…$/, "the header is cut, not wrapped")
      assert.isTrue(s.alternate())

      // And back: the whole name again.
      s.resize(200)
      await screenWhere(s, "top redrawn for 200 columns", (text) => text.includes(VM_NAME) && text.includes(VM_ID))

      s.keys("q")
      await awaitShell(s, 0)
    } finally {
      s.close()
    }
  }, 60_000)

  it("Ctrl-C also leaves the alternate screen", async () => {
    const s = session(`vmtop-ctrlc-${process.pid}`, 100)
    try {
      await awaitTop(s)
      s.keys("C-c")
      await awaitShell(s, 0)
    } finally {
      s.close()
    }
  }, 60_000)

  it("SIGTERM also leaves the alternate screen", async () => {
    const s = session(`vmtop-term-${process.pid}`, 100)
    try {
      await awaitTop(s)
      process.kill(s.topPid(), "SIGTERM")
      const screen = await screenWhere(s, "the shell after SIGTERM", (text) => text.includes("top-ended"))
      assert.include(screen, BEFORE, "the shell's screen is restored")
      assert.isFalse(s.alternate(), "the alternate screen is left")
    } finally {
      s.close()
    }
  }, 60_000)
})
