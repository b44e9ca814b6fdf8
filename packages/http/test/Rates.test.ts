/** Rates of the stats JSON between two samples of one VM, and the history that finds the previous sample. */
import { assert, describe, it } from "@effect/vitest"
import type { Snapshot } from "@vm-metrics/core/Collector"
import { noGroupValues, type VmStats } from "@vm-metrics/core/VmStats"
import * as Rates from "../src/Rates.js"

const sample = (atMs: number, over: Partial<VmStats> = {}): VmStats => ({
  instanceId: "a",
  instanceName: "a",
  state: "running",
  pid: 10,
  tapDevice: "tap0",
  processStartTicks: 1n,
  processStartTimeMs: 0,
  seriesStartTimeMs: 0,
  epoch: 0,
  sampledAtMs: atMs,
  cpuUsec: 0n,
  guestUsec: 0n,
  memoryRssBytes: 0n,
  memoryVmsBytes: 0n,
  netRxBytes: 0n,
  netTxBytes: 0n,
  allocatedVcpus: 4,
  allocatedMemoryBytes: 0,
  unavailable: [],
  ...noGroupValues,
  cpuDelayNs: 0n,
  netRxPackets: 0n,
  netTxPackets: 0n,
  ...over
})

const snapshot = (sequence: number, stats: ReadonlyArray<VmStats>): Snapshot => ({
  sequence,
  sampledAtMs: stats[0]?.sampledAtMs ?? 0,
  durationMs: 0,
  stats,
  sourceError: null,
  sourceErrorsTotal: 0,
  unavailableTotals: []
})

describe("Rates.between", () => {
  it("per second over the time between the samples; the delay per vCPU-second", () => {
    const rates = Rates.between(
      sample(1000),
      sample(3000, {
        cpuUsec: 3_000_000n,
        cpuDelayNs: 800_000_000n,
        netRxBytes: 4096n,
        netTxBytes: 10n,
        netRxPackets: 8n,
        netTxPackets: 2n
      })
    )
    assert.deepStrictEqual(rates, {
      cpuCores: 1.5,
      // 0.8 s of wait in 2 s over 4 allocated vCPUs.
      cpuDelayRatio: 0.1,
      networkRxBytesPerSecond: 2048,
      networkTxBytesPerSecond: 5,
      networkRxPacketsPerSecond: 4,
      networkTxPacketsPerSecond: 1
    })
  })

  it("the vCPU threads read, when there are, are the vCPUs the delay is divided by", () => {
    const thread = (vcpu: number) => ({ vcpu, tid: 100 + vcpu, runNs: 0n, delayNs: 0n, seriesStartTimeMs: null })
    const rates = Rates.between(
      sample(0, { vcpus: [thread(0), thread(1)] }),
      sample(1000, { cpuDelayNs: 500_000_000n, vcpus: [thread(0), thread(1)] })
    )
    assert.strictEqual(rates.cpuDelayRatio, 0.25)
    // No threads read and no allocation known: no ratio, rather than a division by 0.
    assert.isNull(Rates.between(sample(0), sample(1000, { cpuDelayNs: 5n, allocatedVcpus: 0 })).cpuDelayRatio)
  })

  it("null without a previous sample, across epochs, without time, for a value unread or a counter that went down", () => {
    const after = sample(2000, { cpuUsec: 10n, cpuDelayNs: 10n, netRxBytes: 10n })
    assert.deepStrictEqual(Rates.between(undefined, after), Rates.none)
    assert.deepStrictEqual(Rates.between(sample(1000, { epoch: 1 }), after), Rates.none)
    assert.deepStrictEqual(Rates.between(sample(1000, { instanceId: "b" }), after), Rates.none)
    assert.deepStrictEqual(Rates.between(sample(2000), after), Rates.none)
    assert.deepStrictEqual(Rates.between(sample(3000), after), Rates.none)
    const unread = Rates.between(sample(1000, { cpuUsec: null, netRxPackets: null }), after)
    assert.isNull(unread.cpuCores)
    assert.isNull(unread.networkRxPacketsPerSecond)
    assert.strictEqual(unread.networkRxBytesPerSecond, 10)
    const down = Rates.between(sample(1000, { netRxBytes: 11n, cpuDelayNs: 11n }), after)
    assert.isNull(down.networkRxBytesPerSecond)
    assert.isNull(down.cpuDelayRatio)
    assert.strictEqual(down.cpuCores, 10 / 1e6)
  })
})

describe("Rates.makeHistory", () => {
  it("the previous sample comes from the snapshot before the latest; older or repeated snapshots change nothing", () => {
    const history = Rates.makeHistory()
    const first = snapshot(1, [sample(1000)])
    const second = snapshot(2, [sample(2000), sample(2000, { instanceId: "new" })])
    assert.isUndefined(history.previous(first, "a"), "the first snapshot has no previous one")
    assert.strictEqual(history.previous(second, "a"), first.stats[0])
    assert.isUndefined(history.previous(second, "new"), "a VM not in the previous snapshot")
    history.observe(first) // older: ignored
    history.observe(second) // the same: ignored
    assert.strictEqual(history.previous(second, "a"), first.stats[0])
    const third = snapshot(3, [sample(3000)])
    history.observe(third)
    assert.strictEqual(history.previous(third, "a"), second.stats[0])
    assert.isUndefined(history.previous(second, "a"), "only the latest snapshot's previous one is kept")
  })
})
