/**
 * The stats fast path (FastPath.ts) against the platform's own answer, in the real server (the bundle,
 * a file source over real processes, a token, one collection an hour so every request reads the same
 * snapshot): `GET /instances/{id}/stats` answered on the fast path equals, status, headers (but Date)
 * and body byte for byte, what the platform answers for the same target with a query string (which the
 * fast path leaves to it and the API ignores). Requests the fast path must leave alone get the
 * platform's refusals.
 */
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { spawnChild, stopChild, tempDir } from "@vm-metrics/testing"
import { Effect } from "effect"
import { serveCli } from "./rig.js"

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

const agent = Effect.gen(function* () {
  const dir = yield* tempDir("fast-path-e2e-")
  const vms = yield* Effect.acquireRelease(
    Effect.sync(() => [spawnChild("exec sleep 300"), spawnChild("exec sleep 300")]),
    (children) => Effect.promise(() => Promise.all(children.map(stopChild)))
  )
  const instancesFile = path.join(dir, "instances.json")
  fs.writeFileSync(
    instancesFile,
    JSON.stringify([
      { id: "fast-vm-1", name: "web", pid: vms[0].pid, vcpus: 2, memory: "1G" },
      { id: "fast-vm-2", name: "db", pid: vms[1].pid, vcpus: 1, memory: "512M" }
    ])
  )
  const tokenFile = path.join(dir, "token")
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
  return yield* serveCli({
    name: "agent (fast path)",
    args: [
      ...["--source", "file", "--instances-file", instancesFile, "--auth-token-file", tokenFile],
      ...["--collection", "background", "--interval", "3600s"]
    ]
  })
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
