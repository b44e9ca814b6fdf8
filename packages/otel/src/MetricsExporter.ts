/**
 * Which metrics exporters the OTel SDK environment asks for (`OTEL_METRICS_EXPORTER`) and which OTLP
 * protocol the push speaks (`OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`), as
 * the OpenTelemetry SDK environment specification names them. Pure parsing: a bad value is a message
 * naming the variable, for a one-line usage error.
 *
 * For an agent whose pull endpoint (`/metrics`) is its own HTTP API, always served:
 * - `otlp`: push over OTLP too;
 * - `prometheus`: the pull endpoint only (there is no separate Prometheus exporter to start);
 * - `none`: no exporter is started, so no push (alone only: with another value it is a contradiction).
 * `console` (and the deprecated `logging`) are refused: the agent has no console exporter.
 *
 * The push's endpoint and headers are read by the OTel exporter itself, which skips a value it cannot
 * use (with a diagnostic nobody sees) and pushes to its default, `localhost`, or without the API key:
 * `endpointProblem` and `headersProblem` let a caller refuse them at start instead.
 *
 * @since 0.1.0
 */
import { Either } from "effect"

/** The OTLP transports, by their specification names. @category models */
export const protocols = ["http/protobuf", "http/json", "grpc"] as const
/** @category models */
export type Protocol = (typeof protocols)[number]
/** The specification's default. @category constants */
export const defaultProtocol: Protocol = "http/protobuf"

/** The exporters the agent knows. @category models */
export type Exporter = "otlp" | "prometheus"

/** `OTEL_EXPORTER_OTLP_*PROTOCOL`'s text → the protocol, else a message. @category parsers */
export const parseProtocol = (text: string, variable: string): Either.Either<Protocol, string> => {
  const value = text.trim()
  return (protocols as ReadonlyArray<string>).includes(value)
    ? Either.right(value as Protocol)
    : Either.left(`${variable}=${JSON.stringify(text)}: expected one of ${protocols.join(", ")}`)
}

/**
 * `OTEL_METRICS_EXPORTER`'s comma-separated list → the exporters asked for (empty for `none`); blank
 * (the specification's "unset") → undefined. Values are trimmed and case-insensitive; repeats are one.
 * @category parsers
 */
export const parseExporters = (
  text: string,
  variable = "OTEL_METRICS_EXPORTER"
): Either.Either<ReadonlySet<Exporter> | undefined, string> => {
  const values = text
    .split(",")
    .map((value) => value.trim().toLowerCase())
    .filter((value) => value !== "")
  if (values.length === 0) return Either.right(undefined)
  const bad = (why: string) => Either.left(`${variable}=${JSON.stringify(text)}: ${why}`)
  if (values.includes("none"))
    return values.every((value) => value === "none")
      ? Either.right(new Set())
      : bad("none means no exporter, it cannot be combined with another")
  const exporters = new Set<Exporter>()
  for (const value of values) {
    if (value === "otlp" || value === "prometheus") exporters.add(value)
    else if (value === "console" || value === "logging")
      return bad(`${value} is not supported (vm-metrics has no console exporter); use otlp, prometheus or none`)
    else return bad(`unknown exporter ${JSON.stringify(value)}; use otlp, prometheus or none`)
  }
  return Either.right(exporters)
}

/**
 * Why an `OTEL_EXPORTER_OTLP_*ENDPOINT` value is not an endpoint the push can use, or undefined: an
 * http(s) URL with a host (for grpc, a `host:port` without a scheme is taken as https, as its exporter
 * does, and `unix:` is accepted). Blank is the specification's "unset". @category parsers
 */
export const endpointProblem = (text: string, variable: string, protocol: Protocol): string | undefined => {
  const value = text.trim()
  if (value === "") return undefined
  const bad = `${variable}=${JSON.stringify(text)}: not an http(s) URL`
  if (protocol === "grpc" && value.startsWith("unix:")) return undefined
  const url = protocol === "grpc" && !/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? `https://${value}` : value
  try {
    const parsed = new URL(url)
    return (parsed.protocol === "http:" || parsed.protocol === "https:") && parsed.hostname !== "" ? undefined : bad
  } catch {
    return bad
  }
}

/** An HTTP header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/**
 * Why an `OTEL_EXPORTER_OTLP_*HEADERS` value is not a list of headers, or undefined: comma-separated
 * `name=value` pairs, name a header name, value percent-encoded and, decoded, free of control characters
 * (no header can be smuggled in with a line break). Empty items are skipped, as the specification's
 * W3C-baggage format allows. The message never quotes the value: it may hold an API key. @category parsers
 */
export const headersProblem = (text: string, variable: string): string | undefined => {
  const items = text.split(",").map((item) => item.trim())
  for (let i = 0; i < items.length; i++) {
    if (items[i] === "") continue
    const bad = (why: string) => `${variable}: item ${i + 1} ${why} (expected name=value,…, values percent-encoded)`
    const equals = items[i].indexOf("=")
    if (equals < 0) return bad("has no '='")
    const name = items[i].slice(0, equals).trim()
    if (!TOKEN.test(name)) return bad("does not start with a header name")
    let value: string
    try {
      value = decodeURIComponent(items[i].slice(equals + 1).trim())
    } catch {
      return bad("has a value that is not valid percent-encoding")
    }
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(value)) return bad("has a control character in its value")
  }
  return undefined
}
