/**
 * The log format (`--log-format`, VM_METRICS_LOG_FORMAT): logfmt or JSON lines for a log pipeline, pretty for a
 * person. Logs go to stderr (stdout carries only what a command prints); without a choice they are logfmt,
 * or pretty when stderr is a terminal. Pretty has colour only where Ansi allows it.
 *
 * One logger replaces Effect's default for the whole process (`layer`) and writes in the format of the fiber
 * (`withFormat`): the format is known only once a command's flags are parsed, and a second logger added then
 * would write every line twice.
 *
 * @since 0.1.0
 */
import { Effect, FiberRef, FiberRefs, Logger, Option } from "effect"
import * as Ansi from "./Ansi.js"

/** @category constants */
export const formats = ["logfmt", "json", "pretty"] as const
/** @category models */
export type Format = (typeof formats)[number]

/** The format when none is chosen. @category constructors */
export const defaultFormat = (stderr: Ansi.Stream = process.stderr): Format =>
  stderr.isTTY === true ? "pretty" : "logfmt"

/** The logger writing `format` to stderr. @category constructors */
export const logger = (format: Format, colour: boolean = Ansi.colour(process.stderr)): Logger.Logger<unknown, void> => {
  switch (format) {
    case "logfmt":
      return Logger.withConsoleError(Logger.logfmtLogger)
    case "json":
      return Logger.withConsoleError(Logger.jsonLogger)
    case "pretty":
      return Logger.prettyLogger({ stderr: true, colors: colour })
  }
}

const currentFormat = FiberRef.unsafeMake<Format>(defaultFormat())

const loggers: Record<Format, Logger.Logger<unknown, void>> = {
  logfmt: logger("logfmt"),
  json: logger("json"),
  pretty: logger("pretty")
}

/** Writes each line in the format of the fiber that logs it. */
const byFormat = Logger.make<unknown, void>((options) =>
  loggers[FiberRefs.getOrDefault(options.context, currentFormat)].log(options)
)

/** Effect's default logger replaced by ours: the default format until `withFormat` says otherwise. @category layers */
export const layer = Logger.replace(Logger.defaultLogger, byFormat)

/** Runs `effect` (and the fibers it starts) logging in `format`; None: the default format. @category combinators */
export const withFormat =
  (format: Option.Option<Format>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Option.isNone(format) ? effect : Effect.locally(effect, currentFormat, format.value)
