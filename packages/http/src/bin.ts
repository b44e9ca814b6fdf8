#!/usr/bin/env node
/**
 * The `vm-metrics` binary. An error is one line on stderr and an exit status of ExitCode (a bad flag,
 * value or token 2, no such instance 3, an unreadable source 4, cannot listen 5); logs go to stderr,
 * stdout carries only what a command prints.
 *
 * @since 0.1.0
 */
import * as ValidationError from "@effect/cli/ValidationError"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect } from "effect"
import * as Ansi from "./Ansi.js"
import { run } from "./Cli.js"
import { exitQuietlyWhenStdoutCloses } from "./ClosedStdout.js"
import { ExitCode } from "./ExitCode.js"
import * as Logging from "./Logging.js"
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
const fail = (code: number) => (error: { readonly message: string }) =>
  Effect.zipRight(Console.error(`vm-metrics: ${printable(error.message)}`), exit(code))

run(process.argv).pipe(
  Effect.catchTags({
    UsageError: fail(ExitCode.usage),
    NotFoundError: fail(ExitCode.notFound),
    SourceUnavailableError: fail(ExitCode.sourceUnavailable),
    ListenError: fail(ExitCode.cannotListen)
  }),
  // @effect/cli has already printed what is wrong with the flags; help and version are no error.
  Effect.catchIf(ValidationError.isValidationError, (error) =>
    ValidationError.isHelpRequested(error) ? Effect.void : exit(ExitCode.usage)
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
