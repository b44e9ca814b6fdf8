/**
 * The landing page at `/` (Landing): one HTML document with escaped values and no external resource;
 * served with its content type and a CSP; its numbers are those of `/instances` from the same server;
 * behind the token like every path but /healthz. And the agent's own series on the product's `/metrics`:
 * build info from BuildInfo, process metrics of this process.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { expectedProcessMetrics } from "@vm-metrics/testing"
import { Effect, Layer, Option, Redacted } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import * as BuildInfo from "../src/BuildInfo.js"
import * as Landing from "../src/Landing.js"
import * as Main from "../src/Main.js"

const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }
const vm = (id: string, pid?: number): InstanceInfo => ({
  id,
  name: `name-${id}`,
  ...(pid === undefined ? {} : { hypervisorPid: pid }),
  allocatedVcpus: 1,
  allocatedMemoryBytes: 1024 ** 3
})
// Three listed: two with a running process, one whose process is gone.
const instances = [vm("a", 201), vm("b", 202), vm("c", 203)]
const proc = ProcReader.makeMemory(kernel)
proc.set(201, { stat: statLine({ pid: 201, utime: 10 }), statm: "10 5 0 0 0 0 0\n" })
proc.set(202, { stat: statLine({ pid: 202, utime: 20 }), statm: "10 5 0 0 0 0 0\n" })
const readers = Layer.merge(ProcReader.layerMemory(proc), TapReader.layerMemory(TapReader.makeMemory()))

const TOKEN = "landing-token"
const serverWith = (authToken: Option.Option<Redacted.Redacted<string>>) =>
  Main.layerApp(
    // On demand with a long max age: every request of a test sees the same snapshot.
    { collection: "on-demand", maxAge: "1 hour", authToken },
    { source: InstanceSource.layerStatic(instances), readers }
  ).pipe(Layer.provideMerge(NodeHttpServer.layerTest))

const get = (path: string, init: RequestInit = {}) =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const port = (server.address as HttpServer.TcpAddress).port
    return yield* Effect.promise(async () => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`, { ...init, signal: AbortSignal.timeout(10_000) })
      return { status: response.status, headers: response.headers, body: await response.text() }
    })
  })

/** The text of the element with this id (the page marks every value with one). */
const byId = (html: string, id: string): string => {
  const match = new RegExp(`id="${id}"[^>]*>([^<]*)<`).exec(html)
  if (match === null) throw new Error(`no element #${id} in\n${html}`)
  return match[1]
}

describe("Landing.render", () => {
  const info: Landing.Info = {
    version: '1.0<script>alert("v")</script>',
    revision: "abc&def",
    nodeVersion: "24.22.3'",
    source: "<img src=x onerror=alert(1)>",
    instances: 3,
    running: 2,
    sampledAtMs: 1_700_000_000_000,
    nowMs: 1_700_000_002_500
  }
  const html = Landing.render(info)

  it("escapes every value: no markup of the values survives", () => {
    assert.notInclude(html, "<script")
    assert.notInclude(html, "<img")
    assert.include(html, "1.0&lt;script&gt;alert(&quot;v&quot;)&lt;/script&gt;")
    assert.strictEqual(byId(html, "revision"), "abc&amp;def")
    assert.strictEqual(byId(html, "node-version"), "24.22.3&#39;")
    assert.strictEqual(byId(html, "source"), "&lt;img src=x onerror=alert(1)&gt;")
  })

  it("shows the counts, the snapshot's time and its age, and links to the endpoints; loads nothing", () => {
    assert.strictEqual(byId(html, "instances"), "3")
    assert.strictEqual(byId(html, "running"), "2")
    assert.strictEqual(byId(html, "sampled-at"), "2023-11-14T22:13:20.000Z")
    assert.strictEqual(byId(html, "age-seconds"), "2.5")
    for (const path of ["/metrics", "/instances", "/docs"]) assert.include(html, `<a href="${path}">`)
    const plain = Landing.render({ ...info, version: "1.0.0", source: "discovery" })
    assert.notMatch(plain, /\b(src|srcset)=|<link|<script|<img|https?:\/\//)
  })

  it("a snapshot stamped after now (a clock stepped back) is 0.0 s old, never negative", () => {
    assert.strictEqual(byId(Landing.render({ ...info, nowMs: info.sampledAtMs - 5000 }), "age-seconds"), "0.0")
  })
})

layer(serverWith(Option.none()), { excludeTestServices: true })("GET / on the product's app", (it) => {
  it.effect("HTML with its content type, a CSP that forbids loading anything, and the numbers of /instances", () =>
    Effect.gen(function* () {
      const page = yield* get("/")
      assert.strictEqual(page.status, 200)
      assert.strictEqual(page.headers.get("content-type"), "text/html; charset=utf-8")
      assert.strictEqual(page.headers.get("content-security-policy"), Landing.CONTENT_SECURITY_POLICY)
      assert.strictEqual(page.headers.get("x-content-type-options"), "nosniff")
      const list = JSON.parse((yield* get("/instances")).body) as {
        instances: Array<{ state: string }>
        sampled_at: string
      }
      assert.strictEqual(Number(byId(page.body, "instances")), list.instances.length)
      assert.strictEqual(list.instances.length, 3)
      assert.strictEqual(Number(byId(page.body, "running")), list.instances.filter((i) => i.state === "running").length)
      assert.strictEqual(Number(byId(page.body, "running")), 2)
      assert.strictEqual(byId(page.body, "sampled-at"), list.sampled_at)
      assert.strictEqual(byId(page.body, "version"), BuildInfo.version)
      assert.strictEqual(byId(page.body, "source"), "custom") // a source given to Main as a port
    })
  )

  it.effect("HEAD / answers like GET; POST / is 405 with Allow", () =>
    Effect.gen(function* () {
      const head = yield* get("/", { method: "HEAD" })
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.headers.get("content-type"), "text/html; charset=utf-8")
      const post = yield* get("/", { method: "POST" })
      assert.strictEqual(post.status, 405)
      assert.strictEqual(post.headers.get("allow"), "GET, HEAD")
    })
  )

  it.effect("/metrics has build_info from BuildInfo and the process metrics of this process", () =>
    Effect.gen(function* () {
      const text = (yield* get("/metrics")).body
      const value = (name: string) => {
        const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text)
        if (match === null) throw new Error(`no ${name} in\n${text}`)
        return Number(match[1])
      }
      const expected = expectedProcessMetrics(process.pid)
      assert.include(
        text,
        `hypeman_vm_metrics_build_info{version="${BuildInfo.version}",revision="${BuildInfo.revision}",node_version="${process.versions.node}"} 1\n`
      )
      assert.include(text, "# TYPE process_cpu_seconds_total counter\n")
      assert.isAbove(value("process_cpu_seconds_total"), 0)
      assert.isAtMost(value("process_cpu_seconds_total"), expected.cpuSeconds) // sampled before
      assert.strictEqual(value("process_max_fds"), expected.maxFds)
      assert.closeTo(value("process_start_time_seconds"), expected.startTimeSeconds, 1e-6)
    })
  )
})

layer(serverWith(Option.some(Redacted.make(TOKEN))), { excludeTestServices: true })(
  "GET / with a token configured",
  (it) => {
    it.effect("needs the token like /instances: 401 without, 200 with", () =>
      Effect.gen(function* () {
        const refused = yield* get("/")
        assert.strictEqual(refused.status, 401)
        assert.deepStrictEqual(Object.keys(JSON.parse(refused.body)), ["code", "message"])
        const page = yield* get("/", { headers: { authorization: `Bearer ${TOKEN}` } })
        assert.strictEqual(page.status, 200)
        assert.strictEqual(byId(page.body, "instances"), "3")
      })
    )
  }
)
