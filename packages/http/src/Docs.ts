/**
 * The docs UI at `/docs`: Scalar's API reference (the script HttpApiScalar inlines, no CDN), built on the
 * first request rather than when the server starts. Why: the page's script is 3.4 MB of JavaScript; loaded at
 * start it costs every agent ~16 MB of memory and part of its start-up, while `/docs` is opened rarely.
 *
 * The page holds no data and no API description: it is served without the token (Server lists it in the
 * Guard's open paths). Its own small script fetches `openapi.json` beside it; when the server answers 401 it
 * asks for the token, fetches the document with it, and hands both to Scalar (the token pre-filled in the
 * `bearer` scheme, so "Test Request" sends it). A browser never sees the raw 401 JSON.
 *
 * Scalar's buttons that send the document elsewhere are off (`scalarConfig`), and the page's
 * Content-Security-Policy lets it connect to this server only, so no button of a later Scalar can either.
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Layer } from "effect"
import { SECURITY_SCHEME } from "./Api.js"

/**
 * Scalar's configuration (@scalar/api-reference 1.39, the version HttpApiScalar inlines). @category constants
 */
export const scalarConfig = {
  _integration: "html",
  // "Open API Client" opens client.scalar.com with this document's URL.
  hideClientButton: true,
  // The toolbar (shown on localhost by default) uploads the document to scalar.com to share it or make SDKs.
  showToolbar: "never",
  // Scalar's own analytics.
  telemetry: false,
  // Fonts from fonts.scalar.com: the browser's own fonts instead.
  withDefaultFonts: false,
  // The token stays in the page's memory, not in the browser's localStorage.
  persistAuth: false
} as const

/** What the page's script reads: where the document is, the scheme to pre-fill, Scalar's configuration. */
export interface PageConfig {
  readonly openapi: string
  readonly securityScheme: string
  readonly scalar: typeof scalarConfig
}

/**
 * The page's own script: fetch the document (with the token once one is typed), ask for the token on a 401,
 * then mount Scalar on the document with the token in its bearer scheme.
 */
const LOADER = `(() => {
  const config = JSON.parse(document.getElementById("docs-config").textContent)
  const form = document.getElementById("token-form")
  const status = document.getElementById("token-status")
  const show = (message) => { form.hidden = false; status.textContent = message; form.elements.token.focus() }
  const load = async (token) => {
    let response
    try {
      response = await fetch(config.openapi, { headers: token ? { authorization: "Bearer " + token } : {} })
    } catch (error) {
      return show("Cannot reach the server: " + error.message)
    }
    if (response.status === 401) return show(token ? "The server refused this token." : "")
    if (!response.ok) return show("GET " + config.openapi + ": HTTP " + response.status)
    const content = await response.json()
    form.hidden = true
    const scheme = token ? { [config.securityScheme]: { token } } : {}
    window.Scalar.createApiReference("#docs-root", {
      ...config.scalar,
      content,
      authentication: { preferredSecurityScheme: config.securityScheme, securitySchemes: scheme }
    })
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault()
    void load(form.elements.token.value.trim())
  })
  void load("")
})()`

const FORM = `<form id="token-form" hidden>
      <h1>vm-metrics API</h1>
      <p>This server needs its bearer token (the one of <code>--auth-token-file</code>) to show its API.</p>
      <label>Token <input name="token" type="password" autocomplete="off" required /></label>
      <button type="submit">Show the API</button>
      <p id="token-status" role="alert"></p>
    </form>`

const STYLE = `#token-form { max-width: 32rem; margin: 4rem auto; font-family: system-ui, sans-serif; }
      #token-form input { width: 100%; margin: .5rem 0; padding: .4rem; }`

/** `<` escaped, so that the JSON cannot end the script element it sits in. */
const scriptJson = (value: unknown) => JSON.stringify(value).replaceAll("<", "\\u003c")

const sha256 = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`

/** The page and its Content-Security-Policy (the inline scripts allowed by their hashes). @category constructors */
export const page = (scalarScript: string, config: PageConfig): { readonly html: string; readonly csp: string } => {
  const csp = [
    "default-src 'none'",
    // Scalar compiles a WebAssembly module (not eval of text).
    `script-src ${sha256(scalarScript)} ${sha256(LOADER)} 'wasm-unsafe-eval'`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'"
  ].join("; ")
  const html = `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>vm-metrics API</title>
    <link rel="icon" href="data:," />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <style>${STYLE}</style>
  </head>
  <body>
    ${FORM}
    <div id="docs-root"></div>
    <script id="docs-config" type="application/json">${scriptJson(config)}</script>
    <script>${scalarScript}</script>
    <script>${LOADER}</script>
  </body>
</html>`
  return { html, csp }
}

/**
 * Scalar's script, taken from HttpApiScalar's page (the last inline script; the platform does not export
 * it on its own). That page is rendered once, for an empty API.
 */
const scalarScript = Effect.gen(function* () {
  const HttpApiScalar = yield* Effect.promise(() => import("@effect/platform/HttpApiScalar"))
  const scalar = HttpApiScalar.layer({ path: "/" }).pipe(
    Layer.provideMerge(HttpApiBuilder.Router.Live),
    Layer.provide(HttpApiBuilder.api(HttpApi.make("docs")))
  )
  const router = yield* Effect.scoped(
    Effect.flatMap(Layer.build(scalar), (context) => Effect.provide(HttpApiBuilder.Router.router, context))
  )
  const response = yield* router.pipe(
    Effect.provideService(HttpServerRequest.HttpServerRequest, HttpServerRequest.fromWeb(new Request("http://docs/")))
  )
  const html = response.body._tag === "Uint8Array" ? new TextDecoder().decode(response.body.body) : ""
  const start = html.lastIndexOf("<script>")
  const end = html.lastIndexOf("</script>")
  if (start < 0 || end < start) return yield* Effect.dieMessage("HttpApiScalar's page has no inline script")
  return html.slice(start + "<script>".length, end)
})

/** @category layers */
export const layer = (path: `/${string}` = "/docs", openApiPath = "/openapi.json") =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const built = yield* Effect.cached(
        Effect.map(scalarScript, (script) =>
          page(script, { openapi: openApiPath, securityScheme: SECURITY_SCHEME, scalar: scalarConfig })
        )
      )
      yield* router.get(
        path,
        Effect.map(built, ({ html, csp }) =>
          HttpServerResponse.html(html).pipe(
            HttpServerResponse.setHeaders({ "content-security-policy": csp, "cache-control": "no-store" })
          )
        )
      )
    })
  )
