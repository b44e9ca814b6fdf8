/**
 * Pure parser for `/proc/<pid>/task/<tid>/schedstat`: `<run ns> <wait ns> <timeslices>`. For a vCPU
 * thread, the wait is the time the vCPU was runnable but had no physical CPU: the host-side steal
 * that libvirt reports from the same file. A kernel without schedstats prints `0 0 0`.
 *
 * At least 3 fields are required; later ones are not validated (as statm). Values are exact `bigint`s.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { ParseError } from "./Errors.js"
import { excerpt, latin1Bytes, lengthProblem, parseUnsigned, SEPARATOR_MAX } from "./internal/decimal.js"

/** @category models */
export interface Schedstat {
  /** Nanoseconds spent on a CPU. */
  readonly runNs: bigint
  /** Nanoseconds spent runnable on a run queue, waiting for a CPU. */
  readonly waitNs: bigint
  /** Number of times the thread was run on a CPU. */
  readonly timeslices: bigint
}

const FILE = "/proc/<pid>/task/<tid>/schedstat"
const NAMES = ["run time", "wait time", "timeslices"]

const fail = (reason: string) => Either.left(new ParseError({ file: FILE, reason }))

/** Parses the first `length` bytes of a schedstat file. @category parsers */
export const parseSchedstat = (
  bytes: Uint8Array,
  length: number = bytes.length
): Either.Either<Schedstat, ParseError> => {
  const badLength = lengthProblem(bytes, length)
  if (badLength !== undefined) return fail(badLength)
  const values: Array<bigint> = []
  let i = 0
  while (values.length < 3) {
    while (i < length && bytes[i] <= SEPARATOR_MAX) i++
    if (i >= length) return fail(`not enough fields (${values.length}, need 3)`)
    const start = i
    while (i < length && bytes[i] > SEPARATOR_MAX) i++
    const value = parseUnsigned(bytes, start, i)
    if (value === undefined) return fail(`${NAMES[values.length]} is not a number: ${excerpt(bytes, start, i)}`)
    values.push(value)
  }
  return Either.right({ runNs: values[0], waitNs: values[1], timeslices: values[2] })
}

/** The same parser over Latin-1 text (see ProcStat.parseProcStatText). @category parsers */
export const parseSchedstatText = (text: string): Either.Either<Schedstat, ParseError> => {
  const bytes = latin1Bytes(text)
  return typeof bytes === "string" ? fail(bytes) : parseSchedstat(bytes)
}
