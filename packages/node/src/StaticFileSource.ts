/**
 * `InstanceSource` from a JSON or YAML file that lists the instances, for hosts without a control
 * plane to ask:
 *
 * ```yaml
 * instances:             # or the list itself at the top level
 *   - id: web-1
 *     name: web          # default: the id
 *     pidfile: web-1.pid # or pid: 4242; relative to the file's directory; re-read on every listing
 *     networkEnabled: true  # TAP hype-web-1 (TapName.tapNameFor), or tap: tap-web1
 *     vcpus: 2
 *     memory: 1G         # or bytes as a number; K/M/G/T (also Ki/KiB, …) are powers of 1024
 * ```
 *
 * The file is parsed again only when it changes (device, inode, size, mtime or ctime differ; one
 * `stat` per listing, so an atomic rename or a Kubernetes ConfigMap swap is seen too). A `.json` file
 * is read as JSON, anything else as YAML. The file is validated with Schema, strictly: an unknown key
 * is an error, so a typo cannot silently drop a pid. A file that cannot be read, does not parse or
 * has the wrong shape, and an empty file (a writer caught half-way), fail the listing with an
 * `InstanceSourceError` whose reason names the file and what is wrong; the collector then keeps
 * reading the last good listing. A pidfile that is missing or does not hold a pid only leaves that
 * instance without a pid (`no-process`).
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { InstanceSourceError, type InstanceSourceErrorKind } from "@vm-metrics/core/Errors"
import { type InstanceInfo, Pid } from "@vm-metrics/core/Instance"
import { InstanceSource, kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { tapNameFor, tapNameProblem } from "@vm-metrics/core/TapName"
import { type Context, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { parseDocument } from "yaml"
import { errnoOf } from "./internal/keptFile.js"
import { SmallFileReader } from "./internal/smallFile.js"

/** @category models */
export interface Options {
  /** The JSON (`.json`) or YAML file; a relative path is resolved against the working directory. */
  readonly path: string
}

/** The largest instances file read. @category constants */
export const MAX_FILE_BYTES = 64 * 1024 * 1024

const UNITS: Record<string, number> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }

/**
 * A memory size: `"1G"`, `"512M"`, `"1.5GiB"`, `"64Ki"`, `"1073741824"`, `"4096B"`; K/M/G/T are powers
 * of 1024, with or without `i`/`B`/`iB`, any case. Undefined unless a non-negative safe integer.
 *
 * @category parsers
 */
export const parseMemorySize = (text: string): number | undefined => {
  const match = /^\s*(\d{1,20}(?:\.\d{1,20})?)\s*(?:([kmgt])(?:i?b|i)?|b)?\s*$/i.exec(text)
  if (match === null) return undefined
  const bytes = Math.round(Number(match[1]) * UNITS[(match[2] ?? "").toLowerCase()])
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

const Bytes = Schema.Int.pipe(Schema.nonNegative())

/** Bytes as a number, or a string such as `"1G"`. @category schemas */
export const MemorySize = Schema.transformOrFail(Schema.Unknown, Bytes, {
  strict: true,
  decode: (input, _, ast) => {
    const bytes = typeof input === "number" ? input : typeof input === "string" ? parseMemorySize(input) : undefined
    return bytes === undefined
      ? ParseResult.fail(
          new ParseResult.Type(
            ast,
            input,
            `expected bytes or a size such as "1G" or "512M", got ${JSON.stringify(input)}`
          )
        )
      : ParseResult.succeed(bytes)
  },
  encode: ParseResult.succeed
})

/** An interface name the kernel would accept (TapName.tapNameProblem). @category schemas */
export const TapName = Schema.String.pipe(
  Schema.filter((name) => {
    const problem = tapNameProblem(name)
    return problem === undefined ? true : `not a valid interface name (${problem})`
  })
)

const exact = { exact: true } as const

/** One instance in the file. @category schemas */
export const Entry = Schema.Struct({
  id: Schema.NonEmptyString,
  name: Schema.optionalWith(Schema.String, exact),
  pid: Schema.optionalWith(Pid, exact),
  pidfile: Schema.optionalWith(Schema.NonEmptyString, exact),
  tap: Schema.optionalWith(TapName, exact),
  networkEnabled: Schema.optionalWith(Schema.Boolean, exact),
  vcpus: Schema.Int.pipe(Schema.nonNegative()),
  memory: MemorySize
}).pipe(
  Schema.filter((entry) => {
    if (entry.pid !== undefined && entry.pidfile !== undefined) return "give either pid or pidfile, not both"
    if (entry.tap !== undefined && entry.networkEnabled === false) return "tap is set but networkEnabled is false"
    return true
  })
)
/** @category models */
export type Entry = typeof Entry.Type

const Entries = Schema.Array(Entry)
const Wrapped = Schema.Struct({ instances: Entries })
const decodeOptions = { errors: "all", onExcessProperty: "error" } as const
const decodeEntries = Schema.decodeUnknownEither(Entries, decodeOptions)
const decodeWrapped = Schema.decodeUnknownEither(Wrapped, decodeOptions)

const MAX_ISSUES = 5

/** `[1].memory`, `instances[0].tap` */
const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((key, i) => (typeof key === "number" ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join("")

const describeIssues = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const shown = issues.slice(0, MAX_ISSUES).map((issue) => {
    const where = pathText(issue.path)
    return where === "" ? issue.message : `${where}: ${issue.message}`
  })
  const more = issues.length > MAX_ISSUES ? `; and ${issues.length - MAX_ISSUES} more` : ""
  return shown.join("; ") + more
}

const kindOf = (value: unknown): string => (value === null ? "null" : Array.isArray(value) ? "a list" : typeof value)

/**
 * The entries of a file's text, or what is wrong with it (without the file name). `json` parses
 * with JSON.parse, otherwise YAML (which also reads JSON).
 *
 * @category parsers
 */
export const parseInstancesFile = (text: string, json: boolean): Either.Either<ReadonlyArray<Entry>, string> => {
  if (text.trim() === "") return Either.left("the file is empty")
  let data: unknown
  if (json) {
    try {
      data = JSON.parse(text)
    } catch (error) {
      return Either.left(`invalid JSON: ${error instanceof Error ? error.message : String(error)}`)
    }
  } else {
    const document = parseDocument(text)
    const [first] = document.errors
    // The message's first line says what and where ("… at line 4, column 1:"); a code excerpt follows.
    if (first !== undefined) return Either.left(`invalid YAML: ${first.message.split("\n")[0].replace(/:$/, "")}`)
    try {
      data = document.toJS({ maxAliasCount: 100 })
    } catch (error) {
      return Either.left(`invalid YAML: ${error instanceof Error ? error.message : String(error)}`)
    }
  }
  const isObject = typeof data === "object" && data !== null && !Array.isArray(data)
  if (!Array.isArray(data) && !isObject) {
    return Either.left(`expected a list of instances or an object with "instances", got ${kindOf(data)}`)
  }
  const decoded = Array.isArray(data) ? decodeEntries(data) : Either.map(decodeWrapped(data), (file) => file.instances)
  if (Either.isLeft(decoded)) return Either.left(describeIssues(decoded.left))
  const entries = decoded.right
  const firstIndex = new Map<string, number>()
  for (let i = 0; i < entries.length; i++) {
    const seen = firstIndex.get(entries[i].id)
    if (seen !== undefined)
      return Either.left(`duplicate id ${JSON.stringify(entries[i].id)} (entries ${seen} and ${i})`)
    firstIndex.set(entries[i].id, i)
  }
  return Either.right(entries)
}

/** A pidfile's pid: digits (surrounding whitespace allowed) in the kernel's range, else undefined. @category parsers */
export const parsePidfile = (text: string): number | undefined => {
  const match = /^\s*(\d{1,7})\s*$/.exec(text)
  if (match === null) return undefined
  const pid = Number(match[1])
  return Schema.is(Pid)(pid) ? pid : undefined
}

/** An entry with its pid (from `pid` or a pidfile) as the collector wants it. @category constructors */
export const toInstanceInfo = (entry: Entry, pid: number | undefined): InstanceInfo => {
  const tap = entry.tap ?? (entry.networkEnabled === true ? tapNameFor(entry.id) : undefined)
  return {
    id: entry.id,
    name: entry.name ?? entry.id,
    ...(pid === undefined ? {} : { hypervisorPid: pid }),
    ...(tap === undefined ? {} : { tapDevice: tap }),
    allocatedVcpus: entry.vcpus,
    allocatedMemoryBytes: entry.memory
  }
}

interface Loaded {
  /** What identifies the file's version: device, inode, size, mtime and ctime. */
  readonly version: string
  readonly result: Either.Either<ReadonlyArray<Entry>, InstanceSourceError>
  /** The listing itself when no entry has a pidfile: returned as it is until the file changes. */
  readonly fixed: ReadonlyArray<InstanceInfo> | undefined
}

/** The synchronous core of the source. @category constructors */
export const makeSync = (options: Options) => {
  const file = nodePath.resolve(options.path)
  const directory = nodePath.dirname(file)
  const json = file.toLowerCase().endsWith(".json")
  const reader = new SmallFileReader()
  let loaded: Loaded | undefined

  const failure = (what: string, kind: InstanceSourceErrorKind = "parse_error") =>
    new InstanceSourceError({ kind, reason: `${file}: ${what}` })

  const pidOf = (entry: Entry): number | undefined => {
    if (entry.pidfile === undefined) return entry.pid
    const bytes = reader.read(nodePath.resolve(directory, entry.pidfile), { limit: 4096, regularOnly: true })
    return typeof bytes === "string" ? undefined : parsePidfile(bytes.toString("latin1"))
  }

  const list = (): Either.Either<ReadonlyArray<InstanceInfo>, InstanceSourceError> => {
    let version: string
    try {
      const stat = fs.statSync(file, { bigint: true })
      version = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
    } catch (error) {
      const code = errnoOf(error)
      return Either.left(failure(`cannot read: ${code}`, kindOfErrno(code)))
    }
    if (loaded?.version !== version) {
      const bytes = reader.read(file, { limit: MAX_FILE_BYTES, regularOnly: true })
      // A read failure is not remembered: the next listing tries again even if nothing changed.
      if (typeof bytes === "string") return Either.left(failure(`cannot read: ${bytes}`, kindOfErrno(bytes)))
      const result = Either.mapLeft(parseInstancesFile(bytes.toString("utf8"), json), (what) => failure(what))
      const fixed =
        Either.isRight(result) && result.right.every((entry) => entry.pidfile === undefined)
          ? result.right.map((entry) => toInstanceInfo(entry, entry.pid))
          : undefined
      loaded = { version, result, fixed }
    }
    const { result, fixed } = loaded
    if (fixed !== undefined) return Either.right(fixed)
    return Either.map(result, (entries) => entries.map((entry) => toInstanceInfo(entry, pidOf(entry))))
  }

  return { list }
}

/** @category constructors */
export const make = (options: Options): Effect.Effect<Context.Tag.Service<InstanceSource>> =>
  Effect.sync(() => {
    const source = makeSync(options)
    return InstanceSource.of({ list: Effect.suspend(source.list) })
  })

/** Lists the instances in `path`, re-read when it changes. @category layers */
export const layer = (options: Options): Layer.Layer<InstanceSource> => Layer.effect(InstanceSource, make(options))
