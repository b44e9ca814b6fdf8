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

/** The index of the first byte at or after `i` that is not a separator (`length` if none). */
const tokenStart = (bytes: Uint8Array, i: number, length: number): number => {
  while (i < length && bytes[i] <= SEPARATOR_MAX) i++
  return i
}

/** The index just past the token that starts at `i`. */
const tokenEnd = (bytes: Uint8Array, i: number, length: number): number => {
  while (i < length && bytes[i] > SEPARATOR_MAX) i++
  return i
}

/** Parses the first `length` bytes of a statm file. @category parsers */
export const parseProcStatm = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<ProcStatm, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  // Two fields, parsed into locals: an array of them was most of a read's garbage (~180 of ~330 bytes).
  const sizeStart = tokenStart(bytes, 0, length)
  if (sizeStart >= length) return fail("not enough fields (0, need 2)")
  const sizeEnd = tokenEnd(bytes, sizeStart, length)
  const vmsPages = parseUnsigned(bytes, sizeStart, sizeEnd)
  if (vmsPages === undefined) return fail(`size is not a number: ${excerpt(bytes, sizeStart, sizeEnd)}`)
  const rssStart = tokenStart(bytes, sizeEnd, length)
  if (rssStart >= length) return fail("not enough fields (1, need 2)")
  const rssEnd = tokenEnd(bytes, rssStart, length)
  const rssPages = parseUnsigned(bytes, rssStart, rssEnd)
  if (rssPages === undefined) return fail(`resident is not a number: ${excerpt(bytes, rssStart, rssEnd)}`)
  return Either.right({ vmsPages, rssPages })
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseProcStatmText = (text: string): Either.Either<ProcStatm, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseProcStatm(bytes)
}
