#!/usr/bin/env node
/**
 * The `vm-metrics` binary. A bad flag or environment value prints one line and exits with status 2.
 *
 * @since 0.1.0
 */
import { ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { run } from "./Cli.js"

const exitUsage = Effect.sync(() => process.exit(2))
const usage = (message: string) => Effect.zipRight(Console.error(`vm-metrics: ${message}`), exitUsage)

run(process.argv).pipe(
  Effect.catchTag("UsageError", (error) => usage(error.message)),
  // @effect/cli has already printed what is wrong with the flags; help and version are no error.
  Effect.catchIf(ValidationError.isValidationError, (error) =>
    ValidationError.isHelpRequested(error) ? Effect.void : exitUsage
  ),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain
)
