import { assert, describe, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { cpuSeconds, memoryUtilizationRatio, noGroupValues, VmStats } from "../src/VmStats.js"

const MiB = 1024 * 1024
const GiB = 1024 * MiB

describe("cpuSeconds (microseconds → seconds)", () => {
  it.each([
    [1_500_000n, 1.5],
    [0n, 0],
    [1n, 0.000001],
    [3_600_000_000n, 3600]
  ] as const)("%s µs → %s s", (cpuUsec, seconds) => {
    assert.strictEqual(cpuSeconds({ cpuUsec }), seconds)
  })

  it("unavailable CPU stays null, not 0", () => {
    assert.isNull(cpuSeconds({ cpuUsec: null }))
  })
})

describe("memoryUtilizationRatio (RSS / allocated, only when allocated > 0)", () => {
  it.each([
    ["512 MiB of 1 GiB", 512n * BigInt(MiB), GiB, 0.5],
    ["1 of 1", 1n, 1, 1],
    ["2 GiB of 1 GiB (may exceed 1)", 2n * BigInt(GiB), GiB, 2],
    ["0 of 1 GiB", 0n, GiB, 0]
  ] as const)("%s", (_, memoryRssBytes, allocatedMemoryBytes, expected) => {
    assert.strictEqual(memoryUtilizationRatio({ memoryRssBytes, allocatedMemoryBytes }), expected)
  })

  it.each([
    ["allocated 0", 1024n, 0],
    ["allocated −1", 1024n, -1],
    ["rss null", null, GiB]
  ] as const)("%s → null", (_, memoryRssBytes, allocatedMemoryBytes) => {
    assert.isNull(memoryUtilizationRatio({ memoryRssBytes, allocatedMemoryBytes }))
  })
})

describe("VmStats schema", () => {
  const valid: VmStats = {
    instanceId: "abcd1234",
    instanceName: "web",
    state: "running",
    pid: 4242,
    tapDevice: "hype-abcd1234",
    processStartTicks: 1000n,
    processStartTimeMs: null,
    seriesStartTimeMs: null,
    epoch: 0,
    sampledAtMs: 0,
    cpuUsec: 1_500_000n,
    guestUsec: null,
    memoryRssBytes: 819200n,
    memoryVmsBytes: 4096000n,
    netRxBytes: 18446744073709551615n,
    netTxBytes: 111n,
    allocatedVcpus: 2,
    allocatedMemoryBytes: GiB,
    unavailable: [],
    ...noGroupValues,
    memoryHugetlbBytes: 2n * 1024n * 1024n,
    vcpus: [{ vcpu: 0, tid: 4243, runNs: 5n, delayNs: 1n, seriesStartTimeMs: null }]
  }

  it("accepts a complete value", () => {
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(VmStats)(valid)))
  })

  it.each([
    ["state", "stopped"],
    ["pid", 0],
    ["cpuUsec", 15],
    ["unavailable", [{ source: "disk", reason: "x", message: "y" }]],
    ["cpuDelayNs", 3],
    ["vcpus", [{ vcpu: 0, tid: 1, runNs: null, delayNs: "0", seriesStartTimeMs: null }]],
    ["interfaces", [{ name: "tap0", via: "ns" }]]
  ] as const)("rejects %s = %j", (key, value) => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(VmStats)({ ...valid, [key]: value })))
  })
})
