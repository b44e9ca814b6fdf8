/**
 * The `vm-metrics` command: `serve`, `list`, `stats <id>` and `top`. Its options are generated from
 * AppConfig's table (flag, environment variable, default, description), so `--help` shows every
 * setting; a command only maps them to an AppConfig and builds its layers through Main.
 *
 * @since 0.1.0
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as HelpDoc from "@effect/cli/HelpDoc"
import * as Options from "@effect/cli/Options"
import * as ValidationError from "@effect/cli/ValidationError"
import * as Collector from "@vm-metrics/core/Collector"
import * as InstanceSource from "@vm-metrics/core/InstanceSource"
import { cpuSeconds } from "@vm-metrics/core/VmStats"
import { Console, Data, Effect, Either, Layer, Logger, LogLevel, Option } from "effect"
import * as AppConfig from "./AppConfig.js"
import * as BuildInfo from "./BuildInfo.js"
import { summary as exitCodes } from "./ExitCode.js"
import { helpKey } from "./HelpKey.js"
import { withCleanHelp } from "./HelpText.js"
import { ignoredNote } from "./IgnoredNote.js"
import * as Logging from "./Logging.js"
import { lookup } from "./Lookup.js"
import type * as MainModule from "./Main.js"
import { statsJson } from "./StatsJson.js"
import { bytes, table } from "./TextFormat.js"

/** A bad flag or environment value, said in one line. @category errors */
export const UsageError = AppConfig.UsageError

/** `stats <id>`: no instance, or more than one, matches. @category errors */
export class NotFoundError extends Data.TaggedError("NotFoundError")<{ readonly message: string }> {}

/** A one-shot command could not read its instance source at all. @category errors */
export class SourceUnavailableError extends Data.TaggedError("SourceUnavailableError")<{ readonly message: string }> {}

const { settings } = AppConfig

/** The option of a setting's flag, with its variable as fallback; `--help` text from the table. */
const base = <A>(setting: AppConfig.Setting<A>): Options.Options<A> => {
  const name = setting.flag ?? ""
  const option = (() => {
    switch (setting.type._tag) {
      case "text":
      case "duration":
      case "list":
        return Options.text(name)
      case "integer":
        return Options.integer(name)
      case "boolean":
        return Options.boolean(name)
      case "choice":
        return Options.choice(name, setting.type.values)
    }
  })() as Options.Options<unknown> as Options.Options<A>
  return setting.env === null ? option : Options.withFallbackConfig(option, setting.variable)
}

/** A setting with a default. */
const flag = <A>(setting: AppConfig.Setting<A>): Options.Options<A> =>
  base(setting).pipe(
    (option) =>
      setting.default === undefined || setting.type._tag === "boolean"
        ? option
        : Options.withDefault(option, setting.default),
    Options.withDescription(AppConfig.helpText(setting))
  )

/** A setting without a default: None when neither flag nor variable is given. */
const optionalFlag = <A>(setting: AppConfig.Setting<A>): Options.Options<Option.Option<A>> =>
  base(setting).pipe(Options.optional, Options.withDescription(AppConfig.helpText(setting)))

/** Repeatable, so the variable is read by hand: `withFallbackConfig` only covers a missing single value. */
const listFlag = (setting: AppConfig.Setting<ReadonlyArray<string>>): Options.Options<ReadonlyArray<string>> =>
  Options.text(setting.flag ?? "").pipe(
    Options.repeated,
    Options.mapEffect((given) =>
      given.length > 0
        ? Effect.succeed(given)
        : Effect.map(
            setting.config,
            Option.getOrElse(() => [] as ReadonlyArray<string>)
          ).pipe(Effect.mapError((error) => ValidationError.invalidValue(HelpDoc.p(`${setting.env}: ${error}`))))
    ),
    Options.withDescription(AppConfig.helpText(setting))
  )

const collectOptions = {
  source: flag(settings.source),
  instancesFile: optionalFlag(settings.instancesFile),
  libvirtRunDir: flag(settings.libvirtRunDir),
  maxAge: flag(settings.maxAge),
  procRoot: flag(settings.procRoot),
  sysRoot: flag(settings.sysRoot),
  discoveryUids: listFlag(settings.discoveryUids),
  collect: listFlag(settings.collect),
  noCollect: listFlag(settings.noCollect),
  logFormat: optionalFlag(settings.logFormat)
}

const serveOptions = {
  // Optional, so that `--listen` can tell a --host or --port given from a default (AppConfig.listenAddress).
  host: optionalFlag(settings.host),
  port: optionalFlag(settings.port),
  listen: optionalFlag(settings.listen),
  ...collectOptions,
  authTokenFile: optionalFlag(settings.authTokenFile),
  metricsWithoutAuth: flag(settings.metricsWithoutAuth),
  tlsCertFile: optionalFlag(settings.tlsCertFile),
  tlsKeyFile: optionalFlag(settings.tlsKeyFile),
  maxConnections: optionalFlag(settings.maxConnections),
  headersTimeout: flag(settings.headersTimeout),
  requestTimeout: flag(settings.requestTimeout),
  keepAliveTimeout: flag(settings.keepAliveTimeout),
  shutdownGrace: flag(settings.shutdownGrace),
  metricPrefix: flag(settings.metricPrefix),
  otlp: flag(settings.otlp),
  collection: flag(settings.collection),
  interval: flag(settings.collectInterval),
  discoveryInterval: flag(settings.discoveryInterval)
}

// The composition root and the top client are imported by the commands that run them: `--help` and a
// bad flag never load the server, and `list`/`stats` load no HTTP server and no OTel.
const importMain: Effect.Effect<typeof MainModule> = Effect.promise(() => import("./Main.js"))
const importTop = Effect.promise(() => import("./Top.js"))

/** Source → readers → collector, from the collect settings given; the commands report a failing source themselves. */
const collectLayer = (input: AppConfig.CollectInput) =>
  Layer.unwrapEffect(
    Effect.flatMap(AppConfig.resolveCollect(input), (config) =>
      Effect.map(importMain, (Main) => Main.layerCollect(config, {}, true))
    )
  )

/** Source and a collector for one instance (`stats`), from the collect settings given. */
const oneInstanceLayer = (input: AppConfig.CollectInput) =>
  Layer.unwrapEffect(
    Effect.flatMap(AppConfig.resolveCollect(input), (config) =>
      Effect.map(importMain, (Main) => Main.layerOneInstance(config))
    )
  )

const serve = Command.make("serve", serveOptions, (input) =>
  Effect.gen(function* () {
    const address = yield* AppConfig.listenAddress(input)
    const config = yield* AppConfig.resolveServe({ ...input, ...address })
    const Main = yield* importMain
    return yield* Layer.launch(Main.layerServe(config))
  }).pipe(Logging.withFormat(input.logFormat))
).pipe(
  Command.withDescription(
    `serve the HTTP API and /metrics for the VMs on this host. ${AppConfig.environmentOnlyHelp("serve")}`
  )
)

const sourceUnavailable = (reason: string) =>
  new SourceUnavailableError({ message: `cannot list the instances: ${reason}` })

/** No warning while `top` draws: a log line would land in the middle of its screen (it shows errors itself). */
const withoutWarnings = <A, E, R>(effect: Effect.Effect<A, E, R>) => Logger.withMinimumLogLevel(effect, LogLevel.Error)

/** A fresh snapshot for a one-shot command; a source that could not be listed at all is an error. */
const readable = Effect.flatMap(Collector.Collector, (c) => c.refresh).pipe(
  Effect.filterOrFail(
    (snapshot) => snapshot.sourceError === null,
    (snapshot) => sourceUnavailable(snapshot.sourceError?.reason ?? "unknown")
  )
)

const list = Command.make("list", collectOptions, (input) =>
  Effect.gen(function* () {
    const snapshot = yield* readable
    const header = ["ID", "NAME", "STATE", "PID", "VCPUS", "CPU_S", "RSS", "ALLOCATED", "TAP", "RX", "TX"]
    const rows = snapshot.stats.map((vm) => [
      vm.instanceId,
      vm.instanceName,
      vm.state,
      vm.pid === null ? "-" : String(vm.pid),
      String(vm.allocatedVcpus),
      cpuSeconds(vm)?.toFixed(2) ?? "-",
      bytes(vm.memoryRssBytes, "iec"),
      bytes(vm.allocatedMemoryBytes, "iec"),
      vm.tapDevice ?? "-",
      bytes(vm.netRxBytes, "iec"),
      bytes(vm.netTxBytes, "iec")
    ])
    yield* Console.log(table(header, rows))
    const note = ignoredNote(snapshot.sourceIgnored ?? [])
    if (note !== undefined) yield* Console.error(`vm-metrics: ${note}`)
  }).pipe(Effect.provide(collectLayer(input)), Logging.withFormat(input.logFormat))
).pipe(Command.withDescription("print a table of the instances found and their current usage"))

const id = Args.text({ name: "id" }).pipe(Args.withDescription("instance id, name or unique id prefix"))

/** The source's listing, for a one-shot command; a source that cannot be listed is an error. */
const listed = Effect.flatMap(InstanceSource.InstanceSource, (source) => source.list).pipe(
  Effect.mapError((error) => sourceUnavailable(error.reason))
)

// Finds the instance in the listing and reads that one only (not every VM of the host, as `list` does).
const stats = Command.make("stats", { id, ...collectOptions }, (input) =>
  Effect.gen(function* () {
    const instances = (yield* listed).map((info) => ({ instanceId: info.id, instanceName: info.name, info }))
    const found = lookup(instances, input.id)
    if (Either.isLeft(found)) {
      return yield* new NotFoundError({
        message:
          found.left._tag === "NotFound"
            ? `no instance matches ${JSON.stringify(input.id)}`
            : `${found.left.matches} instances match ${JSON.stringify(input.id)}, use the full id`
      })
    }
    const vm = yield* Effect.flatMap(Collector.Collector, (collector) => collector.getInstanceStats(found.right.info))
    yield* Console.log(statsJson(vm))
  }).pipe(Effect.provide(oneInstanceLayer(input)), Logging.withFormat(input.logFormat))
).pipe(Command.withDescription("print the JSON of one instance, as GET /instances/{id}/stats returns it"))

const topOptions = {
  url: optionalFlag(settings.url),
  interval: flag(settings.interval),
  authTokenFile: optionalFlag(settings.authTokenFile),
  ...collectOptions
}

/**
 * Why `--url` cannot be used, or undefined: it must be an http(s) URL the URL parser accepts (a host, no
 * whitespace), without a user or password (fetch refuses them, and they would show in the header: the
 * token goes by file or variable).
 */
const urlProblem = (text: string): string | undefined => {
  let url: URL | undefined
  try {
    url = new URL(text)
  } catch {}
  if (!/^https?:\/\/[^\s]+$/.test(text) || url === undefined || url.host === "") {
    return `--url: not an http(s) URL: ${text}`
  }
  return url.username !== "" || url.password !== ""
    ? "--url must not hold a user or password; give the token with --auth-token-file or VM_METRICS_AUTH_TOKEN"
    : undefined
}

/** top redraws a screen: into a pipe or a file that is a stream of escape sequences, so it is refused. */
const needsTerminal = Effect.suspend(() =>
  process.stdout.isTTY === true
    ? Effect.void
    : new AppConfig.UsageError({
        message: "top draws on a terminal and stdout is not one; for text use list, or stats <id> for JSON"
      })
)

const top = Command.make("top", topOptions, (config) =>
  Effect.gen(function* () {
    // 0 would redraw without pause, a core at 100 % for a screen no one can read.
    const every = yield* AppConfig.positiveDurationOf("interval", config.interval)
    if (Option.isSome(config.url)) {
      const base = config.url.value
      const problem = urlProblem(base)
      if (problem !== undefined) return yield* new AppConfig.UsageError({ message: problem })
      yield* needsTerminal
      const Top = yield* importTop
      return yield* Top.run(yield* Top.remote(base, yield* AppConfig.readToken(config.authTokenFile)), every)
    }
    yield* needsTerminal
    const Top = yield* importTop
    return yield* withoutWarnings(Effect.flatMap(Top.local, (source) => Top.run(source, every))).pipe(
      Effect.provide(collectLayer(config))
    )
  }).pipe(Logging.withFormat(config.logFormat))
).pipe(Command.withDescription("a live view of every VM: CPU, memory and network rates, like top"))

const version = Command.make("version", {}, () => Console.log(BuildInfo.summary)).pipe(
  Command.withDescription("print the version, the source revision and the Node that runs it (as --version does)")
)

const commands = { serve, list, stats, top, version }

const helpOf = Args.text({ name: "command" }).pipe(
  Args.optional,
  Args.withDescription(`the command: ${Object.keys(commands).join(", ")}`)
)

/** `help [command]`: @effect/cli prints the help of the command a handler asks it for (as `<command> --help`). */
const help = Command.make(
  "help",
  { command: helpOf },
  (input): Effect.Effect<never, ValidationError.ValidationError | AppConfig.UsageError> => {
    if (Option.isNone(input.command)) return Effect.fail(ValidationError.helpRequested(command.descriptor))
    const name = input.command.value
    return Object.hasOwn(commands, name)
      ? Effect.fail(ValidationError.helpRequested(commands[name as keyof typeof commands].descriptor))
      : Effect.fail(
          new AppConfig.UsageError({
            message: `no command ${JSON.stringify(name)}; the commands are ${Object.keys(commands).join(", ")}`
          })
        )
  }
).pipe(Command.withDescription("print the help of vm-metrics, or of a command"))

/** @category commands */
export const command = Command.make("vm-metrics").pipe(
  Command.withDescription(`host-side resource use of the virtual machines on this host. ${exitCodes}`),
  Command.withSubcommands([serve, list, stats, top, help, version])
)

const cli = Command.run(command, { name: "vm-metrics", version: BuildInfo.version })

/**
 * The CLI on `process.argv`. `--version` prints BuildInfo's line (version, revision, Node) rather than
 * @effect/cli's bare version, which is also the help's title and so must not change with the Node that runs it.
 * @category commands
 */
export const run = (argv: ReadonlyArray<string>) =>
  Effect.if(helpKey(argv.slice(2)) === "version", {
    onTrue: () => Console.log(BuildInfo.summary),
    onFalse: () => {
      const dangling = danglingFlag(argv.slice(2))
      return dangling === undefined
        ? withCleanHelp(cli(argv))
        : Effect.fail(new AppConfig.UsageError({ message: `${dangling} needs a value` }))
    }
  })

/**
 * A flag that takes a value given last, without one. @effect/cli calls it an unknown argument, and a
 * repeatable one (`--collect`, `--no-collect`) it takes as given no times: the defaults, silently.
 */
export const danglingFlag = (args: ReadonlyArray<string>): string | undefined => {
  const last = args[args.length - 1]
  return last !== undefined && AppConfig.valuedFlags.has(last) ? last : undefined
}
