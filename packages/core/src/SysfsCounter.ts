/**
 * Pure parser for one sysfs counter file such as `/sys/class/net/<tap>/statistics/rx_bytes`:
 * a base-10 unsigned number, surrounded by optional whitespace. The value is an exact `bigint`.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { excerpt, latin1Bytes, lengthProblem, parseUnsigned, SEPARATOR_MAX } from "./internal/decimal.js"

/** Parses the first `length` bytes; `file` names the counter in the error. @category parsers */
export const parseSysfsCounter = (
  bytes: Uint8Array,
  length: number = bytes.length,
  file = "sysfs counter"
): Either.Either<bigint, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return Either.left(new ParseError({ file, reason: badLength }))
  let start = 0
  let end = length
  while (start < end && bytes[start] <= SEPARATOR_MAX) start++
  while (end > start && bytes[end - 1] <= SEPARATOR_MAX) end--
  if (start === end) return Either.left(new ParseError({ file, reason: "empty file" }))
  const value = parseUnsigned(bytes, start, end)
  return value === undefined
    ? Either.left(new ParseError({ file, reason: `not a number: ${excerpt(bytes, start, end)}` }))
    : Either.right(value)
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseSysfsCounterText = (text: string, file?: string): Either.Either<bigint, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string"
    ? Either.left(new ParseError({ file: file ?? "sysfs counter", reason: bytes }))
    : parseSysfsCounter(bytes, bytes.length, file)
}
