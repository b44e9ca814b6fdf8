import { assert, describe, it } from "@effect/vitest"
import { parseBootTimeMs } from "../src/BootTime.js"

const procStat = (btimeLine: string) =>
  `cpu  2255 34 2290 22625563 6290 127 456 0 0 0\nintr 114930548 113199788 3\nctxt 1990473\n${btimeLine}\nprocesses 2915\n`

describe("parseBootTimeMs", () => {
  it("reads btime as ms since the epoch", () => {
    assert.strictEqual(parseBootTimeMs(procStat("btime 1769000000")), 1_769_000_000_000)
    assert.strictEqual(parseBootTimeMs("btime\t0\n"), 0)
    assert.strictEqual(parseBootTimeMs("btime 1769000000 \t"), 1_769_000_000_000)
  })

  it.each([
    ["no btime line", "cpu 1 2 3\n"],
    ["empty", ""],
    ["no value", "btime \n"],
    ["a sign", "btime -1\n"],
    ["a word", "btime soon\n"],
    ["a prefix", "xbtime 1769000000\n"],
    ["a suffix", "btimes 1769000000\n"],
    ["a fraction", "btime 1769000000.5\n"]
  ])("%s is undefined", (_, text) => {
    assert.isUndefined(parseBootTimeMs(text))
  })

  describe("only ASCII digits, lines end at \\n, exact values", () => {
    it.each([
      ["a fullwidth digit", "btime 17690\uff1100000"],
      ["an Arabic-Indic digit", "btime \u0661769000000"],
      ["U+3000 before the value", "btime\u30001769000000"],
      ["a line separator (U+2028) after it", "btime 1769000000\u2028"],
      ["a paragraph separator (U+2029) after it", "btime 1769000000\u2029junk"],
      ["a carriage return after it", "btime 1769000000\rjunk"]
    ])("%s is not a btime line", (_, line) => {
      assert.isUndefined(parseBootTimeMs(procStat(line)))
    })

    it("a value whose milliseconds a number cannot hold exactly is undefined, not rounded", () => {
      assert.isUndefined(parseBootTimeMs("btime 999999999999999\n"))
      assert.isUndefined(parseBootTimeMs("btime 9007199254741\n"))
      assert.strictEqual(parseBootTimeMs("btime 9007199254740\n"), 9_007_199_254_740_000)
    })

    it("more than 15 digits is undefined", () => {
      assert.isUndefined(parseBootTimeMs("btime 0000000001769000000\n"))
    })
  })
})
