/**
 * `top --url`'s refresh errors say what is at the URL: no server (the socket's error), a server that is
 * not vm-metrics (its status), or an answer that is not the API's body. Real sockets, in-process.
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
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
