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
