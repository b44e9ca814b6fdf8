import { assert, describe, it } from "@effect/vitest"
import { bytes, printable, table } from "../src/TextFormat.js"
import { clip, rows, type Sample, screen, sorted, type VmSample } from "../src/TopModel.js"

const vm = (over: Partial<VmSample> & Pick<VmSample, "id">): VmSample => ({
  name: over.id,
  state: "running",
  epoch: 0,
  processStart: "2026-11-26T00:00:00.000Z",
  cpuSeconds: 10,
  rssBytes: 512 * 1024 ** 2,
  allocatedMemoryBytes: 1024 ** 3,
  vcpus: 2,
  rxBytes: 1000,
  txBytes: 2000,
  cpuDelayRatio: null,
  swapBytes: 0,
  ...over
})
const at = (atMs: number, vms: ReadonlyArray<VmSample>): Sample => ({ atMs, vms })

describe("top: rates from consecutive samples", () => {
  it("cores, share of vCPUs and of memory, bytes per second", () => {
    const [row] = rows(
      at(0, [vm({ id: "a" })]),
      at(2000, [vm({ id: "a", cpuSeconds: 13, rxBytes: 5000, txBytes: 2000 + 2048 })])
    )
    assert.strictEqual(row!.cores, 1.5)
    assert.strictEqual(row!.cpuShare, 0.75)
    assert.strictEqual(row!.memoryShare, 0.5)
    assert.strictEqual(row!.rxPerSecond, 2000)
    assert.strictEqual(row!.txPerSecond, 1024)
  })

  it("the first sample has no rates yet", () => {
    const [row] = rows(undefined, at(1000, [vm({ id: "a" })]))
    assert.isNull(row!.cores)
    assert.isNull(row!.rxPerSecond)
    assert.strictEqual(row!.memoryShare, 0.5)
  })

  it("a restarted VMM (new epoch or start time) gives no CPU rate, never a negative one", () => {
    const before = at(0, [vm({ id: "a", cpuSeconds: 500 })])
    const newEpoch = rows(before, at(1000, [vm({ id: "a", cpuSeconds: 1, epoch: 1 })]))[0]!
    assert.isNull(newEpoch.cores)
    const newStart = rows(
      before,
      at(1000, [vm({ id: "a", cpuSeconds: 1, processStart: "2026-11-26T01:00:00.000Z" })])
    )[0]!
    assert.isNull(newStart.cores)
    // A counter that went down for any other reason is not a rate either.
    const dropped = rows(before, at(1000, [vm({ id: "a", cpuSeconds: 499, rxBytes: 10 })]))[0]!
    assert.isNull(dropped.cores)
    assert.isNull(dropped.rxPerSecond)
  })

  it("unavailable values stay unknown", () => {
    const [row] = rows(
      at(0, [vm({ id: "a", cpuSeconds: null })]),
      at(1000, [vm({ id: "a", cpuSeconds: 3, rssBytes: null })])
    )
    assert.isNull(row!.cores)
    assert.isNull(row!.memoryShare)
  })

  it("STEAL% is the server's delay ratio × 100 (one decimal), SWAP the swapped-out bytes; '-' when unknown", () => {
    const all = rows(
      at(0, [vm({ id: "a" }), vm({ id: "b" }), vm({ id: "c" })]),
      at(1000, [
        vm({ id: "a", cpuDelayRatio: 0.125, swapBytes: 3 * 1024 ** 2 }),
        vm({ id: "b", cpuDelayRatio: 0.5, swapBytes: null }),
        vm({ id: "c", cpuDelayRatio: null })
      ])
    )
    assert.strictEqual(all[0]!.steal, 0.125)
    assert.isNull(all[2]!.steal)
    assert.deepStrictEqual(
      sorted(all, "steal").map((r) => r.name),
      ["b", "a", "c"]
    )
    const lines = screen(all, { sort: "steal", source: "h", at: new Date(0) }).split("\n")
    const cells = (name: string) =>
      lines
        .find((line) => line.startsWith(`${name} `))
        ?.trim()
        .split(/\s+/)
    assert.strictEqual(cells("a")?.[4], "12.5%")
    assert.strictEqual(cells("a")?.[7], "3.0M")
    assert.strictEqual(cells("b")?.[4], "50.0%")
    assert.strictEqual(cells("b")?.[7], "-")
    assert.strictEqual(cells("c")?.[4], "-")
    assert.strictEqual(cells("c")?.[7], "0B")
  })

  it("sorts by cpu, memory, network (largest first) or name", () => {
    const all = rows(
      at(0, [vm({ id: "a" }), vm({ id: "b" }), vm({ id: "c" })]),
      at(1000, [
        vm({ id: "a", cpuSeconds: 12, rssBytes: 100, rxBytes: 1000 }),
        vm({ id: "b", cpuSeconds: 10.5, rssBytes: 300, rxBytes: 9000 }),
        vm({ id: "c", cpuSeconds: 11, rssBytes: 200, rxBytes: 1000 })
      ])
    )
    const names = (key: Parameters<typeof sorted>[1]) => sorted(all, key).map((r) => r.name)
    assert.deepStrictEqual(names("cpu"), ["a", "c", "b"])
    assert.deepStrictEqual(names("memory"), ["b", "c", "a"])
    assert.deepStrictEqual(names("network"), ["b", "a", "c"])
    assert.deepStrictEqual(names("name"), ["a", "b", "c"])
  })

  it("renders a header, the keys and one aligned row per VM", () => {
    const all = rows(at(0, [vm({ id: "a" })]), at(1000, [vm({ id: "a", cpuSeconds: 10.25 })]))
    const text = screen(all, { sort: "cpu", source: "this host", at: new Date("2026-11-26T01:02:03Z") })
    const lines = text.split("\n")
    assert.strictEqual(lines[0], "vm-metrics top — this host — 01:02:03 — 1 VMs — sort: cpu")
    assert.include(lines[1], "q quit")
    assert.match(lines[3]!, /^NAME\s+STATE\s+CORES\s+%VCPU\s+STEAL%\s+RSS\s+%ALLOC\s+SWAP\s+RX\/s\s+TX\/s\s+ID$/)
    assert.match(lines[4]!, /^a\s+running\s+0\.25\s+13%\s+-\s+512\.0M\s+50%\s+0B\s+0B\s+0B\s+a$/)
    assert.strictEqual(bytes(1536), "1.5K")
    assert.strictEqual(bytes(null), "-")
  })
})

describe("top: the screen fits the terminal", () => {
  const uuid = "3f9c2a61-7d4e-4b8a-9e0f-1c2d3e4f5a6b"
  const longName = "customer-analytics-warehouse-replica-eu-west-2-primary"
  const fleet = rows(
    at(0, [vm({ id: uuid, name: longName }), vm({ id: "b", name: "db-1" })]),
    at(1000, [vm({ id: uuid, name: longName, cpuSeconds: 11.5 }), vm({ id: "b", name: "db-1", cpuSeconds: 10.25 })])
  )
  const options = {
    sort: "cpu",
    source: "http://metrics.example.internal:9464",
    at: new Date("2026-11-26T01:02:03Z"),
    error: "http://metrics.example.internal:9464: Unauthorized: a bearer token is required on this path"
  } as const
  const columnsOf = (line: string) => Array.from(line).length
  const titles = (text: string) => text.split("\n")[3]!.trim().split(/\s+/)

  for (const width of [20, 40, 60, 80, 120, 200]) {
    it(`${width} columns: no line is longer, the row still starts with the (cut) name`, () => {
      const lines = screen(fleet, { ...options, width }).split("\n")
      for (const line of lines) assert.isAtMost(columnsOf(line), width, JSON.stringify(line))
      const row = lines.find((line) => line.startsWith("customer-"))
      assert.isDefined(row, lines.join("\n"))
      assert.isTrue(titles(lines.join("\n")).includes("NAME"))
    })
  }

  it("wide enough: every column, whole names and IDs, as without a width", () => {
    const text = screen(fleet, { ...options, width: 200 })
    assert.strictEqual(text, screen(fleet, options))
    assert.deepStrictEqual(titles(text), [
      "NAME",
      "STATE",
      "CORES",
      "%VCPU",
      "STEAL%",
      "RSS",
      "%ALLOC",
      "SWAP",
      "RX/s",
      "TX/s",
      "ID"
    ])
    assert.include(text, longName)
    assert.include(text, uuid)
  })

  it("narrower: the ID is cut first (8 columns), then the name (12), then columns are left out, least telling first", () => {
    const natural = screen(fleet, options).split("\n")[4]!.length
    // Just too narrow for the whole ID: the ID is cut, the name whole.
    const idCut = screen(fleet, { ...options, width: natural - 10 })
    assert.include(idCut, longName)
    assert.include(idCut, `${uuid.slice(0, uuid.length - 11)}…`)
    // 120: the ID at 8 columns and the name cut, every column still there.
    const at120 = screen(fleet, { ...options, width: 120 })
    assert.strictEqual(titles(at120).length, 11)
    assert.include(at120, "3f9c2a6…")
    assert.include(at120, "customer-analytics-w")
    assert.notInclude(at120, longName)
    // 80: the ID left out, the room it freed given back to the name; the busy VM's cores (1.50) right-aligned.
    const at80 = screen(fleet, { ...options, width: 80 }).split("\n")
    assert.deepStrictEqual(titles(at80.join("\n")), [
      "NAME",
      "STATE",
      "CORES",
      "%VCPU",
      "STEAL%",
      "RSS",
      "%ALLOC",
      "SWAP",
      "RX/s",
      "TX/s"
    ])
    assert.match(at80[4]!, /^customer-analy… +running +1\.50 +75% /)
    assert.strictEqual(at80[4]!.length, 80)
    // 40: only NAME, CORES, RSS and the network rates are left.
    assert.deepStrictEqual(titles(screen(fleet, { ...options, width: 40 })), ["NAME", "CORES", "RSS", "RX/s", "TX/s"])
    // The header and the error are cut with "…", never wrapped.
    const at40 = screen(fleet, { ...options, width: 40 }).split("\n")
    assert.strictEqual(at40[0], "vm-metrics top — http://metrics.example…")
    assert.match(at40[2]!, /^error: http:.*…$/)
  })

  it("a short terminal: at most `height` lines, the last one counting the VMs left out", () => {
    const many = rows(
      undefined,
      at(
        0,
        Array.from({ length: 30 }, (_, i) => vm({ id: `vm-${String(i).padStart(2, "0")}` }))
      )
    )
    const lines = screen(many, { ...options, sort: "name", width: 80, height: 10 }).split("\n")
    assert.lengthOf(lines, 10)
    assert.match(lines[4]!, /^vm-00 /)
    assert.match(lines[8]!, /^vm-04 /)
    assert.strictEqual(lines[9], "… 25 more VMs (a larger terminal shows them)")
  })

  it("clip: at most the width, a cut text ends in …", () => {
    assert.strictEqual(clip("abcdef", 6), "abcdef")
    assert.strictEqual(clip("abcdef", 4), "abc…")
    assert.strictEqual(clip("— x", 2), "—…")
    assert.strictEqual(clip("abc", 0), "")
  })
})

describe("text for a terminal (list and top)", () => {
  it("byte counts in binary units: short for top, KiB/MiB for list; unavailable is '-'", () => {
    assert.strictEqual(bytes(0), "0B")
    assert.strictEqual(bytes(1023), "1023B")
    assert.strictEqual(bytes(1536), "1.5K")
    assert.strictEqual(bytes(1536n, "iec"), "1.5KiB")
    assert.strictEqual(bytes(512 * 1024 ** 2, "iec"), "512.0MiB")
    assert.strictEqual(bytes(5n * 1024n ** 5n, "iec"), "5120.0TiB")
    assert.strictEqual(bytes(2n ** 64n - 1n), "16777216.0T")
    assert.strictEqual(bytes(null, "iec"), "-")
  })

  it("columns two spaces apart, as wide as their widest cell, chosen ones right-aligned, no trailing spaces", () => {
    const rows = [
      ["a", "1", "x"],
      ["bbb", "22", ""]
    ]
    assert.strictEqual(table(["N", "V", "ID"], rows), "N    V   ID\na    1   x\nbbb  22")
    assert.strictEqual(
      table(["N", "V", "ID"], rows, (c) => c === 1),
      "N     V  ID\na     1  x\nbbb  22"
    )
  })
})

describe("names, ids and errors cannot drive the terminal", () => {
  // A title change, a screen clear, a line break and a right-to-left override, as a hostile name would hold.
  const hostile = "evil\u001b]0;pwned\u0007\u001b[2Jname\r\nX\u202etxt\u009b1m\u2066"

  it("printable: every control, bidirectional control and line separator is '?'; the rest stays", () => {
    assert.strictEqual(printable(hostile), "evil?]0;pwned??[2Jname??X?txt?1m?")
    assert.strictEqual(printable("web-1 é 漢字 🙂"), "web-1 é 漢字 🙂")
    for (let c = 0; c < 0x20; c++) assert.strictEqual(printable(String.fromCharCode(c)), "?", `U+${c.toString(16)}`)
    assert.strictEqual(printable("\u007f\u0080\u009f\u200e\u200f\u2028\u2029\u202a\u2069\u061c"), "??????????")
  })

  // What no terminal line may hold: a control character but the line break, a bidirectional override or isolate.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is matched
  const unprintable = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e\u2066]/

  it("list's table and top's screen show them as printable text, one line per VM", () => {
    const listed = table(["ID", "NAME"], [[hostile, hostile]])
    assert.notMatch(listed, unprintable)
    assert.lengthOf(listed.split("\n"), 2)

    const all = rows(at(0, [vm({ id: hostile, name: hostile })]), at(1000, [vm({ id: hostile, name: hostile })]))
    const text = screen(all, { sort: "cpu", source: `http://x/${hostile}`, at: new Date(0), error: hostile })
    assert.notMatch(text, unprintable)
    const lines = text.split("\n")
    assert.lengthOf(lines, 5) // header, keys, error, titles, the one VM
    assert.strictEqual(lines[2], `error: ${printable(hostile)}`)
    assert.isTrue(lines[4]!.startsWith(printable(hostile)), lines[4])
  })
})
