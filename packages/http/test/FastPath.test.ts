/**
 * FastPath.install on a real node:http server: requests go to the answer set before the listeners
 * attached after install (the platform's), the listeners attached before it (Connections' bookkeeping)
 * see every request once, a request the answer leaves goes to the later listeners once, and nothing is
 * offered to the answer while only the bookkeeping listens (Connections answers "starting" then).
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { afterEach, assert, describe, it } from "@effect/vitest"
import * as FastPath from "../src/FastPath.js"

const servers: Array<http.Server> = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
})

const listening = async (server: http.Server) => {
  servers.push(server)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

describe("FastPath.install", () => {
  it("offers each request to the answer first; bookkeeping sees all, the platform only what is left", async () => {
    const server = http.createServer()
    const seen: Array<string> = []
    // Like Connections': it sees every request, and answers "starting" while nothing else listens.
    server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
      seen.push(`bookkeeping ${request.url}`)
      if (server.listenerCount("request") === 1) response.end("starting")
    })
    const fast = FastPath.install(server)
    const base = await listening(server)
    let asked = 0
    fast.set((request, response) => {
      asked++
      if (request.url !== "/fast") return false
      response.end("fast")
      return true
    })
    assert.strictEqual(await (await fetch(`${base}/fast`)).text(), "starting")
    assert.strictEqual(asked, 0)
    server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
      seen.push(`platform ${request.url}`)
      response.end("platform")
    })
    assert.strictEqual(await (await fetch(`${base}/fast`)).text(), "fast")
    assert.strictEqual(await (await fetch(`${base}/other`)).text(), "platform")
    fast.set(undefined)
    assert.strictEqual(await (await fetch(`${base}/fast`)).text(), "platform")
    assert.strictEqual(asked, 2)
    assert.deepStrictEqual(seen, [
      "bookkeeping /fast",
      "bookkeeping /fast",
      "bookkeeping /other",
      "platform /other",
      "bookkeeping /fast",
      "platform /fast"
    ])
  })

  it("an answer that throws before writing leaves the request to the platform, and the server lives on", async () => {
    const server = http.createServer()
    server.on("request", () => {})
    const fast = FastPath.install(server)
    server.on("request", (_: http.IncomingMessage, response: http.ServerResponse) => response.end("platform"))
    const base = await listening(server)
    fast.set(() => {
      throw new Error("a bug in the answer")
    })
    assert.strictEqual(await (await fetch(`${base}/a`)).text(), "platform")
    assert.strictEqual(await (await fetch(`${base}/b`)).text(), "platform")
  })
})
