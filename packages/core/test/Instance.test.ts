import { assert, describe, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { buildInstanceInfo, fromInstanceData, InstanceData, InstanceInfo, Pid } from "../src/Instance.js"

describe("buildInstanceInfo: the TAP name from the id, only with networking", () => {
  it("copies every field and derives the TAP when networking is enabled", () => {
    assert.deepStrictEqual(buildInstanceInfo("ABCD1234efgh", "web", 4242, true, 4, 2147483648), {
      id: "ABCD1234efgh",
      name: "web",
      hypervisorPid: 4242,
      tapDevice: "hype-abcd1234",
      allocatedVcpus: 4,
      allocatedMemoryBytes: 2147483648
    })
  })

  it("has no tapDevice key when networking is disabled", () => {
    const info = buildInstanceInfo("abcd1234", "db", 7, false, 1, 1024)
    assert.isFalse("tapDevice" in info)
    assert.deepStrictEqual(info, {
      id: "abcd1234",
      name: "db",
      hypervisorPid: 7,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 1024
    })
  })

  it("has no hypervisorPid key without a pid (stopped or standby)", () => {
    const info = buildInstanceInfo("abcd1234", "stopped", undefined, true, 2, 0)
    assert.isFalse("hypervisorPid" in info)
    assert.strictEqual(info.tapDevice, "hype-abcd1234")
    assert.strictEqual(info.allocatedMemoryBytes, 0)
  })
})

describe("fromInstanceData", () => {
  it("builds the same InstanceInfo as buildInstanceInfo", () => {
    const data: InstanceData = {
      id: "QILVIFFNQZCK2JRIM1X6S2B1",
      name: "vm",
      hypervisorPid: 99,
      networkEnabled: true,
      allocatedVcpus: 8,
      allocatedMemoryBytes: 4096
    }
    assert.deepStrictEqual(fromInstanceData(data), {
      id: "QILVIFFNQZCK2JRIM1X6S2B1",
      name: "vm",
      hypervisorPid: 99,
      tapDevice: "hype-qilviffn",
      allocatedVcpus: 8,
      allocatedMemoryBytes: 4096
    })
  })

  it("networkEnabled false and no pid give neither key", () => {
    const info = fromInstanceData({
      id: "x",
      name: "y",
      networkEnabled: false,
      allocatedVcpus: 0,
      allocatedMemoryBytes: -1
    })
    assert.deepStrictEqual(info, { id: "x", name: "y", allocatedVcpus: 0, allocatedMemoryBytes: -1 })
  })
})

describe("schemas", () => {
  const base = { id: "abcd1234", name: "web", allocatedVcpus: 2, allocatedMemoryBytes: 1024 }

  it.each([0, -1, 1.5, 2 ** 23, Number.NaN, "42"])("Pid rejects %j", (pid) => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(Pid)(pid)))
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(InstanceInfo)({ ...base, hypervisorPid: pid })))
    assert.isTrue(
      Either.isLeft(Schema.decodeUnknownEither(InstanceData)({ ...base, networkEnabled: true, hypervisorPid: pid }))
    )
  })

  it.each([1, 4242, 4_194_304])("Pid accepts %i", (pid) => {
    assert.deepStrictEqual(Schema.decodeUnknownEither(Pid)(pid), Either.right(pid))
    assert.deepStrictEqual(
      Schema.decodeUnknownEither(InstanceInfo)({ ...base, hypervisorPid: pid }),
      Either.right({ ...base, hypervisorPid: pid })
    )
  })

  it("InstanceInfo accepts a missing pid and tap", () => {
    assert.deepStrictEqual(Schema.decodeUnknownEither(InstanceInfo)(base), Either.right(base))
  })

  it.each([
    ["allocatedVcpus", -1],
    ["allocatedVcpus", 1.5],
    ["allocatedMemoryBytes", 0.5],
    ["id", 1]
  ] as const)("InstanceInfo rejects %s = %j", (key, value) => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(InstanceInfo)({ ...base, [key]: value })))
  })

  it("the optional hypervisorStartTicks decodes from JSON and survives fromInstanceData", () => {
    const json = JSON.parse(
      '{"id":"a","name":"a","allocatedVcpus":1,"allocatedMemoryBytes":1,"hypervisorPid":7,"hypervisorStartTicks":123456}'
    )
    const decoded = Schema.decodeUnknownSync(InstanceInfo)(json)
    assert.strictEqual(decoded.hypervisorStartTicks, 123456)
    for (const bad of [-1, 1.5, "123"]) {
      assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(InstanceInfo)({ ...json, hypervisorStartTicks: bad })))
    }
    const data = Schema.decodeUnknownSync(InstanceData)({ ...json, networkEnabled: false })
    assert.strictEqual(fromInstanceData(data).hypervisorStartTicks, 123456)
    assert.notProperty(fromInstanceData({ ...data, hypervisorStartTicks: undefined }), "hypervisorStartTicks")
  })

  it("InstanceData requires networkEnabled", () => {
    assert.isTrue(Either.isLeft(Schema.decodeUnknownEither(InstanceData)(base)))
    assert.isTrue(Either.isRight(Schema.decodeUnknownEither(InstanceData)({ ...base, networkEnabled: false })))
  })
})
