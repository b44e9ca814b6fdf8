/**
 * The one hot request answered before the platform's request pipeline: `GET /instances/{id}/stats`
 * of a VM in the latest background snapshot, with the token when one is set. Everything else (another
 * method, a query, an escape, a trailing slash, other letter case, a missing or wrong token, an unknown or
 * ambiguous id, no snapshot yet, on-demand collection) goes the platform's way, so every refusal keeps
 * its one shape and code path (Guard, Api). The answer is the handler's own: the same lookup, the same
 * `statsJson`, the same headers (a test compares the two byte for byte).
 *
 * Why it deviates from effect-style (handlers in the HttpApi): the platform spends ~0.3 ms of CPU per
 * request (fiber, router, schema, middleware) against ~0.05 ms for a bare node:http answer; at 1,000
 * req/s that is a third of a core and, with clients that send in bursts, the p99 (measured with hey at
 * 1,000 VMs: p50 2.0 / p99 8.1 ms through the platform; a bare Node server 0.4 / 2.9 ms).
 *
 * @since 0.1.0
 */
import type * as http from "node:http"
import type { Snapshot } from "@vm-metrics/core/Collector"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { bearerOf, tokensMatch } from "./Guard.js"
import { lookup } from "./Lookup.js"
import type * as Rates from "./Rates.js"
import { Serving } from "./Serving.js"
import { statsJson } from "./StatsJson.js"

/** Answers a request and says so, or leaves it (false) to the platform. @category models */
export type Answer = (request: http.IncomingMessage, response: http.ServerResponse) => boolean

/** Where the listener asks first; unset, every request goes to the platform. @category tags */
export class FastPath extends Context.Tag("@vm-metrics/http/FastPath")<
  FastPath,
  { readonly set: (answer: Answer | undefined) => void }
>() {}

/** Whether `answer` answered; one that throws before writing leaves the request to the platform (never a crash). */
const answered = (answer: Answer, request: http.IncomingMessage, response: http.ServerResponse): boolean => {
  try {
    return answer(request, response)
  } catch {
    return response.headersSent
  }
}

/**
 * Makes `server` offer each request to the answer set (if any) before its later `request` listeners
 * (the platform's). The listeners already attached now (Connections' bookkeeping) see every request.
 * @category constructors
 */
export const install = (server: http.Server): Context.Tag.Service<FastPath> => {
  let current: Answer | undefined
  const bookkeeping = server.listeners("request") as Array<(...args: Array<unknown>) => void>
  const emit = server.emit as (this: http.Server, event: string | symbol, ...args: Array<unknown>) => boolean
  server.emit = function (this: http.Server, event: string | symbol, ...args: Array<unknown>): boolean {
    // Until the platform listens too, Connections answers 503 "starting" itself: the platform's way.
    if (event !== "request" || current === undefined || server.listenerCount("request") <= bookkeeping.length) {
      return emit.call(this, event, ...args)
    }
    const [request, response] = args as [http.IncomingMessage, http.ServerResponse]
    for (const listener of bookkeeping) listener.call(this, request, response)
    if (answered(current, request, response)) return true
    for (const listener of server.listeners("request") as Array<(...args: Array<unknown>) => void>) {
      if (!bookkeeping.includes(listener)) listener.call(this, request, response)
    }
    return true
  } as typeof server.emit
  return {
    set: (answer) => {
      current = answer
    }
  }
}

/** The target the fast path takes: exactly this shape, an id of the characters no router or decoder touches. */
const STATS_TARGET = /^\/instances\/([A-Za-z0-9._~-]{1,256})\/stats$/

/** The stats answer over a snapshot getter and its history. @category constructors */
export const statsAnswer = (
  token: Option.Option<Redacted.Redacted<string>>,
  latest: () => Snapshot | undefined,
  history: Rates.History
): Answer => {
  // A VM's body changes with the snapshot only: encoded once per snapshot and VM, then reused.
  let bodiesOf: Snapshot | undefined
  let bodies = new Map<string, Buffer>()
  return (request, response) => {
    if (request.method !== "GET") return false
    const match = STATS_TARGET.exec(request.url ?? "")
    if (match === null) return false
    if (Option.isSome(token)) {
      const presented = bearerOf(request.headers.authorization)
      if (presented === undefined || !tokensMatch(presented, Redacted.value(token.value))) return false
    }
    const snapshot = latest()
    if (snapshot === undefined) return false
    const found = lookup(snapshot.stats, match[1])
    if (found._tag === "Left") return false
    if (snapshot !== bodiesOf) {
      bodiesOf = snapshot
      bodies = new Map()
    }
    const vm = found.right
    let body = bodies.get(vm.instanceId)
    if (body === undefined) {
      body = Buffer.from(statsJson(vm, history.previous(snapshot, vm.instanceId)), "utf8")
      bodies.set(vm.instanceId, body)
    }
    response.writeHead(200, { "content-type": "application/json", "content-length": body.length })
    response.end(body)
    return true
  }
}

/**
 * Sets the stats answer while the layer lives, when the server collects in the background (on demand, a
 * request may have to collect: the platform's way). @category layers
 */
export const layerStats = (token: Option.Option<Redacted.Redacted<string>>): Layer.Layer<never, never, FastPath> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const fast = yield* FastPath
      const serving = yield* Effect.serviceOption(Serving)
      // Only the background mode has a latest snapshot to read without I/O (Serving's `latest`).
      if (Option.isNone(serving) || serving.value.latest === undefined) return
      fast.set(statsAnswer(token, serving.value.latest, serving.value.history))
      yield* Effect.addFinalizer(() => Effect.sync(() => fast.set(undefined)))
    })
  )
