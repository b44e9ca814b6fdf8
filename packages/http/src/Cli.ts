/**
 * The `vm-metrics` command: `serve`, `list` and `stats <id>`. Every option falls back to an
 * environment variable, then to a default (shown by `--help`). `serve` is the composition root of
 * the whole product: source → readers → collector → metrics → (OTLP push) → HTTP server.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import { Args, Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import * as Collector from "@vm-metrics/core/Collector"
import { cpuSeconds } from "@vm-metrics/core/VmStats"
import * as NodeReaders from "@vm-metrics/node/NodeReaders"
import * as OtlpPush from "@vm-metrics/otel/OtlpPush"
import * as VmMetrics from "@vm-metrics/otel/VmMetrics"
import { Config, Console, Data, Duration, Effect, Either, Layer, Option, Redacted, Runtime } from "effect"
import * as Connections from "./Connections.js"
import { summary as exitCodes } from "./ExitCode.js"
import { lookup } from "./Lookup.js"
import * as Server from "./Server.js"
import * as Sources from "./Sources.js"
import { statsJson } from "./StatsJson.js"
import * as Top from "./Top.js"

/** A bad flag or environment value, said in one line. @category errors */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** `stats <id>`: no instance, or more than one, matches. @category errors */
export class NotFoundError extends Data.TaggedError("NotFoundError")<{ readonly message: string }> {}

/** A one-shot command could not read its instance source at all. @category errors */
export class SourceUnavailableError extends Data.TaggedError("SourceUnavailableError")<{ readonly message: string }> {}

const env = <A>(config: Config.Config<A>) => Options.withFallbackConfig(config)

/** "500ms", "2s", "1.5 seconds", "250 millis" → a Duration; anything else is a UsageError. @category parsers */
export const parseDuration = (text: string): Either.Either<Duration.Duration, UsageError> => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds|s|sec|seconds|m|min|minutes)?\s*$/.exec(text)
  if (match === null)
    return Either.left(new UsageError({ message: `not a duration: ${JSON.stringify(text)} (try 500ms or 2s)` }))
  const value = Number(match[1])
  const unit = match[2] ?? "ms"
  const millis =
    unit.startsWith("m") && unit !== "m" && !unit.startsWith("min")
      ? value
      : unit.startsWith("s")
        ? value * 1000
        : value * 60_000
  return Either.right(Duration.millis(millis))
}

const host = Options.text("host").pipe(
  env(Config.string("VM_METRICS_HOST")),
  Options.withDefault(Server.defaults.host),
  Options.withDescription("address to listen on; default 127.0.0.1 (env VM_METRICS_HOST)")
)
const port = Options.integer("port").pipe(
  env(Config.integer("VM_METRICS_PORT")),
  Options.withDefault(Server.defaults.port),
  Options.withDescription("port to listen on, 1-65535; default 9464 (env VM_METRICS_PORT)")
)
const source = Options.choice("source", Sources.kinds).pipe(
  env(Config.literal(...Sources.kinds)("VM_METRICS_SOURCE")),
  Options.withDefault("discovery" as const),
  Options.withDescription(
    "where instances come from: discovery (hypervisor processes in /proc; the default), file (--instances-file), libvirt (env VM_METRICS_SOURCE)"
  )
)
const instancesFile = Options.text("instances-file").pipe(
  env(Config.string("VM_METRICS_INSTANCES_FILE")),
  Options.optional,
  Options.withDescription("JSON or YAML list of instances, for --source file (env VM_METRICS_INSTANCES_FILE)")
)
const libvirtRunDir = Options.text("libvirt-run-dir").pipe(
  env(Config.string("VM_METRICS_LIBVIRT_RUN_DIR")),
  Options.withDefault("/run/libvirt/qemu"),
  Options.withDescription(
    "libvirt's status files, for --source libvirt; default /run/libvirt/qemu (env VM_METRICS_LIBVIRT_RUN_DIR)"
  )
)
const maxAge = Options.text("max-age").pipe(
  env(Config.string("VM_METRICS_MAX_AGE")),
  Options.withDefault("1s"),
  Options.withDescription(
    "how long a collection is reused by concurrent requests, e.g. 500ms or 2s; default 1s (env VM_METRICS_MAX_AGE)"
  )
)
const procRoot = Options.text("proc-root").pipe(
  env(Config.string("VM_METRICS_PROC_ROOT")),
  Options.withDefault("/proc"),
  Options.withDescription("where the host's /proc is mounted; default /proc (env VM_METRICS_PROC_ROOT)")
)
// Repeatable, so the env fallback is read by hand: `withFallbackConfig` only covers a missing single value.
const discoveryUid = Options.text("discovery-uid").pipe(
  Options.repeated,
  Options.mapEffect((given) =>
    given.length > 0
      ? Effect.succeed(given)
      : Config.array(Config.string(), "VM_METRICS_DISCOVERY_UIDS").pipe(
          Config.withDefault([] as ReadonlyArray<string>),
          Effect.mapError((error) => ValidationError.invalidValue(HelpDoc.p(`VM_METRICS_DISCOVERY_UIDS: ${error}`)))
        )
  ),
  Options.withDescription(
    "a uid or user name (repeatable) whose hypervisor processes discovery trusts besides root's; others are ignored and counted (env VM_METRICS_DISCOVERY_UIDS, comma-separated)"
  )
)
const sysRoot = Options.text("sys-root").pipe(
  env(Config.string("VM_METRICS_SYS_ROOT")),
  Options.withDefault("/sys"),
  Options.withDescription("where the host's /sys is mounted; default /sys (env VM_METRICS_SYS_ROOT)")
)
const authTokenFile = Options.text("auth-token-file").pipe(
  env(Config.string("VM_METRICS_AUTH_TOKEN_FILE")),
  Options.optional,
  Options.withDescription(
    "file holding the bearer token required on every path but /healthz (env VM_METRICS_AUTH_TOKEN_FILE; or the token itself in VM_METRICS_AUTH_TOKEN)"
  )
)
const metricsWithoutAuth = Options.boolean("metrics-without-auth").pipe(
  env(Config.boolean("VM_METRICS_METRICS_WITHOUT_AUTH")),
  Options.withDescription(
    "serve /metrics without the bearer token (for a Prometheus without credentials); every other path but /healthz still needs it; default off (env VM_METRICS_METRICS_WITHOUT_AUTH)"
  )
)
/** Which paths the token does not guard beyond /healthz. */
const access = Options.all({ metricsWithoutAuth })
const durationFlag = (name: string, variable: string, defaultMs: number, what: string) =>
  Options.text(name).pipe(
    env(Config.string(variable)),
    Options.withDefault(`${defaultMs / 1000}s`),
    Options.withDescription(`${what}; default ${defaultMs / 1000}s (env ${variable})`)
  )
/** Timeouts, the connection bound and the shutdown grace (see Connections). */
const connectionFlags = Options.all({
  maxConnections: Options.integer("max-connections").pipe(
    env(Config.integer("VM_METRICS_MAX_CONNECTIONS")),
    Options.optional,
    Options.withDescription(
      `most connections open at once; a new one beyond closes the oldest idle one; at most half the open-files soft limit; default ${Connections.defaults.maxConnections} or that half (env VM_METRICS_MAX_CONNECTIONS)`
    )
  ),
  headersTimeout: durationFlag(
    "headers-timeout",
    "VM_METRICS_HEADERS_TIMEOUT",
    Connections.defaults.headersTimeoutMs,
    "a connection that has not sent a complete request head by then is closed"
  ),
  requestTimeout: durationFlag(
    "request-timeout",
    "VM_METRICS_REQUEST_TIMEOUT",
    Connections.defaults.requestTimeoutMs,
    "a request not received whole by then is answered 408 and closed"
  ),
  keepAliveTimeout: durationFlag(
    "keep-alive-timeout",
    "VM_METRICS_KEEP_ALIVE_TIMEOUT",
    Connections.defaults.keepAliveTimeoutMs,
    "an idle keep-alive connection is closed after this"
  ),
  shutdownGrace: durationFlag(
    "shutdown-grace",
    "VM_METRICS_SHUTDOWN_GRACE",
    Connections.defaults.shutdownGraceMs,
    "on SIGTERM/SIGINT, connections still busy after this are closed"
  )
})
const otlp = Options.choice("otlp", ["on", "off"]).pipe(
  env(Config.literal("on", "off")("VM_METRICS_OTLP")),
  Options.withDefault("off" as const),
  Options.withDescription(
    "push metrics over OTLP/HTTP protobuf too; endpoint, headers and interval from OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS and OTEL_METRIC_EXPORT_INTERVAL; default off (env VM_METRICS_OTLP)"
  )
)
const metricPrefix = Options.text("metric-prefix").pipe(
  env(Config.string("VM_METRICS_METRIC_PREFIX")),
  Options.withDefault("hypeman_vm"),
  Options.withDescription("prefix of every metric name; default hypeman_vm (env VM_METRICS_METRIC_PREFIX)")
)

const collectorOptions = { source, instancesFile, libvirtRunDir, maxAge, procRoot, sysRoot, discoveryUid }

interface CollectorConfig {
  readonly source: Sources.Kind
  readonly instancesFile: Option.Option<string>
  readonly libvirtRunDir: string
  readonly maxAge: string
  readonly procRoot: string
  readonly sysRoot: string
  readonly discoveryUid: ReadonlyArray<string>
}

/** Source → readers → collector, failing with a UsageError on a bad flag. */
const collectorLayer = (config: CollectorConfig) =>
  Layer.unwrapEffect(
    Effect.gen(function* () {
      const maxAge = yield* parseDuration(config.maxAge)
      const source = Sources.layer({
        kind: config.source,
        procRoot: config.procRoot,
        instancesFile: config.instancesFile,
        libvirtRunDir: config.libvirtRunDir,
        discoveryUids: config.discoveryUid
      })
      return Collector.layer({ maxAge }).pipe(
        Layer.provide(Layer.merge(NodeReaders.layer({ procRoot: config.procRoot, sysRoot: config.sysRoot }), source)),
        Layer.mapError((error) => new UsageError({ message: error.message }))
      )
    })
  )

/** The token from --auth-token-file, else VM_METRICS_AUTH_TOKEN, else none. */
const readToken = (file: Option.Option<string>) =>
  Effect.gen(function* () {
    if (Option.isSome(file)) {
      const text = yield* Effect.try({
        try: () => fs.readFileSync(file.value, "utf8"),
        catch: () => new UsageError({ message: `cannot read the auth token file ${file.value}` })
      })
      return Option.some(yield* checkToken(text, `the auth token file ${file.value}`))
    }
    const fromEnv = yield* Config.option(Config.string("VM_METRICS_AUTH_TOKEN")).pipe(
      Effect.mapError(() => new UsageError({ message: "VM_METRICS_AUTH_TOKEN is not valid" }))
    )
    if (Option.isNone(fromEnv)) return Option.none<Redacted.Redacted<string>>()
    return Option.some(yield* checkToken(fromEnv.value, "VM_METRICS_AUTH_TOKEN"))
  })

/**
 * A token as given, less one final newline. Empty or with whitespace inside, it is refused: a server
 * started with it would answer 401 to every client. @category parsers
 */
export const checkToken = (text: string, where: string): Either.Either<Redacted.Redacted<string>, UsageError> => {
  const token = text.replace(/\r?\n$/, "")
  if (token === "") return Either.left(new UsageError({ message: `${where} is empty` }))
  if (/\s/.test(token))
    return Either.left(new UsageError({ message: `${where} contains whitespace (only a final newline is allowed)` }))
  return Either.right(Redacted.make(token))
}

interface ConnectionFlags {
  readonly maxConnections: Option.Option<number>
  readonly headersTimeout: string
  readonly requestTimeout: string
  readonly keepAliveTimeout: string
  readonly shutdownGrace: string
}

/** The flags as Connections.Limits, the max checked against the open-files soft limit (logged). */
const connectionLimits = (flags: ConnectionFlags) =>
  Effect.gen(function* () {
    const ms = (text: string) => Effect.map(parseDuration(text), Duration.toMillis)
    const headersTimeoutMs = yield* ms(flags.headersTimeout)
    const requestTimeoutMs = yield* ms(flags.requestTimeout)
    if (headersTimeoutMs < 1 || requestTimeoutMs < headersTimeoutMs)
      return yield* new UsageError({
        message: `--headers-timeout must be > 0 and at most --request-timeout (${flags.headersTimeout} > ${flags.requestTimeout})`
      })
    const softLimit = Connections.fdSoftLimit()
    const chosen = yield* Either.mapLeft(
      Connections.chooseMax(Option.getOrUndefined(flags.maxConnections), softLimit),
      (message) => new UsageError({ message })
    )
    const log = chosen.clamped ? Effect.logWarning : Effect.logInfo
    const note = chosen.clamped ? "lowered to half the open-files soft limit" : "half the soft limit is the collector's"
    yield* log(`connections: at most ${chosen.max}; open files: soft limit ${softLimit ?? "unlimited"} (${note})`)
    // Node reads a keep-alive timeout of 0 as "never close an idle connection".
    const keepAliveTimeoutMs = yield* ms(flags.keepAliveTimeout)
    if (keepAliveTimeoutMs < 1)
      return yield* new UsageError({ message: `--keep-alive-timeout must be > 0, got ${flags.keepAliveTimeout}` })
    return {
      headersTimeoutMs,
      requestTimeoutMs,
      keepAliveTimeoutMs,
      shutdownGraceMs: yield* ms(flags.shutdownGrace),
      maxConnections: chosen.max
    } satisfies Connections.Limits
  })

/** SIGHUP lists the instances again now (the file source re-reads a changed file); it never ends the server. */
const reloadOnHangup = Layer.scopedDiscard(
  Effect.gen(function* () {
    const collector = yield* Collector.Collector
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const onHangup = () => {
      runFork(Effect.zipRight(Effect.logInfo("SIGHUP: listing the instances again"), collector.refresh))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHangup)),
      () => Effect.sync(() => process.off("SIGHUP", onHangup))
    )
  })
)

const serveOptions = {
  host,
  port,
  authTokenFile,
  access,
  connections: connectionFlags,
  otlp,
  metricPrefix,
  ...collectorOptions
}

const serve = Command.make("serve", serveOptions, (config) =>
  Effect.gen(function* () {
    if (config.port < 1 || config.port > 65535) {
      return yield* new UsageError({ message: `--port must be 1-65535, got ${config.port}` })
    }
    const authToken = yield* readToken(config.authTokenFile)
    const limits = yield* connectionLimits(config.connections)
    const metrics = VmMetrics.layerConfig({ metrics: { prefix: config.metricPrefix } }).pipe(
      Layer.mapError((error) => new UsageError({ message: error.message })),
      Layer.provideMerge(collectorLayer(config))
    )
    const push = config.otlp === "on" ? OtlpPush.layer() : Layer.empty
    const server = Server.layer({ host: config.host, port: config.port, authToken, limits, ...config.access })
    return yield* Layer.launch(Layer.mergeAll(server, push, reloadOnHangup).pipe(Layer.provide(metrics)))
  })
).pipe(Command.withDescription("serve the HTTP API and /metrics for the VMs on this host"))

const human = (bytes: bigint | null) => {
  if (bytes === null) return "-"
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]
  let value = Number(bytes)
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)}${units[unit]}`
}

/** Left-aligned columns, two spaces apart. */
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) => {
  const all = [header, ...rows]
  const widths = header.map((_, c) => Math.max(...all.map((row) => (row[c] ?? "").length)))
  return all
    .map((row) =>
      row
        .map((cell, c) => cell.padEnd(widths[c] ?? 0))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

/** A fresh snapshot for a one-shot command; a source that could not be listed at all is an error. */
const readable = Effect.flatMap(Collector.Collector, (c) => c.refresh).pipe(
  Effect.filterOrFail(
    (snapshot) => snapshot.sourceError === null,
    (snapshot) =>
      new SourceUnavailableError({ message: `cannot list the instances: ${snapshot.sourceError?.reason ?? "unknown"}` })
  )
)

const list = Command.make("list", collectorOptions, (config) =>
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
      human(vm.memoryRssBytes),
      human(BigInt(vm.allocatedMemoryBytes)),
      vm.tapDevice ?? "-",
      human(vm.netRxBytes),
      human(vm.netTxBytes)
    ])
    yield* Console.log(table(header, rows))
  }).pipe(Effect.provide(collectorLayer(config)))
).pipe(Command.withDescription("print a table of the instances found and their current usage"))

const id = Args.text({ name: "id" }).pipe(Args.withDescription("instance id, name or unique id prefix"))

const stats = Command.make("stats", { id, ...collectorOptions }, (config) =>
  Effect.gen(function* () {
    const snapshot = yield* readable
    const found = lookup(snapshot.stats, config.id)
    if (Either.isLeft(found)) {
      return yield* new NotFoundError({
        message:
          found.left._tag === "NotFound"
            ? `no instance matches ${JSON.stringify(config.id)}`
            : `${found.left.matches} instances match ${JSON.stringify(config.id)}, use the full id`
      })
    }
    yield* Console.log(statsJson(found.right))
  }).pipe(Effect.provide(collectorLayer(config)))
).pipe(Command.withDescription("print the JSON of one instance, as GET /instances/{id}/stats returns it"))

const url = Options.text("url").pipe(
  env(Config.string("VM_METRICS_URL")),
  Options.optional,
  Options.withDescription("read a vm-metrics server at this base URL instead of this host (env VM_METRICS_URL)")
)
const interval = Options.text("interval").pipe(
  Options.withDefault("1s"),
  Options.withDescription("refresh interval, e.g. 1s or 500ms; default 1s")
)

const top = Command.make("top", { url, interval, authTokenFile, ...collectorOptions }, (config) =>
  Effect.gen(function* () {
    const every = yield* parseDuration(config.interval)
    if (Option.isSome(config.url)) {
      const base = config.url.value
      if (!/^https?:\/\/[^\s]+$/.test(base)) return yield* new UsageError({ message: `not an http(s) URL: ${base}` })
      return yield* Top.run(Top.remote(base, yield* readToken(config.authTokenFile)), every)
    }
    return yield* Effect.flatMap(Top.local, (source) => Top.run(source, every)).pipe(
      Effect.provide(collectorLayer(config))
    )
  })
).pipe(Command.withDescription("a live view of every VM: CPU, memory and network rates, like top"))

/** @category commands */
export const command = Command.make("vm-metrics").pipe(
  Command.withDescription(`host-side resource use of the virtual machines on this host. ${exitCodes}`),
  Command.withSubcommands([serve, list, stats, top])
)

/** @category commands */
export const run = Command.run(command, { name: "vm-metrics", version: "0.1.0" })
