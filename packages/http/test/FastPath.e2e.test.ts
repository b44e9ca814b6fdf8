import * as http from "node:http"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { serveFileWithToken } from "./rig.js"

const TOKEN = "fast-path-e2e-token"

interface Raw {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: Buffer
}

/** One request over a fresh connection; the raw status, headers and body bytes. */
const raw = (base: string, target: string, init: { method?: string; token?: string } = {}) =>
  Effect.promise(
    () =>
      new Promise<Raw>((resolve, reject) => {
        const url = new URL(base)
        const req = http.request(
          {
            host: url.hostname,
            port: url.port,
            path: target,
            method: init.method ?? "GET",
            agent: false,
            headers: init.token === undefined ? {} : { authorization: `Bearer ${init.token}` }
          },
          (res) => {
            const chunks: Array<Buffer> = []
            res.on("data", (chunk: Buffer) => chunks.push(chunk))
            res.on("end", () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) })
            )
          }
        )
        req.on("error", reject)
        req.end()
      })
  )

const withoutDate = (headers: Raw["headers"]) => {
  const { date: _, ...rest } = headers
  return rest
}

const agent = serveFileWithToken({
  name: "agent (fast path)",
  token: TOKEN,
  instances: ([web, db]) => [
    { id: "fast-vm-1", name: "web", pid: web, vcpus: 2, memory: "1G" },
    { id: "fast-vm-2", name: "db", pid: db, vcpus: 1, memory: "512M" }
  ]
})

describe("GET /instances/{id}/stats on the fast path", () => {
  it.scoped("answers exactly as the platform does, and leaves every other request to it", () =>
    Effect.gen(function* () {
      const server = yield* agent
      for (const id of ["fast-vm-1", "fast-vm-2", "web", "db"]) {
        const fast = yield* raw(server.base, `/instances/${id}/stats`, { token: TOKEN })
        const platform = yield* raw(server.base, `/instances/${id}/stats?via=platform`, { token: TOKEN })
        assert.strictEqual(fast.status, 200, `${id}: ${fast.body}`)
        assert.deepStrictEqual(withoutDate(fast.headers), withoutDate(platform.headers), id)
        assert.isTrue(fast.body.equals(platform.body), `${id}: ${fast.body} vs ${platform.body}`)
        const body = JSON.parse(fast.body.toString("utf8")) as { instance_id: string }
        assert.strictEqual(body.instance_id, id.startsWith("fast-") ? id : id === "web" ? "fast-vm-1" : "fast-vm-2")
      }
      // The platform's refusals, whatever the fast path is.
      const unauthorized = yield* raw(server.base, "/instances/fast-vm-1/stats", { token: "wrong" })
      assert.strictEqual(unauthorized.status, 401)
      assert.strictEqual(unauthorized.headers["www-authenticate"], 'Bearer realm="vm-metrics"')
      assert.strictEqual((yield* raw(server.base, "/instances/fast-vm-1/stats")).status, 401)
      const unknown = yield* raw(server.base, "/instances/nope/stats", { token: TOKEN })
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(JSON.parse(unknown.body.toString("utf8")), {
        code: "not_found",
        message: "resource not found"
      })
      const ambiguous = yield* raw(server.base, "/instances/fast-vm/stats", { token: TOKEN })
      assert.strictEqual(ambiguous.status, 409, ambiguous.body.toString("utf8"))
      const head = yield* raw(server.base, "/instances/fast-vm-1/stats", { method: "HEAD", token: TOKEN })
      assert.strictEqual(head.status, 200)
      assert.strictEqual(head.body.length, 0)
      const post = yield* raw(server.base, "/instances/fast-vm-1/stats", { method: "POST", token: TOKEN })
      assert.strictEqual(post.status, 405)
      const tooLong = yield* raw(server.base, `/instances/${"a".repeat(257)}/stats`, { token: TOKEN })
      assert.strictEqual(tooLong.status, 400)
    })
  )
})
