import { describe, expect, it } from "@effect/vitest"
import { Console, Effect } from "effect"
import * as ParseErrors from "../src/ParseErrors.js"

/** `inner`, recording what its effectful and its unsafe `error` wrote instead of writing it. */
const recording = (inner: Console.Console) => {
  const written: Array<string> = []
  const unsafeWritten: Array<string> = []
  const console: Console.Console = {
    ...inner,
    error: (...args) => Effect.sync(() => void written.push(args.join(" "))),
    unsafe: { ...inner.unsafe, error: (...args) => void unsafeWritten.push(args.join(" ")) }
  }
  return { console, written, unsafeWritten }
}

describe("ParseErrors", () => {
  it.effect("holds @effect/cli's lines, passes the binary's own and the logs, and gives one line", () =>
    Effect.gen(function* () {
      const target = recording(yield* Console.consoleWith(Effect.succeed))
      const errors = ParseErrors.make()
      yield* ParseErrors.hold(
        errors,
        Effect.gen(function* () {
          yield* Console.error("\u001b[1mMissing argument <id>\u001b[0m\n")
          yield* Console.error("vm-metrics: a note of ours")
          yield* Console.consoleWith((c) => Effect.sync(() => c.unsafe.error("level=INFO message=log")))
          yield* Console.error("second\n\nparagraph")
        })
      ).pipe(Effect.withConsole(target.console))
      expect(target.written).toEqual(["vm-metrics: a note of ours"])
      expect(target.unsafeWritten).toEqual(["level=INFO message=log"])
      expect(errors.message()).toBe("Missing argument <id> second paragraph")
    })
  )

  it("oneLine: nothing held is an empty line", () => {
    expect(ParseErrors.oneLine([])).toBe("")
    expect(ParseErrors.oneLine(["  a\n\n", "\u001b[31mb\u001b[0m  "])).toBe("a b")
  })
})
