import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import { waitFor } from "../src/Wait.js"

/** The message a failed wait dies with. */
const failure = <A>(exit: Exit.Exit<A>): string => {
  if (Exit.isSuccess(exit)) return assert.fail(`the wait succeeded with ${String(exit.value)}`)
  return Cause.pretty(exit.cause)
}

describe("waitFor", () => {
  it.effect("polls until the probe gives a value, also past probes that threw", () =>
    Effect.gen(function* () {
      let calls = 0
      const value = yield* waitFor(
        "the third call",
        () => {
          calls++
          if (calls === 1) throw new Error("not listening yet")
          return calls === 3 ? "ready" : undefined
        },
        { timeout: "10 seconds", interval: "1 millis" }
      )
      assert.strictEqual(value, "ready")
      assert.strictEqual(calls, 3)
    })
  )

  it.effect("dies after the timeout, saying what it waited for, what it last saw and the details", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        waitFor("a value that never comes", () => Promise.reject(new Error("connection refused")), {
          timeout: "50 millis",
          interval: "5 millis",
          details: () => "server output: nothing"
        })
      )
      const message = failure(exit)
      assert.include(message, "timed out after 50ms waiting for a value that never comes")
      assert.include(message, "last: Error: connection refused")
      assert.include(message, "server output: nothing")
    })
  )

  it.effect("ends at once when `gone` says waiting is pointless, without probing", () =>
    Effect.gen(function* () {
      let calls = 0
      const exit = yield* Effect.exit(
        waitFor("/healthz", () => ++calls, { timeout: "10 seconds", gone: () => "the server exited (1)" })
      )
      assert.include(failure(exit), "the server exited (1) while waiting for /healthz")
      assert.strictEqual(calls, 0)
    })
  )
})
