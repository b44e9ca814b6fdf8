import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import type { ParseError } from "../src/Errors.js"
import { type NetDevInterface, parseNetDev, parseNetDevText } from "../src/NetDev.js"
import { distinctColumns, NET_DEV_HEADER, netDevLine } from "./fixtures/netDev.js"
import { netDev } from "./fixtures/proc.js"

const U64_MAX = 18446744073709551615n

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text)

type Interfaces = ReadonlyMap<string, NetDevInterface>

const right = (result: Either.Either<Interfaces, ParseError>): Interfaces => {
  if (Either.isLeft(result)) return assert.fail(`expected Right, got ${result.left.message}`)
  return result.right
}

const left = (result: Either.Either<Interfaces, ParseError>): ParseError => {
  if (Either.isRight(result)) return assert.fail(`expected a ParseError, got ${[...result.right.keys()].join(",")}`)
  assert.strictEqual(result.left._tag, "ParseError")
  assert.strictEqual(result.left.file, "/proc/<pid>/net/dev")
  assert.isAbove(result.left.reason.length, 0)
  return result.left
}

const only = (interfaces: Interfaces, name: string): NetDevInterface => {
  const found = interfaces.get(name)
  if (found === undefined) return assert.fail(`no ${name} in ${[...interfaces.keys()].join(",")}`)
  return found
}

/** The counters of `distinctColumns(base)` as read: rx 0–3 and tx 8–11. */
const expected = (name: string, base: bigint): NetDevInterface => ({
  name,
  rxBytes: base,
  rxPackets: base + 1n,
  rxErrors: base + 2n,
  rxDropped: base + 3n,
  txBytes: base + 8n,
  txPackets: base + 9n,
  txErrors: base + 10n,
  txDropped: base + 11n
})

const tapFile =
  NET_DEV_HEADER + netDevLine("lo", distinctColumns(100n)) + netDevLine("hype-abc", distinctColumns(5000n))

describe("parseNetDev", () => {
  it("the real file of this host: lo, ifb0, ifb1, eth0 in order", () => {
    const interfaces = right(parseNetDevText(netDev))
    assert.deepStrictEqual([...interfaces.keys()], ["lo", "ifb0", "ifb1", "eth0"])
    assert.deepStrictEqual(only(interfaces, "lo"), {
      name: "lo",
      rxBytes: 1667438228n,
      rxPackets: 170810n,
      rxErrors: 0n,
      rxDropped: 0n,
      txBytes: 1667438228n,
      txPackets: 170810n,
      txErrors: 0n,
      txDropped: 0n
    })
    const eth0 = only(interfaces, "eth0")
    assert.strictEqual(eth0.rxBytes, 453997249n)
    assert.strictEqual(eth0.rxPackets, 26355n)
    assert.strictEqual(eth0.txBytes, 1738318n)
    assert.strictEqual(eth0.txPackets, 22602n)
    assert.strictEqual(only(interfaces, "ifb1").txBytes, 0n)
  })

  it("the byte path gives the same as the text path", () => {
    assert.deepStrictEqual(parseNetDev(bytes(netDev)), parseNetDevText(netDev))
  })

  it("columns: rx bytes packets errs drop are 1–4, tx bytes packets errs drop are 9–12", () => {
    const interfaces = right(parseNetDevText(tapFile))
    assert.deepStrictEqual(only(interfaces, "lo"), expected("lo", 100n))
    assert.deepStrictEqual(only(interfaces, "hype-abc"), expected("hype-abc", 5000n))
  })

  it("the headers alone: no interfaces", () => {
    assert.strictEqual(right(parseNetDevText(NET_DEV_HEADER)).size, 0)
  })

  describe("names", () => {
    it.each(["a", "lo", "tap0", "hype-0123456789", "eth0.100", "br-0f2c8a1b9e7d", "x|y", "veth@if3"])(
      "%j (right-aligned in 6 columns when shorter)",
      (name) => {
        const interfaces = right(parseNetDevText(NET_DEV_HEADER + netDevLine(name, distinctColumns(7n))))
        assert.deepStrictEqual([...interfaces.values()], [expected(name, 7n)])
      }
    )

    it("a ':' inside a name (an old alias form) stays in the name", () => {
      const interfaces = right(parseNetDevText(NET_DEV_HEADER + netDevLine("eth0:1", distinctColumns(7n))))
      assert.deepStrictEqual([...interfaces.keys()], ["eth0:1"])
    })

    it("15 bytes (IFNAMSIZ − 1) are a name, 16 are a ParseError", () => {
      right(parseNetDevText(NET_DEV_HEADER + netDevLine("a".repeat(15), distinctColumns(1n))))
      assert.include(
        left(parseNetDevText(NET_DEV_HEADER + netDevLine("a".repeat(16), distinctColumns(1n)))).reason,
        "16 bytes"
      )
    })

    it("bytes above 0x7f in a name are decoded as Latin-1", () => {
      const line = bytes(NET_DEV_HEADER + netDevLine("tapX", distinctColumns(1n)))
      line[NET_DEV_HEADER.length + 5] = 0xe9 // the X
      assert.deepStrictEqual([...right(parseNetDev(line)).keys()], ["tap\u00e9"])
    })

    it("a line without the colon after the name is a ParseError", () => {
      const line = netDevLine("eth0", distinctColumns(1n)).replace("eth0:", "eth0")
      assert.include(left(parseNetDevText(NET_DEV_HEADER + line)).reason, "no ':' after the name")
    })

    it("a number glued to the colon (as old 2.x kernels printed wide counters) is a ParseError", () => {
      assert.include(
        left(parseNetDevText(`${NET_DEV_HEADER}  eth0:123456789 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n`)).reason,
        "no ':' after the name"
      )
    })

    it("an empty name (a lone colon) is a ParseError", () => {
      assert.include(left(parseNetDevText(`${NET_DEV_HEADER}     : ${"0 ".repeat(16)}\n`)).reason, "0 bytes")
    })

    it("a name listed twice is a ParseError", () => {
      const text = NET_DEV_HEADER + netDevLine("tap0", distinctColumns(1n)) + netDevLine("tap0", distinctColumns(2n))
      assert.include(left(parseNetDevText(text)).reason, "tap0 listed twice")
    })
  })

  describe("malformed", () => {
    it.each(["", "\n"])("%j is a ParseError", (text) => {
      left(parseNetDevText(text))
    })

    it("a file without its header lines is a ParseError, not interfaces lost", () => {
      const lines = netDevLine("eth0", distinctColumns(1n)) + netDevLine("tap0", distinctColumns(2n))
      assert.include(left(parseNetDevText(lines)).reason, "header line 1")
      assert.include(left(parseNetDevText(`${NET_DEV_HEADER.split("\n")[0]}\n${lines}`)).reason, "header line 2")
      assert.include(left(parseNetDevText("Inter-|   Receive")).reason, "header line 2")
    })

    it("15 numbers (a line cut short) is a ParseError", () => {
      const line = netDevLine("tap0", distinctColumns(1n).slice(0, 15))
      assert.include(left(parseNetDevText(NET_DEV_HEADER + line)).reason, "15 numbers, need 16")
    })

    it("17 numbers is a ParseError", () => {
      const line = netDevLine("tap0", [...distinctColumns(1n), 99n])
      assert.include(left(parseNetDevText(NET_DEV_HEADER + line)).reason, "more than 16 numbers")
    })

    it.each([
      [0, "x", "rx bytes"],
      [3, "-1", "rx drop"],
      [8, "1.5", "tx bytes"],
      [11, "18446744073709551616", "tx drop"],
      [15, "1\u00b2", "tx compressed"]
    ] as const)("column %i = %j is a ParseError naming %s", (column, token, name) => {
      const values: Array<string | bigint> = distinctColumns(1n)
      values[column] = token
      const line = `  tap0: ${values.join(" ")}\n`
      const error = left(parseNetDevText(NET_DEV_HEADER + netDevLine("lo", distinctColumns(1n)) + line))
      assert.include(error.reason, `line 4: ${name} is not a number`)
    })

    it("a file cut inside an interface line is a ParseError (truncated read)", () => {
      const data = bytes(tapFile)
      left(parseNetDev(data, data.length - 10))
      left(parseNetDev(data, data.length - 40))
      assert.strictEqual(right(parseNetDev(data, data.length - 1)).size, 2) // only the newline cut
    })

    it.each([-1, 0.5, Number.NaN, 100_000])("length %d outside the buffer is a ParseError, not a throw", (length) => {
      assert.include(left(parseNetDev(bytes(tapFile), length)).reason, "outside the buffer")
    })

    it("non-Latin-1 text is a ParseError", () => {
      assert.include(left(parseNetDevText(tapFile.replace("5000", "5\uff10\uff10\uff10"))).reason, "U+FF10")
    })
  })

  it("blank lines, tabs and CRLF between fields are accepted", () => {
    const text = `${NET_DEV_HEADER}\n${netDevLine("tap0", distinctColumns(3n)).replace(/ +/g, "\t").replace("\n", "\r\n")}\n`
    assert.deepStrictEqual([...right(parseNetDevText(text)).values()], [expected("tap0", 3n)])
  })

  it("2^64 − 1 and values above 2^53 are exact", () => {
    const values = distinctColumns(9007199254740993n)
    values[8] = U64_MAX
    const tap0 = only(right(parseNetDevText(NET_DEV_HEADER + netDevLine("tap0", values))), "tap0")
    assert.strictEqual(tap0.rxBytes, 9007199254740993n)
    assert.strictEqual(tap0.txBytes, U64_MAX)
  })

  describe("properties", () => {
    const isParseResult = (result: Either.Either<unknown, ParseError>) =>
      Either.isRight(result) || result.left._tag === "ParseError"

    it.prop("never throws on random strings", [fc.string({ unit: "binary" })], ([text]) => {
      assert.isTrue(isParseResult(parseNetDevText(text)))
    })

    it.prop("never throws on random bytes and lengths", [fc.uint8Array({ maxLength: 600 }), fc.nat()], ([data, n]) => {
      assert.isTrue(isParseResult(parseNetDev(data)))
      assert.isTrue(isParseResult(parseNetDev(data, n % (data.length + 1))))
    })

    const name = fc.stringMatching(/^[a-z0-9._@-]{1,15}$/)
    const counters = fc.array(fc.bigInt({ min: 0n, max: U64_MAX }), { minLength: 16, maxLength: 16 })

    it.prop(
      "kernel-rendered interfaces round-trip",
      [fc.uniqueArray(fc.tuple(name, counters), { selector: ([n]) => n, maxLength: 6 })],
      ([interfaces]) => {
        const text = NET_DEV_HEADER + interfaces.map(([n, values]) => netDevLine(n, values)).join("")
        const parsed = right(parseNetDevText(text))
        assert.deepStrictEqual(
          [...parsed.values()].map((i) => [i.name, i.rxBytes, i.rxDropped, i.txBytes, i.txDropped]),
          interfaces.map(([n, v]) => [n, v[0], v[3], v[8], v[11]])
        )
      }
    )
  })
})
