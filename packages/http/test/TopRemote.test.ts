/**
 * `top --url`'s refresh errors say what is at the URL: no server (the socket's error), a server that is
 * not vm-metrics (its status), or an answer that is not the API's body. Real sockets, in-process.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { skipReason, which } from "@vm-metrics/testing"
import { Effect, Either, Option } from "effect"
import * as Top from "../src/Top.js"

/** A server answering every request with `status` and `body`, for the test's scope. */
const serving = (status: number, body: string) =>
  Effect.acquireRelease(
    Effect.async<http.Server>((resume) => {
      const server = http.createServer((_, response) => {
        response.writeHead(status, { "content-type": "application/json" })
        response.end(body)
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  ).pipe(Effect.map((server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`))

/** A port nothing listens on (it was free a moment ago). */
const closedPort = Effect.scoped(Effect.map(serving(200, ""), (url) => url))

const refreshError = (url: string) =>
  Effect.flatMap(Top.remote(url, Option.none()), (source) => Effect.either(source.sample)).pipe(
    Effect.map((result) => (Either.isLeft(result) ? result.left.message : "no error"))
  )

describe("top --url: a refresh that fails says what is at the URL", () => {
  it.live("nothing listening: no answer, with the socket's error code", () =>
    Effect.gen(function* () {
      const url = yield* closedPort
      assert.strictEqual(yield* refreshError(url), `${url}: no answer (ECONNREFUSED)`)
    })
  )

  it.scoped("another server's 404: its status, and that it is not the API", () =>
    Effect.gen(function* () {
      const url = yield* serving(404, "<html>not here</html>")
      assert.strictEqual(
        yield* refreshError(url),
        `${url}: HTTP 404, not an answer of the vm-metrics API (is this its URL?)`
      )
    })
  )

  it.scoped("a 200 that is not the API's /instances body", () =>
    Effect.gen(function* () {
      const url = yield* serving(200, JSON.stringify({ instances: 5 }))
      assert.strictEqual(
        yield* refreshError(url),
        `${url}: the answer is not the vm-metrics API's /instances body (is this its URL?)`
      )
    })
  )
})

const openssl = which("openssl")
const noOpenssl = skipReason(
  openssl === undefined ? "openssl not found on PATH (apt-get install openssl)" : undefined,
  "top over HTTPS test"
)

describe("top --url over HTTPS", () => {
  it.scoped.skipIf(noOpenssl !== undefined)("a certificate it cannot verify: says so, and how to trust its CA", () =>
    Effect.gen(function* () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-top-tls-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
      const [cert, key] = [path.join(dir, "c.pem"), path.join(dir, "k.pem")]
      const made = spawnSync(
        openssl!,
        [
          ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"],
          ...["-subj", "/CN=top-tls", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
        ],
        { encoding: "utf8", timeout: 30_000 }
      )
      assert.strictEqual(made.status, 0, made.stderr)
      const server = yield* Effect.acquireRelease(
        Effect.async<https.Server>((resume) => {
          const created = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (_, res) =>
            res.end("{}")
          )
          created.listen(0, "127.0.0.1", () => resume(Effect.succeed(created)))
        }),
        (created) => Effect.async<void>((resume) => void created.close(() => resume(Effect.void)))
      )
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
      assert.strictEqual(
        yield* refreshError(url),
        `${url}: no answer (self-signed certificate: trust the server's CA with NODE_EXTRA_CA_CERTS=<its PEM file>)`
      )
    })
  )
})
