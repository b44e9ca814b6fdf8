/**
 * The OpenAPI document as the server serves it, and the docs page, over real HTTP (the product's app on a
 * loopback socket, with a token): the bearer scheme on every operation but /healthz, `info.version` the
 * package's, `servers`; `redocly lint` (Redocly's recommended rules, warnings as errors) clean on the
 * served bytes. The docs page is served without the token, holds no API description, turns Scalar's
 * buttons that send the document elsewhere off, may connect to this server only (CSP), and its script
 * gets the document with the token as a browser would.
 */
import { execFile } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import * as ProcReader from "@vm-metrics/core/ProcReader"
import * as TapReader from "@vm-metrics/core/TapReader"
import { tempDir } from "@vm-metrics/testing"
import { Effect, Layer, Option, Redacted } from "effect"
import * as BuildInfo from "../src/BuildInfo.js"
import type * as Docs from "../src/Docs.js"
import * as Main from "../src/Main.js"

const PACKAGE = path.resolve(import.meta.dirname, "..")
const REDOCLY = path.join(PACKAGE, "node_modules", ".bin", "redocly")
const TOKEN = "openapi-test-token"

const readers = Layer.merge(
  ProcReader.layerMemory(ProcReader.makeMemory({ clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: 0 })),
  TapReader.layerMemory(TapReader.makeMemory())
)
const app = Main.layerApp(
  { collection: "on-demand", authToken: Option.some(Redacted.make(TOKEN)) },
  { source: InstanceSource.layerStatic([]), readers }
).pipe(Layer.provideMerge(NodeHttpServer.layerTest))

const get = (pathname: string, headers: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const port = (server.address as HttpServer.TcpAddress).port
    // A new connection each time (no keep-alive socket that the server may be closing as it is reused).
    return yield* Effect.async<{ status: number; headers: http.IncomingHttpHeaders; body: string }, Error>((resume) => {
      const url = new URL(pathname, `http://127.0.0.1:${port}/docs`)
      const request = http.get(url, { headers, agent: false, timeout: 30_000 }, (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk) => (body += chunk))
        response.on("end", () =>
          resume(Effect.succeed({ status: response.statusCode ?? 0, headers: response.headers, body }))
        )
      })
      request.on("timeout", () => request.destroy(new Error(`GET ${pathname}: no answer in 30 s`)))
      request.on("error", (error) => resume(Effect.fail(error)))
    }).pipe(Effect.orDie)
  })

const withToken = { authorization: `Bearer ${TOKEN}` }

/** The JSON of the page's `<script id="docs-config">`. */
const pageConfig = (html: string): Docs.PageConfig => {
  const match = /<script id="docs-config" type="application\/json">([^<]*)<\/script>/.exec(html)
  assert.isNotNull(match, "the page's configuration script")
  return JSON.parse(match![1]!)
}

layer(app, { excludeTestServices: true, timeout: "120 seconds" })("the served OpenAPI document and docs page", (it) => {
  it.effect("declares the bearer scheme, required by every operation but /healthz; version and servers", () =>
    Effect.gen(function* () {
      const served = yield* get("/openapi.json", withToken)
      assert.strictEqual(served.status, 200)
      const doc = JSON.parse(served.body)
      assert.deepStrictEqual(doc.components.securitySchemes.bearer.type, "http")
      assert.deepStrictEqual(doc.components.securitySchemes.bearer.scheme, "bearer")
      const operations = Object.entries<Record<string, any>>(doc.paths).flatMap(([p, item]) =>
        Object.entries<any>(item).map(([method, operation]) => ({ path: p, method, operation }))
      )
      assert.sameMembers(
        operations.map((o) => `${o.method} ${o.path}`),
        ["get /instances", "get /instances/{id}/stats", "get /metrics", "get /healthz"]
      )
      for (const { path: p, operation } of operations) {
        if (p === "/healthz") {
          assert.deepStrictEqual(operation.security, [], p)
          assert.notProperty(operation.responses, "401", p)
        } else {
          assert.deepStrictEqual(operation.security, [{ bearer: [] }], p)
          assert.property(operation.responses, "401", p)
        }
      }
      const pkg = JSON.parse(fs.readFileSync(path.join(PACKAGE, "package.json"), "utf8"))
      assert.strictEqual(doc.info.version, BuildInfo.version)
      assert.strictEqual(doc.info.version, pkg.version)
      assert.deepStrictEqual(doc.servers, [{ url: "/", description: "this agent" }])
    })
  )

  it.scoped("`redocly lint` (recommended rules, warnings as errors, none off) passes on the served document", () =>
    Effect.gen(function* () {
      const served = yield* get("/openapi.json", withToken)
      const dir = yield* tempDir("openapi-lint-")
      const file = path.join(dir, "openapi.json")
      fs.writeFileSync(file, served.body)
      const config = path.join(PACKAGE, "redocly.yaml")
      assert.include(fs.readFileSync(config, "utf8"), "recommended-strict")
      assert.notMatch(fs.readFileSync(config, "utf8"), /^\s*rules:/m, "no rule is turned off")
      const result = yield* Effect.promise(
        () =>
          new Promise<{ code: number | null; output: string }>((resolve) => {
            execFile(
              REDOCLY,
              ["lint", file, `--config=${config}`, "--format=stylish"],
              {
                cwd: dir,
                timeout: 90_000,
                // No telemetry and no update check: nothing leaves the machine.
                env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" }
              },
              (error, stdout, stderr) =>
                resolve({ code: error === null ? 0 : (error.code as number), output: `${stdout}${stderr}` })
            )
          })
      )
      assert.strictEqual(result.code, 0, result.output)
      assert.include(result.output, "Your API description is valid", result.output)
      // What follows "validating" is the report (before it, Redocly may print a notice about Node's version).
      const report = result.output.slice(result.output.indexOf("validating"))
      assert.notMatch(report, /\b(error|warning)s?\b/i, result.output)
    })
  )

  it.effect("/docs without the token: HTML with no API description and Scalar's upload buttons off", () =>
    Effect.gen(function* () {
      const docs = yield* get("/docs")
      assert.strictEqual(docs.status, 200, docs.body.slice(0, 300))
      assert.match(docs.headers["content-type"] ?? "", /^text\/html/)
      assert.match(docs.body, /^<!doctype html>/i)
      // Nothing of the document (paths, version) is in the page.
      for (const absent of ["/instances/{id}/stats", "InstanceStats", "Current resource use", "Host-side resource"])
        assert.notInclude(docs.body, absent)
      assert.include(docs.body, '<form id="token-form" hidden>')
      assert.include(docs.body, 'type="password"')
      // Scalar's script is inline (no CDN) and no element makes it mount by itself on the (absent) document.
      assert.include(docs.body, "createApiReference")
      assert.notMatch(docs.body, /<script[^>]+src=/)
      const markup = docs.body.replace(/<script>[\s\S]*?<\/script>/g, "<script></script>")
      assert.notInclude(markup, "api-reference")
      const config = pageConfig(docs.body)
      assert.strictEqual(config.openapi, "/openapi.json")
      assert.strictEqual(config.securityScheme, "bearer")
      assert.deepInclude(config.scalar, {
        hideClientButton: true,
        showToolbar: "never",
        telemetry: false,
        withDefaultFonts: false,
        persistAuth: false
      })
      assert.notProperty(config.scalar, "proxyUrl")
    })
  )

  it.effect("/docs: its CSP allows this server only and exactly the page's two inline scripts (and WebAssembly)", () =>
    Effect.gen(function* () {
      const docs = yield* get("/docs")
      const csp = String(docs.headers["content-security-policy"] ?? "")
      const directives = new Map(
        csp.split(";").map((d) => {
          const [name = "", ...values] = d.trim().split(/\s+/)
          return [name, values] as const
        })
      )
      assert.deepStrictEqual(directives.get("default-src"), ["'none'"])
      assert.deepStrictEqual(directives.get("connect-src"), ["'self'"])
      assert.deepStrictEqual(directives.get("form-action"), ["'none'"])
      const scripts = [...docs.body.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!)
      assert.lengthOf(scripts, 2)
      const { createHash } = yield* Effect.promise(() => import("node:crypto"))
      // The two scripts by their hashes, and WebAssembly (Scalar compiles a module); no eval, no other inline script.
      assert.sameMembers(directives.get("script-src") ?? [], [
        ...scripts.map((s) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`),
        "'wasm-unsafe-eval'"
      ])
      for (const values of directives.values()) for (const value of values) assert.notMatch(value, /https?:/)
    })
  )

  it.effect("the page's fetch of the document: 401 without the token (it asks), 200 with the token typed", () =>
    Effect.gen(function* () {
      const config = pageConfig((yield* get("/docs")).body)
      const without = yield* get(config.openapi)
      assert.strictEqual(without.status, 401)
      assert.strictEqual(JSON.parse(without.body).code, "unauthorized")
      const wrong = yield* get(config.openapi, { authorization: "Bearer nope" })
      assert.strictEqual(wrong.status, 401)
      const typed = yield* get(config.openapi, withToken)
      assert.strictEqual(typed.status, 200)
      assert.property(JSON.parse(typed.body).components.securitySchemes, config.securityScheme)
    })
  )
})
