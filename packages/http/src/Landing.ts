/**
 * The landing page at `/`: what an operator opening the agent in a browser wants to know first (which
 * build runs, which source it lists, how many VMs, how old the data is) and links to the endpoints.
 * One small HTML document: no script, no external resource (a Content-Security-Policy forbids any), every
 * value escaped. With a token set it needs the token like `/instances` (the Guard; unlike the docs page,
 * which holds no data): it shows the inventory's size and the exact build (what an attacker would look up).
 *
 * Its numbers come from the snapshot `/instances` serves (Serving, else the collector's collectAll), so
 * the two agree.
 *
 * @since 0.1.0
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Collector, type Snapshot } from "@vm-metrics/core/Collector"
import { Clock, Effect, Option } from "effect"
import * as BuildInfo from "./BuildInfo.js"
import { Serving } from "./Serving.js"

/** @category constants */
export const CONTENT_TYPE = "text/html; charset=utf-8"

/** Nothing may load: the page's only style is inline. @category constants */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

/** What the page shows. @category models */
export interface Info {
  readonly version: string
  readonly revision: string
  readonly nodeVersion: string
  readonly source: string
  readonly instances: number
  readonly running: number
  readonly sampledAtMs: number
  readonly nowMs: number
}

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }

/** Text safe in an HTML element or a quoted attribute. @category utils */
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c)

/** The page's facts from a snapshot. @category constructors */
export const infoOf = (snapshot: Pick<Snapshot, "stats" | "sampledAtMs">, source: string, nowMs: number): Info => ({
  version: BuildInfo.version,
  revision: BuildInfo.revision,
  nodeVersion: BuildInfo.nodeVersion,
  source,
  instances: snapshot.stats.length,
  running: snapshot.stats.filter((vm) => vm.state === "running").length,
  sampledAtMs: snapshot.sampledAtMs,
  nowMs
})

const LINKS: ReadonlyArray<readonly [string, string]> = [
  ["/metrics", "Prometheus metrics"],
  ["/instances", "instances and their resource use (JSON)"],
  ["/docs", "API documentation"],
  ["/openapi.json", "OpenAPI document"],
  ["/healthz", "liveness"]
]

/** The page. Element ids name the values, for scripts and tests. @category rendering */
export const render = (info: Info): string => {
  const e = escapeHtml
  // Never negative: a clock stepped back must not show data from the future.
  const ageSeconds = (Math.max(0, info.nowMs - info.sampledAtMs) / 1000).toFixed(1)
  const sampledAt = new Date(info.sampledAtMs).toISOString()
  const links = LINKS.map(([href, what]) => `<li><a href="${e(href)}">${e(href)}</a> ${e(what)}</li>`).join("\n")
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vm-metrics ${e(info.version)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:48rem}dt{font-weight:bold}dd{margin:0 0 .5rem 0}</style>
</head>
<body>
<h1>vm-metrics</h1>
<p>Host-side resource use of virtual machines.</p>
<dl>
<dt>Version</dt><dd><span id="version">${e(info.version)}</span> (revision <span id="revision">${e(info.revision)}</span>, Node <span id="node-version">${e(info.nodeVersion)}</span>)</dd>
<dt>Source</dt><dd id="source">${e(info.source)}</dd>
<dt>VMs</dt><dd><span id="instances">${info.instances}</span> listed, <span id="running">${info.running}</span> running</dd>
<dt>Last collection</dt><dd><time id="sampled-at" datetime="${e(sampledAt)}">${e(sampledAt)}</time>, <span id="age-seconds">${ageSeconds}</span> s ago</dd>
</dl>
<h2>Endpoints</h2>
<ul>
${links}
</ul>
<p>With a token configured, this page and the API need <code>Authorization: Bearer &lt;token&gt;</code> (the docs page asks for it).</p>
</body>
</html>
`
}

/** The snapshot `/instances` serves: Serving's when provided, else the collector's. */
const currentSnapshot = Effect.gen(function* () {
  const serving = yield* Effect.serviceOption(Serving)
  return Option.isSome(serving) ? serving.value.snapshot : (yield* Collector).collectAll
})

/** `GET /` on the API's router; `source` names the instance source. @category layers */
export const layer = (source: string) =>
  HttpApiBuilder.Router.use((router) =>
    Effect.gen(function* () {
      const snapshot = yield* currentSnapshot
      yield* router.get(
        "/",
        Effect.gen(function* () {
          const current = yield* snapshot
          const now = yield* Clock.currentTimeMillis
          return HttpServerResponse.text(render(infoOf(current, source, now)), {
            contentType: CONTENT_TYPE,
            headers: {
              "content-security-policy": CONTENT_SECURITY_POLICY,
              "x-content-type-options": "nosniff",
              "cache-control": "no-store"
            }
          })
        })
      )
    })
  )
