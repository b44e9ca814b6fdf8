/**
 * The renderer's byte writer against what the string renderer did: `${value}` for numbers and bigints,
 * UTF-8 (TextEncoder, as Buffer.from) for text, over any value (fast-check, fixed seed), with the scratch
 * buffer growing mid-write and reused after `reset`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { ByteWriter } from "../src/internal/ByteWriter.js"

const SEED = 0x0b7e_2026
const utf8 = new TextEncoder()
const decoded = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

type Piece =
  | { readonly kind: "value"; readonly value: number | bigint }
  | { readonly kind: "text"; readonly text: string }
  | { readonly kind: "byte"; readonly byte: number }

const value = fc.oneof(
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fc.constantFrom(0n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, -1n),
  fc.double(),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.constantFrom(0, -0, 0.1, 1e21, 1e-7, -1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53) + 1)
)
const text = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }), // lone surrogates included: U+FFFD, as Buffer.from writes them
  fc.string({ unit: "grapheme-composite" }),
  fc.constantFrom("", "é", "a\u00ffb", "x\ud800y", "😀", "ascii then é then more ascii")
)
const piece: fc.Arbitrary<Piece> = fc.oneof(
  value.map((v) => ({ kind: "value", value: v }) as const),
  text.map((t) => ({ kind: "text", text: t }) as const),
  fc.integer({ min: 0, max: 0x7f }).map((b) => ({ kind: "byte", byte: b }) as const)
)

const expected = (pieces: ReadonlyArray<Piece>) =>
  pieces.map((p) => (p.kind === "value" ? `${p.value}` : p.kind === "text" ? p.text : String.fromCharCode(p.byte)))

const write = (writer: ByteWriter, pieces: ReadonlyArray<Piece>) => {
  for (const p of pieces) {
    if (p.kind === "value") writer.value(p.value)
    else if (p.kind === "text") writer.text(p.text)
    else writer.byte(p.byte)
  }
}

describe("ByteWriter", () => {
  it("writes exactly the UTF-8 of the text the string renderer made, however the buffer grows", () => {
    fc.assert(
      fc.property(fc.array(fc.array(piece, { maxLength: 40 }), { minLength: 1, maxLength: 4 }), (texts) => {
        // A tiny buffer, so that most writes grow it; reused for each text after a reset.
        const writer = new ByteWriter(1)
        for (const pieces of texts) {
          writer.reset()
          write(writer, pieces)
          const bytes = writer.take()
          assert.deepStrictEqual(bytes, utf8.encode(expected(pieces).join("")))
        }
      }),
      { seed: SEED, numRuns: 3000 }
    )
  })

  it("writes a value's digits as a template string writes the value", () => {
    fc.assert(
      fc.property(value, (v) => {
        const writer = new ByteWriter(4)
        writer.value(v)
        assert.strictEqual(decoded(writer.take()), `${v}`)
      }),
      { seed: SEED, numRuns: 20000 }
    )
  })

  it("take copies out: a later write does not change bytes already taken", () => {
    const writer = new ByteWriter(8)
    writer.text("first")
    const first = writer.take()
    writer.reset()
    writer.text("second, longer than the buffer")
    assert.strictEqual(decoded(first), "first")
    assert.strictEqual(decoded(writer.take()), "second, longer than the buffer")
  })
})
