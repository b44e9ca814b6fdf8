/**
 * The help @effect/cli renders, less its stock sentences: under every option it says what a text or an
 * integer is ("A user-defined piece of text."), that the option "can be set from environment variables"
 * and that it "is optional", which our own line under each option already says better (its variable, its
 * default); they made `serve --help` 318 lines long. Only those exact lines go, each with the blank
 * line after it; escapes (colour on a terminal) are looked through. And the usage line shows the options
 * that may be given any number of times in brackets, as the optional ones are.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { strip } from "./Ansi.js"

const STOCK = new Set([
  "A user-defined piece of text.",
  "An integer.",
  "A true or false value.",
  "This option can be set from environment variables.",
  "This argument can be set from environment variables.",
  "This setting is optional."
])

/** `text` without @effect/cli's stock lines (and the blank line after each). @category utils */
export const withoutStockLines = (text: string): string => {
  const lines = text.split("\n")
  const kept: Array<string> = []
  let skipBlank = false
  for (const line of lines) {
    const bare = strip(line).trim()
    if (skipBlank && bare === "") {
      skipBlank = false
      continue
    }
    skipBlank = STOCK.has(bare)
    if (!skipBlank) kept.push(line)
  }
  return kept.join("\n")
}

/**
 * A usage line's repeatable options in brackets: @effect/cli writes `--collect text...`, which reads as
 * required, for an option given zero or more times. @category utils
 */
export const bracketedRepeats = (text: string): string =>
  text.replace(/^(\$ .*)$/gm, (line) => line.replace(/(?<=^|\s)(--[a-z][a-z-]* text)\.\.\.(?=\s|$)/g, "[$1]..."))

/** The help as it is printed: without the stock lines, repeatable options in brackets. @category utils */
export const cleaned = (text: string): string => bracketedRepeats(withoutStockLines(text))

/** Whether a printed text is a help text (it has a USAGE section): nothing else is touched, a VM's row least of all. @category predicates */
export const isHelp = (text: string): boolean => /^USAGE$/m.test(strip(text))

/** `effect` with the current console's `log` printing help texts `cleaned`. @category combinators */
export const withCleanHelp = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.consoleWith((console) =>
    Effect.withConsole(effect, {
      ...console,
      log: (...args) => console.log(...args.map((arg) => (typeof arg === "string" && isHelp(arg) ? cleaned(arg) : arg)))
    })
  )
