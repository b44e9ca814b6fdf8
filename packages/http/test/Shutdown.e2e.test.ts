/**
 * Issue 8, item 13: shutdown and supervision, with the real binary.
 *
 * - SIGTERM ends the server within the grace period although a client holds a half-sent request.
 * - The README's `start` command (npx → pnpm → node) stopped with SIGTERM on its top process frees the port.
 * - SIGHUP never ends the server.
 * - deploy/vm-metrics.service does not restart on the exit statuses that would only fail again.
 *
 * (Empty or whitespace tokens as a start-up error are in Cli.test.ts, with the other usage errors.)
 */
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { ExitCode } from "../src/ExitCode.js"
import { exitWithin, freePort, get, REPO, type Served, serve, sleep, stop, until } from "./cliRig.js"

/** Resolves true once nothing accepts connections on the loopback port. */
const portFree = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(false)
    })
    socket.once("error", () => resolve(true))
  })

describe("vm-metrics serve: shutdown", () => {
  it("SIGTERM ends it within the grace period although a client holds a half-sent request", async () => {
    // Long header/request timeouts: only the shutdown grace can end that client's connection.
    const served = await serve([], {
      env: {
        VM_METRICS_SHUTDOWN_GRACE: "1s",
        VM_METRICS_HEADERS_TIMEOUT: "60s",
        VM_METRICS_REQUEST_TIMEOUT: "60s"
      }
    })
    const client = net.connect(Number(new URL(served.base).port), "127.0.0.1")
    let clientClosed = false
    client.on("error", () => undefined)
    client.on("close", () => {
      clientClosed = true
    })
    try {
      await new Promise<void>((resolve) => client.once("connect", () => resolve()))
      client.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
      await sleep(500)
      served.child.kill("SIGTERM")
      const exit = await exitWithin(served.child, 20_000)
      assert.isDefined(exit, `still running 20 s after SIGTERM with a 1 s grace:\n${served.output()}`)
      assert.strictEqual(exit?.code, 0, served.output())
      await until("the client's connection to be closed", 5_000, async () => (clientClosed ? true : undefined))
    } finally {
      client.destroy()
      await stop(served.child)
    }
  }, 180_000)

  it("SIGHUP lists the instances again and never ends the server", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-hup-"))
    let served: Served | undefined
    try {
      const file = path.join(dir, "vms.json")
      fs.writeFileSync(file, JSON.stringify([{ id: "hup-1", pid: process.pid, vcpus: 1, memory: "1G" }]))
      served = await serve(["--source", "file", "--instances-file", file])
      for (let i = 0; i < 3; i++) {
        served.child.kill("SIGHUP")
        await sleep(300)
      }
      assert.isFalse(served.exited(), `the server ended on SIGHUP (${served.child.signalCode}):\n${served.output()}`)
      await until("the SIGHUP log line", 10_000, async () =>
        served?.output().includes("SIGHUP: listing the instances again") ? true : undefined
      ).catch(() => assert.fail(`no SIGHUP log line:\n${served?.output()}`))
      const health = await get(`${served.base}/healthz`)
      assert.strictEqual(health.status, 200, health.body)
      const stats = await get(`${served.base}/instances/hup-1/stats`)
      assert.strictEqual(stats.status, 200, stats.body)
    } finally {
      if (served !== undefined) await stop(served.child)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
})

describe("the README's start command", () => {
  const npx = spawnSync("sh", ["-c", "command -v npx"], { encoding: "utf8" }).stdout.trim()
  if (npx === "" && process.env.CI === "true") throw new Error("CI must not skip the start command: npx not found")

  it.skipIf(npx === "")(
    "`npx -y pnpm@10.34.9 start`: SIGTERM to the top process stops the server and frees the port",
    async () => {
      const port = await freePort()
      // Its own process group, so that whatever survives can be cleaned up; the signal goes to the top pid only.
      const top = spawn(npx, ["-y", "pnpm@10.34.9", "start"], {
        cwd: REPO,
        detached: true,
        env: { ...process.env, VM_METRICS_PORT: String(port), NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      top.stdout?.on("data", (chunk) => (output += chunk))
      top.stderr?.on("data", (chunk) => (output += chunk))
      try {
        await until("the server started by `pnpm start`", 180_000, async () => {
          if (top.exitCode !== null) throw new Error(`npx exited (${top.exitCode}):\n${output}`)
          return (await get(`http://127.0.0.1:${port}/healthz`)).status === 200 ? true : undefined
        })
        top.kill("SIGTERM")
        await until("the port to be free after SIGTERM to npx", 20_000, async () =>
          (await portFree(port)) ? true : undefined
        ).catch((error: Error) => assert.fail(`${error.message}; still served:\n${output}`))
        assert.isDefined(await exitWithin(top, 20_000), "npx itself did not end")
      } finally {
        try {
          process.kill(-top.pid!, "SIGKILL")
        } catch {
          // the group is gone already
        }
      }
    },
    300_000
  )
})

describe("deploy/vm-metrics.service", () => {
  it("does not restart on a usage error or an address it cannot listen on", () => {
    const unit = fs.readFileSync(path.join(REPO, "deploy", "vm-metrics.service"), "utf8")
    const prevent = unit
      .split("\n")
      .filter((line) => line.startsWith("RestartPreventExitStatus="))
      .flatMap((line) => line.slice("RestartPreventExitStatus=".length).trim().split(/\s+/))
      .map(Number)
      .sort()
    assert.deepStrictEqual(prevent, [ExitCode.usage, ExitCode.cannotListen])
    assert.include(unit, "Restart=on-failure")
  })
})
