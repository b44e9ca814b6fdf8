import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { endpointProblem, headersProblem, parseExporters, parseProtocol } from "../src/MetricsExporter.js"

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

describe("OTEL_EXPORTER_OTLP_*ENDPOINT", () => {
  it("an http(s) URL with a host, blank as unset; for grpc also host:port and unix:", () => {
    for (const good of ["http://collector:4318/v1/metrics", "https://otel.example.com", "http://[::1]:4318", " ", ""])
      assert.isUndefined(endpointProblem(good, "V", "http/protobuf"), good)
    for (const good of ["collector:4317", "http://collector:4317", "unix:///run/otel.sock"])
      assert.isUndefined(endpointProblem(good, "V", "grpc"), good)
    for (const [bad, protocol] of [
      ["notaurl", "http/protobuf"],
      ["collector:4318", "http/json"],
      ["ftp://collector", "http/protobuf"],
      ["http://[::1", "http/protobuf"],
      ["http://", "http/protobuf"],
      ["ftp://collector", "grpc"],
      ["unix:///run/otel.sock", "http/protobuf"]
    ] as const)
      assert.strictEqual(
        endpointProblem(bad, "OTEL_EXPORTER_OTLP_ENDPOINT", protocol),
        `OTEL_EXPORTER_OTLP_ENDPOINT=${JSON.stringify(bad)}: not an http(s) URL`,
        `${bad} ${protocol}`
      )
  })
})

describe("OTEL_EXPORTER_OTLP_*HEADERS", () => {
  it("name=value pairs, values percent-encoded without control characters; the message never quotes a value", () => {
    for (const good of ["api-key=s3cr%3Dt", "a=1, b = 2", "a=1,,b=2", "", "x-empty="])
      assert.isUndefined(headersProblem(good, "V"), good)
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["s3cret", "item 1 has no '='"],
      ["a=1,=2", "item 2 does not start with a header name"],
      ["a b=1", "item 1 does not start with a header name"],
      ["api-key=s3cret%zz", "item 1 has a value that is not valid percent-encoding"],
      ["api-key=s3cret%0D%0AX-Injected: 1", "item 1 has a control character in its value"]
    ]
    for (const [bad, why] of cases) {
      const problem = headersProblem(bad, "OTEL_EXPORTER_OTLP_HEADERS")
      assert.strictEqual(problem, `OTEL_EXPORTER_OTLP_HEADERS: ${why} (expected name=value,…, values percent-encoded)`)
      assert.notInclude(problem, "s3cret")
    }
  })
})
