/**
 * The HTTP API over in-memory ports: every status code and body, lookup order, OpenAPI, hostile input, auth,
 * query parameters (ignored), 405 with Allow, one `{"code","message"}` error body everywhere, and what a
 * failed listing may tell a client (its kind and position, never its reason).
 */
import * as http from "node:http"
import { FetchHttpClient, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { Effect, Either, Layer, Option, Redacted } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import { Ambiguous, NotFound, Unauthorized } from "../src/Api.js"
import type * as AppConfig from "../src/AppConfig.js"
import { lookup } from "../src/Lookup.js"
import * as Main from "../src/Main.js"
import * as Top from "../src/Top.js"
import { screen } from "../src/TopModel.js"

const GiB = 1024 ** 3
const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }

const instances: ReadonlyArray<InstanceInfo> = [
  {
    id: "qilviffnqzck2jrim1x6s2b1",
    name: "web",
    hypervisorPid: 101,
    tapDevice: "hype-qilviffn",
    allocatedVcpus: 2,
    allocatedMemoryBytes: 4 * GiB
  },
  { id: "qiz00000000000000000000", name: "db", hypervisorPid: 102, allocatedVcpus: 4, allocatedMemoryBytes: 0 },
  { id: "web", name: "named-like-an-id", hypervisorPid: 103, allocatedVcpus: 1, allocatedMemoryBytes: GiB },
  { id: "zz1", name: "twin", allocatedVcpus: 1, allocatedMemoryBytes: GiB },
  { id: "zz2", name: "twin", allocatedVcpus: 1, allocatedMemoryBytes: GiB }
]

const proc = ProcReader.makeMemory(kernel)
/** The default groups' files (cpu: the vCPU threads, memory: status, disk: io), so nothing is a read error. */
const groupFiles = (pid: number) => ({
  status: "VmSwap:\t0 kB\nRssAnon:\t400000 kB\nRssFile:\t32948 kB\nRssShmem:\t0 kB\nHugetlbPages:\t0 kB\n",
  io: "rchar: 0\nwchar: 0\nread_bytes: 0\nwrite_bytes: 0\n",
  tasks: [
    { tid: pid, comm: "qemu-system-x86", schedstat: "1 0 1\n" },
    { tid: pid + 10, comm: "CPU 0/KVM", schedstat: "1 2 1\n" }
  ]
})
proc.set(101, {
  stat: statLine({ pid: 101, utime: 2500, stime: 494, startTime: 4242 }),
  statm: "1057311 108237 0 0 0 0 0\n",
  ...groupFiles(101)
})
proc.set(102, { stat: statLine({ pid: 102, utime: 1 }), statm: "10 5 0 0 0 0 0\n", ...groupFiles(102) })
proc.set(103, { stat: statLine({ pid: 103, utime: 7 }), statm: "10 5 0 0 0 0 0\n", ...groupFiles(103) })
const taps = TapReader.makeMemory()
// Above 2^53: must arrive as exact JSON integers.
taps.set("hype-qilviffn", { rxBytes: "18446744073709551615\n", txBytes: "9007199254740993\n" })

const readers = Layer.merge(ProcReader.layerMemory(proc), TapReader.layerMemory(taps))
/** The product's app (Main) over an in-memory source and readers, on a test server. */
const appOver = (source: Layer.Layer<InstanceSource.InstanceSource>, config: Partial<AppConfig.AppConfig> = {}) =>
  Main.layerApp({ maxAge: "1 second", ...config }, { source, readers }).pipe(
    Layer.provideMerge(NodeHttpServer.layerTest)
  )
const serverWith = (authToken: Option.Option<Redacted.Redacted<string>>, metricsWithoutAuth = false) =>
  appOver(InstanceSource.layerStatic(instances), { authToken, metricsWithoutAuth })

/** A raw request (no URL normalisation by a client), so hostile paths arrive as written. */
const raw = (path: string, headers: Record<string, string> = {}, method = "GET") =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const port = (server.address as HttpServer.TcpAddress).port
    return yield* Effect.async<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resume) => {
      const req = http.request({ host: "127.0.0.1", port, path, headers, method }, (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk) => (body += chunk))
        res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, body })))
      })
      req.on("error", (error) => resume(Effect.die(error)))
      req.end()
    })
  })

/** The test server's base URL, for a real client. */
const baseUrl = Effect.map(
  HttpServer.HttpServer,
  (server) => `http://127.0.0.1:${(server.address as HttpServer.TcpAddress).port}`
)

const jsonOf = (body: string) => JSON.parse(body) as Record<string, any>

/** The one error body shape: exactly `code` and `message`, strings. */
const assertErrorBody = (res: { status: number; headers: http.IncomingHttpHeaders; body: string }, code: string) => {
  assert.match(res.headers["content-type"] ?? "", /^application\/json/, res.body)
  const body = jsonOf(res.body)
  assert.deepStrictEqual(Object.keys(body), ["code", "message"], res.body)
  assert.strictEqual(body.code, code, res.body)
  assert.isString(body.message)
}

layer(serverWith(Option.none()), { excludeTestServices: true })("HTTP API", (it) => {
  it.effect("GET /instances/{id}/stats: the seed's fields, exact integers above 2^53, and the extras", () =>
    Effect.gen(function* () {
      const res = yield* raw("/instances/qilviffnqzck2jrim1x6s2b1/stats")
      assert.strictEqual(res.status, 200)
      assert.match(res.headers["content-type"] ?? "", /^application\/json/)
      assert.include(res.body, '"network_rx_bytes":9007199254740993')
      assert.include(res.body, '"network_tx_bytes":18446744073709551615')
      const body = jsonOf(res.body)
      assert.deepStrictEqual(Object.keys(body).slice(0, 10), [
        "instance_id",
        "instance_name",
        "cpu_seconds",
        "memory_rss_bytes",
        "memory_vms_bytes",
        "network_rx_bytes",
        "network_tx_bytes",
        "allocated_vcpus",
        "allocated_memory_bytes",
        "memory_utilization_ratio"
      ])
      assert.strictEqual(body.instance_id, "qilviffnqzck2jrim1x6s2b1")
      assert.strictEqual(body.instance_name, "web")
      assert.strictEqual(body.cpu_seconds, 29.94)
      assert.strictEqual(body.memory_rss_bytes, 108237 * 4096)
      assert.strictEqual(body.memory_vms_bytes, 1057311 * 4096)
      assert.strictEqual(body.allocated_vcpus, 2)
      assert.strictEqual(body.allocated_memory_bytes, 4 * GiB)
      assert.closeTo(body.memory_utilization_ratio, (108237 * 4096) / (4 * GiB), 1e-12)
      assert.strictEqual(body.state, "running")
      assert.strictEqual(body.pid, 101)
      assert.strictEqual(body.tap_device, "hype-qilviffn")
      assert.strictEqual(body.process_start_time, new Date(kernel.bootTimeMs + 42420).toISOString())
      assert.deepStrictEqual(body.unavailable, [])
    })
  )

  it.effect("memory_utilization_ratio is present and null when allocated memory is 0; unread values are null", () =>
    Effect.gen(function* () {
      const body = jsonOf((yield* raw("/instances/db/stats")).body)
      assert.isTrue("memory_utilization_ratio" in body)
      assert.isNull(body.memory_utilization_ratio)
      const noProcess = jsonOf((yield* raw("/instances/zz1/stats")).body)
      assert.strictEqual(noProcess.state, "no-process")
      assert.isNull(noProcess.cpu_seconds)
      assert.isNull(noProcess.network_rx_bytes)
    })
  )

  it.effect("lookup: exact id, then exact name, then unique id prefix", () =>
    Effect.gen(function* () {
      const idOf = (path: string) => Effect.map(raw(path), (res) => jsonOf(res.body).instance_id)
      // "web" is both an id and a name: the id wins.
      assert.strictEqual(yield* idOf("/instances/web/stats"), "web")
      assert.strictEqual(yield* idOf("/instances/named-like-an-id/stats"), "web")
      assert.strictEqual(yield* idOf("/instances/db/stats"), "qiz00000000000000000000")
      assert.strictEqual(yield* idOf("/instances/qil/stats"), "qilviffnqzck2jrim1x6s2b1")
    })
  )

  it.effect("404 not_found and 409 ambiguous bodies", () =>
    Effect.gen(function* () {
      const unknown = yield* raw("/instances/nope/stats")
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(jsonOf(unknown.body), { code: "not_found", message: "resource not found" })
      for (const path of ["/instances/twin/stats", "/instances/qi/stats", "/instances/zz/stats"]) {
        const ambiguous = yield* raw(path)
        assert.strictEqual(ambiguous.status, 409, path)
        assert.deepStrictEqual(jsonOf(ambiguous.body), {
          code: "ambiguous",
          message: "multiple resources match, use full ID"
        })
      }
    })
  )

  it.effect("the API's typed client (top --url) decodes integers above 2^53 exactly, and 404/409 as typed errors", () =>
    Effect.gen(function* () {
      const api = yield* Top.client(yield* baseUrl, Option.none())
      const web = yield* api.instances.stats({ path: { id: "qilviffnqzck2jrim1x6s2b1" } })
      assert.strictEqual(web.network_rx_bytes, 9_007_199_254_740_993n)
      assert.strictEqual(web.network_tx_bytes, 18_446_744_073_709_551_615n)
      assert.strictEqual(web.memory_rss_bytes, 108237n * 4096n)
      assert.strictEqual(web.allocated_memory_bytes, 4n * 1024n ** 3n)
      const listed = yield* api.instances.list()
      assert.deepStrictEqual(listed.instances[0], web)
      const missing = yield* Effect.flip(api.instances.stats({ path: { id: "nope" } }))
      assert.deepStrictEqual(missing, new NotFound({ code: "not_found", message: "resource not found" }))
      const ambiguous = yield* Effect.flip(api.instances.stats({ path: { id: "qi" } }))
      assert.deepStrictEqual(
        ambiguous,
        new Ambiguous({ code: "ambiguous", message: "multiple resources match, use full ID" })
      )
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.effect("GET /instances lists every instance in source order", () =>
    Effect.gen(function* () {
      const res = yield* raw("/instances")
      assert.strictEqual(res.status, 200)
      const body = jsonOf(res.body)
      assert.deepStrictEqual(
        body.instances.map((i: any) => i.instance_id),
        instances.map((i) => i.id)
      )
      assert.isNull(body.source_error)
    })
  )

  it.effect("GET /metrics is Prometheus text; GET /healthz is ok", () =>
    Effect.gen(function* () {
      const metrics = yield* raw("/metrics")
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
      assert.include(
        metrics.body,
        'hypeman_vm_cpu_seconds_total{instance_id="qilviffnqzck2jrim1x6s2b1",instance_name="web"} 29.94\n'
      )
      const health = yield* raw("/healthz")
      assert.strictEqual(health.status, 200)
      assert.deepStrictEqual(jsonOf(health.body), { status: "ok" })
    })
  )

  it.effect("the OpenAPI document declares 200, 404 and 409 for the stats endpoint; /docs serves the UI", () =>
    Effect.gen(function* () {
      const doc = jsonOf((yield* raw("/openapi.json")).body)
      const responses = doc.paths["/instances/{id}/stats"].get.responses
      for (const status of ["200", "404", "409", "400", "401", "500"]) assert.property(responses, status)
      // One error shape: the platform's decode error is not part of the document, every 400 is BadRequest.
      assert.notInclude(JSON.stringify(doc), "HttpApiDecodeError")
      for (const [path, item] of Object.entries<any>(doc.paths)) {
        const bad = item.get.responses["400"]
        assert.deepStrictEqual(
          bad.content["application/json"].schema,
          { $ref: "#/components/schemas/BadRequest" },
          path
        )
      }
      for (const name of ["BadRequest", "Unauthorized", "NotFound", "Ambiguous", "InternalError"]) {
        assert.deepStrictEqual(Object.keys(doc.components.schemas[name].properties), ["code", "message"], name)
      }
      // source_error is a kind and a position, or null; never free text.
      const sourceError = doc.components.schemas.InstanceList.properties.source_error
      assert.notInclude(JSON.stringify(sourceError), '"type":"string"}')
      const kinds = doc.components.schemas.SourceError.properties.kind.enum
      assert.includeMembers(kinds, ["parse_error", "permission_denied", "not_found"])
      assert.deepStrictEqual(Object.keys(doc.components.schemas.SourceError.properties), ["kind", "line", "column"])
      const docs = yield* raw("/docs")
      assert.strictEqual(docs.status, 200)
      assert.match(docs.headers["content-type"] ?? "", /text\/html/)
    })
  )

  it.effect("hostile input gets a 4xx {code, message} error, never a 500, and reads nothing new", () =>
    Effect.gen(function* () {
      yield* raw("/instances") // make sure one collection happened
      const readsBefore = JSON.stringify([...proc.reads].sort())
      const hostile: ReadonlyArray<readonly [string, number, string]> = [
        [`/instances/${"a".repeat(300)}/stats`, 400, "bad_request"],
        ["/instances/../stats", 404, "not_found"],
        ["/instances/..%2F..%2Fetc%2Fpasswd/stats", 404, "not_found"],
        ["/instances/%2Fproc%2F1/stats", 404, "not_found"],
        ["/instances/%00/stats", 404, "not_found"],
        ["/instances/%E2%98%83/stats", 404, "not_found"],
        ["/instances/%ZZ/stats", 400, "bad_request"],
        ["/instances/%C3/stats", 400, "bad_request"],
        ["/metrics?x=%ZZ", 400, "bad_request"],
        ["/instances//stats", 404, "not_found"],
        ["/nope", 404, "not_found"],
        ["/instances/web/stats/extra", 404, "not_found"]
      ]
      for (const [path, status, code] of hostile) {
        const res = yield* raw(path)
        assert.strictEqual(res.status, status, `${path} → ${res.status} ${res.body}`)
        assertErrorBody(res, code)
      }
      // Within the max age nothing was re-read, and no hostile id ever became a read.
      assert.strictEqual(JSON.stringify([...proc.reads].sort()), readsBefore)
    })
  )

  it.effect("an id the schema rejects (300 characters) is 400 bad_request naming the parameter, not echoing it", () =>
    Effect.gen(function* () {
      const long = "a".repeat(300)
      const res = yield* raw(`/instances/${long}/stats`)
      assert.strictEqual(res.status, 400)
      assertErrorBody(res, "bad_request")
      assert.include(jsonOf(res.body).message, "id")
      assert.notInclude(res.body, "aaaaaaaaaa")
      assert.notInclude(res.body, "_tag")
      // Beyond the router's parameter limit (1,024) too: 400, not a 405 refusing the GET it is.
      for (const method of ["GET", "HEAD"]) {
        const huge = yield* raw(`/instances/${"c".repeat(5000)}/stats`, {}, method)
        assert.strictEqual(huge.status, 400, `${method}: ${huge.body}`)
        if (method === "GET") {
          assertErrorBody(huge, "bad_request")
          // The same words as the schema's own refusal of the 300 characters above.
          assert.strictEqual(jsonOf(huge.body).message, jsonOf(res.body).message)
        }
      }
      // Up to 256 characters an id is looked up like any other (the router does not cut it at 100).
      const longest = yield* raw(`/instances/${"b".repeat(256)}/stats`)
      assert.strictEqual(longest.status, 404)
      assert.deepStrictEqual(jsonOf(longest.body), { code: "not_found", message: "resource not found" })
    })
  )

  it.effect("query parameters are ignored: the same answer as without them (Prometheus `params:`)", () =>
    Effect.gen(function* () {
      for (const [path, query] of [
        ["/metrics", "?module=vm&target=hv-1"],
        ["/metrics", "?name[]=%00&x"],
        ["/instances/web/stats", "?x=1"],
        ["/instances/web/stats", "?../../etc/passwd"],
        ["/instances", "?format=json"],
        ["/healthz", "?probe=1"]
      ] as const) {
        // The background loop takes a new snapshot every second: a pair that straddles one is asked again.
        let [plain, queried] = [yield* raw(path), yield* raw(`${path}${query}`)]
        for (let retry = 0; retry < 5 && queried.body !== plain.body; retry++) {
          ;[plain, queried] = [yield* raw(path), yield* raw(`${path}${query}`)]
        }
        assert.strictEqual(queried.status, 200, `${path}${query}: ${queried.body}`)
        assert.strictEqual(queried.headers["content-type"], plain.headers["content-type"], path)
        if (path !== "/instances") assert.strictEqual(queried.body, plain.body, path)
      }
    })
  )

  it.effect("a method a path is not served with is 405 with Allow; HEAD works wherever GET does", () =>
    Effect.gen(function* () {
      for (const path of [
        "/metrics",
        "/instances",
        "/instances/web/stats",
        "/instances/nope/stats",
        "/healthz",
        "/openapi.json",
        "/docs"
      ]) {
        for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
          const res = yield* raw(path, {}, method)
          assert.strictEqual(res.status, 405, `${method} ${path}: ${res.body}`)
          assert.strictEqual(res.headers.allow, "GET, HEAD", `${method} ${path}`)
          assertErrorBody(res, "method_not_allowed")
        }
        const head = yield* raw(path, {}, "HEAD")
        assert.strictEqual(head.status, path === "/instances/nope/stats" ? 404 : 200, `HEAD ${path}`)
        assert.strictEqual(head.body, "", `HEAD ${path} has no body`)
      }
      // Matched as the router matches: case-insensitive, a trailing slash ignored.
      const variant = yield* raw("/Metrics/", {}, "POST")
      assert.strictEqual(variant.status, 405)
      assert.strictEqual(variant.headers.allow, "GET, HEAD")
      // A path no route has stays 404, whatever the method.
      const unknown = yield* raw("/nope", {}, "POST")
      assert.strictEqual(unknown.status, 404)
      assertErrorBody(unknown, "not_found")
    })
  )
})

layer(serverWith(Option.some(Redacted.make("s3cret-token"))), { excludeTestServices: true })(
  "HTTP API with a token",
  (it) => {
    it.effect("everything but /healthz and the docs page (no data: it asks for the token) needs the bearer token", () =>
      Effect.gen(function* () {
        assert.strictEqual((yield* raw("/docs")).status, 200)
        for (const path of ["/instances", "/instances/web/stats", "/metrics", "/openapi.json", "/nope"]) {
          const none = yield* raw(path)
          assert.strictEqual(none.status, 401, path)
          assert.deepStrictEqual(jsonOf(none.body), {
            code: "unauthorized",
            message: "a valid bearer token is required"
          })
          assert.strictEqual(none.headers["www-authenticate"], 'Bearer realm="vm-metrics"')
          const wrong = yield* raw(path, { authorization: "Bearer s3cret-tokem" })
          assert.strictEqual(wrong.status, 401, path)
          const prefix = yield* raw(path, { authorization: "Bearer s3cret" })
          assert.strictEqual(prefix.status, 401, path)
        }
        // top --url sends the token it is given.
        const wrong = yield* Effect.flip(
          (yield* Top.client(yield* baseUrl, Option.some(Redacted.make("nope")))).instances.list()
        )
        assert.deepStrictEqual(
          wrong,
          new Unauthorized({ code: "unauthorized", message: "a valid bearer token is required" })
        )
        const api = yield* Top.client(yield* baseUrl, Option.some(Redacted.make("s3cret-token")))
        assert.strictEqual((yield* api.instances.list()).instances.length, instances.length)
        assert.strictEqual((yield* raw("/instances", { authorization: "Bearer s3cret-token" })).status, 200)
        assert.strictEqual((yield* raw("/metrics", { authorization: "bearer s3cret-token" })).status, 200)
        assert.strictEqual((yield* raw("/healthz")).status, 200)
      }).pipe(Effect.provide(FetchHttpClient.layer))
    )
  }
)

layer(serverWith(Option.some(Redacted.make("s3cret-token")), true), { excludeTestServices: true })(
  "HTTP API with a token and --metrics-without-auth",
  (it) => {
    it.effect("/metrics is served without the token; every other path but /healthz still needs it", () =>
      Effect.gen(function* () {
        for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: "Bearer s3cret-token" }]) {
          const metrics = yield* raw("/metrics?module=vm", headers)
          assert.strictEqual(metrics.status, 200, JSON.stringify(headers))
          assert.include(metrics.body, "hypeman_vm_cpu_seconds_total{")
        }
        for (const path of ["/instances", "/instances/web/stats", "/openapi.json", "/metrics/", "/METRICS"]) {
          const none = yield* raw(path)
          assert.strictEqual(none.status, 401, path)
          assertErrorBody(none, "unauthorized")
        }
        assert.strictEqual((yield* raw("/instances", { authorization: "Bearer s3cret-token" })).status, 200)
        assert.strictEqual((yield* raw("/healthz")).status, 200)
      })
    )
  }
)

// A source that breaks its promise of unique ids (a custom InstanceSource may).
const twins: ReadonlyArray<InstanceInfo> = [
  { id: "same", name: "x", allocatedVcpus: 1, allocatedMemoryBytes: GiB },
  { id: "same", name: "y", allocatedVcpus: 1, allocatedMemoryBytes: GiB }
]

layer(appOver(InstanceSource.layerStatic(twins)), { excludeTestServices: true })(
  "HTTP API over a source listing one id twice",
  (it) => {
    it.effect("an exact id listed twice is ambiguous (409), never silently the first", () =>
      Effect.gen(function* () {
        const res = yield* raw("/instances/same/stats")
        assert.strictEqual(res.status, 409, res.body)
        assert.deepStrictEqual(jsonOf(res.body), {
          code: "ambiguous",
          message: "multiple resources match, use full ID"
        })
        const listed = twins.map((vm) => ({ instanceId: vm.id, instanceName: vm.name }))
        assert.deepStrictEqual(lookup(listed, "same"), Either.left({ _tag: "Ambiguous" as const, matches: 2 }))
        // Each of the two is still reachable by its own name.
        assert.strictEqual(jsonOf((yield* raw("/instances/y/stats")).body).instance_name, "y")
      })
    )
  }
)

/** What a failing file source says about `/etc/shadow` behind a symlink: path and content, for the log only. */
const leakyReason = `/srv/vm-metrics/vms.json: invalid JSON: Unexpected token 'r', "root:*:202"... is not valid JSON`

const failingSource = InstanceSource.layerEffect(
  Effect.fail(new InstanceSourceError({ kind: "parse_error", line: 3, column: 5, reason: leakyReason }))
)

layer(appOver(failingSource), { excludeTestServices: true })("HTTP API over a failing source", (it) => {
  it.effect("source_error is the kind, line and column only: no reason, path or content", () =>
    Effect.gen(function* () {
      const res = yield* raw("/instances")
      assert.strictEqual(res.status, 200)
      const body = jsonOf(res.body)
      assert.deepStrictEqual(body.source_error, { kind: "parse_error", line: 3, column: 5 })
      for (const secret of ["root:", "/srv", "vms.json", "Unexpected token", "invalid JSON"]) {
        assert.notInclude(res.body, secret)
      }
    })
  )

  it.effect(
    "top says so, remote (the kind and place, never the reason) and local (the reason, which is its own host's)",
    () =>
      Effect.gen(function* () {
        const remote = yield* (yield* Top.remote(yield* baseUrl, Option.none())).sample
        assert.strictEqual(
          remote.sourceError,
          "the server's instance source failed (parse_error at line 3, column 5), showing its last good listing; its log says why"
        )
        const local = yield* (yield* Top.local).sample
        assert.strictEqual(
          local.sourceError,
          `the instance source failed, showing the last good listing: ${leakyReason}`
        )
        // The screen's third line says it.
        const line = screen([], { sort: "cpu", source: "h", at: new Date(0), error: remote.sourceError! }).split(
          "\n"
        )[2]
        assert.strictEqual(line, `error: ${remote.sourceError}`)
      })
  )
})

// ---------- the metric groups' values and rates in the stats JSON ----------

/** A VM of its own (its readers change between requests), read on demand: each request is a new collection. */
const rated: InstanceInfo = {
  id: "rated-1",
  name: "rated",
  hypervisorPid: 201,
  tapDevice: "hype-rated",
  allocatedVcpus: 2,
  allocatedMemoryBytes: GiB
}
const ratedSource = InstanceSource.makeMemory([rated])
const ratedProc = ProcReader.makeMemory(kernel)
const ratedTaps = TapReader.makeMemory()
/** The process at a moment: CPU ticks, the vCPU threads' wait (ns each), TAP counters; `pid` 201 unless restarted. */
const setRated = (at: { utime: number; waitNs: bigint; rx: bigint; tx: bigint; rxPackets: bigint; pid?: number }) => {
  const pid = at.pid ?? 201
  ratedSource.set([{ ...rated, hypervisorPid: pid }])
  ratedProc.set(pid, {
    stat: statLine({ pid, utime: at.utime, stime: 100, startTime: pid * 10, majorFaults: 3 }),
    statm: "1000 100 0 0 0 0 0\n",
    status:
      "Name:\tqemu-system-x86\nVmSwap:\t    2048 kB\nRssAnon:\t  300 kB\nRssFile:\t  100 kB\nRssShmem:\t0 kB\nHugetlbPages:\t 4096 kB\n",
    io: "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n",
    tasks: [
      { tid: pid, comm: "qemu-system-x86", schedstat: "5 0 1\n" },
      { tid: pid + 1, comm: "CPU 0/KVM", schedstat: `1000000000 ${at.waitNs} 10\n` },
      { tid: pid + 2, comm: "CPU 1/KVM", schedstat: `2000000000 ${at.waitNs} 20\n` }
    ]
  })
  // VM perspective: what the VM received is the TAP's tx.
  ratedTaps.set("hype-rated", {
    rxBytes: `${at.tx}\n`,
    txBytes: `${at.rx}\n`,
    txPackets: `${at.rxPackets}\n`,
    txDropped: "7\n"
  })
}

const ratedApp = Main.layerApp(
  { maxAge: "0 millis", collection: "on-demand", groups: new Set(["cpu", "memory", "disk", "network", "packets"]) },
  {
    source: InstanceSource.layerMemory(ratedSource),
    readers: Layer.merge(ProcReader.layerMemory(ratedProc), TapReader.layerMemory(ratedTaps))
  }
).pipe(Layer.provideMerge(NodeHttpServer.layerTest))

const RATES = [
  "cpu_cores",
  "cpu_delay_ratio",
  "network_rx_bytes_per_second",
  "network_tx_bytes_per_second",
  "network_rx_packets_per_second",
  "network_tx_packets_per_second"
]

/** Two requests' sampled_at apart, in seconds (a new collection takes a new time: wait a few ms first). */
const secondsBetween = (a: Record<string, any>, b: Record<string, any>) =>
  (Date.parse(b.sampled_at) - Date.parse(a.sampled_at)) / 1000
const later = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))

layer(ratedApp, { excludeTestServices: true })("HTTP API: the metric groups' values and rates", (it) => {
  it.effect("the seed's ten fields first, then the groups' values, then the rates: null on the first sample", () =>
    Effect.gen(function* () {
      setRated({ utime: 1000, waitNs: 500_000_000n, rx: 1000n, tx: 2000n, rxPackets: 10n })
      const body = jsonOf((yield* raw("/instances/rated/stats")).body)
      const keys = Object.keys(body)
      assert.strictEqual(keys[10], "cpu_guest_seconds")
      assert.deepStrictEqual(keys.slice(keys.indexOf("cpu_cores"), keys.indexOf("cpu_cores") + 6), RATES)
      assert.strictEqual(body.cpu_system_seconds, 1)
      assert.strictEqual(body.cpu_delay_seconds, 1)
      assert.strictEqual(body.memory_swap_bytes, 2048 * 1024)
      assert.strictEqual(body.memory_anon_bytes, 300 * 1024)
      assert.strictEqual(body.memory_hugetlb_bytes, 4096 * 1024)
      assert.strictEqual(body.disk_read_bytes, 4096)
      assert.strictEqual(body.disk_write_bytes, 8192)
      assert.strictEqual(body.major_page_faults, 3)
      assert.strictEqual(body.network_rx_packets, 10)
      assert.strictEqual(body.network_rx_dropped, 7)
      assert.deepStrictEqual(body.vcpus, [], "group vcpu is off")
      assert.deepStrictEqual(body.interfaces, [], "group interfaces is off")
      for (const rate of RATES) assert.isNull(body[rate], rate)
    })
  )

  it.effect("rates between the two latest snapshots; null after a restart (new epoch); never negative", () =>
    Effect.gen(function* () {
      setRated({ utime: 1000, waitNs: 500_000_000n, rx: 1000n, tx: 2000n, rxPackets: 10n })
      const first = jsonOf((yield* raw("/instances/rated/stats")).body)
      yield* later
      // +1.5 s of CPU, +0.3 s of wait on each of the 2 vCPU threads, +3000 / +1000 bytes, +30 packets.
      setRated({ utime: 1150, waitNs: 800_000_000n, rx: 4000n, tx: 3000n, rxPackets: 40n })
      const second = jsonOf((yield* raw("/instances/rated/stats")).body)
      const dt = secondsBetween(first, second)
      assert.isAbove(dt, 0)
      assert.strictEqual(second.epoch, first.epoch)
      assert.closeTo(second.cpu_cores, 1.5 / dt, 1e-9)
      assert.closeTo(second.cpu_delay_ratio, 0.6 / (dt * 2), 1e-9)
      assert.closeTo(second.network_rx_bytes_per_second, 3000 / dt, 1e-9)
      assert.closeTo(second.network_tx_bytes_per_second, 1000 / dt, 1e-9)
      assert.closeTo(second.network_rx_packets_per_second, 30 / dt, 1e-9)
      assert.strictEqual(second.network_tx_packets_per_second, 0)
      // The list carries the same rates (against its own previous snapshot).
      yield* later
      const listed = jsonOf((yield* raw("/instances")).body).instances[0]
      assert.strictEqual(listed.cpu_cores, 0, "nothing moved since the last request")
      // The VMM restarted (another process): a new epoch, counters from 0 again, no rate.
      yield* later
      setRated({ utime: 10, waitNs: 1_000n, rx: 50n, tx: 60n, rxPackets: 1n, pid: 301 })
      const restarted = jsonOf((yield* raw("/instances/rated/stats")).body)
      assert.strictEqual(restarted.pid, 301)
      assert.strictEqual(restarted.epoch, first.epoch + 1)
      for (const rate of RATES) assert.isNull(restarted[rate], rate)
      // The next sample of the new process has rates again.
      yield* later
      setRated({ utime: 110, waitNs: 1_000n, rx: 50n, tx: 60n, rxPackets: 1n, pid: 301 })
      const next = jsonOf((yield* raw("/instances/rated/stats")).body)
      assert.closeTo(next.cpu_cores, 1 / secondsBetween(restarted, next), 1e-9)
      assert.strictEqual(next.cpu_delay_ratio, 0)
      // A TAP counter that went down (the TAP re-created) is a new series too: null, never negative.
      yield* later
      setRated({ utime: 120, waitNs: 1_000n, rx: 5n, tx: 60n, rxPackets: 1n, pid: 301 })
      const down = jsonOf((yield* raw("/instances/rated/stats")).body)
      for (const rate of RATES) assert.isTrue(down[rate] === null || down[rate] >= 0, rate)
      assert.isNull(down.network_rx_bytes_per_second)
    })
  )
})
