/**
 * `/metrics` end to end for `pnpm bench`: timed HTTP scrapes, the real server of Main.layerApp in this
 * process (discovery over the real /proc and /sys) in either collection mode, and
 * prometheus-process-exporter over the same processes when it is installed.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import * as Collector from "@vm-metrics/core/Collector"
import { Effect, Layer, ManagedRuntime } from "effect"
import type * as AppConfig from "../src/AppConfig.js"
import * as Main from "../src/Main.js"
import { atExit } from "./atExit.js"

/** One GET over a kept-alive connection of `agent`: its wall time in ms and body bytes; fails unless 200. */
export const get = (agent: http.Agent, port: number, urlPath: string, gzip = false) =>
  new Promise<{ readonly ms: number; readonly bytes: number; readonly body: string }>((resolve, reject) => {
    const started = process.hrtime.bigint()
    const req = http.request(
      { host: "127.0.0.1", port, path: urlPath, agent, headers: gzip ? { "accept-encoding": "gzip" } : {} },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.on("end", () => {
          const ms = Number(process.hrtime.bigint() - started) / 1e6
          const body = Buffer.concat(chunks)
          if (res.statusCode !== 200 || body.length === 0) {
            return reject(new Error(`GET ${urlPath}: status ${res.statusCode}`))
          }
          if (gzip && res.headers["content-encoding"] !== "gzip") return reject(new Error(`GET ${urlPath}: not gzip`))
          resolve({ ms, bytes: body.length, body: gzip ? "" : body.toString("utf8") })
        })
        res.on("error", reject)
      }
    )
    req.on("error", reject)
    req.end()
  })

/** The whole HTTP app of Main with discovery as the source, listening on a loopback port of this process. */
export const inProcessServer = async (config: Partial<AppConfig.AppConfig>) => {
  const runtime = ManagedRuntime.make(
    Main.layerApp({ source: "discovery", ...config }).pipe(Layer.provideMerge(NodeHttpServer.layerTest), Layer.orDie)
  )
  const port = await runtime.runPromise(
    Effect.map(HttpServer.HttpServer, (s) => (s.address as HttpServer.TcpAddress).port)
  )
  return {
    port,
    refresh: () => runtime.runPromise(Effect.asVoid(Effect.flatMap(Collector.Collector, (c) => c.refresh))),
    close: () => runtime.dispose()
  }
}

/**
 * Waits until `child`, a server just spawned, answers GET `probe` on `port` through `agent` (at most 100
 * tries, `intervalMs` apart); kills it and throws when it never does or exits first.
 */
export const untilAnswering = async (
  what: string,
  child: ChildProcess,
  agent: http.Agent,
  port: number,
  probe: string,
  intervalMs: number
): Promise<void> => {
  for (let i = 0; ; i++) {
    try {
      await get(agent, port, probe)
      return
    } catch (error) {
      if (i >= 100 || child.exitCode !== null) {
        child.kill("SIGKILL")
        throw new Error(`${what} did not answer: ${error}`)
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
  }
}

/**
 * A bare node:http server in its own process answering `/<n>` with n bytes (Content-Length, one write, the
 * Buffer kept for the next request of that size): the yardstick of a cached `/metrics`, what moving as many bytes
 * to this client costs whatever serves them.
 */
export const bareBytesServer = async (port: number) => {
  const script =
    `let body = Buffer.alloc(0);` +
    `require("node:http").createServer((req, res) => {` +
    `const n = Number(req.url.slice(1)) || 0; if (body.length !== n) body = Buffer.alloc(n, "a");` +
    `res.writeHead(200, { "content-type": "text/plain", "content-length": n }); res.end(body)` +
    `}).listen(${port}, "127.0.0.1")`
  const child = spawn(process.execPath, ["-e", script], { stdio: "ignore" })
  const kill = () => child.kill("SIGKILL")
  const unhook = atExit(kill)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  try {
    await untilAnswering("the bare server", child, agent, port, "/1", 50)
  } catch (error) {
    unhook()
    throw error
  } finally {
    agent.destroy()
  }
  return {
    port,
    close: () => {
      unhook()
      kill()
    }
  }
}

const PROCESS_EXPORTER = "/usr/bin/prometheus-process-exporter"

/**
 * prometheus-process-exporter over every QEMU (comm `qemu-system-x86`), one group per pid, without threads
 * or smaps (its cheapest useful setting); undefined when it is not installed.
 */
export const processExporter = async (dir: string, port: number) => {
  if (!fs.existsSync(PROCESS_EXPORTER)) return undefined
  const config = path.join(dir, "process-exporter.yml")
  fs.writeFileSync(config, 'process_names:\n  - name: "{{.PID}}"\n    comm:\n      - qemu-system-x86\n')
  const child: ChildProcess = spawn(
    PROCESS_EXPORTER,
    ["-config.path", config, "-web.listen-address", `127.0.0.1:${port}`, "-threads=false", "-gather-smaps=false"],
    { stdio: "ignore" }
  )
  const kill = () => child.kill("SIGKILL")
  atExit(kill)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  await untilAnswering("process-exporter", child, agent, port, "/metrics", 100)
  return {
    port,
    agent,
    pid: child.pid!,
    close: () => {
      agent.destroy()
      kill()
    }
  }
}

export const quantile = (xs: ReadonlyArray<number>, q: number): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}
