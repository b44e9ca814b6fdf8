/**
 * JSON with exact 64-bit integers. Kernel counters go up to 2^64 − 1, and a double holds integers
 * exactly only up to 2^53: `JSON.stringify` cannot write a bigint and `JSON.parse` rounds a long
 * integer. So the API writes bigints as integer literals (`write`), and its readers first turn a
 * literal a double cannot hold into its digits as a string (`quoteLargeIntegers`), which `Int64`
 * decodes back to the exact bigint.
 *
 * @since 0.1.0
 */
import { ParseResult, Schema } from "effect"

/** JSON text of any value, writing bigints as exact integer literals. @category writing */
export const write = (value: unknown): string => {
  if (typeof value === "bigint") return value.toString()
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null"
  if (Array.isArray(value)) return `[${value.map(write).join(",")}]`
  const entries = Object.entries(value).filter(([, v]) => v !== undefined)
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${write(v)}`).join(",")}}`
}

// A string token (skipped as it is) or a number token.
const TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g

/**
 * The JSON text with every integer literal beyond ±(2^53 − 1) written as a string of its digits, so
 * `JSON.parse` keeps it whole. Strings and every other number are left as they are.
 * @category reading
 */
export const quoteLargeIntegers = (text: string): string =>
  text.replace(TOKEN, (token) =>
    token.startsWith('"') || /[.eE]/.test(token) || Number.isSafeInteger(Number(token)) ? token : `"${token}"`
  )

/** JSON text parsed with every integer kept exact (see `quoteLargeIntegers`, `Int64`). @category reading */
export const read = (text: string): unknown => JSON.parse(quoteLargeIntegers(text))

/**
 * An integer as a JSON reader hands it over: a number when a double holds it exactly, its digits when
 * `quoteLargeIntegers` kept it whole, or a bigint.
 */
const JsonInteger = Schema.Union(Schema.Number, Schema.BigIntFromSelf, Schema.String)

/**
 * A 64-bit integer in JSON: an integer literal on the wire (`format: int64`; kernel counters may reach
 * 2^64 − 1), a bigint in code. Encodes to the bigint, which `write` writes as a literal. A number beyond
 * 2^53 is refused: `JSON.parse` already rounded it, read the text with `read` instead.
 * @category schemas
 */
export const Int64 = Schema.transformOrFail(JsonInteger, Schema.BigIntFromSelf, {
  strict: true,
  decode: (value, _, ast) => {
    if (typeof value === "bigint") return ParseResult.succeed(value)
    if (typeof value === "string")
      return /^-?\d+$/.test(value)
        ? ParseResult.succeed(BigInt(value))
        : ParseResult.fail(new ParseResult.Type(ast, value, "an integer's digits"))
    return Number.isSafeInteger(value)
      ? ParseResult.succeed(BigInt(value))
      : ParseResult.fail(
          new ParseResult.Type(
            ast,
            value,
            Number.isInteger(value)
              ? "an integer beyond 2^53 read as a double (rounded): read it exactly"
              : "an integer"
          )
        )
  },
  encode: (value) => ParseResult.succeed(value)
}).annotations({ jsonSchema: { type: "integer", format: "int64" } })
