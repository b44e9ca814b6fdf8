/**
 * `vm-metrics top` driven as a person would, in tmux (send-keys / capture-pane), against a real QEMU
 * guest that pings through its TAP: locally (reading /proc and /sys) and against a server (`--url`,
 * with the bearer token). Needs root, QEMU, the tiny guest and tmux; skips with a message otherwise
 * and fails instead under CI=true.
 */
import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import { hasCommand, sleepMs, waitForPromise } from "@vm-metrics/testing"
import { Effect } from "effect"
import { nodeArgs, REPO_ROOT, serverBin } from "./rig.js"
import { layerVmRig, VmRig as Rig, type Vm, vmSkipReason } from "./vmRig.js"

const skip = vmSkipReason("vm-metrics top tests", () => (hasCommand("tmux") ? undefined : "needs tmux"))

const VM_NAME = "vmm-e2t-top"
const TOKEN = `top-${randomUUID()}`

/** The server's token file (removed when the test process exits: the rig's scope outlives every test). */
const tokenFile = (): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-top-"))
  process.once("exit", () => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, "token")
  fs.writeFileSync(file, TOKEN)
  return file
}

const rigLayer = layerVmRig({
  hypervisor: "qemu",
  tag: "e2t",
  tap: "hv-e2t1",
  name: VM_NAME,
  uuid: randomUUID(),
  serve: ["--source", "discovery", "--auth-token-file", tokenFile()]
})

const tmux = (...args: ReadonlyArray<string>) => execFileSync("tmux", args, { encoding: "utf8" })

/** Starts `vm-metrics top <args>` in a detached 160×30 tmux session. */
const startTop = (session: string, args: ReadonlyArray<string>) => {
  const command = [process.execPath, ...nodeArgs(serverBin()), "top", ...args].map((a) => `'${a}'`).join(" ")
  tmux(
    "new-session",
    "-d",
    "-s",
    session,
    "-x",
    "160",
    "-y",
    "30",
    "-c",
    REPO_ROOT,
    `VM_METRICS_AUTH_TOKEN='${TOKEN}' ${command}`
  )
}
const screenOf = (session: string) => tmux("capture-pane", "-p", "-t", session)
const alive = (session: string) => {
  try {
    tmux("has-session", "-t", session)
    return true
  } catch {
    return false
  }
}

/** The screen once the VM's row shows rates (the second refresh; ≤ 15 s). */
const awaitRates = (session: string): Promise<{ screen: string; cells: Array<string> }> => {
  let screen = ""
  return waitForPromise(
    "rates on the screen",
    () => {
      screen = screenOf(session)
      const row = screen.split("\n").find((line) => line.startsWith(VM_NAME))
      const cells = row?.trim().split(/\s+/) ?? []
      return cells[2] !== undefined && cells[2] !== "-" && cells[8] !== "-" ? { screen, cells } : undefined
    },
    { timeout: "15 seconds", interval: "250 millis", details: () => screen }
  )
}

/** Checks one screen's row: NAME STATE CORES %VCPU STEAL% RSS %ALLOC SWAP RX/s TX/s ID. */
const checkRow = (cells: ReadonlyArray<string>, vm: Vm) => {
  const [name, state, cores, share, steal, rss, , swap, rx, tx, id] = cells
  assert.strictEqual(name, VM_NAME)
  assert.strictEqual(state, "running")
  assert.strictEqual(id, vm.uuid)
  // TCG burns about a third of a core on a quiet host, far less when the host is loaded (0.02 seen in CI); the
  // guest pings 5 times a second, so its hypervisor runs every interval. One vCPU: %VCPU = cores × 100.
  assert.isAbove(Number(cores), 0)
  assert.isBelow(Number(cores), 1.6)
  assert.strictEqual(Number(share!.replace("%", "")), Math.round(Number(cores) * 100))
  assert.match(rss!, /^\d+\.\dM$/)
  // A percentage with one decimal once two snapshots are in, "-" when the vCPU threads are not named.
  assert.match(steal!, /^(\d+\.\d%|-)$/)
  assert.match(swap!, /^\d+(\.\d)?[BKMGT]$/)
  // The guest pings 1000-byte payloads 5 times a second: a few KiB/s each way.
  for (const rate of [rx!, tx!]) {
    assert.match(rate, /^\d+(\.\d)?K$/, rate)
    assert.isAbove(Number(rate.slice(0, -1)), 1)
    assert.isBelow(Number(rate.slice(0, -1)), 50)
  }
}

describe.skipIf(skip !== undefined)("vm-metrics top", () => {
  layer(rigLayer, { excludeTestServices: true, timeout: 180_000 })("against a real QEMU guest", (it) => {
    it.effect(
      "local: rows with cores, rates and RSS; keys change the sort; q quits",
      () =>
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const session = `vmtop-local-${process.pid}`
          yield* Effect.acquireRelease(
            Effect.sync(() => startTop(session, ["--interval", "1s"])),
            () => Effect.sync(() => alive(session) && tmux("kill-session", "-t", session))
          )
          const { screen, cells } = yield* Effect.promise(() => awaitRates(session))
          assert.include(screen, "vm-metrics top — this host")
          assert.include(screen, "sort: cpu")
          checkRow(cells, vm)
          for (const [key, sort] of [
            ["m", "memory"],
            ["n", "network"],
            ["a", "name"],
            ["c", "cpu"]
          ] as const) {
            tmux("send-keys", "-t", session, key)
            yield* Effect.promise(() => sleepMs(400))
            assert.include(screenOf(session).split("\n")[0], `sort: ${sort}`)
          }
          tmux("send-keys", "-t", session, "q")
          yield* Effect.promise(() => sleepMs(1500))
          assert.isFalse(alive(session), "top should have quit on q")
        }).pipe(Effect.scoped),
      60_000
    )

    it.effect(
      "remote: --url reads the server's /instances with the bearer token",
      () =>
        Effect.gen(function* () {
          const { vm, server } = yield* Rig
          const session = `vmtop-remote-${process.pid}`
          yield* Effect.acquireRelease(
            Effect.sync(() => startTop(session, ["--url", server.base, "--interval", "1s"])),
            () => Effect.sync(() => alive(session) && tmux("kill-session", "-t", session))
          )
          const { screen, cells } = yield* Effect.promise(() => awaitRates(session))
          assert.include(screen, `vm-metrics top — ${server.base}`)
          assert.notInclude(screen, "error:")
          checkRow(cells, vm)
          tmux("send-keys", "-t", session, "q")
          yield* Effect.promise(() => sleepMs(1500))
          assert.isFalse(alive(session))
        }).pipe(Effect.scoped),
      60_000
    )
  })
})
