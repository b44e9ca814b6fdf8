/**
 * Collection off the request path and the cached, gzip-able bodies: with `--collection background` the
 * handlers serve the loop's latest snapshot without reading anything, the loop's snapshots keep coming,
 * `/metrics` and `/instances` are rendered once per snapshot and served as the same bytes (gzip when the
 * client accepts it, round-tripping to the exact plain text).
 */
import * as http from "node:http"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import * as zlib from "node:zlib"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Collector, type Snapshot } from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { VmMetrics } from "@vm-metrics/otel/VmMetrics"
import { waitFor } from "@vm-metrics/testing"
import { Effect, Layer, Option, Tracer } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import type * as AppConfig from "../src/AppConfig.js"
import * as EncodedBody from "../src/EncodedBody.js"
import * as Main from "../src/Main.js"

const kernel = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 1_700_000_000_000 }
const instances: ReadonlyArray<InstanceInfo> = Array.from({ length: 20 }, (_, i) => ({
  id: `vm${String(i).padStart(4, "0")}xxxxxxxxxxxxxxx`,
  name: `vm-${i}`,
  hypervisorPid: 1000 + i,
  tapDevice: `tap${i}`,
  allocatedVcpus: 2,
  allocatedMemoryBytes: 4 * 1024 ** 3
}))

/** An in-memory host: every read is counted by the memory readers. */
const host = () => {
  const proc = ProcReader.makeMemory(kernel)
  const taps = TapReader.makeMemory()
  for (const [i, info] of instances.entries()) {
    proc.set(info.hypervisorPid ?? 0, {
      stat: statLine({ pid: info.hypervisorPid ?? 0, utime: 100 + i }),
      statm: "1000 500 0 0 0 0 0\n"
    })
    taps.set(info.tapDevice ?? "", { rxBytes: `${i}\n`, txBytes: `${2 * i}\n` })
  }
  const procReads = () => [...proc.reads.values()].reduce((a, b) => a + b, 0)
  return { proc, taps, procReads, readers: Layer.merge(ProcReader.layerMemory(proc), TapReader.layerMemory(taps)) }
}

const app = (h: ReturnType<typeof host>, config: Partial<AppConfig.AppConfig>) =>
  Main.layerApp(config, { source: InstanceSource.layerStatic(instances), readers: h.readers }).pipe(
    Layer.provideMerge(NodeHttpServer.layerTest)
  )

interface Reply {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  readonly body: Buffer
}

/** A raw request: Node's client does not decompress, so the bytes arrive as sent. */
const get = (path: string, headers: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const port = (server.address as HttpServer.TcpAddress).port
    return yield* Effect.async<Reply>((resume) => {
      const req = http.request({ host: "127.0.0.1", port, path, headers }, (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.on("end", () =>
          resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        )
      })
      req.on("error", (error) => resume(Effect.die(error)))
      req.end()
    })
  })

/** The first snapshot of the background loop (bounded wait). */
const firstSnapshot = Effect.flatMap(Collector, (collector) =>
  waitFor("the first background collection", () => Option.getOrUndefined(Effect.runSync(collector.latest)), {
    timeout: "20 seconds",
    interval: "20 millis"
  })
)

describe("EncodedBody", () => {
  it("a key asked again gives the same body without making the text again; a new key makes it anew", () => {
    let made = 0
    const cache = EncodedBody.makeCache((key: { readonly n: number }) => {
      made++
      return `text ${key.n}\n`
    })
    const one = { n: 1 }
    const first = cache(one)
    assert.strictEqual(cache(one), first)
    assert.strictEqual(made, 1)
    assert.strictEqual(first.gzip(), first.gzip(), "the gzip is made once")
    const second = cache({ n: 2 })
    assert.strictEqual(made, 2)
    assert.notStrictEqual(second, first)
    assert.strictEqual(Buffer.from(second.plain).toString("utf8"), "text 2\n")
  })

  it("a body of rendered bytes is kept by the array: the same array, the same body; other bytes, anew", () => {
    const cache = EncodedBody.makeBytesCache()
    const bytes = new TextEncoder().encode("a\n")
    const first = cache(bytes)
    assert.strictEqual(cache(bytes), first)
    assert.strictEqual(first.plain, bytes, "the bytes are sent as they are, not copied")
    assert.strictEqual(zlib.gunzipSync(first.gzip()).toString("utf8"), "a\n")
    assert.strictEqual(first.gzip(), first.gzip(), "the gzip is made once")
    const equal = new TextEncoder().encode("a\n")
    assert.notStrictEqual(cache(equal), first, "equal bytes in another array are another key")
  })

  it("neither cache keeps its key (a snapshot) alive once nothing else does", async () => {
    v8.setFlagsFromString("--expose-gc")
    const gc = vm.runInNewContext("gc") as () => void
    const cache = EncodedBody.makeCache((key: { readonly n: number }) => `text ${key.n}\n`)
    const bytesCache = EncodedBody.makeBytesCache()
    const refs = ((): Array<WeakRef<object>> => {
      const a = { n: 1 }
      const b = new Uint8Array(16)
      cache(a)
      bytesCache(b)
      return [new WeakRef(a), new WeakRef(b)]
    })()
    // A WeakRef's target stays alive until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve))
    gc()
    assert.isUndefined(refs[0].deref(), "makeCache kept its key")
    assert.isUndefined(refs[1].deref(), "makeBytesCache kept its bytes")
  })

  it("the gzip decompresses to the exact plain bytes", () => {
    const text = `${'é→ line with \\u0000 and "quotes"\n'.repeat(500)}end`
    const body = EncodedBody.encode(text)
    assert.strictEqual(zlib.gunzipSync(body.gzip()).toString("utf8"), text)
    assert.deepStrictEqual(Buffer.from(body.plain), Buffer.from(text, "utf8"))
    assert.isBelow(body.gzip().length, body.plain.length)
  })

  it("Accept-Encoding: gzip with q > 0 (or *) is gzip unless identity weighs more; q=0, identity or no header is not", () => {
    const cases: ReadonlyArray<readonly [string | undefined, boolean]> = [
      [undefined, false],
      ["", false],
      ["identity", false],
      ["gzip", true],
      ["GZip", true],
      ["x-gzip", true],
      ["gzip, deflate, br", true],
      ["br;q=1.0, gzip;q=0.5", true],
      ["gzip;q=0", false],
      ["gzip; q=0.000", false],
      ["gzip;q=0, identity", false],
      ["*", true],
      ["*;q=0", false],
      ["*, gzip;q=0", false],
      ["deflate, br", false],
      ["gzip;q=nonsense", false],
      // identity listed with a higher q-value: the client prefers plain; an equal one leaves gzip.
      ["gzip;q=0.5, identity;q=1", false],
      ["*;q=0.2, identity;q=0.5", false],
      ["gzip;q=0.5, identity;q=0.5", true],
      ["identity;q=0.1, gzip", true],
      ["identity;q=0, gzip;q=0.3", true]
    ]
    for (const [header, expected] of cases) assert.strictEqual(EncodedBody.acceptsGzip(header), expected, `${header}`)
  })
})

describe("the server's collection and bodies", () => {
  it.live(
    "with --collection background, /metrics, /instances, the stats endpoint and the OTel producer read nothing",
    () => {
      const h = host()
      return Effect.gen(function* () {
        const snapshot = yield* firstSnapshot
        const readsBefore = h.procReads()
        assert.isAbove(readsBefore, 0)
        for (let i = 0; i < 5; i++) {
          assert.strictEqual((yield* get("/metrics")).status, 200)
          assert.strictEqual((yield* get("/instances")).status, 200)
          assert.strictEqual((yield* get(`/instances/${instances[3].id}/stats`)).status, 200)
          assert.strictEqual((yield* get("/metrics", { "accept-encoding": "gzip" })).status, 200)
        }
        assert.strictEqual(h.procReads(), readsBefore, "no request read /proc")
        // The OTel path (collectAll, as the push and a caller's Meter read) reuses the loop's snapshot too,
        // although the max age given (0) would have it collect: with the loop it is at least twice the interval.
        const metrics = yield* VmMetrics
        const exported = yield* Effect.promise(() => metrics.producer.collect())
        assert.isAbove(exported.resourceMetrics.scopeMetrics.length, 0)
        assert.strictEqual(h.procReads(), readsBefore, "the OTel producer read nothing")
        const latest = yield* Effect.flatMap(Collector, (c) => c.latest)
        assert.strictEqual(Option.getOrThrow(latest).sequence, snapshot.sequence, "no request collected")
      }).pipe(Effect.provide(app(h, { collection: "background", interval: "1 hour", maxAge: "0 millis" })))
    }
  )

  it.live("with --collection on-demand and a max age of 0, every request collects (the contrast)", () => {
    const h = host()
    return Effect.gen(function* () {
      yield* get("/metrics")
      const readsBefore = h.procReads()
      yield* get("/metrics")
      yield* get("/instances")
      assert.isAtLeast(h.procReads(), readsBefore + 2 * instances.length)
    }).pipe(Effect.provide(app(h, { collection: "on-demand", maxAge: "0 millis" })))
  })

  it.live("the background loop's snapshots keep coming, and /metrics follows them", () => {
    const h = host()
    return Effect.gen(function* () {
      const first = yield* firstSnapshot
      const collector = yield* Collector
      const server = yield* HttpServer.HttpServer
      yield* waitFor(
        "two more background collections",
        () => {
          const latest = Option.getOrUndefined(Effect.runSync(collector.latest))
          return latest !== undefined && latest.sequence >= first.sequence + 2 ? latest : undefined
        },
        { timeout: "20 seconds", interval: "20 millis" }
      )
      // A changed value reaches /metrics through the loop alone (the VM's rx is the TAP's tx).
      h.taps.set(instances[0].tapDevice ?? "", { rxBytes: "0\n", txBytes: "123456789\n" })
      const line = `_network_rx_bytes_total{instance_id="${instances[0].id}",instance_name="vm-0"} 123456789\n`
      yield* waitFor(
        "the new rx value in /metrics",
        async () => {
          const reply = await Effect.runPromise(
            get("/metrics").pipe(Effect.provideService(HttpServer.HttpServer, server))
          )
          const body = reply.body.toString("utf8")
          if (!body.includes(line))
            throw new Error(
              body
                .split("\n")
                .filter((l) => l.includes("rx_bytes"))
                .slice(0, 3)
                .join(" / ")
            )
          return true
        },
        { timeout: "20 seconds", interval: "20 millis" }
      )
    }).pipe(Effect.provide(app(h, { collection: "background", interval: "10 millis" })))
  })

  it.live("a snapshot is rendered once and served as the same bytes, gzip on request; a new one anew", () => {
    const h = host()
    return Effect.gen(function* () {
      const snapshot = yield* firstSnapshot
      const metrics = yield* VmMetrics
      const collector = yield* Collector

      // Rendering reads the snapshot's stats; a render served from the cache does not.
      let statsReads = 0
      const counted = new Proxy(snapshot, {
        get: (target, key, receiver) => {
          if (key === "stats") statsReads++
          return Reflect.get(target, key, receiver)
        }
      }) satisfies Snapshot
      const text = yield* metrics.render(counted)
      const readsAfterFirst = statsReads
      assert.isAbove(readsAfterFirst, 0)
      assert.strictEqual(yield* metrics.render(counted), text)
      assert.strictEqual(statsReads, readsAfterFirst, "the second render of the same snapshot rendered nothing")

      for (const path of ["/metrics", "/instances"]) {
        const plain = yield* get(path)
        assert.strictEqual(plain.status, 200)
        assert.isUndefined(plain.headers["content-encoding"])
        assert.strictEqual(plain.headers.vary, "Accept-Encoding")
        // The cached bytes go out whole with their length, not chunked.
        assert.strictEqual(plain.headers["content-length"], String(plain.body.length))
        assert.isUndefined(plain.headers["transfer-encoding"])
        assert.deepStrictEqual((yield* get(path)).body, plain.body, `${path}: the same bytes again`)
        for (const refused of ["identity", "gzip;q=0", "br"]) {
          const reply = yield* get(path, { "accept-encoding": refused })
          assert.isUndefined(reply.headers["content-encoding"], `${path} ${refused}`)
          assert.deepStrictEqual(reply.body, plain.body, `${path} ${refused}`)
        }
        const gz = yield* get(path, { "accept-encoding": "gzip, deflate" })
        assert.strictEqual(gz.status, 200)
        assert.strictEqual(gz.headers["content-encoding"], "gzip")
        assert.strictEqual(gz.headers.vary, "Accept-Encoding")
        assert.strictEqual(gz.headers["content-length"], String(gz.body.length))
        assert.strictEqual(gz.headers["content-type"], plain.headers["content-type"])
        assert.isBelow(gz.body.length, plain.body.length)
        assert.deepStrictEqual(zlib.gunzipSync(gz.body), plain.body, `${path}: gzip round-trips to the plain bytes`)
        assert.deepStrictEqual((yield* get(path, { "accept-encoding": "gzip" })).body, gz.body)
      }
      // /metrics serves the cached render of the snapshot itself (the agent's own series are sampled once per
      // snapshot object, so the counting proxy above has its own).
      assert.strictEqual((yield* get("/metrics")).body.toString("utf8"), yield* metrics.render(snapshot))

      // A new snapshot (a changed counter) is rendered anew, in both encodings.
      h.taps.set(instances[1].tapDevice ?? "", { rxBytes: "987654321\n", txBytes: "0\n" })
      const next = yield* collector.refresh
      assert.isAbove(next.sequence, snapshot.sequence)
      const plain = (yield* get("/metrics")).body
      assert.notDeepEqual(plain.toString("utf8"), text)
      assert.include(plain.toString("utf8"), `instance_name="vm-1"} 987654321\n`)
      const gz = (yield* get("/metrics", { "accept-encoding": "gzip" })).body
      assert.deepStrictEqual(zlib.gunzipSync(gz), plain)
      assert.include((yield* get("/instances")).body.toString("utf8"), "987654321")
    }).pipe(Effect.provide(app(h, { collection: "background", interval: "1 hour" })))
  })

  it.live("a request opens no tracing span (nothing exports traces; the span cost every answer)", () => {
    const h = host()
    const spans: Array<string> = []
    const native = Effect.runSync(Effect.tracer)
    const recording = Tracer.make({
      span: (...args) => {
        spans.push(args[0])
        return native.span(...args)
      },
      context: (f, fiber) => native.context(f, fiber)
    })
    return Effect.gen(function* () {
      yield* firstSnapshot
      for (const path of ["/metrics", "/instances", "/healthz"]) assert.strictEqual((yield* get(path)).status, 200)
      assert.deepStrictEqual(
        spans.filter((name) => name.startsWith("http.server")),
        [],
        "the platform's per-request span"
      )
    }).pipe(
      Effect.provide(
        app(h, { collection: "background", interval: "1 hour" }).pipe(Layer.provide(Layer.setTracer(recording)))
      )
    )
  })
})
