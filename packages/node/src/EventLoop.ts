/**
 * A turn of Node's event loop for work that runs synchronously in slices (the collector's chunks,
 * discovery's steps): between two slices, pending I/O callbacks (HTTP requests) and timers run.
 * `Effect.yieldNow()` is not such a turn: Effect's default scheduler resumes the fiber in a microtask,
 * before any I/O callback. `setImmediate` runs right after the loop's poll phase, so the turn costs no
 * wait when nothing is pending (a `setTimeout(0)` waits ≥ 1 ms).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"

/** Resumes after the event loop's next poll phase (setImmediate); interruption clears it. @category utils */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})
