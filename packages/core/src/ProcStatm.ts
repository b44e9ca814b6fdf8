/**
 * Pure parser for `/proc/<pid>/statm`: `size resident shared text lib data dt`, all in pages.
 * Only size (VMS) and resident (RSS) are used; at least 2 fields are required. Pages are `bigint`.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { excerpt, latin1Bytes, lengthProblem, parseUnsigned, SEPARATOR_MAX } from "./internal/decimal.js"

/** @category models */
export interface ProcStatm {
  readonly vmsPages: bigint
  readonly rssPages: bigint
}

const FILE = "/proc/<pid>/statm"
const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

/** Parses the first `length` bytes of a statm file. @category parsers */
export const parseProcStatm = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ProcStatm, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  const values: Array<bigint> = []
  let i = 0
  while (values.length < 2) {
    while (i < length && bytes[i] <= SEPARATOR_MAX) i++
    if (i >= length) return fail(`not enough fields (${values.length}, need 2)`)
    const start = i
    while (i < length && bytes[i] > SEPARATOR_MAX) i++
    const value = parseUnsigned(bytes, start, i)
    if (value === undefined) {
      return fail(`${values.length === 0 ? "size" : "resident"} is not a number: ${excerpt(bytes, start, i)}`)
    }
    values.push(value)
  }
  return Either.right({ vmsPages: values[0], rssPages: values[1] })
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseProcStatmText = (text: string): Either.Either<ProcStatm, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseProcStatm(bytes)
}
