/**
 * Issue 8, item 8: bounded connections. The real server under `ulimit -n 512`, flooded from here with
 * more idle loopback connections than the open-files limit: its fd count stays within the max, it
 * keeps reading /proc for a real process's CPU, /healthz answers, and silent or idle connections are
 * closed after the header / keep-alive timeouts. The limits are given as environment variables, so
 * the same test runs against a server that does not know them (and fails there).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as Connections from "../src/Connections.js"
import { BIN, get, openFds, type Served, serve, stop, until } from "./cliRig.js"

const NOFILE = 512
const MAX = 100
const FLOOD = 600

describe("Connections (pure)", () => {
  it("reads the soft limit of /proc/self/limits", () => {
    const limits = [
      "Limit                     Soft Limit           Hard Limit           Units     ",
      "Max processes             63704                63704                processes ",
      "Max open files            512                  4096                 files     "
    ].join("\n")
    assert.strictEqual(Connections.parseFdSoftLimit(limits), 512)
    assert.isNull(Connections.parseFdSoftLimit(limits.replace("512  ", "unlimited")))
    assert.isNull(Connections.parseFdSoftLimit("nothing here"))
    assert.isNumber(Connections.fdSoftLimit() ?? 1)
  })

  it("keeps half the soft limit for the collector: the default is clamped, a configured max refused", () => {
    assert.deepStrictEqual(Either.getOrThrow(Connections.chooseMax(undefined, 65536)), {
      max: Connections.defaults.maxConnections,
      clamped: false
    })
    assert.deepStrictEqual(Either.getOrThrow(Connections.chooseMax(undefined, 512)), { max: 256, clamped: true })
    assert.deepStrictEqual(Either.getOrThrow(Connections.chooseMax(256, 512)), { max: 256, clamped: false })
    const refused = Connections.chooseMax(257, 512)
    assert.isTrue(Either.isLeft(refused) && refused.left.includes("at most 256"), String(refused))
    assert.isTrue(Either.isLeft(Connections.chooseMax(0, 512)))
    assert.isTrue(Either.isLeft(Connections.chooseMax(undefined, 1)))
    assert.deepStrictEqual(Either.getOrThrow(Connections.chooseMax(5000, null)), { max: 5000, clamped: false })
  })
})

describe("Connections (a listening server before the app is attached)", () => {
  it("answers 503 starting, then leaves requests to the app's handler once it is attached", async () => {
    const server = Connections.makeServer(Connections.defaults)
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    try {
      const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`
      const early = await fetch(`${base}/healthz`)
      assert.strictEqual(early.status, 503)
      assert.strictEqual(early.headers.get("retry-after"), "1")
      assert.deepStrictEqual(await early.json(), {
        code: "starting",
        message: "the server is starting; retry in a second"
      })
      server.on("request", (_request, response) => response.end("app"))
      const served = await fetch(`${base}/healthz`)
      assert.strictEqual(served.status, 200)
      assert.strictEqual(await served.text(), "app")
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})

/** Opens `count` idle connections, 50 at a time; each is dropped from `open` when the server closes it. */
const flood = async (port: number, count: number, open: Set<net.Socket>) => {
  for (let done = 0; done < count; done += 50) {
    await Promise.all(
      Array.from(
        { length: Math.min(50, count - done) },
        () =>
          new Promise<void>((resolve) => {
            const socket = net.connect(port, "127.0.0.1")
            const settle = setTimeout(resolve, 10_000)
            open.add(socket)
            socket.on("connect", () => {
              clearTimeout(settle)
              resolve()
            })
            socket.on("error", () => undefined)
            socket.on("close", () => {
              open.delete(socket)
              clearTimeout(settle)
              resolve()
            })
          })
      )
    )
  }
}

/** The value of `<prefix>_cpu_seconds_total{…instance_id="<id>"…}` in Prometheus text, if present. */
const cpuSeries = (text: string, id: string): number | undefined => {
  const line = text.split("\n").find((l) => /^\w+_cpu_seconds_total\{/.test(l) && l.includes(`instance_id="${id}"`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1))
}

describe("vm-metrics serve under a connection flood", () => {
  const ownLimit = Connections.fdSoftLimit()
  const missing =
    ownLimit !== null && ownLimit < FLOOD + 200
      ? `this process may open only ${ownLimit} files, the flood needs ${FLOOD + 200}`
      : undefined
  if (missing !== undefined && process.env.CI === "true") throw new Error(`CI must not skip the flood: ${missing}`)

  it.skipIf(missing !== undefined)(
    "keeps its fds bounded, its /proc reads and /healthz, and closes idle connections",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-flood-"))
      const vm: ChildProcess = spawn("sleep", ["300"], { stdio: "ignore" })
      const open = new Set<net.Socket>()
      let served: Served | undefined
      try {
        const file = path.join(dir, "vms.json")
        fs.writeFileSync(file, JSON.stringify([{ id: "flood-vm", pid: vm.pid, vcpus: 1, memory: "64M" }]))
        served = await serve(["--source", "file", "--instances-file", file], {
          nofile: NOFILE,
          env: {
            VM_METRICS_MAX_CONNECTIONS: String(MAX),
            VM_METRICS_HEADERS_TIMEOUT: "3s",
            VM_METRICS_REQUEST_TIMEOUT: "6s",
            VM_METRICS_KEEP_ALIVE_TIMEOUT: "1s"
          }
        })
        const pid = served.child.pid!
        const base = served.base
        const before = await get(`${base}/metrics`)
        assert.strictEqual(before.status, 200, before.body)
        assert.isNumber(cpuSeries(before.body, "flood-vm"), before.body)
        // The server read its limit and logged it with the max it chose.
        assert.include(served.output(), `soft limit ${NOFILE}`)
        assert.include(served.output(), `at most ${MAX}`)
        const baseline = openFds(pid)

        await flood(Number(new URL(base).port), FLOOD, open)
        const during = openFds(pid)
        assert.isAtMost(during, baseline + MAX + 20, `${during} fds open during the flood (baseline ${baseline})`)
        const health = await get(`${base}/healthz`)
        assert.strictEqual(health.status, 200, `/healthz during the flood: ${health.body}`)
        const metrics = await get(`${base}/metrics`)
        assert.strictEqual(metrics.status, 200, `/metrics during the flood: ${metrics.body}`)
        assert.isNumber(cpuSeries(metrics.body, "flood-vm"), `no CPU series during the flood:\n${metrics.body}`)
        assert.isAtMost(openFds(pid), baseline + MAX + 20)

        // Silent connections are closed after the header timeout; an idle keep-alive one after its timeout.
        const keptAlive = net.connect(Number(new URL(base).port), "127.0.0.1")
        let keptAliveClosed = false
        keptAlive.once("close", () => {
          keptAliveClosed = true
        })
        keptAlive.on("error", () => undefined)
        keptAlive.resume() // read the response, else "close" waits for it to be read
        keptAlive.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await until("the server to close every idle connection", 30_000, async () =>
          open.size === 0 ? true : undefined
        ).catch((error: Error) => assert.fail(`${error.message}: ${open.size} of ${FLOOD} still open`))
        await until("the idle keep-alive connection to be closed", 30_000, async () =>
          keptAliveClosed ? true : undefined
        )
        const after = await get(`${base}/metrics`)
        assert.isNumber(cpuSeries(after.body, "flood-vm"), after.body)
        assert.isAtMost(openFds(pid), baseline + 20)
        assert.isFalse(served.exited(), served.output())
      } finally {
        for (const socket of open) socket.destroy()
        if (served !== undefined) await stop(served.child)
        vm.kill("SIGKILL")
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
    180_000
  )

  it("refuses a --max-connections that leaves less than half the fd limit (usage, exit 2)", () => {
    // The limit must be the server's own: run it under the lowered ulimit.
    const result = spawnSync(
      "sh",
      ["-c", `ulimit -n ${NOFILE} && exec "$0" "$@"`, process.execPath, BIN, "serve"].concat([
        "--max-connections",
        "400"
      ]),
      { encoding: "utf8", timeout: 90_000 }
    )
    assert.strictEqual(result.status, 2, result.stderr)
    assert.match(result.stderr, /--max-connections 400 leaves too few file descriptors.*at most 256/)
    assert.notInclude(result.stdout, "at ")
  }, 120_000)
})
