#!/usr/bin/env node
/**
 * The `vm-metrics` binary. An error is one line on stderr and an exit status of ExitCode (a bad flag,
 * value or token 2, no such instance 3, an unreadable source 4, cannot listen 5); logs go to stderr,
 * stdout carries only what a command prints.
 *
 * @since 0.1.0
 */
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect } from "effect"
import * as Ansi from "./Ansi.js"
import { run } from "./Cli.js"
import { exitQuietlyWhenStdoutCloses } from "./ClosedStdout.js"
import { ExitCode } from "./ExitCode.js"
import * as Logging from "./Logging.js"
import * as ParseErrors from "./ParseErrors.js"
import { printable } from "./TextFormat.js"

exitQuietlyWhenStdoutCloses()

// Ctrl-C signals the whole process group: `pnpm start` passes its own SIGINT on to us as a second one. The
// runtime handles the first (a graceful stop, bounded by --shutdown-grace, then exit 0) and stops listening;
// Node's default action for the second would kill the process mid-stop, and pnpm would report a failure.
const stopping = () => {}
process.on("SIGINT", stopping)
process.on("SIGTERM", stopping)

const exit = (code: number) => Effect.sync(() => process.exit(code))
// The message may quote what a user typed or a file held: written printable, it stays one line.
const say = (message: string) => Console.error(`vm-metrics: ${printable(message)}`)
const fail = (code: number) => (error: { readonly message: string }) => Effect.zipRight(say(error.message), exit(code))

// What @effect/cli says about a bad command line, written as our other errors are (ParseErrors.ts).
const parseErrors = ParseErrors.make()
/** Whatever was held back although the command line parsed (nothing prints so today): written, never lost. */
const heldBack = Effect.suspend(() => {
  const message = parseErrors.message()
  return message === "" ? Effect.void : say(message)
})
const badCommandLine = (error: ValidationError.ValidationError) => {
  const held = parseErrors.message()
  return fail(ExitCode.usage)({
    message: held !== "" ? held : ParseErrors.oneLine([HelpDoc.toAnsiText(error.error)])
  })
}

ParseErrors.hold(parseErrors, run(process.argv)).pipe(
  Effect.zipLeft(heldBack),
  Effect.tapError((error) => (ValidationError.isValidationError(error) ? Effect.void : heldBack)),
  Effect.catchTags({
    UsageError: fail(ExitCode.usage),
    NotFoundError: fail(ExitCode.notFound),
    SourceUnavailableError: fail(ExitCode.sourceUnavailable),
    ListenError: fail(ExitCode.cannotListen)
  }),
  // Help is no error; anything else is what is wrong with the command line, as one line.
  Effect.catchIf(ValidationError.isValidationError, (error) =>
    ValidationError.isHelpRequested(error) ? heldBack : badCommandLine(error)
  ),
  // Anything else is a bug: the whole cause, on stderr. Interruption (SIGTERM, SIGINT) is a clean stop.
  Effect.catchAllCause((cause) =>
    Cause.isInterruptedOnly(cause)
      ? Effect.failCause(cause)
      : Effect.zipRight(Console.error(`vm-metrics: internal error\n${Cause.pretty(cause)}`), exit(ExitCode.internal))
  ),
  Effect.provide(NodeContext.layer),
  // The logger until a command sets the one of --log-format; no escapes on a stream that is not a terminal.
  Effect.provide(Logging.layer),
  Effect.withConsole(Ansi.console()),
  (effect) => NodeRuntime.runMain(effect, { disablePrettyLogger: true, disableErrorReporting: true })
)
