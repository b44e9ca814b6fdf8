import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import {
  allGroups,
  defaultGroups,
  type MetricGroup,
  needs,
  optInGroups,
  parseList,
  select,
  UnknownMetricGroup
} from "../src/MetricGroup.js"

const sorted = (groups: ReadonlySet<MetricGroup>) => [...groups].sort()

describe("MetricGroup", () => {
  it("the default set is cpu, memory, disk, network; vcpu and interfaces are opt-in", () => {
    assert.deepStrictEqual(sorted(defaultGroups), ["cpu", "disk", "memory", "network"])
    assert.deepStrictEqual(sorted(optInGroups), ["interfaces", "vcpu"])
    for (const group of optInGroups) assert.isFalse(defaultGroups.has(group))
    assert.strictEqual(allGroups.length, 7)
  })

  it.each([
    ["", []],
    ["cpu", ["cpu"]],
    [" cpu , vcpu ,", ["cpu", "vcpu"]],
    ["default", ["cpu", "disk", "memory", "network"]],
    ["default,packets", ["cpu", "disk", "memory", "network", "packets"]],
    ["all", [...allGroups].sort()],
    ["memory,memory", ["memory"]]
  ] as const)("parseList(%j)", (text, expected) => {
    const parsed = parseList(text)
    assert.isTrue(Either.isRight(parsed))
    if (Either.isRight(parsed)) assert.deepStrictEqual(sorted(parsed.right), [...expected])
  })

  it.each(["cpus", "CPU", "cpu;memory", "seed"])("parseList(%j) names the unknown group", (text) => {
    const parsed = parseList(`memory,${text}`)
    assert.isTrue(Either.isLeft(parsed))
    if (Either.isLeft(parsed)) {
      assert.instanceOf(parsed.left, UnknownMetricGroup)
      assert.strictEqual(parsed.left.name, text)
      assert.include(parsed.left.message, "known: cpu, memory")
    }
  })

  it("select: base plus add minus remove, remove wins", () => {
    assert.deepStrictEqual(sorted(select(defaultGroups, ["vcpu"], ["disk", "vcpu"])), ["cpu", "memory", "network"])
    assert.deepStrictEqual(sorted(select([], ["packets"])), ["packets"])
  })

  it("needs: only the files the groups use", () => {
    assert.deepStrictEqual(needs(new Set()), { status: false, io: false, vcpuThreads: false, tapDetail: false })
    assert.deepStrictEqual(needs(defaultGroups), { status: true, io: true, vcpuThreads: true, tapDetail: true })
    assert.deepStrictEqual(needs(new Set(["vcpu"])), { status: false, io: false, vcpuThreads: true, tapDetail: false })
    assert.deepStrictEqual(needs(new Set(["packets"])), {
      status: false,
      io: false,
      vcpuThreads: false,
      tapDetail: true
    })
    assert.deepStrictEqual(needs(new Set(["interfaces"])).tapDetail, true)
  })
})
