/**
 * Property-based test of every pure parser: any input gives the value an independent
 * oracle computes or a typed ParseError, never a throw and never a wrong value, and the text path
 * (`parse*Text`) gives exactly what the byte path gives for the text's Latin-1 bytes.
 *
 * The oracles work on strings with regular expressions, `split` and `BigInt`, the opposite of the
 * parsers' byte loops. Inputs are valid files, the same files mutated (insertions, replacements,
 * cuts) with characters chosen to trip the parsers (unicode digits and spaces, characters whose low
 * byte is a digit, separator or paren, huge numbers), and random strings and bytes. Fixed seeds and
 * run counts (over 100,000 cases in all) keep CI deterministic.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "fast-check"
import { parseAuxv } from "../src/Auxv.js"
import { parseBootTimeMs } from "../src/BootTime.js"
import type { ParseError } from "../src/Errors.js"
import { latin1 as decodeLatin1 } from "../src/internal/latin1.js"
import { statLine } from "../src/internal/statLine.js"
import { type NetDevInterface, NetDevTable, parseNetDev, parseNetDevText } from "../src/NetDev.js"
import { type ProcIo, parseProcIo, parseProcIoText } from "../src/ProcIo.js"
import { type ProcStat, parseProcStat, parseProcStatText } from "../src/ProcStat.js"
import { type ProcStatm, parseProcStatm, parseProcStatmText } from "../src/ProcStatm.js"
import { type ProcStatus, type ProcStatusLine, parseProcStatus, parseProcStatusText } from "../src/ProcStatus.js"
import { parseSchedstat, parseSchedstatText, type Schedstat } from "../src/Schedstat.js"
import { parseSysfsCounter, parseSysfsCounterText } from "../src/SysfsCounter.js"
import { NET_DEV_HEADER, netDevLine } from "./fixtures/netDev.js"

const SEED = 0x8e1f_2026
const U64_MAX = 2n ** 64n - 1n

// ---------------------------------------------------------------------------------------------------
// Oracles: the specification, written independently of the parsers. undefined = must be a ParseError.

// The kernel's separators are the control bytes and space, so these patterns name control characters.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the separators are control characters
const SEPARATORS = /[\x00-\x20]+/
// biome-ignore lint/suspicious/noControlCharactersInRegex: Latin-1 starts at U+0000
const LATIN1 = /^[\x00-\xff]*$/
// biome-ignore lint/suspicious/noControlCharactersInRegex: the separators are control characters
const AROUND = /^[\x00-\x20]+|[\x00-\x20]+$/g
const isLatin1 = (text: string) => LATIN1.test(text)

const u64Of = (token: string | undefined): bigint | undefined => {
  if (token === undefined || !/^[0-9]+$/.test(token)) return undefined
  const value = BigInt(token)
  return value <= U64_MAX ? value : undefined
}

const fieldsOf = (text: string) => text.split(SEPARATORS).filter((token) => token !== "")

const statOracle = (text: string): ProcStat | undefined => {
  const close = text.lastIndexOf(")")
  const open = text.indexOf("(")
  if (close < 0 || open < 0 || open > close) return undefined
  const fields = fieldsOf(text.slice(close + 1))
  if (fields.length < 13) return undefined
  const majorFaults = u64Of(fields[9])
  const utime = u64Of(fields[11])
  const stime = u64Of(fields[12])
  const startTime = fields.length > 19 ? u64Of(fields[19]) : null
  const guestTime = fields.length > 40 ? u64Of(fields[40]) : null
  if (
    majorFaults === undefined ||
    utime === undefined ||
    stime === undefined ||
    startTime === undefined ||
    guestTime === undefined
  ) {
    return undefined
  }
  return {
    comm: text.slice(open + 1, close),
    state: fields[0],
    majorFaults,
    utimeTicks: utime,
    stimeTicks: stime,
    startTimeTicks: startTime,
    guestTimeTicks: guestTime
  }
}

const statmOracle = (text: string): ProcStatm | undefined => {
  const fields = fieldsOf(text)
  const vms = u64Of(fields[0])
  const rss = u64Of(fields[1])
  return vms === undefined || rss === undefined ? undefined : { vmsPages: vms, rssPages: rss }
}

const sysfsOracle = (text: string): bigint | undefined => u64Of(text.replace(AROUND, ""))

const bootTimeOracle = (text: string): number | undefined => {
  for (const line of text.split("\n")) {
    const match = /^btime[ \t]+([0-9]+)[ \t]*$/.exec(line)
    if (match === null || match[1].length > 15) continue
    const ms = BigInt(match[1]) * 1000n
    if (ms <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(ms)
  }
  return undefined
}

/** Blanks inside a line: the separators without the newline. */
const BLANK = "[\\x00-\\x09\\x0b-\\x20]"
const TOKEN = "[^\\x00-\\x20]+"

/**
 * `Key: value [unit]` files: for each key the first line starting with `key:` must be exactly one u64
 * (and the unit); undefined (a ParseError) when one is not, null when no line has the key.
 */
const keyLinesOracle = (
  text: string,
  keys: ReadonlyArray<string>,
  unit: string | null
): Array<bigint | null> | undefined => {
  const lines = text.split("\n")
  const values: Array<bigint | null> = []
  for (const key of keys) {
    const line = lines.find((candidate) => candidate.startsWith(`${key}:`))
    if (line === undefined) {
      values.push(null)
      continue
    }
    const pattern = new RegExp(`^${key}:${BLANK}*(${TOKEN})${unit === null ? "" : `${BLANK}+${unit}`}${BLANK}*$`)
    const value = u64Of(pattern.exec(line)?.[1])
    if (value === undefined) return undefined
    values.push(value)
  }
  return values
}

const STATUS_LINES: ReadonlyArray<ProcStatusLine> = ["RssAnon", "RssFile", "RssShmem", "VmSwap", "HugetlbPages"]

const statusOracle = (text: string): ProcStatus | undefined => {
  if (text === "") return undefined
  const kB = keyLinesOracle(text, STATUS_LINES, "kB")
  if (kB === undefined) return undefined
  const outOfRange: Array<ProcStatusLine> = []
  const [rssAnonBytes, rssFileBytes, rssShmemBytes, swapBytes, hugetlbBytes] = kB.map((value, k) => {
    if (value === null) return null
    if (value * 1024n <= U64_MAX) return value * 1024n
    outOfRange.push(STATUS_LINES[k])
    return null
  })
  return { rssAnonBytes, rssFileBytes, rssShmemBytes, swapBytes, hugetlbBytes, outOfRange }
}

const ioOracle = (text: string): ProcIo | undefined => {
  const values = keyLinesOracle(text, ["rchar", "wchar", "read_bytes", "write_bytes"], null)
  if (values === undefined || values.includes(null)) return undefined
  const [rchar, wchar, readBytes, writeBytes] = values as Array<bigint>
  return { rchar, wchar, readBytes, writeBytes }
}

const schedstatOracle = (text: string): Schedstat | undefined => {
  const [runNs, waitNs, timeslices] = fieldsOf(text).slice(0, 3).map(u64Of)
  return runNs === undefined || waitNs === undefined || timeslices === undefined
    ? undefined
    : { runNs, waitNs, timeslices }
}

const netDevOracle = (text: string): ReadonlyMap<string, NetDevInterface> | undefined => {
  const lines = text.split("\n")
  if (lines.length < 2 || !lines[0].includes("|") || !lines[1].includes("|")) return undefined
  const interfaces = new Map<string, NetDevInterface>()
  for (const line of lines.slice(2)) {
    const [first, ...rest] = fieldsOf(line)
    if (first === undefined) continue
    if (!first.endsWith(":") || first.length < 2 || first.length > 16 || rest.length !== 16) return undefined
    const values = rest.map(u64Of)
    const name = first.slice(0, -1)
    if (values.includes(undefined) || interfaces.has(name)) return undefined
    const [rxBytes, rxPackets, rxErrors, rxDropped] = values as Array<bigint>
    const [txBytes, txPackets, txErrors, txDropped] = values.slice(8) as Array<bigint>
    interfaces.set(name, { name, rxBytes, rxPackets, rxErrors, rxDropped, txBytes, txPackets, txErrors, txDropped })
  }
  return interfaces
}

// ---------------------------------------------------------------------------------------------------
// Checks: oracle agreement, text = bytes, and the error is a ParseError naming the file.

const latin1 = (text: string): Uint8Array => Uint8Array.from(Buffer.from(text, "latin1"))
const textOf = (bytes: Uint8Array): string => Buffer.from(bytes).toString("latin1")

interface Tally {
  right: number
  left: number
}
const tally = (): Tally => ({ right: 0, left: 0 })

/** A parser result as plain data, so two results compare with deepStrictEqual. */
const plain = <A>(result: Either.Either<A, ParseError>) =>
  Either.isRight(result)
    ? { right: result.right }
    : { tag: result.left._tag, file: result.left.file, reason: result.left.reason }

const expectResult = <A>(
  result: Either.Either<A, ParseError>,
  expected: A | undefined,
  file: string,
  counts: Tally
) => {
  if (expected === undefined) {
    if (Either.isRight(result)) assert.fail(`expected a ParseError, got ${String(result.right)}`)
    assert.strictEqual(result.left._tag, "ParseError")
    assert.strictEqual(result.left.file, file)
    assert.isAbove(result.left.reason.length, 0)
    counts.left++
  } else {
    if (Either.isLeft(result)) assert.fail(`expected a value, got ${result.left.message}`)
    assert.deepStrictEqual(result.right, expected)
    counts.right++
  }
}

/** Text and byte paths of one parser against its oracle. */
const textChecker =
  <A>(
    parseText: (text: string) => Either.Either<A, ParseError>,
    parseBytes: (bytes: Uint8Array) => Either.Either<A, ParseError>,
    oracle: (text: string) => A | undefined,
    file: string,
    counts: Tally
  ) =>
  (text: string) => {
    const fromText = parseText(text)
    if (!isLatin1(text)) {
      if (Either.isRight(fromText)) assert.fail(`non-Latin-1 text ${JSON.stringify(text)} was parsed`)
      assert.include(fromText.left.reason, "not Latin-1")
      expectResult(fromText, undefined, file, counts)
      return
    }
    const fromBytes = parseBytes(latin1(text))
    assert.deepStrictEqual(plain(fromText), plain(fromBytes))
    expectResult(fromBytes, oracle(text), file, counts)
  }

/** The byte path with any `length`: in 0…bytes.length it parses the prefix, otherwise a ParseError. */
const lengthChecker =
  <A>(
    parse: (bytes: Uint8Array, length: number) => Either.Either<A, ParseError>,
    oracle: (text: string) => A | undefined,
    file: string,
    counts: Tally
  ) =>
  (bytes: Uint8Array, length: number) => {
    const inContract = Number.isInteger(length) && length >= 0 && length <= bytes.length
    const expected = inContract ? oracle(textOf(bytes.subarray(0, length))) : undefined
    expectResult(parse(bytes, length), expected, file, counts)
  }

// ---------------------------------------------------------------------------------------------------
// Generators

/** Characters that break naive parsers; several have a low byte that is a digit, a space or a paren. */
const nasty = fc.constantFrom(
  ..."0123456789 \t\n\r\v\f\0()-+.eE",
  "\x7f",
  "\x85", // NEL
  "\xa0", // no-break space
  "\xb2", // superscript two
  "\xbd", // one half
  "\xff",
  "\u0131", // low byte '1'
  "\u0130", // low byte '0'
  "\u0139", // low byte '9'
  "\u0120", // low byte ' '
  "\u0128", // low byte '('
  "\u0129", // low byte ')'
  "\u0660", // ARABIC-INDIC DIGIT ZERO
  "\u0966", // DEVANAGARI DIGIT ZERO
  "\uff10", // FULLWIDTH DIGIT ZERO
  "\uff11", // FULLWIDTH DIGIT ONE
  "\uff19", // FULLWIDTH DIGIT NINE
  "\uff09", // FULLWIDTH RIGHT PARENTHESIS
  "\u3000", // IDEOGRAPHIC SPACE
  "\u2028", // LINE SEPARATOR
  "\u2029", // PARAGRAPH SEPARATOR
  "\u1680", // OGHAM SPACE MARK
  "\u2003", // EM SPACE
  "\ufeff", // BOM
  "\ufffd",
  "\u{1d7ce}", // MATHEMATICAL BOLD DIGIT ZERO (a surrogate pair)
  "\ud800" // a lone surrogate
)

const u64 = fc.oneof(
  fc.bigInt({ min: 0n, max: U64_MAX }),
  fc.constantFrom(0n, 1n, 2n ** 53n + 1n, 999_999_999_999_999n, 10n ** 15n, U64_MAX - 1n, U64_MAX)
)

const hugeNumber = fc.oneof(
  fc.bigInt({ min: U64_MAX + 1n, max: 2n ** 80n }).map(String),
  fc.constantFrom("18446744073709551616", "99999999999999999999", "1".repeat(40), `${"0".repeat(30)}42`)
)

const insertable = fc.oneof({ weight: 6, arbitrary: nasty }, { weight: 1, arbitrary: hugeNumber })

type Mutation =
  | { readonly kind: "insert"; readonly at: number; readonly text: string }
  | { readonly kind: "replace"; readonly at: number; readonly text: string }
  | { readonly kind: "delete"; readonly at: number; readonly count: number }
  | { readonly kind: "cut"; readonly at: number }

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: insertable }),
  fc.record({ kind: fc.constant("replace" as const), at: fc.nat(), text: insertable }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() })
)

const mutate = (text: string, mutations: ReadonlyArray<Mutation>): string =>
  mutations.reduce((current, m) => {
    const at = m.at % (current.length + 1)
    if (m.kind === "insert") return current.slice(0, at) + m.text + current.slice(at)
    if (m.kind === "replace") return current.slice(0, at) + m.text + current.slice(at + 1)
    if (m.kind === "delete") return current.slice(0, at) + current.slice(at + m.count)
    return current.slice(0, at)
  }, text)

/** Valid files, the same mutated a little (most cases), and random strings. */
const fileText = (valid: fc.Arbitrary<string>) =>
  fc.oneof(
    { weight: 2, arbitrary: valid },
    {
      weight: 6,
      arbitrary: fc
        .tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 3 }))
        .map(([text, mutations]) => mutate(text, mutations))
    },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 80 }) },
    { weight: 1, arbitrary: fc.string({ unit: fc.oneof(nasty, fc.constantFrom("1", "2", " ")), maxLength: 40 }) }
  )

const comm = fc.oneof(
  fc.string({ maxLength: 16 }),
  fc.string({ unit: fc.constantFrom("a", "Z", "1", " ", "(", ")", "-"), maxLength: 16 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 16 })
)

const validStat = fc
  .record({
    pid: fc.integer({ min: 1, max: 4194304 }),
    comm,
    majorFaults: u64,
    utime: u64,
    stime: u64,
    startTime: u64,
    guestTime: u64
  })
  .chain((line) =>
    // full lines (50 fields after the comm), and lines with 13, 20 or 41 fields after the comm (the optional fields' edges)
    fc.constantFrom(50, 13, 19, 20, 40, 41).map((keep) => {
      const full = statLine(line)
      const close = full.lastIndexOf(")")
      const fields = full
        .slice(close + 2)
        .trimEnd()
        .split(" ")
      return keep === 50 ? full : `${full.slice(0, close + 2)}${fields.slice(0, keep).join(" ")}\n`
    })
  )

const validStatm = fc
  .tuple(u64, u64, fc.array(fc.nat(), { maxLength: 5 }), fc.constantFrom(" ", "  ", "\t"))
  .map(([size, resident, rest, sep]) => `${[size, resident, ...rest].join(sep)}\n`)

const whitespace = fc.string({ unit: fc.constantFrom(" ", "\t", "\n", "\r", "\0"), maxLength: 3 })
const validSysfs = fc.tuple(whitespace, u64, whitespace).map(([a, value, b]) => `${a}${value}${b}`)

const validProcStat = fc
  .tuple(
    fc.oneof(fc.integer({ min: 0, max: 4_102_444_800 }), fc.constantFrom(9_007_199_254_740, 9_007_199_254_741)),
    fc.constantFrom(" ", "\t", "  "),
    fc.boolean()
  )
  .map(
    ([btime, sep, first]) =>
      `${first ? "" : "cpu  10 0 20 300 0 0 0 0 0 0\nintr 1 2 3\nctxt 4\n"}btime${sep}${btime}\nprocesses 5\n`
  )

/** Blanks between a key's colon, its value and its unit, as the kernel writes them and beyond. */
const blanks = fc.oneof(
  fc.constantFrom("\t", " ", "\t   ", "        "),
  fc.string({ unit: fc.constantFrom(" ", "\t", "\r", "\0"), maxLength: 3 })
)

/** A kB value: mostly one whose bytes fit 64 bits, sometimes one that does not (out_of_range). */
const kilobytes = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX / 1024n }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, U64_MAX / 1024n, U64_MAX / 1024n + 1n, U64_MAX) }
)

const latin1Name = fc.string({
  unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)),
  maxLength: 16
})

/** A status file: Name first, then its lines in random order (some of the five left out, some twice), random blanks and values. */
const validStatus = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...STATUS_LINES), blanks, kilobytes, blanks), { maxLength: 7 }),
    fc.shuffledSubarray(
      [
        "Umask:\t0022",
        "State:\tS (sleeping)",
        "Uid:\t0\t0\t0\t0",
        "VmRSS:\t   37044 kB",
        "VmSize:\t 1481612 kB",
        "Threads:\t5",
        "SigQ:\t0/96367",
        "Cpus_allowed_list:\t0-1"
      ],
      { minLength: 2 }
    ),
    latin1Name
  )
  .chain(([wanted, filler, name]) => {
    const lines = [...filler, ...wanted.map(([key, a, kB, b]) => `${key}:${a}${kB}${b.length > 0 ? b : " "}kB`)]
    return fc
      .shuffledSubarray(lines, { minLength: lines.length })
      .map((shuffled) => `Name:\t${name}\n${shuffled.join("\n")}\n`)
  })

const validIo = fc
  .tuple(
    fc.shuffledSubarray(["rchar", "wchar", "syscr", "syscw", "read_bytes", "write_bytes", "cancelled_write_bytes"], {
      minLength: 5
    }),
    fc.array(fc.tuple(u64, fc.constantFrom(" ", "\t", "", "  ")), { minLength: 7, maxLength: 7 })
  )
  .map(([names, values]) => names.map((name, k) => `${name}:${values[k][1]}${values[k][0]}\n`).join(""))

const validSchedstat = fc
  .tuple(u64, u64, u64, fc.constantFrom(" ", "\t", "  "), fc.constantFrom("\n", "", " \n", " 7\n"))
  .map(([run, wait, slices, sep, end]) => `${run}${sep}${wait}${sep}${slices}${end}`)

const ifName = fc.oneof(
  fc.stringMatching(/^[a-z0-9._@-]{1,15}$/),
  fc.constantFrom("lo", "eth0", "eth0:1", "hype-0123456789", "a".repeat(15), "a".repeat(16), "x|y", ""),
  latin1Name
)

const validNetDev = fc
  .tuple(fc.array(fc.tuple(ifName, fc.array(u64, { minLength: 16, maxLength: 16 })), { maxLength: 5 }), fc.boolean())
  .map(([interfaces, blankLine]) => {
    const lines = interfaces.map(([name, values]) => netDevLine(name, values))
    return NET_DEV_HEADER + (blankLine ? "\n" : "") + lines.join("")
  })

/**
 * Reads one table is filled with, one after another: mostly the same interfaces with other values
 * (what a reader sees every second), now and then with one dropped, added, moved or listed twice,
 * and any file (valid or mutated) in between.
 */
const netDevReads = fc.array(ifName, { minLength: 1, maxLength: 5 }).chain((names) =>
  fc.array(
    fc
      .oneof(
        { weight: 4, arbitrary: fc.tuple(fc.constant(names), fc.constantFrom("same", "drop", "add", "move", "twice")) },
        { weight: 1, arbitrary: fc.tuple(fc.constant(names), fc.constant("any")) }
      )
      .chain(([base, change]) => {
        if (change === "any") return fileText(validNetDev)
        const listed =
          change === "drop"
            ? base.slice(1)
            : change === "add"
              ? [...base, "tap-new"]
              : change === "move"
                ? [...base.slice(1), base[0]]
                : change === "twice"
                  ? [...base, base[0]]
                  : base
        return fc
          .array(fc.array(u64, { minLength: 16, maxLength: 16 }), {
            minLength: listed.length,
            maxLength: listed.length
          })
          .map((rows) => NET_DEV_HEADER + rows.map((values, k) => netDevLine(listed[k], values)).join(""))
      }),
    { minLength: 2, maxLength: 6 }
  )
)

/**
 * A length for a buffer: mostly within it (a prefix), else raw values that may lie outside it, be
 * negative, fractional or NaN (out of the parsers' contract: they must still give a ParseError).
 */
const lengthFor = fc.oneof(
  { weight: 4, arbitrary: fc.nat().map((n) => (bytes: Uint8Array) => n % (bytes.length + 1)) },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.integer({ min: -3, max: 300 }),
        fc.constantFrom(-0.5, 0.5, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 32, -(2 ** 31))
      )
      .map((n) => (_: Uint8Array) => n)
  }
)

const randomBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.string({ unit: "binary", maxLength: 64 }).map((text) => new TextEncoder().encode(text))
)

/** Valid files as bytes, mutated files, or random bytes, with a length. */
const bytesWithLength = (valid: fc.Arbitrary<string>) =>
  fc
    .tuple(
      fc.oneof(
        fileText(valid).map((text) => (isLatin1(text) ? latin1(text) : new TextEncoder().encode(text))),
        randomBytes
      ),
      lengthFor
    )
    .map(([bytes, length]) => [bytes, length(bytes)] as const)

// ---------------------------------------------------------------------------------------------------

const RUNS = {
  stat: 30_000,
  statm: 15_000,
  sysfs: 20_000,
  bootTime: 10_000,
  lengths: 3 * 5_000,
  status: 10_000,
  io: 8_000,
  schedstat: 8_000,
  netDev: 8_000,
  netDevTable: 2_000,
  newLengths: 4 * 2_500,
  auxv: 15_000
}

/** Both outcomes must be frequent, or the generators test only one side. */
const assertMixed = (counts: Tally, runs: number) => {
  assert.isAbove(counts.right, runs * 0.1, `only ${counts.right} of ${runs} cases parsed`)
  assert.isAbove(counts.left, runs * 0.1, `only ${counts.left} of ${runs} cases were ParseErrors`)
}

describe("parsers, property-based (text = bytes = oracle)", () => {
  it("/proc/<pid>/stat", () => {
    const counts = tally()
    const check = textChecker(parseProcStatText, parseProcStat, statOracle, "/proc/<pid>/stat", counts)
    fc.assert(fc.property(fileText(validStat), check), { seed: SEED, numRuns: RUNS.stat })
    assertMixed(counts, RUNS.stat)
  })

  it("/proc/<pid>/statm", () => {
    const counts = tally()
    const check = textChecker(parseProcStatmText, parseProcStatm, statmOracle, "/proc/<pid>/statm", counts)
    fc.assert(fc.property(fileText(validStatm), check), { seed: SEED + 1, numRuns: RUNS.statm })
    assertMixed(counts, RUNS.statm)
  })

  it("sysfs counter", () => {
    const counts = tally()
    const check = textChecker(
      (text) => parseSysfsCounterText(text, "rx_bytes"),
      (bytes) => parseSysfsCounter(bytes, bytes.length, "rx_bytes"),
      sysfsOracle,
      "rx_bytes",
      counts
    )
    fc.assert(fc.property(fileText(validSysfs), check), { seed: SEED + 2, numRuns: RUNS.sysfs })
    assertMixed(counts, RUNS.sysfs)
  })

  it("btime of /proc/stat", () => {
    const found = tally()
    fc.assert(
      fc.property(fileText(validProcStat), (text) => {
        const expected = bootTimeOracle(text)
        assert.strictEqual(parseBootTimeMs(text), expected)
        if (expected === undefined) found.left++
        else found.right++
      }),
      { seed: SEED + 3, numRuns: RUNS.bootTime }
    )
    assertMixed(found, RUNS.bootTime)
  })

  it("byte paths with any length argument", () => {
    const counts = tally()
    const stat = lengthChecker(parseProcStat, statOracle, "/proc/<pid>/stat", counts)
    const statm = lengthChecker(parseProcStatm, statmOracle, "/proc/<pid>/statm", counts)
    const sysfs = lengthChecker(
      (bytes, length) => parseSysfsCounter(bytes, length, "tx_bytes"),
      sysfsOracle,
      "tx_bytes",
      counts
    )
    const runs = RUNS.lengths / 3
    fc.assert(
      fc.property(bytesWithLength(validStat), ([b, n]) => stat(b, n)),
      { seed: SEED + 4, numRuns: runs }
    )
    fc.assert(
      fc.property(bytesWithLength(validStatm), ([b, n]) => statm(b, n)),
      { seed: SEED + 5, numRuns: runs }
    )
    fc.assert(
      fc.property(bytesWithLength(validSysfs), ([b, n]) => sysfs(b, n)),
      { seed: SEED + 6, numRuns: runs }
    )
    assertMixed(counts, RUNS.lengths)
  })

  it("Latin-1 decoding of any bytes and range (the scratch arrays, and runs longer than them)", () => {
    const oracle = (bytes: Uint8Array, start: number, end: number) =>
      Array.from(bytes.subarray(start, end), (c) => String.fromCharCode(c)).join("")
    const range = fc
      .uint8Array({ maxLength: 300 })
      .chain((bytes) => fc.tuple(fc.constant(bytes), fc.nat({ max: bytes.length }), fc.nat({ max: bytes.length })))
    fc.assert(
      fc.property(range, ([bytes, a, b]) => {
        const [start, end] = a <= b ? [a, b] : [b, a]
        assert.strictEqual(decodeLatin1(bytes, start, end), oracle(bytes, start, end))
        // The scratch array of a length is reused: a shorter call after a longer one leaves no trace.
        assert.strictEqual(
          decodeLatin1(bytes, start, Math.max(start, end - 1)),
          oracle(bytes, start, Math.max(start, end - 1))
        )
      }),
      { seed: SEED + 12, numRuns: 2000 }
    )
  })

  it("/proc/<pid>/status (memory lines)", () => {
    const counts = tally()
    const check = textChecker(parseProcStatusText, parseProcStatus, statusOracle, "/proc/<pid>/status", counts)
    fc.assert(fc.property(fileText(validStatus), check), { seed: SEED + 8, numRuns: RUNS.status })
    assertMixed(counts, RUNS.status)
  })

  it("/proc/<pid>/io", () => {
    const counts = tally()
    const check = textChecker(parseProcIoText, parseProcIo, ioOracle, "/proc/<pid>/io", counts)
    fc.assert(fc.property(fileText(validIo), check), { seed: SEED + 9, numRuns: RUNS.io })
    assertMixed(counts, RUNS.io)
  })

  it("/proc/<pid>/task/<tid>/schedstat", () => {
    const counts = tally()
    const file = "/proc/<pid>/task/<tid>/schedstat"
    const check = textChecker(parseSchedstatText, parseSchedstat, schedstatOracle, file, counts)
    fc.assert(fc.property(fileText(validSchedstat), check), { seed: SEED + 10, numRuns: RUNS.schedstat })
    assertMixed(counts, RUNS.schedstat)
  })

  it("/proc/<pid>/net/dev", () => {
    const counts = tally()
    const check = textChecker(parseNetDevText, parseNetDev, netDevOracle, "/proc/<pid>/net/dev", counts)
    fc.assert(fc.property(fileText(validNetDev), check), { seed: SEED + 11, numRuns: RUNS.netDev })
    assertMixed(counts, RUNS.netDev)
  })

  it("/proc/<pid>/net/dev into one NetDevTable, read after read", () => {
    const counts = tally()
    const table = new NetDevTable()
    const check = (texts: ReadonlyArray<string>) => {
      const named = new Set<string>() // every name listed so far: one not listed now has no row
      for (const text of texts) {
        // Not bytes of a file (the text entry points refuse it).
        if ([...text].some((c) => c.charCodeAt(0) > 0xff)) continue
        const expected = netDevOracle(text)
        const error = table.fill(latin1(text))
        if (expected === undefined) {
          counts.left++
          assert.isDefined(error, text)
          assert.strictEqual(error?.file, "/proc/<pid>/net/dev")
          assert.strictEqual(table.size, 0)
          // The same reason as a fresh parse of the file.
          assert.deepStrictEqual(plain(parseNetDev(latin1(text))), {
            tag: "ParseError",
            file: error?.file,
            reason: error?.reason
          })
        } else {
          counts.right++
          assert.isUndefined(error, error?.reason)
          assert.deepStrictEqual(table.toMap(), expected)
          assert.strictEqual(table.size, expected.size)
          for (const [row, name] of [...expected.keys()].entries()) {
            assert.strictEqual(table.row(name), row)
            assert.strictEqual(table.nameAt(row), name)
          }
          for (const name of named) if (!expected.has(name)) assert.isUndefined(table.row(name), name)
          for (const name of expected.keys()) named.add(name)
        }
      }
    }
    fc.assert(fc.property(netDevReads, check), { seed: SEED + 16, numRuns: RUNS.netDevTable })
    assertMixed(counts, RUNS.netDevTable)
  })

  it("byte paths of status, io, schedstat and net/dev with any length argument", () => {
    const counts = tally()
    const runs = RUNS.newLengths / 4
    const run = (valid: fc.Arbitrary<string>, check: (bytes: Uint8Array, length: number) => void, k: number) =>
      fc.assert(
        fc.property(bytesWithLength(valid), ([b, n]) => check(b, n)),
        { seed: SEED + 12 + k, numRuns: runs }
      )
    run(validStatus, lengthChecker(parseProcStatus, statusOracle, "/proc/<pid>/status", counts), 0)
    run(validIo, lengthChecker(parseProcIo, ioOracle, "/proc/<pid>/io", counts), 1)
    run(validSchedstat, lengthChecker(parseSchedstat, schedstatOracle, "/proc/<pid>/task/<tid>/schedstat", counts), 2)
    run(validNetDev, lengthChecker(parseNetDev, netDevOracle, "/proc/<pid>/net/dev", counts), 3)
    assertMixed(counts, RUNS.newLengths)
  })

  it("/proc/self/auxv", () => {
    const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)
    /** Words decoded byte by byte with BigInt arithmetic, then the spec: last entry before AT_NULL wins. */
    const oracle = (bytes: Uint8Array, wordSize: 4 | 8, littleEndian: boolean) => {
      const word = (offset: number) => {
        let value = 0n
        for (let k = 0; k < wordSize; k++) {
          const byte = bytes[littleEndian ? offset + wordSize - 1 - k : offset + k]
          value = value * 256n + BigInt(byte)
        }
        return value
      }
      const exact = (value: bigint) => (value <= MAX_SAFE ? Number(value) : undefined)
      let pageSize: number | undefined
      let clockTicks: number | undefined
      for (let offset = 0; offset + 2 * wordSize <= bytes.length; offset += 2 * wordSize) {
        const type = word(offset)
        if (type === 0n) break
        if (type === 6n) pageSize = exact(word(offset + wordSize))
        if (type === 17n) clockTicks = exact(word(offset + wordSize))
      }
      return { pageSize, clockTicks }
    }
    const entry = fc.tuple(
      fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(6n, 17n, 16n, 3n) },
        { weight: 1, arbitrary: fc.constant(0n) }, // AT_NULL
        { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: U64_MAX }) }
      ),
      fc.oneof(fc.constantFrom(4096n, 16384n, 65536n, 100n, 250n, 1000n, 0n), fc.bigInt({ min: 0n, max: U64_MAX }))
    )
    const vector = fc
      .tuple(fc.array(entry, { maxLength: 12 }), fc.constantFrom<4 | 8>(4, 8), fc.boolean(), fc.nat({ max: 7 }))
      .map(([entries, wordSize, littleEndian, trim]) => {
        const bytes = new Uint8Array(entries.length * 2 * wordSize)
        const view = new DataView(bytes.buffer)
        entries.flat().forEach((value, i) => {
          if (wordSize === 8) view.setBigUint64(i * 8, value, littleEndian)
          else view.setUint32(i * 4, Number(value & 0xffff_ffffn), littleEndian)
        })
        return { bytes: bytes.subarray(0, Math.max(0, bytes.length - trim)), wordSize, littleEndian }
      })
    const random = fc.record({
      bytes: fc.uint8Array({ maxLength: 96 }),
      wordSize: fc.constantFrom<4 | 8>(4, 8),
      littleEndian: fc.boolean()
    })
    let found = 0
    fc.assert(
      fc.property(fc.oneof(vector, random), ({ bytes, wordSize, littleEndian }) => {
        const info = parseAuxv(bytes, wordSize, littleEndian)
        assert.deepStrictEqual(info, oracle(bytes, wordSize, littleEndian))
        if (info.pageSize !== undefined) found++
      }),
      { seed: SEED + 7, numRuns: RUNS.auxv }
    )
    assert.isAbove(found, RUNS.auxv * 0.1)
  })
})
