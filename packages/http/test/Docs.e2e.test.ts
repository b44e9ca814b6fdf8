/**
 * The docs UI (`/docs`) in a real headless browser (Debian's chromium driven by playwright-core) against the
 * real server (the bundle) with a token: the page asks for the token instead of showing the 401 JSON, says
 * so when a wrong one is typed, and with the right one renders the API (Scalar on /openapi.json fetched with
 * it) with the token in the bearer scheme. Every request the page makes stays on the agent's origin, the
 * Content-Security-Policy blocks nothing the page needs, and Scalar's buttons that send the document to
 * scalar.com are not there. Without a token the page renders the API at once.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { skipReason, tempDir } from "@vm-metrics/testing"
import { Effect } from "effect"
import { type Browser, chromium, type Page } from "playwright-core"
import { serveCli } from "./rig.js"

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium"
const skipBrowser = skipReason(
  fs.existsSync(CHROMIUM) ? undefined : `${CHROMIUM} not found (apt-get install chromium)`,
  "docs UI browser test"
)

const TOKEN = "docs-e2e-token-9d1e"
/** A summary of the API document: shown once Scalar has rendered it. */
const RENDERED = "Current resource use of one instance"

const launch = Effect.acquireRelease(
  Effect.promise(() =>
    // As root, Chromium runs only without its sandbox; CI runs as root.
    chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], headless: true, timeout: 60_000 })
  ),
  (browser: Browser) => Effect.promise(() => browser.close())
)

const agent = (withToken: boolean) =>
  Effect.gen(function* () {
    const dir = yield* tempDir("docs-e2e-")
    const instancesFile = path.join(dir, "instances.json")
    fs.writeFileSync(instancesFile, "[]")
    const tokenFile = path.join(dir, "token")
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    return yield* serveCli({
      name: "agent (docs UI)",
      args: [
        "--source",
        "file",
        "--instances-file",
        instancesFile,
        ...(withToken ? ["--auth-token-file", tokenFile] : [])
      ]
    })
  })

/** A page that records every request it makes and every console error. */
const watchedPage = (browser: Browser) =>
  Effect.gen(function* () {
    const page = yield* Effect.promise(() => browser.newPage())
    const requested: Array<string> = []
    const consoleErrors: Array<string> = []
    page.on("request", (request) => requested.push(request.url()))
    page.on("console", (message) => {
      if (message.type() === "error") consoleErrors.push(message.text())
    })
    return { page, requested, consoleErrors }
  })

const visible = (page: Page, text: string) =>
  Effect.promise(() => page.getByText(text).first().waitFor({ state: "visible", timeout: 60_000 }))

const assertStayedHome = (base: string, requested: ReadonlyArray<string>, consoleErrors: ReadonlyArray<string>) => {
  const origin = new URL(base).origin
  assert.isAbove(requested.length, 1)
  for (const url of requested) {
    if (url.startsWith("data:") || url.startsWith("blob:")) continue
    assert.strictEqual(new URL(url).origin, origin, url)
  }
  assert.deepStrictEqual(
    consoleErrors.filter((e) => /Content.Security.Policy|Refused/i.test(e)),
    []
  )
}

describe.skipIf(skipBrowser)("the docs UI in headless Chromium", () => {
  it.scoped(
    "with a token: asks for it (not the 401 JSON), refuses a wrong one, renders the API with the right one",
    () =>
      Effect.gen(function* () {
        const server = yield* agent(true)
        const browser = yield* launch
        const { page, requested, consoleErrors } = yield* watchedPage(browser)
        const response = yield* Effect.promise(() => page.goto(`${server.base}/docs`, { timeout: 30_000 }))
        assert.strictEqual(response?.status(), 200)
        const form = page.locator("#token-form")
        yield* Effect.promise(() => form.waitFor({ state: "visible", timeout: 60_000 }))
        assert.notInclude(yield* Effect.promise(() => page.content()), "a valid bearer token is required")

        yield* Effect.promise(() => page.fill("#token-form input[name=token]", "not-the-token"))
        yield* Effect.promise(() => page.click("#token-form button"))
        yield* visible(page, "The server refused this token.")
        assert.isTrue(yield* Effect.promise(() => form.isVisible()))

        yield* Effect.promise(() => page.fill("#token-form input[name=token]", TOKEN))
        yield* Effect.promise(() => page.click("#token-form button"))
        yield* visible(page, RENDERED)
        assert.isFalse(yield* Effect.promise(() => form.isVisible()))
        // The token the user typed is in Scalar's bearer input, for "Test Request".
        const prefilled = yield* Effect.promise(() =>
          page.waitForFunction(
            // Run in the page (a string: this package's types have no DOM).
            `[...document.querySelectorAll("input")].some((i) => i.closest("#token-form") === null && i.value === ${JSON.stringify(TOKEN)})`,
            undefined,
            { timeout: 30_000 }
          )
        )
        assert.isTrue(yield* Effect.promise(() => prefilled.jsonValue()))
        // No button or link that sends the document to scalar.com (Scalar's client, its share/SDK toolbar).
        for (const label of ["Open API Client", "Share", "Generate SDKs", "Deploy"]) {
          const shown = page.locator("a, button").filter({ hasText: new RegExp(`^\\s*${label}\\s*$`) })
          assert.strictEqual(yield* Effect.promise(() => shown.count()), 0, label)
        }
        assert.strictEqual(yield* Effect.promise(() => page.locator('a[href*="client.scalar.com"]').count()), 0)
        assertStayedHome(server.base, requested, consoleErrors)
      }),
    180_000
  )

  it.scoped(
    "without a token: renders the API at once, no form",
    () =>
      Effect.gen(function* () {
        const server = yield* agent(false)
        const browser = yield* launch
        const { page, requested, consoleErrors } = yield* watchedPage(browser)
        yield* Effect.promise(() => page.goto(`${server.base}/docs`, { timeout: 30_000 }))
        yield* visible(page, RENDERED)
        assert.isFalse(yield* Effect.promise(() => page.locator("#token-form").isVisible()))
        assertStayedHome(server.base, requested, consoleErrors)
      }),
    180_000
  )
})
