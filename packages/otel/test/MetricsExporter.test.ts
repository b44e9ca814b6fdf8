import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { parseExporters, parseProtocol } from "../src/MetricsExporter.js"

const exporters = (text: string) => {
  const result = parseExporters(text)
  return Either.isRight(result) ? (result.right === undefined ? undefined : [...result.right].sort()) : result.left
}

describe("OTEL_METRICS_EXPORTER", () => {
  it("a comma-separated list, trimmed, case-insensitive, repeats once", () => {
    assert.deepStrictEqual(exporters("otlp"), ["otlp"])
    assert.deepStrictEqual(exporters(" OTLP , prometheus,otlp,"), ["otlp", "prometheus"])
    assert.deepStrictEqual(exporters("prometheus"), ["prometheus"])
    assert.deepStrictEqual(exporters("none"), [])
    assert.deepStrictEqual(exporters("none, none"), [])
  })

  it("blank is unset", () => {
    assert.isUndefined(exporters(""))
    assert.isUndefined(exporters(" , "))
  })

  it("none with another, console, logging and unknown names are refused, naming the variable", () => {
    assert.strictEqual(
      exporters("none,otlp"),
      'OTEL_METRICS_EXPORTER="none,otlp": none means no exporter, it cannot be combined with another'
    )
    assert.include(exporters("console") as string, "console is not supported")
    assert.include(exporters("otlp,logging") as string, "logging is not supported")
    assert.strictEqual(
      exporters("zipkin"),
      'OTEL_METRICS_EXPORTER="zipkin": unknown exporter "zipkin"; use otlp, prometheus or none'
    )
  })
})

describe("OTEL_EXPORTER_OTLP_*PROTOCOL", () => {
  it("the three specification names, and nothing else", () => {
    for (const name of ["http/protobuf", "http/json", "grpc"])
      assert.strictEqual(Either.getOrNull(parseProtocol(name, "V")), name)
    assert.deepStrictEqual(parseProtocol(" grpc ", "V"), Either.right("grpc"))
    for (const name of ["http", "HTTP/PROTOBUF", "grpc/protobuf", "json"])
      assert.deepStrictEqual(
        parseProtocol(name, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        Either.left(
          `OTEL_EXPORTER_OTLP_PROTOCOL=${JSON.stringify(name)}: expected one of http/protobuf, http/json, grpc`
        )
      )
  })
})
