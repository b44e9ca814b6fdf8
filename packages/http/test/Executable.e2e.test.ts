/**
 * The self-contained executable dist/vm-metrics (Node 24 inside, scripts/sea.mjs) on a host without Node:
 * copied alone into a directory of its own and run by name from a PATH that has no `node`, with nothing else
 * in its environment, it serves /healthz and /metrics of a real process, parses a YAML instances file (no
 * worker file beside it: on the main thread), loads the docs UI and the OTLP exporter (bundled into the one
 * file, loaded when used), answers one-shot commands and stops cleanly on SIGTERM.
 */
import { execFile, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { childrenOf, skipReason, statCpuSeconds, statmRssBytes } from "@vm-metrics/testing"
import { BIN, exitWithin, freePort, get, stop, until } from "./cliRig.js"
import { assertServesVm, EXECUTABLE, instancesYaml, startServing, startVm, stopVm, VM_ID } from "./exeRig.js"

const missing = skipReason(
  fs.existsSync(EXECUTABLE) ? undefined : `no ${EXECUTABLE} (pnpm build writes it; it needs the npm registry once)`,
  "executable tests"
)

/** Runs `vm-metrics` (found on env.PATH) to its end (≤ 90 s) with exactly `env`. */
const runExecutable = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile("vm-metrics", args, { env, timeout: 90_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
    )
  })

describe.skipIf(missing !== undefined)("the executable dist/vm-metrics, on a PATH without node", () => {
  let dir = ""
  let env: Record<string, string> = {}
  let file = ""
  let vm: Awaited<ReturnType<typeof startVm>> | undefined

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-exe-"))
    const bin = path.join(dir, "bin")
    fs.mkdirSync(bin)
    // As an operator installs it: the one file, copied to a directory on PATH.
    fs.copyFileSync(EXECUTABLE, path.join(bin, "vm-metrics"))
    fs.chmodSync(path.join(bin, "vm-metrics"), 0o755)
    // Nothing inherited: no NODE_OPTIONS, no HOME, and a PATH where no `node` can be found.
    env = { PATH: bin, NO_COLOR: "1" }
    const lookup = spawnSync("/bin/sh", ["-c", "command -v node"], { env, encoding: "utf8" })
    assert.notStrictEqual(lookup.status, 0, `node is on the test's PATH: ${lookup.stdout}`)
    const found = spawnSync("/bin/sh", ["-c", "command -v vm-metrics"], { env, encoding: "utf8" })
    assert.strictEqual(found.stdout.trim(), path.join(bin, "vm-metrics"))
    vm = await startVm()
    file = path.join(dir, "vms.yaml")
    fs.writeFileSync(file, instancesYaml(vm.pid))
  })

  afterAll(async () => {
    if (vm !== undefined) await stopVm(vm)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("serves /healthz and /metrics of a real process and the docs UI, and stops on SIGTERM", async () => {
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const argv = [
      path.join(dir, "bin", "vm-metrics"),
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--source",
      "file"
    ]
    const server = await startServing([...argv, "--instances-file", file], env, base)
    try {
      // The server is the executable itself, not a node it started.
      const pid = server.child.pid!
      assert.strictEqual(fs.readlinkSync(`/proc/${pid}/exe`), fs.realpathSync(path.join(dir, "bin", "vm-metrics")))
      assert.deepStrictEqual(childrenOf(pid), [])
      await assertServesVm(base, vm!.pid)
      const docs = await get(`${base}/docs`)
      assert.strictEqual(docs.status, 200, docs.body.slice(0, 500))
      assert.match(docs.body, /^<!doctype html>/i)
      assert.include(docs.body, "<script")
      server.child.kill("SIGTERM")
      const exit = await exitWithin(server.child, 30_000)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, server.output())
    } finally {
      await stop(server.child)
    }
  }, 120_000)

  it("pushes OTLP through the exporter it loads only when asked (OTLP/HTTP protobuf to a real receiver)", async () => {
    // The receiver: a plain HTTP server that keeps each POST to /v1/metrics.
    const pushes: Array<{ contentType: string | undefined; body: Buffer }> = []
    const receiver = http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        if (request.method === "POST" && request.url === "/v1/metrics") {
          pushes.push({ contentType: request.headers["content-type"], body: Buffer.concat(chunks) })
        }
        response.end()
      })
    })
    const receiverPort = await freePort()
    await new Promise<void>((resolve) => receiver.listen(receiverPort, "127.0.0.1", resolve))
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const server = await startServing(
      [
        path.join(dir, "bin", "vm-metrics"),
        "serve",
        "--port",
        String(port),
        "--source",
        "file",
        "--instances-file",
        file
      ],
      {
        ...env,
        VM_METRICS_OTLP: "on",
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiverPort}`,
        OTEL_METRIC_EXPORT_INTERVAL: "1000"
      },
      base
    )
    try {
      const push = await until("an OTLP push with the VM's series", 60_000, async () =>
        pushes.find((p) => p.body.includes("hypeman_vm_cpu_seconds_total") && p.body.includes(VM_ID))
      )
      assert.strictEqual(push.contentType, "application/x-protobuf")
    } finally {
      await stop(server.child)
      await new Promise((resolve) => receiver.close(resolve))
    }
  }, 120_000)

  it("answers stats, --version (its own Node 24) and --help as the bundle does", async () => {
    const stats = await runExecutable(["stats", VM_ID, "--source", "file", "--instances-file", file], env)
    assert.strictEqual(stats.code, 0, stats.stderr)
    const json = JSON.parse(stats.stdout) as { pid: number; cpu_seconds: number; memory_rss_bytes: number }
    assert.strictEqual(json.pid, vm!.pid)
    assert.closeTo(json.cpu_seconds, statCpuSeconds(vm!.pid), 1e-9)
    assert.strictEqual(json.memory_rss_bytes, statmRssBytes(vm!.pid))

    const version = await runExecutable(["--version"], env)
    assert.strictEqual(version.code, 0, version.stderr)
    assert.match(version.stdout, /^vm-metrics \d+\.\d+\.\d+ \(revision [^,]+, node 24\.\d+\.\d+\)\n$/)

    const help = await runExecutable(["--help"], env)
    const bundleHelp = spawnSync(process.execPath, [BIN, "--help"], { encoding: "utf8", env: { ...env } })
    assert.strictEqual(help.code, 0, help.stderr)
    assert.include(help.stdout, "serve")
    assert.strictEqual(help.stdout, bundleHelp.stdout)
  }, 120_000)
})
