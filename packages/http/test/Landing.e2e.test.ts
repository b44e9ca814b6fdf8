/**
 * The landing page in a real headless browser (Debian's chromium driven by playwright-core) against the
 * real server (the bundle, `vm-metrics serve --source file` over real processes, with a token): the
 * page renders, every request it makes stays on the agent's origin, its numbers are those of
 * `/instances` of the same server, its /metrics link leads to the metrics, and without the token the
 * browser gets the 401. The collection loop runs once an hour, so the page and /instances share a
 * snapshot.
 */
import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { skipReason } from "@vm-metrics/testing"
import { Effect } from "effect"
import { type Browser, chromium } from "playwright-core"
import * as BuildInfo from "../src/BuildInfo.js"
import { serveFileWithToken } from "./rig.js"

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium"
const skipBrowser = skipReason(
  fs.existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not found (apt-get install chromium)`,
  "landing page browser test"
)

const TOKEN = "landing-e2e-token"

const launch = Effect.acquireRelease(
  Effect.promise(() =>
    // As root, Chromium runs only without its sandbox (CI runs as root); a container's /dev/shm may be too
    // small for its shared memory, so it uses /tmp instead.
    chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
      headless: true,
      timeout: 60_000
    })
  ),
  (browser: Browser) => Effect.promise(() => browser.close())
)

const agent = serveFileWithToken({
  name: "agent (landing page)",
  token: TOKEN,
  instances: ([web, db]) => [
    { id: "landing-vm-1", name: "web", pid: web, vcpus: 2, memory: "1G" },
    { id: "landing-vm-2", name: "db", pid: db, vcpus: 1, memory: "512M" },
    // A pidfile that does not exist: listed, without a process.
    { id: "landing-vm-3", name: "stopped", pidfile: "missing.pid", vcpus: 1, memory: "512M" }
  ]
})

describe.skipIf(skipBrowser)("the landing page in headless Chromium", () => {
  it.scoped(
    "renders; its numbers match /instances; it loads nothing from elsewhere; its /metrics link works",
    () =>
      Effect.gen(function* () {
        const server = yield* agent
        const browser = yield* launch
        const context = yield* Effect.promise(() =>
          browser.newContext({ extraHTTPHeaders: { authorization: `Bearer ${TOKEN}` } })
        )
        const page = yield* Effect.promise(() => context.newPage())
        const requested: Array<string> = []
        const consoleErrors: Array<string> = []
        page.on("request", (request) => requested.push(request.url()))
        page.on("console", (message) => {
          if (message.type() === "error") consoleErrors.push(message.text())
        })
        const response = yield* Effect.promise(() => page.goto(`${server.base}/`, { timeout: 30_000 }))
        assert.strictEqual(response?.status(), 200)
        assert.strictEqual(response?.headers()["content-type"], "text/html; charset=utf-8")
        // The rendered text (after layout), not the DOM's: what a person sees is what is checked.
        // biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText is the rendered text on purpose
        const text = (selector: string) => Effect.promise(() => page.locator(selector).innerText({ timeout: 10_000 }))
        assert.strictEqual(yield* Effect.promise(() => page.title()), `vm-metrics ${BuildInfo.version}`)
        assert.strictEqual(yield* text("h1"), "vm-metrics")

        const list = yield* Effect.promise(async () => {
          const res = await fetch(`${server.base}/instances`, { headers: { authorization: `Bearer ${TOKEN}` } })
          return (await res.json()) as { instances: Array<{ state: string }>; sampled_at: string }
        })
        assert.strictEqual(list.instances.length, 3)
        assert.strictEqual(Number(yield* text("#instances")), list.instances.length)
        const running = list.instances.filter((vm) => vm.state === "running").length
        assert.strictEqual(running, 2)
        assert.strictEqual(Number(yield* text("#running")), running)
        assert.strictEqual(yield* text("#sampled-at"), list.sampled_at)
        const age = Number(yield* text("#age-seconds"))
        assert.isAtLeast(age, 0)
        assert.strictEqual(yield* text("#source"), "file")
        assert.strictEqual(yield* text("#version"), BuildInfo.version)
        assert.match(yield* text("#revision"), /^[0-9a-f]{7,40}(-dirty)?$/)
        assert.strictEqual(yield* text("#node-version"), process.versions.node)

        const origin = new URL(server.base).origin
        assert.isAbove(requested.length, 0)
        for (const url of requested) assert.strictEqual(new URL(url).origin, origin, url)
        assert.deepStrictEqual(
          consoleErrors.filter((e) => /Content.Security.Policy|Refused/i.test(e)),
          []
        )

        yield* Effect.promise(() =>
          Promise.all([page.waitForURL(`${server.base}/metrics`), page.click('a[href="/metrics"]')])
        )
        assert.include(yield* Effect.promise(() => page.content()), "process_cpu_seconds_total")
      }),
    120_000
  )

  it.scoped(
    "without the token the browser gets the 401, not the page",
    () =>
      Effect.gen(function* () {
        const server = yield* agent
        const browser = yield* launch
        const page = yield* Effect.promise(() => browser.newPage())
        const response = yield* Effect.promise(() => page.goto(`${server.base}/`, { timeout: 30_000 }))
        assert.strictEqual(response?.status(), 401)
        assert.include(yield* Effect.promise(() => page.content()), "unauthorized")
        assert.strictEqual(yield* Effect.promise(() => page.locator("#instances").count()), 0)
      }),
    120_000
  )
})
