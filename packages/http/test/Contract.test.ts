/**
 * The one HTTP contract: the bodies the server writes decode with the schema the OpenAPI document is
 * generated from (64-bit integers exact, also above 2^53), and that document is the checked-in one.
 *
 * The document is compared by value with `fixtures/openapi.json` (any JSON formatting), as Effect's
 * platform tests compare theirs. A change to the API shows up here as a diff; to accept it, write the
 * file again with `VM_METRICS_WRITE_OPENAPI=1 npx vitest run packages/http/test/Contract.test.ts` and
 * `npx biome format --write packages/http/test/fixtures/openapi.json` (never done under CI).
 */
import * as fs from "node:fs"
import { OpenApi } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { noGroupValues, type VmStats } from "@vm-metrics/core/VmStats"
import { Either, Schema } from "effect"
import { VmMetricsApi } from "../src/Api.js"
import * as ExactJson from "../src/ExactJson.js"
import { InstanceList, InstanceStats, listJson, statsBody, statsJson } from "../src/StatsJson.js"

const FIXTURE = new URL("./fixtures/openapi.json", import.meta.url)

const running: VmStats = {
  instanceId: "qilviffnqzck2jrim1x6s2b1",
  instanceName: "web",
  state: "running",
  pid: 101,
  tapDevice: "hype-qilviffn",
  processStartTicks: 4242n,
  processStartTimeMs: 1_700_000_042_420,
  seriesStartTimeMs: 1_700_000_042_420,
  epoch: 2,
  sampledAtMs: 1_700_000_100_000,
  cpuUsec: 29_940_000n,
  guestUsec: 0n,
  memoryRssBytes: 443_338_752n,
  memoryVmsBytes: 2n ** 53n + 1n,
  netRxBytes: 2n ** 64n - 1n,
  netTxBytes: 9_007_199_254_740_993n,
  allocatedVcpus: 2,
  allocatedMemoryBytes: 4 * 1024 ** 3,
  unavailable: [],
  ...noGroupValues
}

const exited: VmStats = {
  ...running,
  instanceId: "zz1",
  instanceName: "gone",
  state: "exited",
  tapDevice: null,
  processStartTicks: null,
  processStartTimeMs: null,
  cpuUsec: null,
  guestUsec: null,
  memoryRssBytes: null,
  memoryVmsBytes: null,
  netRxBytes: null,
  netTxBytes: null,
  allocatedMemoryBytes: 0,
  unavailable: [{ source: "stat", reason: "process_gone", message: "/proc/101/stat: no such process" }]
}

const decodeStats = (text: string) => Schema.decodeUnknownEither(InstanceStats)(ExactJson.read(text))

describe("the HTTP contract", () => {
  it("statsJson(vm) decodes with the schema to the body it was written from, integers above 2^53 exact", () => {
    const text = statsJson(running)
    assert.include(text, '"network_rx_bytes":18446744073709551615')
    assert.include(text, '"memory_vms_bytes":9007199254740993')
    const body = Either.getOrThrow(decodeStats(text))
    assert.deepStrictEqual(body, statsBody(running))
    assert.strictEqual(body.network_rx_bytes, 18_446_744_073_709_551_615n)
    assert.strictEqual(body.network_tx_bytes, 9_007_199_254_740_993n)
    assert.strictEqual(body.memory_vms_bytes, 9_007_199_254_740_993n)
    assert.strictEqual(body.memory_rss_bytes, 443_338_752n)
    assert.strictEqual(body.allocated_memory_bytes, 4_294_967_296n)
    assert.strictEqual(body.cpu_seconds, 29.94)
    assert.strictEqual(body.process_start_time, "2023-11-14T22:14:02.420Z")
    assert.strictEqual(body.state, "running")
  })

  it("statsJson(vm) of a VM with nothing read decodes with its nulls and reasons", () => {
    const body = Either.getOrThrow(decodeStats(statsJson(exited)))
    assert.deepStrictEqual(body, statsBody(exited))
    for (const field of [
      "cpu_seconds",
      "memory_rss_bytes",
      "memory_vms_bytes",
      "network_rx_bytes",
      "network_tx_bytes",
      "memory_utilization_ratio",
      "tap_device",
      "process_start_time"
    ] as const) {
      assert.isNull(body[field], field)
    }
    assert.strictEqual(body.allocated_memory_bytes, 0n)
    assert.deepStrictEqual(body.unavailable, exited.unavailable)
  })

  it("the list body decodes with its schema; a source error is a kind and a position", () => {
    const text = listJson({
      stats: [running, exited],
      sampledAtMs: running.sampledAtMs,
      sourceError: null
    })
    const list = Schema.decodeUnknownSync(InstanceList)(ExactJson.read(text))
    assert.deepStrictEqual(list.instances, [statsBody(running), statsBody(exited)])
    assert.isNull(list.source_error)
  })

  it("a counter rounded by a plain JSON.parse is refused, not decoded to a wrong value", () => {
    const rounded = JSON.parse(statsJson(running))
    assert.strictEqual(rounded.network_tx_bytes, 9_007_199_254_740_992) // what a double makes of ...993
    const decoded = Schema.decodeUnknownEither(InstanceStats)(rounded)
    assert.isTrue(Either.isLeft(decoded))
    assert.include(String(Either.isLeft(decoded) && decoded.left.message), "beyond 2^53")
  })

  it("ExactJson.read keeps long integers whole and leaves strings and other numbers as they are", () => {
    const text = '{"a":18446744073709551615,"b":-9007199254740993,"c":"12345678901234567890","d":1.5e300,"e":[1,-2]}'
    assert.deepStrictEqual(ExactJson.read(text), {
      a: "18446744073709551615",
      b: "-9007199254740993",
      c: "12345678901234567890",
      d: 1.5e300,
      e: [1, -2]
    })
    // A quote inside a string does not end it: the digits after it are still the string's.
    assert.deepStrictEqual(ExactJson.read('["say \\"99999999999999999999\\"", 99999999999999999999]'), [
      'say "99999999999999999999"',
      "99999999999999999999"
    ])
    assert.strictEqual(
      ExactJson.write({ n: 2n ** 64n - 1n, s: "x", u: undefined }),
      '{"n":18446744073709551615,"s":"x"}'
    )
  })

  it("the OpenAPI document is the checked-in one, 64-bit counters declared as int64", () => {
    const doc = OpenApi.fromApi(VmMetricsApi)
    if (process.env.VM_METRICS_WRITE_OPENAPI === "1" && process.env.CI === undefined) {
      fs.writeFileSync(FIXTURE, `${JSON.stringify(doc, null, 2)}\n`)
    }
    assert.isTrue(fs.existsSync(FIXTURE), `missing ${FIXTURE.pathname}: see this file's header to write it`)
    assert.deepStrictEqual(doc, JSON.parse(fs.readFileSync(FIXTURE, "utf8")))
    const properties = (doc.components.schemas.InstanceStats as any).properties
    for (const field of ["memory_rss_bytes", "memory_vms_bytes", "network_rx_bytes", "network_tx_bytes"]) {
      assert.deepStrictEqual(properties[field].anyOf[0], { type: "integer", format: "int64" }, field)
    }
    assert.deepStrictEqual(properties.allocated_memory_bytes, { type: "integer", format: "int64" })
  })
})
