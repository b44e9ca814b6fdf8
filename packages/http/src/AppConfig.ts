/**
 * Every setting of `vm-metrics` in one table: its flag, environment variable, default, description and
 * type. The CLI's options and `--help` are generated from it (Cli.ts), README's configuration table is
 * checked against it (test/Cli.test.ts), and `resolve` turns the values given into the `AppConfig` that
 * Main builds the layer graph from. A bad value of any setting is a `UsageError` (one line, exit 2).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as net from "node:net"
import * as MetricGroup from "@vm-metrics/core/MetricGroup"
import * as LibvirtSource from "@vm-metrics/node/LibvirtSource"
import * as MetricOptions from "@vm-metrics/otel/MetricOptions"
import * as MetricsExporter from "@vm-metrics/otel/MetricsExporter"
import * as ResourceAttributes from "@vm-metrics/otel/ResourceAttributes"
import { Config, Data, Duration, Effect, Either, Option, Redacted } from "effect"
import * as Connections from "./Connections.js"
import * as Logging from "./Logging.js"
import * as Serving from "./Serving.js"
import * as Sources from "./Sources.js"
import * as Tls from "./Tls.js"

/** A bad flag or environment value, said in one line. @category errors */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** How a setting's text is read: the CLI option and the environment Config follow from it. @category models */
export type Type =
  | { readonly _tag: "text" }
  | { readonly _tag: "integer" }
  | { readonly _tag: "boolean" }
  /** Text such as 500ms or 2s, read by `parseDuration`. */
  | { readonly _tag: "duration" }
  | { readonly _tag: "choice"; readonly values: ReadonlyArray<string> }
  /** A repeatable flag; comma-separated in the environment. */
  | { readonly _tag: "list" }

/** Which commands take a setting. @category models */
export type Scope = "collect" | "serve" | "top"

/** One row of the table. @category models */
export interface Setting<A> {
  /** `--flag`; null: environment only (a secret, or a standard OTel variable). */
  readonly flag: string | null
  /** The environment variable; null: a flag only. */
  readonly env: string | null
  readonly type: Type
  /** Used when neither the flag nor the variable is given; undefined: none (the setting is optional). */
  readonly default: A | undefined
  /** The default as `--help` and README show it, when it is not just the value. */
  readonly shownDefault?: string
  readonly description: string
  readonly scope: Scope
  /** The commands that take it, when not those of its scope. */
  readonly commands?: string
  /** The environment variable as an Effect Config (absent → the default, or None when there is none). */
  readonly config: Config.Config<Option.Option<A>>
  /** The variable alone: a Config that fails when it is absent (the CLI's fallback for a missing flag). */
  readonly variable: Config.Config<A>
}

type Spec<A> = Omit<Setting<A>, "type" | "config" | "variable">

/** A row; its type keeps whether the setting has a default. */
const row = <A, S extends Spec<A>>(
  type: Type,
  base: (name: string) => Config.Config<A>,
  spec: S
): Setting<A> & Pick<S, "default"> => ({
  ...spec,
  type,
  variable: spec.env === null ? Config.fail(`${spec.flag} has no environment variable`) : base(spec.env),
  config:
    spec.env === null
      ? Config.succeed(Option.fromNullable(spec.default))
      : spec.default === undefined
        ? Config.option(base(spec.env))
        : Config.map(Config.withDefault(base(spec.env), spec.default), Option.some)
})

const text = <S extends Spec<string>>(spec: S) => row({ _tag: "text" }, Config.string, spec)
const integer = <S extends Spec<number>>(spec: S) => row({ _tag: "integer" }, Config.integer, spec)
const boolean = <S extends Spec<boolean>>(spec: S) => row({ _tag: "boolean" }, Config.boolean, spec)
const duration = <S extends Spec<string>>(spec: S) => row({ _tag: "duration" }, Config.string, spec)
const choice = <const L extends string, S extends Spec<L>>(values: ReadonlyArray<L>, spec: S) =>
  row<L, S>({ _tag: "choice", values }, (name) => Config.literal(...values)(name) as Config.Config<L>, spec)
const list = <S extends Spec<ReadonlyArray<string>>>(spec: S) =>
  row<ReadonlyArray<string>, S>({ _tag: "list" }, (name) => Config.array(Config.string(), name), spec)

const seconds = (ms: number) => `${ms / 1000}s`

/**
 * The table. The order is `--help`'s and README's. A default owned by a module (Server, Connections,
 * LibvirtSource, MetricOptions) is taken from it, not retyped. @category constants
 */
export const settings = {
  host: text({
    flag: "host",
    env: "VM_METRICS_HOST",
    default: "127.0.0.1",
    description: "address to listen on",
    scope: "serve"
  }),
  port: integer({
    flag: "port",
    env: "VM_METRICS_PORT",
    default: 9464,
    description: "port to listen on, 1-65535",
    scope: "serve"
  }),
  listen: text({
    flag: "listen",
    env: "VM_METRICS_LISTEN",
    default: undefined,
    shownDefault: "--host:--port",
    description:
      "address and port to listen on in one: host:port, or [v6 address]:port; given with --host or --port, they must agree",
    scope: "serve"
  }),
  source: choice(Sources.kinds, {
    flag: "source",
    env: "VM_METRICS_SOURCE",
    default: "discovery",
    description:
      "where instances come from: discovery (hypervisor processes in /proc), file (--instances-file), libvirt",
    scope: "collect"
  }),
  instancesFile: text({
    flag: "instances-file",
    env: "VM_METRICS_INSTANCES_FILE",
    default: undefined,
    description: "JSON or YAML list of instances, for --source file",
    scope: "collect"
  }),
  libvirtRunDir: text({
    flag: "libvirt-run-dir",
    env: "VM_METRICS_LIBVIRT_RUN_DIR",
    default: LibvirtSource.DEFAULT_RUN_DIR,
    description: "libvirt's status files, for --source libvirt",
    scope: "collect"
  }),
  maxAge: duration({
    flag: "max-age",
    env: "VM_METRICS_MAX_AGE",
    default: "1s",
    description: "how long a collection is reused by concurrent requests, e.g. 500ms or 2s",
    scope: "collect"
  }),
  procRoot: text({
    flag: "proc-root",
    env: "VM_METRICS_PROC_ROOT",
    default: "/proc",
    description: "where the host's /proc is mounted (absolute, no .., a procfs mount)",
    scope: "collect"
  }),
  sysRoot: text({
    flag: "sys-root",
    env: "VM_METRICS_SYS_ROOT",
    default: "/sys",
    description: "where the host's /sys is mounted (a sysfs mount)",
    scope: "collect"
  }),
  discoveryUids: list({
    flag: "discovery-uid",
    env: "VM_METRICS_DISCOVERY_UIDS",
    default: [],
    shownDefault: "root only",
    description:
      "a uid or user name (repeatable; comma-separated in the variable) whose hypervisor processes discovery trusts besides root's; others are ignored and counted",
    scope: "collect"
  }),
  collect: list({
    flag: "collect",
    env: "VM_METRICS_COLLECT",
    default: [],
    shownDefault: `none (on by default: ${[...MetricGroup.defaultGroups].join(",")})`,
    description: `metric groups to collect besides the default ones (repeatable, or comma-separated): ${MetricGroup.allGroups.join(", ")}, all or default; see README's table of groups`,
    scope: "collect"
  }),
  noCollect: list({
    flag: "no-collect",
    env: "VM_METRICS_NO_COLLECT",
    default: [],
    shownDefault: "none",
    description:
      "metric groups not to collect (repeatable, or comma-separated; all: only the seed's metrics); wins over --collect",
    scope: "collect"
  }),
  logFormat: choice(Logging.formats, {
    flag: "log-format",
    env: "VM_METRICS_LOG_FORMAT",
    default: undefined,
    shownDefault: "logfmt, pretty when stderr is a terminal",
    description:
      "how logs are written to stderr: logfmt, json (one object a line) or pretty (colour only on a terminal, without NO_COLOR)",
    scope: "collect"
  }),
  collection: choice(Serving.modes, {
    flag: "collection",
    env: "VM_METRICS_COLLECTION",
    default: "background",
    description:
      "background: a loop collects every --interval and requests serve the latest snapshot without I/O (the max age is then at least twice the interval, so OTel reads reuse it); on-demand: a request finding the snapshot older than --max-age collects inline",
    scope: "serve"
  }),
  collectInterval: duration({
    flag: "interval",
    env: "VM_METRICS_INTERVAL",
    default: "1s",
    description:
      "with --collection background: the pause between the end of one collection and the next, e.g. 500ms or 2s",
    scope: "serve"
  }),
  discoveryInterval: duration({
    flag: "discovery-interval",
    env: "VM_METRICS_DISCOVERY_INTERVAL",
    default: "5s",
    description:
      "with --source discovery: how long a listing of /proc is reused; the listed VMs are still read on every collection (one found exited makes that collection list again, so it leaves at once), a new one appears within this; 0s lists on every collection; SIGHUP lists at once",
    scope: "serve"
  }),
  authTokenFile: text({
    flag: "auth-token-file",
    env: "VM_METRICS_AUTH_TOKEN_FILE",
    default: undefined,
    description: "file holding the bearer token required on every path but /healthz (top --url sends it)",
    scope: "serve",
    commands: "serve, top"
  }),
  authToken: text({
    flag: null,
    env: "VM_METRICS_AUTH_TOKEN",
    default: undefined,
    description: "the bearer token itself, when there is no token file",
    scope: "serve"
  }),
  metricsWithoutAuth: boolean({
    flag: "metrics-without-auth",
    env: "VM_METRICS_METRICS_WITHOUT_AUTH",
    default: false,
    shownDefault: "off",
    description:
      "serve /metrics without the bearer token (for a Prometheus without credentials); every other path but /healthz still needs it",
    scope: "serve"
  }),
  tlsCertFile: text({
    flag: "tls-cert-file",
    env: "VM_METRICS_TLS_CERT_FILE",
    default: undefined,
    shownDefault: "none (plain HTTP)",
    description:
      "PEM certificate (chain) to serve HTTPS with, together with --tls-key-file; both or neither, checked at start",
    scope: "serve"
  }),
  tlsKeyFile: text({
    flag: "tls-key-file",
    env: "VM_METRICS_TLS_KEY_FILE",
    default: undefined,
    description: "PEM private key (no passphrase) of --tls-cert-file's certificate",
    scope: "serve"
  }),
  maxConnections: integer({
    flag: "max-connections",
    env: "VM_METRICS_MAX_CONNECTIONS",
    default: undefined,
    shownDefault: `${Connections.defaults.maxConnections} or half the open-files soft limit`,
    description:
      "most connections open at once; a new one beyond closes the oldest idle one; at most half the open-files soft limit",
    scope: "serve"
  }),
  headersTimeout: duration({
    flag: "headers-timeout",
    env: "VM_METRICS_HEADERS_TIMEOUT",
    default: seconds(Connections.defaults.headersTimeoutMs),
    description: "a connection that has not sent a complete request head by then is closed",
    scope: "serve"
  }),
  requestTimeout: duration({
    flag: "request-timeout",
    env: "VM_METRICS_REQUEST_TIMEOUT",
    default: seconds(Connections.defaults.requestTimeoutMs),
    description: "a request not received whole by then is answered 408 and closed",
    scope: "serve"
  }),
  keepAliveTimeout: duration({
    flag: "keep-alive-timeout",
    env: "VM_METRICS_KEEP_ALIVE_TIMEOUT",
    default: seconds(Connections.defaults.keepAliveTimeoutMs),
    description: "an idle keep-alive connection is closed after this",
    scope: "serve"
  }),
  shutdownGrace: duration({
    flag: "shutdown-grace",
    env: "VM_METRICS_SHUTDOWN_GRACE",
    default: seconds(Connections.defaults.shutdownGraceMs),
    description: "on SIGTERM/SIGINT, connections still busy after this are closed",
    scope: "serve"
  }),
  metricPrefix: text({
    flag: "metric-prefix",
    env: "VM_METRICS_METRIC_PREFIX",
    default: MetricOptions.defaults.prefix,
    description: "prefix of every metric name (a Prometheus name)",
    scope: "serve"
  }),
  utilizationRatio: boolean({
    flag: null,
    env: "VM_METRICS_UTILIZATION_RATIO",
    default: MetricOptions.defaults.utilizationRatio,
    description: "export the derived memory utilisation ratio gauge",
    scope: "serve"
  }),
  labelBudget: integer({
    flag: null,
    env: "VM_METRICS_LABEL_BUDGET",
    default: MetricOptions.defaults.labelBudget,
    description: "more instances than this is over the label budget (warned once, counted); a positive integer",
    scope: "serve"
  }),
  seriesBudget: integer({
    flag: null,
    env: "VM_METRICS_SERIES_BUDGET",
    default: MetricOptions.defaults.seriesBudget,
    description:
      "more per-VM series than this drops metric groups from the export, opt-in ones first (vcpu, interfaces, packets), never the seed's (logged, counted); a positive integer",
    scope: "serve"
  }),
  serviceName: text({
    flag: null,
    env: "OTEL_SERVICE_NAME",
    default: undefined,
    shownDefault: "vm-metrics",
    description: "the service.name resource attribute",
    scope: "serve"
  }),
  resourceAttributes: text({
    flag: null,
    env: "OTEL_RESOURCE_ATTRIBUTES",
    default: undefined,
    shownDefault: "host.name = this host's name",
    description: "more resource attributes, key=value,… (percent-encoded values)",
    scope: "serve"
  }),
  otlp: choice(["on", "off"], {
    flag: "otlp",
    env: "VM_METRICS_OTLP",
    default: "off",
    description:
      "push metrics over OTLP too (as OTEL_METRICS_EXPORTER=otlp; the protocol from OTEL_EXPORTER_OTLP_PROTOCOL, endpoint and headers from OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_HEADERS)",
    scope: "serve"
  }),
  metricsExporter: text({
    flag: null,
    env: "OTEL_METRICS_EXPORTER",
    default: undefined,
    shownDefault: "otlp with --otlp on, else prometheus",
    description:
      "comma-separated: otlp (push too, as --otlp on), prometheus (only /metrics, which is always served) or none (no push)",
    scope: "serve"
  }),
  otlpProtocol: text({
    flag: null,
    env: "OTEL_EXPORTER_OTLP_PROTOCOL",
    default: undefined,
    shownDefault: MetricsExporter.defaultProtocol,
    description: `how the OTLP push is sent: ${MetricsExporter.protocols.join(", ")}`,
    scope: "serve"
  }),
  otlpMetricsProtocol: text({
    flag: null,
    env: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    default: undefined,
    shownDefault: "OTEL_EXPORTER_OTLP_PROTOCOL",
    description: "the same for metrics only; wins over OTEL_EXPORTER_OTLP_PROTOCOL",
    scope: "serve"
  }),
  otlpInterval: integer({
    flag: null,
    env: "OTEL_METRIC_EXPORT_INTERVAL",
    default: 60_000,
    description: "OTLP push interval in milliseconds, a positive integer",
    scope: "serve"
  }),
  url: text({
    flag: "url",
    env: "VM_METRICS_URL",
    default: undefined,
    description: "read a vm-metrics server at this base URL instead of this host",
    scope: "top"
  }),
  interval: duration({
    flag: "interval",
    env: null,
    default: "1s",
    description: "refresh interval, e.g. 1s or 500ms",
    scope: "top"
  })
} as const

/** The flags that take a value, as typed (`--port`): every setting's flag but the booleans. @category constants */
export const valuedFlags: ReadonlySet<string> = new Set(
  Object.values(settings).flatMap((setting: Setting<unknown>) =>
    setting.flag === null || setting.type._tag === "boolean" ? [] : [`--${setting.flag}`]
  )
)

/** @category models */
export type Settings = typeof settings
/** @category models */
export type Key = keyof Settings
/** The value of one setting as given (durations still text). @category models */
export type Value<K extends Key> = Settings[K] extends Setting<infer A> ? A : never

/**
 * The variables read by the OTel exporter itself (the OTLP push), not by vm-metrics; listed so that
 * `--help` and README name them. @category constants
 */
export const exporterVariables = [
  {
    env: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT",
    default: "http://localhost:4318/v1/metrics (grpc: http://localhost:4317)",
    description: "where the OTLP push goes (with --otlp on); an http(s) URL, else a usage error"
  },
  {
    env: "OTEL_EXPORTER_OTLP_METRICS_HEADERS / OTEL_EXPORTER_OTLP_HEADERS",
    default: "none",
    description: "headers for the push, e.g. an API key: name=value,… with percent-encoded values, else a usage error"
  }
] as const

/** The default as shown, or "none". @category getters */
export const shownDefault = (setting: Setting<unknown>): string =>
  setting.shownDefault ??
  (setting.default === undefined
    ? "none"
    : Array.isArray(setting.default)
      ? setting.default.join(",")
      : String(setting.default))

/** `--help`'s text of a setting: description, default and variable. @category getters */
export const helpText = (setting: Setting<unknown>): string =>
  `${setting.description}; default ${shownDefault(setting)}${setting.env === null ? "" : ` (env ${setting.env})`}`

/** The settings taken from the environment only, as `--help` lists them under a command. @category getters */
export const environmentOnlyHelp = (scope: Scope): string =>
  `environment only: ${[
    ...Object.values(settings)
      .filter((setting: Setting<unknown>) => setting.flag === null && setting.scope === scope)
      .map((setting: Setting<unknown>) => `${setting.env}: ${helpText(setting).replace(/ \(env [^)]*\)$/, "")}`),
    ...(scope === "serve"
      ? exporterVariables.map((v) => `${v.env}: ${v.description}; default ${v.default} (read by the OTel exporter)`)
      : [])
  ].join("; ")}`

const commandsOf: Record<Scope, string> = { collect: "serve, list, stats, top", serve: "serve", top: "top" }

/** README's configuration table, row for row (test/Cli.test.ts keeps README equal to it). @category getters */
export const markdownTable = (): string =>
  [
    "| flag | environment variable | default | commands | meaning |",
    "|---|---|---|---|---|",
    ...Object.values(settings).map(
      (setting: Setting<unknown>) =>
        `| ${setting.flag === null ? "" : `\`--${setting.flag}\``} | ${setting.env === null ? "" : `\`${setting.env}\``} | \`${shownDefault(setting)}\` | ${setting.commands ?? commandsOf[setting.scope]} | ${setting.description} |`
    ),
    ...exporterVariables.map(
      (v) => `|  | \`${v.env}\` | \`${v.default}\` | serve | ${v.description}; read by the OTel exporter |`
    )
  ].join("\n")

/** The longest delay a timer holds (2^31 − 1 ms, ~24.8 days); Node runs a longer one after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647

/**
 * "500ms", "2s", "1.5 seconds", "250 millis" → a Duration of at most MAX_TIMER_MS (every duration flag
 * ends up in a timer: a grace of 10^10 s would otherwise be 1 ms); anything else is a UsageError.
 * @category parsers
 */
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
  if (!(millis <= MAX_TIMER_MS))
    return Either.left(
      new UsageError({ message: `too long: ${JSON.stringify(text)} (at most ${MAX_TIMER_MS}ms, ~24 days)` })
    )
  return Either.right(Duration.millis(millis))
}

/** A duration flag's value; a bad one is a UsageError naming the flag. @category parsers */
export const durationOf = (flag: string, text: string): Either.Either<Duration.Duration, UsageError> =>
  Either.mapLeft(parseDuration(text), (error) => new UsageError({ message: `--${flag}: ${error.message}` }))

/** A duration flag's value that must be at least 1 ms (a timer of 0 fires without pause). @category parsers */
export const positiveDurationOf = (flag: string, text: string): Either.Either<Duration.Duration, UsageError> =>
  Either.flatMap(durationOf(flag, text), (duration) =>
    Duration.toMillis(duration) < 1
      ? Either.left(new UsageError({ message: `--${flag} must be > 0, got ${text}` }))
      : Either.right(duration)
  )

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

/** Where to listen. @category models */
export interface Address {
  readonly host: string
  readonly port: number
}

/**
 * `host:port` or `[v6 address]:port` (`--listen`) → the address; anything else is a UsageError saying what is
 * wrong with it. There is no host-less `:port`: listening on every address is said, as `0.0.0.0` or `[::]`.
 * @category parsers
 */
export const parseListen = (text: string): Either.Either<Address, UsageError> => {
  const bad = (why: string) => Either.left(new UsageError({ message: `--listen ${JSON.stringify(text)}: ${why}` }))
  const match = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text)
  if (match === null)
    return !text.startsWith("[") && text.split(":").length > 2
      ? bad("an IPv6 address goes in brackets, e.g. [::1]:9464")
      : bad("expected host:port or [IPv6 address]:port, e.g. 127.0.0.1:9464")
  const [, v6, name, portText = ""] = match
  if (v6 !== undefined && !net.isIPv6(v6)) return bad("not an IPv6 address in the brackets")
  const host = v6 ?? name ?? ""
  if (host === "") return bad("no host (0.0.0.0 or [::] listens on every address)")
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : Number.NaN
  if (!(port >= 1 && port <= 65535)) return bad("the port must be 1-65535")
  return Either.right({ host, port })
}

/** What says where to listen, each None when not given (neither flag nor variable). @category models */
export interface ListenInput {
  readonly listen: Option.Option<string>
  readonly host: Option.Option<string>
  readonly port: Option.Option<number>
}

/**
 * `--listen`, else `--host` and `--port` (each else its default). With `--listen`, a `--host` or `--port` given
 * too must say the same (or the operator meant something else than what would be served): else a UsageError.
 * @category constructors
 */
export const listenAddress = (input: ListenInput): Either.Either<Address, UsageError> =>
  Either.gen(function* () {
    const host = Option.map(input.host, (given) => given.replace(/^\[(.*)\]$/, "$1"))
    if (Option.isNone(input.listen))
      return {
        host: Option.getOrElse(host, () => settings.host.default),
        port: Option.getOrElse(input.port, () => settings.port.default)
      }
    const listen = yield* parseListen(input.listen.value)
    const disagree = (flag: string, given: string | number) =>
      new UsageError({
        message: `--listen ${input.listen.pipe(Option.getOrElse(() => ""))} and --${flag} ${given} disagree: give one of them, or the same address`
      })
    if (Option.isSome(host) && host.value.toLowerCase() !== listen.host.toLowerCase())
      return yield* Either.left(disagree("host", host.value))
    if (Option.isSome(input.port) && input.port.value !== listen.port)
      return yield* Either.left(disagree("port", input.port.value))
    return listen
  })

// ---------- the resolved configuration ----------

/** What the collector needs: source → readers → collector. @category models */
export interface CollectConfig {
  readonly source: Sources.Kind
  readonly instancesFile: Option.Option<string>
  readonly libvirtRunDir: string
  readonly discoveryUids: ReadonlyArray<string>
  readonly procRoot: string
  readonly sysRoot: string
  readonly maxAge: Duration.DurationInput
  /** How long discovery's listing is reused by the collections after it (`--discovery-interval`). */
  readonly discoveryInterval: Duration.DurationInput
  /** The metric groups read (and exported): the default ones, plus `--collect`, less `--no-collect`. */
  readonly groups: ReadonlySet<MetricGroup.MetricGroup>
}

/** What the export pipeline adds: metric options, resource, OTLP push. @category models */
export interface PipelineConfig extends CollectConfig {
  readonly metrics: MetricOptions.MetricOptions
  readonly resource: ResourceAttributes.ResourceOptions
  /** Push over OTLP every `otlpInterval`. */
  readonly otlp: boolean
  readonly otlpInterval: Duration.DurationInput
  /** The push's transport. */
  readonly otlpProtocol: MetricsExporter.Protocol
}

/** Everything `serve` needs. @category models */
export interface AppConfig extends PipelineConfig {
  readonly host: string
  readonly port: number
  readonly authToken: Option.Option<Redacted.Redacted<string>>
  readonly metricsWithoutAuth: boolean
  /** Serve HTTPS with this certificate and key (read and checked); None: plain HTTP. */
  readonly tls: Option.Option<Tls.Credentials>
  readonly limits: Connections.Limits
  /**
   * The line that says how the connection limit was chosen (logged once the pipeline is built, so a
   * bad option never follows a log line); a warning when the limit was lowered. None: nothing to say.
   */
  readonly connectionsNote: Option.Option<{ readonly message: string; readonly warning: boolean }>
  /** Collect in a background loop (every `interval`) or inline on demand. */
  readonly collection: Serving.Mode
  readonly interval: Duration.DurationInput
}

/** The defaults of the table, as an AppConfig (no token, the default connection limits). @category constants */
export const defaults: AppConfig = {
  source: settings.source.default,
  instancesFile: Option.none(),
  libvirtRunDir: settings.libvirtRunDir.default,
  discoveryUids: settings.discoveryUids.default,
  procRoot: settings.procRoot.default,
  sysRoot: settings.sysRoot.default,
  maxAge: Either.getOrThrow(parseDuration(settings.maxAge.default)),
  discoveryInterval: Either.getOrThrow(parseDuration(settings.discoveryInterval.default)),
  groups: MetricGroup.defaultGroups,
  metrics: {
    prefix: settings.metricPrefix.default,
    utilizationRatio: settings.utilizationRatio.default,
    labelBudget: settings.labelBudget.default,
    seriesBudget: settings.seriesBudget.default,
    groups: MetricGroup.defaultGroups
  },
  resource: {},
  otlp: false,
  otlpInterval: Duration.millis(settings.otlpInterval.default),
  otlpProtocol: MetricsExporter.defaultProtocol,
  host: settings.host.default,
  port: settings.port.default,
  authToken: Option.none(),
  metricsWithoutAuth: settings.metricsWithoutAuth.default,
  tls: Option.none(),
  limits: Connections.defaults,
  connectionsNote: Option.none(),
  collection: settings.collection.default,
  interval: Either.getOrThrow(parseDuration(settings.collectInterval.default))
}

/** The collect settings as given (by flags, else the environment, else defaults). @category models */
export interface CollectInput {
  readonly source: Value<"source">
  readonly instancesFile: Option.Option<string>
  readonly libvirtRunDir: string
  readonly maxAge: string
  readonly procRoot: string
  readonly sysRoot: string
  readonly discoveryUids: ReadonlyArray<string>
  /** `--collect` lists as given (each comma-separated); absent: none. */
  readonly collect?: ReadonlyArray<string>
  /** `--no-collect` lists as given; absent: none. */
  readonly noCollect?: ReadonlyArray<string>
  /** `--discovery-interval` as given (serve only); absent: the table's default. */
  readonly discoveryInterval?: string
}

/** The serve settings that have a flag, as given. @category models */
export interface ServeInput extends CollectInput {
  readonly host: string
  readonly port: number
  readonly authTokenFile: Option.Option<string>
  readonly metricsWithoutAuth: boolean
  /** `--tls-cert-file` / `--tls-key-file` (absent: none). */
  readonly tlsCertFile?: Option.Option<string>
  readonly tlsKeyFile?: Option.Option<string>
  readonly maxConnections: Option.Option<number>
  readonly headersTimeout: string
  readonly requestTimeout: string
  readonly keepAliveTimeout: string
  readonly shutdownGrace: string
  readonly metricPrefix: string
  readonly otlp: Value<"otlp">
  /** Absent: the table's default (callers built before these settings existed). */
  readonly collection?: Value<"collection">
  readonly interval?: string
}

/**
 * The groups of `--collect` / `--no-collect` lists (each item comma-separated); an unknown name is a
 * UsageError naming the groups (and the renamed `--collection` for a mode given to `--collect`).
 */
const groupsOf = (
  setting: Setting<ReadonlyArray<string>>,
  lists: ReadonlyArray<string>
): Either.Either<ReadonlyArray<MetricGroup.MetricGroup>, UsageError> =>
  Either.map(
    Either.mapLeft(MetricGroup.parseList(lists.join(",")), (error) => {
      const renamed = (Serving.modes as ReadonlyArray<string>).includes(error.name)
        ? `; the collection mode is set by --${settings.collection.flag}`
        : ""
      return new UsageError({ message: `--${setting.flag} (${setting.env}): ${error.message}${renamed}` })
    }),
    (groups) => [...groups]
  )

/** The enabled groups: the default ones, plus those of `--collect`, less those of `--no-collect`. @category constructors */
export const resolveGroups = (
  input: Pick<CollectInput, "collect" | "noCollect">
): Either.Either<ReadonlySet<MetricGroup.MetricGroup>, UsageError> =>
  Either.gen(function* () {
    const add = yield* groupsOf(settings.collect, input.collect ?? [])
    const remove = yield* groupsOf(settings.noCollect, input.noCollect ?? [])
    return MetricGroup.select(MetricGroup.defaultGroups, add, remove)
  })

/** statfs(2) f_type of procfs and sysfs (linux/magic.h). */
const PROC_SUPER_MAGIC = 0x9fa0
const SYSFS_MAGIC = 0x62656572

/**
 * Why a root given in place of /proc or /sys is not a mount of the filesystem it stands for, or
 * undefined. The agent reads only from /proc and /sys: a root elsewhere (a host's /proc mounted at
 * /host/proc is still procfs) would have it read `<root>/<pid>/…` of any directory tree. The defaults
 * are the machine's own /proc and /sys, taken as they are (a sandbox may have a tmpfs at /sys); a
 * relative root is refused later, by the readers.
 */
const mountProblem = (
  flag: string,
  root: string,
  standsFor: string,
  magic: number,
  kind: string
): string | undefined => {
  if (!root.startsWith("/") || root.replace(/\/+$/, "") === standsFor) return undefined
  try {
    return fs.statfsSync(root).type === magic ? undefined : `--${flag} ${root} is not a ${kind} mount`
  } catch (error) {
    return `--${flag} ${root}: cannot read it (${(error as NodeJS.ErrnoException).code ?? "unknown error"})`
  }
}

/** @category constructors */
export const resolveCollect = (input: CollectInput): Effect.Effect<CollectConfig, UsageError> =>
  Effect.gen(function* () {
    const mounts = [
      mountProblem("proc-root", input.procRoot, "/proc", PROC_SUPER_MAGIC, "procfs"),
      mountProblem("sys-root", input.sysRoot, "/sys", SYSFS_MAGIC, "sysfs")
    ].filter((problem) => problem !== undefined)
    if (mounts.length > 0) return yield* new UsageError({ message: mounts.join("; ") })
    const maxAge = yield* durationOf("max-age", input.maxAge)
    const discoveryInterval = yield* durationOf(
      "discovery-interval",
      input.discoveryInterval ?? settings.discoveryInterval.default
    )
    const groups = yield* resolveGroups(input)
    return {
      source: input.source,
      instancesFile: input.instancesFile,
      libvirtRunDir: input.libvirtRunDir,
      discoveryUids: input.discoveryUids,
      procRoot: input.procRoot,
      sysRoot: input.sysRoot,
      maxAge,
      discoveryInterval,
      groups
    }
  })

/** An environment-only setting; a bad value names the variable. @category getters */
export const fromEnv = <A>(setting: Setting<A>): Effect.Effect<Option.Option<A>, UsageError> =>
  Effect.mapError(setting.config, (error) => new UsageError({ message: `${setting.env}: ${oneLine(String(error))}` }))

const oneLine = (text: string) => text.replace(/\s+/g, " ").trim()

/** The token from the token file, else VM_METRICS_AUTH_TOKEN, else none. @category constructors */
export const readToken = (file: Option.Option<string>) =>
  Effect.gen(function* () {
    if (Option.isSome(file)) {
      const text = yield* Effect.try({
        try: () => fs.readFileSync(file.value, "utf8"),
        catch: () => new UsageError({ message: `cannot read the auth token file ${file.value}` })
      })
      return Option.some(yield* checkToken(text, `the auth token file ${file.value}`))
    }
    const given = yield* settings.authToken.config.pipe(
      Effect.mapError(() => new UsageError({ message: "VM_METRICS_AUTH_TOKEN is not valid" }))
    )
    if (Option.isNone(given)) return Option.none<Redacted.Redacted<string>>()
    return Option.some(yield* checkToken(given.value, "VM_METRICS_AUTH_TOKEN"))
  })

/** Where MetricOptions' options come from, for their errors. */
const SETTING_OF_OPTION: Record<string, string> = {
  prefix: "--metric-prefix (VM_METRICS_METRIC_PREFIX)",
  labelBudget: "VM_METRICS_LABEL_BUDGET",
  seriesBudget: "VM_METRICS_SERIES_BUDGET"
}

/** The connection settings as Connections.Limits, the max checked against the open-files soft limit (and the note saying so). */
const connectionLimits = (input: ServeInput) =>
  Effect.gen(function* () {
    const ms = (flag: string, text: string) => Effect.map(durationOf(flag, text), Duration.toMillis)
    const headersTimeoutMs = yield* ms("headers-timeout", input.headersTimeout)
    const requestTimeoutMs = yield* ms("request-timeout", input.requestTimeout)
    // Node reads a keep-alive timeout of 0 as "never close an idle connection".
    const keepAliveTimeoutMs = Duration.toMillis(
      yield* positiveDurationOf("keep-alive-timeout", input.keepAliveTimeout)
    )
    const shutdownGraceMs = yield* ms("shutdown-grace", input.shutdownGrace)
    if (headersTimeoutMs < 1 || requestTimeoutMs < headersTimeoutMs)
      return yield* new UsageError({
        message: `--headers-timeout must be > 0 and at most --request-timeout (${input.headersTimeout} > ${input.requestTimeout})`
      })
    const softLimit = Connections.fdSoftLimit()
    const chosen = yield* Either.mapLeft(
      Connections.chooseMax(Option.getOrUndefined(input.maxConnections), softLimit),
      (message) => new UsageError({ message })
    )
    const why = chosen.clamped ? "lowered to half the open-files soft limit" : "half the soft limit is the collector's"
    const limits: Connections.Limits = {
      headersTimeoutMs,
      requestTimeoutMs,
      keepAliveTimeoutMs,
      shutdownGraceMs,
      maxConnections: chosen.max
    }
    const message = `connections: at most ${chosen.max}; open files: soft limit ${softLimit ?? "unlimited"} (${why})`
    return { limits, note: { message, warning: chosen.clamped } }
  })

/** The resource options from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES. */
const resourceFromEnv = Effect.gen(function* () {
  const serviceName = yield* fromEnv(settings.serviceName)
  const list = Option.map(yield* fromEnv(settings.resourceAttributes), ResourceAttributes.parseAttributeList)
  // As the OTel specification says: OTEL_SERVICE_NAME, else a service.name in the attribute list.
  const name = Option.orElse(serviceName, () => Option.flatMapNullable(list, (a) => a["service.name"]))
  return {
    ...(Option.isSome(name) ? { serviceName: name.value } : {}),
    ...(Option.isSome(list) ? { attributes: list.value } : {})
  } satisfies ResourceAttributes.ResourceOptions
})

/** A variable given non-blank (the OTel specification reads a blank one as unset): its name and text. */
const givenText = (setting: Setting<string>) =>
  Effect.map(fromEnv(setting), (text) =>
    Option.filterMap(text, (value) =>
      value.trim() === "" ? Option.none() : Option.some([setting.env ?? "", value] as const)
    )
  )

/**
 * Whether to push over OTLP (`--otlp on`, or `otlp` in OTEL_METRICS_EXPORTER; `--otlp on` with a list
 * without it is a contradiction) and the protocol (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, else
 * OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf), checked even when not pushing. @category constructors
 */
export const otlpPush = (flagOn: boolean) =>
  Effect.gen(function* () {
    const usage = (message: string) => new UsageError({ message })
    const list = yield* givenText(settings.metricsExporter)
    const exporters = Option.isSome(list)
      ? yield* Either.mapLeft(MetricsExporter.parseExporters(list.value[1]), usage)
      : undefined
    if (flagOn && exporters !== undefined && !exporters.has("otlp"))
      return yield* usage(`--otlp on contradicts OTEL_METRICS_EXPORTER=${Option.getOrThrow(list)[1]}`)
    const specific = yield* givenText(settings.otlpMetricsProtocol)
    const given = Option.isSome(specific) ? specific : yield* givenText(settings.otlpProtocol)
    const otlpProtocol = Option.isSome(given)
      ? yield* Either.mapLeft(MetricsExporter.parseProtocol(given.value[1], given.value[0]), usage)
      : MetricsExporter.defaultProtocol
    const otlp = flagOn || exporters?.has("otlp") === true
    // Read by the OTel exporter, which would push to its default, or without them, rather than refuse them.
    const exporterText = (variable: string) => Effect.orDie(Config.option(Config.string(variable)))
    for (const variable of otlp ? ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"] : []) {
      const text = yield* exporterText(variable)
      const problem = Option.flatMapNullable(text, (value) =>
        MetricsExporter.endpointProblem(value, variable, otlpProtocol)
      )
      if (Option.isSome(problem)) return yield* usage(problem.value)
    }
    for (const variable of otlp ? ["OTEL_EXPORTER_OTLP_METRICS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"] : []) {
      const problem = Option.flatMapNullable(yield* exporterText(variable), (value) =>
        MetricsExporter.headersProblem(value, variable)
      )
      if (Option.isSome(problem)) return yield* usage(problem.value)
    }
    return { otlp, otlpProtocol }
  })

/** Everything `serve` runs with: the flags given, plus the environment-only settings. @category constructors */
export const resolveServe = (input: ServeInput): Effect.Effect<AppConfig, UsageError> =>
  Effect.gen(function* () {
    if (input.port < 1 || input.port > 65535)
      return yield* new UsageError({ message: `--port must be 1-65535, got ${input.port}` })
    const collect = yield* resolveCollect(input)
    const collectInterval = yield* positiveDurationOf("interval", input.interval ?? settings.collectInterval.default)
    const authToken = yield* readToken(input.authTokenFile)
    const tls = yield* Effect.mapError(
      Tls.load(input.tlsCertFile ?? Option.none(), input.tlsKeyFile ?? Option.none()),
      (error) => new UsageError({ message: error.message })
    )
    const { limits, note } = yield* connectionLimits(input)
    const utilizationRatio = yield* fromEnv(settings.utilizationRatio)
    const labelBudget = yield* fromEnv(settings.labelBudget)
    const seriesBudget = Option.getOrElse(yield* fromEnv(settings.seriesBudget), () => defaults.metrics.seriesBudget)
    if (!Number.isSafeInteger(seriesBudget) || seriesBudget < 1)
      return yield* new UsageError({
        message: `VM_METRICS_SERIES_BUDGET must be a positive integer, got ${seriesBudget}`
      })
    const interval = Option.getOrElse(yield* fromEnv(settings.otlpInterval), () => settings.otlpInterval.default)
    if (!Number.isSafeInteger(interval) || interval < 1 || interval > MAX_TIMER_MS)
      return yield* new UsageError({
        message: `OTEL_METRIC_EXPORT_INTERVAL must be a positive integer of ms up to ${MAX_TIMER_MS} (~24 days), got ${interval}`
      })
    const push = yield* otlpPush(input.otlp === "on")
    const metrics = yield* Effect.mapError(
      MetricOptions.make({
        prefix: input.metricPrefix,
        utilizationRatio: Option.getOrElse(utilizationRatio, () => defaults.metrics.utilizationRatio),
        labelBudget: Option.getOrElse(labelBudget, () => defaults.metrics.labelBudget),
        seriesBudget,
        groups: collect.groups
      }),
      (error) => new UsageError({ message: `${SETTING_OF_OPTION[error.option] ?? error.option}: ${error.reason}` })
    )
    return {
      ...collect,
      host: input.host,
      port: input.port,
      authToken,
      metricsWithoutAuth: input.metricsWithoutAuth,
      tls,
      limits,
      connectionsNote: Option.some(note),
      collection: input.collection ?? settings.collection.default,
      interval: collectInterval,
      metrics,
      resource: yield* resourceFromEnv,
      ...push,
      otlpInterval: Duration.millis(interval)
    }
  })
