/**
 * One bounded wait for every test: poll a probe on a fixed schedule until it gives a value, fail after a
 * timeout with what was last seen. No wall-clock loops in the tests themselves.
 */
import { Clock, Data, Duration, Effect, Schedule } from "effect"

/** Not there yet: the probe gave nothing, or threw (the message is kept for the timeout's error). */
class Pending extends Data.TaggedError("Pending")<{ readonly last: string }> {}

export interface WaitOptions {
  readonly timeout: Duration.DurationInput
  /** Between two probes; default 200 ms. */
  readonly interval?: Duration.DurationInput
  /** Why waiting is pointless now (the process under test exited), or undefined: ends the wait at once. */
  readonly gone?: () => string | undefined
  /** Appended to the timeout's message (a server's recent output). */
  readonly details?: () => string
}

/**
 * Polls `probe` every `interval` until it gives a value other than undefined; dies after `timeout` (or as
 * soon as `gone` says so) with `what`, the last thing the probe saw and `details`.
 */
export const waitFor = <A>(
  what: string,
  probe: () => Promise<A | undefined> | A | undefined,
  options: WaitOptions
): Effect.Effect<A> => {
  let last = "nothing yet"
  const details = () => (options.details === undefined ? "" : `\n${options.details()}`)
  const attempt = Effect.suspend(() => {
    const gone = options.gone?.()
    if (gone !== undefined) return Effect.dieMessage(`${gone} while waiting for ${what}${details()}`)
    return Effect.tryPromise({
      try: async () => probe(),
      catch: (error) => new Pending({ last: String(error) })
    }).pipe(
      Effect.filterOrFail(
        (value): value is A => value !== undefined,
        () => new Pending({ last: "no value" })
      ),
      Effect.tapError((pending) => Effect.sync(() => (last = pending.last)))
    )
  })
  return attempt.pipe(
    Effect.retry(Schedule.spaced(options.interval ?? "200 millis")),
    Effect.timeoutFail({
      duration: options.timeout,
      onTimeout: () => `timed out after ${Duration.format(options.timeout)} waiting for ${what} (last: ${last})`
    }),
    Effect.catchAll((error) => Effect.dieMessage(`${typeof error === "string" ? error : error.last}${details()}`)),
    // Real processes run on the wall clock, also inside a test that has a TestClock.
    Effect.withClock(Clock.make())
  )
}

/** `waitFor` for promise-based tests: rejects with the same message. */
export const waitForPromise = <A>(
  what: string,
  probe: () => Promise<A | undefined> | A | undefined,
  options: WaitOptions
): Promise<A> => Effect.runPromise(waitFor(what, probe, options))

/** A pause (a test waiting out a cache's max age, never a readiness check). */
export const sleepMs = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
