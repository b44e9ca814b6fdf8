/**
 * What is wrong with a command line, in the binary's own words. @effect/cli prints a parse failure itself
 * (a missing argument, an unknown flag, a bad value or variable) before any handler runs: a paragraph and
 * a blank line, without the `vm-metrics:` every other error starts with. `holding` gives the CLI a console
 * that holds those lines back; `message` is then the one line bin.ts writes, as it writes any other error.
 *
 * Told apart by what they are not: our own lines through the effectful `Console.error` start with
 * `vm-metrics: ` and pass; logs go through the console's `unsafe` side, which is not held.
 *
 * @since 0.1.0
 */
import { Console, Effect } from "effect"
import * as Ansi from "./Ansi.js"

const OURS = "vm-metrics: "

/** @category models */
export interface ParseErrors {
  /** `inner` with its effectful `error` held back, unless the line is ours. */
  readonly holding: (inner: Console.Console) => Console.Console
  /** What was held, as one line (no escapes, whitespace runs as one space); "" when nothing was. */
  readonly message: () => string
}

/** One line of what @effect/cli printed: its paragraphs joined, its escapes and blank lines gone. @category utils */
export const oneLine = (printed: ReadonlyArray<string>): string =>
  Ansi.strip(printed.join(" ")).replace(/\s+/g, " ").trim()

/** @category constructors */
export const make = (): ParseErrors => {
  const held: Array<string> = []
  return {
    holding: (inner) => ({
      ...inner,
      error: (...args: ReadonlyArray<unknown>) => {
        const text = args.map(String).join(" ")
        return text.startsWith(OURS) ? inner.error(...args) : Effect.sync(() => void held.push(text))
      }
    }),
    message: () => oneLine(held)
  }
}

/** Runs `effect` with its parse failures held in `errors` (the console of the fiber, held). @category combinators */
export const hold = <A, E, R>(errors: ParseErrors, effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Console.consoleWith((inner) => Effect.withConsole(effect, errors.holding(inner)))
