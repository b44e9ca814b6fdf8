import { assert, describe, it } from "@effect/vitest"
import { makeDropCounter, toOtelNumber } from "../src/OtelValue.js"

describe("toOtelNumber", () => {
  it("an integer family's value goes out only when it is a double and an int64, exactly", () => {
    const cases: ReadonlyArray<readonly [bigint, number | null]> = [
      [0n, 0],
      [2n ** 53n - 1n, Number.MAX_SAFE_INTEGER],
      [2n ** 53n, 2 ** 53],
      [2n ** 53n + 1n, null],
      [2n ** 53n + 2n, 2 ** 53 + 2],
      [2n ** 63n - 1024n, 2 ** 63 - 1024],
      [2n ** 63n - 1n, null],
      [2n ** 63n, null],
      [2n ** 63n + 4096n, null],
      [2n ** 64n - 1n, null],
      [2n ** 64n * 4096n, null],
      [-(2n ** 63n), -(2 ** 63)],
      [-(2n ** 63n) - 2048n, null]
    ]
    for (const [value, expected] of cases) {
      assert.strictEqual(toOtelNumber(true, value), expected, String(value))
      if (expected !== null) assert.strictEqual(BigInt(expected), value, String(value))
    }
  })

  it("numbers: integers need int64 range and no fraction; doubles need only be finite", () => {
    assert.strictEqual(toOtelNumber(true, 1_073_741_824), 1_073_741_824)
    assert.isNull(toOtelNumber(true, 2 ** 63))
    assert.isNull(toOtelNumber(true, 1.5))
    assert.isNull(toOtelNumber(true, Number.NaN))
    assert.strictEqual(toOtelNumber(false, 0.07), 0.07)
    assert.strictEqual(toOtelNumber(false, 2 ** 70), 2 ** 70)
    assert.isNull(toOtelNumber(false, Number.POSITIVE_INFINITY))
    assert.isNull(toOtelNumber(false, Number.NaN))
    assert.strictEqual(toOtelNumber(false, 1_500_000n), 1_500_000)
  })
})

describe("makeDropCounter", () => {
  it("counts per metric and reason, cumulatively", () => {
    const drops = makeDropCounter()
    assert.deepStrictEqual(drops.totals(), [])
    drops.count("a_total", "out_of_range")
    drops.count("b_bytes", "out_of_range")
    drops.count("a_total", "out_of_range")
    assert.deepStrictEqual(drops.totals(), [
      { metric: "a_total", reason: "out_of_range", count: 2 },
      { metric: "b_bytes", reason: "out_of_range", count: 1 }
    ])
  })
})
