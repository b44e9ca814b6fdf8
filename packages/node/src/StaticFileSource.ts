/**
 * `InstanceSource` from a JSON or YAML file that lists the instances, for hosts without a control
 * plane to ask:
 *
 * ```yaml
 * instances:             # or the list itself at the top level
 *   - id: web-1
 *     name: web          # default: the id
 *     pidfile: web-1.pid # or pid: 4242; relative to the file's directory; re-read on every listing
 *     networkEnabled: true  # TAP hype-web-1 (TapName.tapNameFor), or tap: tap-web1,
 *                           # or taps: [tap-web1a, tap-web1b] (several NICs, summed per VM)
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
 * instance without a pid (`no-process`). So does a pidfile that belongs to neither root, the agent's
 * user nor the instances file's owner (logged once per pidfile): a pidfile kept where other users may
 * write (`/tmp`, before the VM has made it) must not let them name their own process as the VM.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { fileURLToPath } from "node:url"
import { Worker } from "node:worker_threads"
import { InstanceSourceError, type InstanceSourceErrorKind } from "@vm-metrics/core/Errors"
import { type InstanceInfo, Pid, tapFields } from "@vm-metrics/core/Instance"
import { InstanceSource, kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { tapNameFor, tapNameProblem } from "@vm-metrics/core/TapName"
import { type Context, Effect, Either, Layer, ParseResult, Schema } from "effect"
import { JOB, parseInstancesText, type Reply } from "./internal/instancesFileWorker.mjs"
import { errnoOf } from "./internal/keptFile.js"
import { NOT_OWNED, NOT_REGULAR, SmallFileReader, TOO_LARGE } from "./internal/smallFile.js"

/** @category models */
export interface Options {
  /** The JSON (`.json`) or YAML file; a relative path is resolved against the working directory. */
  readonly path: string
}

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
          new ParseResult.Type(ast, input, `expected bytes or a size such as "1G" or "512M", got ${kindOf(input)}`)
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
  /** Every NIC's TAP, in order (the first is the instance's `tapDevice`). */
  taps: Schema.optionalWith(Schema.Array(TapName).pipe(Schema.minItems(1)), exact),
  networkEnabled: Schema.optionalWith(Schema.Boolean, exact),
  vcpus: Schema.Int.pipe(Schema.nonNegative()),
  memory: MemorySize
}).pipe(
  Schema.filter((entry) => {
    if (entry.pid !== undefined && entry.pidfile !== undefined) return "give either pid or pidfile, not both"
    if (entry.tap !== undefined && entry.taps !== undefined) return "give either tap or taps, not both"
    if (entry.tap !== undefined && entry.networkEnabled === false) return "tap is set but networkEnabled is false"
    if (entry.taps !== undefined && entry.networkEnabled === false) return "taps is set but networkEnabled is false"
    if (entry.taps !== undefined && new Set(entry.taps).size !== entry.taps.length) return "taps lists a TAP twice"
    return true
  })
)
/** @category models */
export type Entry = typeof Entry.Type

const decodeOptions = { errors: "all", onExcessProperty: "error" } as const
const decodeEntry = Schema.decodeUnknownEither(Entry, decodeOptions)
const decodeWrapped = Schema.decodeUnknownEither(
  Schema.Struct({ instances: Schema.Array(Schema.Unknown) }),
  decodeOptions
)

const MAX_ISSUES = 5
/** Entries decoded between two yields to the event loop. */
const DECODE_CHUNK = 100

/** The keys a path may name: any other key is the file's content (a typo, or a secret file's first word). */
const knownKeys = new Set(["instances", ...Object.keys(Entry.from.fields)])

/**
 * Keys a user reaches for and the key meant: the library's `InstanceInfo` fields, the JSON API's names
 * and other spellings. Named in messages: they are words of this list, not of the file.
 */
const MEANT = new Map(
  Object.entries({
    id: ["instanceId", "instance_id", "ID", "Id"],
    name: ["instanceName", "instance_name"],
    pid: ["hypervisorPid", "hypervisor_pid", "PID", "Pid"],
    pidfile: ["pidFile", "pid_file", "pidFilePath"],
    tap: ["tapDevice", "tap_device", "tapName", "tap_name"],
    taps: ["tapDevices", "tap_devices"],
    networkEnabled: ["network_enabled", "networkenabled"],
    vcpus: ["allocatedVcpus", "allocated_vcpus", "vcpu", "cpus"],
    memory: ["allocatedMemoryBytes", "allocated_memory_bytes", "memoryBytes", "memory_bytes", "mem"]
  }).flatMap(([key, spellings]) => spellings.map((spelling) => [spelling, key] as const))
)

const isUnknown = (key: PropertyKey): key is string => typeof key === "string" && !knownKeys.has(key)

/** `instances[0]` + `.memory`; an unknown key shows as `.<unknown key>` unless it is one of MEANT's. */
const pathText = (path: ReadonlyArray<PropertyKey>): string =>
  path
    .map((key) =>
      typeof key === "number" ? `[${key}]` : isUnknown(key) && !MEANT.has(key) ? ".<unknown key>" : `.${String(key)}`
    )
    .join("")

/**
 * An issue's message without the value it saw: Schema says `Expected X, actual <value>`, and a value
 * may be anything the file held (the file may be a symlink to a secret).
 */
const withoutValue = (message: string): string => message.replace(/, actual [\s\S]*$/, "")

/** An issue's message; in an entry, a key of MEANT's is told which key it should be. */
const messageOf = (issue: ParseResult.ArrayFormatterIssue, inEntry: boolean): string => {
  const key = issue.path[0]
  const meant = inEntry && issue.path.length === 1 && isUnknown(key) ? MEANT.get(key) : undefined
  return meant === undefined ? withoutValue(issue.message) : `is not a key of an instance; the key is "${meant}"`
}

/** The issues of a decode, each once: the same unknown key message for several keys is counted. */
const issuesOf = (error: ParseResult.ParseError, prefix: string, inEntry: boolean): Array<string> => {
  const counts = new Map<string, number>()
  for (const issue of ParseResult.ArrayFormatter.formatErrorSync(error)) {
    const where = `${prefix}${pathText(issue.path)}`.replace(/^\./, "")
    const message = messageOf(issue, inEntry)
    const text = where === "" ? message : `${where}: ${message}`
    counts.set(text, (counts.get(text) ?? 0) + 1)
  }
  return Array.from(counts, ([text, count]) =>
    count === 1 ? text : text.replace("<unknown key>:", `<unknown key> (${count} keys):`)
  )
}

const joinIssues = (issues: ReadonlyArray<string>): string =>
  issues.slice(0, MAX_ISSUES).join("; ") +
  (issues.length > MAX_ISSUES ? `; and ${issues.length - MAX_ISSUES} more` : "")

const kindOf = (value: unknown): string => (value === null ? "null" : Array.isArray(value) ? "a list" : typeof value)

/** Why a file gives no listing: the kind and position for clients, `what` for the local log. */
interface Failure {
  readonly kind: InstanceSourceErrorKind
  readonly what: string
  readonly line?: number | undefined
  readonly column?: number | undefined
}

const invalid = (what: string): Failure => ({ kind: "parse_error", what })

/**
 * The entries of parsed data (a list, or an object with `instances`), validated strictly. Decoded in
 * chunks of `DECODE_CHUNK` entries with a yield between them, so a large file does not hold up a
 * collection. Messages name paths in the file, never its values.
 *
 * @category parsers
 */
export const decodeInstances = (data: unknown): Effect.Effect<ReadonlyArray<Entry>, Failure> =>
  Effect.gen(function* () {
    let items: ReadonlyArray<unknown>
    let prefix = ""
    if (Array.isArray(data)) items = data
    else if (typeof data === "object" && data !== null) {
      const wrapped = decodeWrapped(data)
      if (Either.isLeft(wrapped)) return yield* Effect.fail(invalid(joinIssues(issuesOf(wrapped.left, "", false))))
      items = wrapped.right.instances
      prefix = "instances"
    } else {
      return yield* Effect.fail(
        invalid(`expected a list of instances or an object with "instances", got ${kindOf(data)}`)
      )
    }
    const entries: Array<Entry> = []
    const issues: Array<string> = []
    for (let i = 0; i < items.length; i++) {
      if (i > 0 && i % DECODE_CHUNK === 0) yield* Effect.yieldNow()
      const decoded = decodeEntry(items[i])
      if (Either.isRight(decoded)) entries.push(decoded.right)
      else issues.push(...issuesOf(decoded.left, `${prefix}[${i}]`, true))
    }
    if (issues.length > 0) return yield* Effect.fail(invalid(joinIssues(issues)))
    const firstIndex = new Map<string, number>()
    for (let i = 0; i < entries.length; i++) {
      const seen = firstIndex.get(entries[i].id)
      if (seen !== undefined) return yield* Effect.fail(invalid(`duplicate id (entries ${seen} and ${i})`))
      firstIndex.set(entries[i].id, i)
    }
    return entries
  })

/** The largest instances file read: a few thousand instances take well under 1 MiB. @category constants */
export const MAX_FILE_BYTES = 4 * 1024 * 1024

/** The most instances a file may list. @category constants */
export const MAX_ENTRIES = 10_000

/** The deepest nesting accepted (a valid file needs 4: object, list, entry, value). @category constants */
export const MAX_DEPTH = 32

/** The most values (lists, objects, scalars) in a parsed file: room for MAX_ENTRIES full entries. */
const MAX_NODES = MAX_ENTRIES * 20

/** A parse that takes longer than this (a hostile YAML file) is given up. @category constants */
export const PARSE_TIMEOUT_MS = 30_000

const workerUrl = new URL("./internal/instancesFileWorker.mjs", import.meta.url)
const limits = { maxDepth: MAX_DEPTH, maxNodes: MAX_NODES, maxEntries: MAX_ENTRIES }

const atPosition = (line: number | undefined, column: number | undefined): string =>
  line === undefined ? "" : ` at line ${line}, column ${column ?? 1}`

const fromReply = (reply: Reply): Effect.Effect<unknown, Failure> =>
  reply.ok
    ? Effect.succeed(reply.data)
    : Effect.fail({
        kind: reply.kind,
        line: reply.line,
        column: reply.column,
        what: `${reply.detail}${atPosition(reply.line, reply.column)}`
      })

/**
 * Whether the worker's file is there. It is, in a checkout; a single-file bundle (esbuild) has it only
 * when built as a second entry point beside the bundle (deploy/README.md). Without it the same checks
 * and parse run on the main thread: still bounded, but a large YAML file then holds up the loop.
 */
const workerAvailable = fs.existsSync(fileURLToPath(workerUrl))

/**
 * Parses the file's bytes (JSON when `json`, else YAML) in a worker thread: the parse of a few MB of
 * YAML takes seconds, which must not stall scrapes and collections on the main thread, and a hostile
 * file that exhausts the parser's memory ends the worker (its own heap limit), not the exporter.
 * The worker bounds depth before parsing (see internal/instancesFileWorker.mjs). One worker per parse,
 * started only when the file has changed.
 *
 * @category parsers
 */
export const parseOffThread = (bytes: Uint8Array, json: boolean): Effect.Effect<unknown, Failure> =>
  workerAvailable ? parseInWorker(bytes, json) : Effect.suspend(() => fromReply(parseHere(bytes, json)))

const parseHere = (bytes: Uint8Array, json: boolean): Reply =>
  parseInstancesText(new TextDecoder().decode(bytes), json, limits)

const parseInWorker = (bytes: Uint8Array, json: boolean): Effect.Effect<unknown, Failure> =>
  Effect.async<unknown, Failure>((resume) => {
    let settled = false
    const worker = new Worker(workerUrl, {
      workerData: { job: JOB, bytes, json, ...limits },
      resourceLimits: { maxOldGenerationSizeMb: 512, maxYoungGenerationSizeMb: 64, stackSizeMb: 4 },
      stdout: true,
      stderr: true
    })
    const settle = (result: Effect.Effect<unknown, Failure>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      void worker.terminate()
      resume(result)
    }
    const timer = setTimeout(
      () => settle(Effect.fail({ kind: "too_large", what: `not parsed within ${PARSE_TIMEOUT_MS / 1000} s` })),
      PARSE_TIMEOUT_MS
    )
    worker.once("message", (reply: Reply) => settle(fromReply(reply)))
    worker.once("error", (error: Error & { code?: string }) =>
      settle(
        Effect.fail(
          error.code === "ERR_WORKER_OUT_OF_MEMORY"
            ? { kind: "too_large", what: "the parser ran out of memory" }
            : { kind: "unavailable", what: `the parser failed (${error.code ?? error.name})` }
        )
      )
    )
    worker.once("exit", (code) => settle(Effect.fail({ kind: "unavailable", what: `the parser exited (${code})` })))
    return Effect.sync(() => {
      settled = true
      clearTimeout(timer)
      void worker.terminate()
    })
  })

/** The entries of a file's bytes, or why there are none (without the file name). @category parsers */
export const parseInstancesFile = (bytes: Uint8Array, json: boolean): Effect.Effect<ReadonlyArray<Entry>, Failure> =>
  bytes.every((byte) => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09)
    ? Effect.fail(invalid("the file is empty"))
    : Effect.flatMap(parseOffThread(bytes, json), decodeInstances)

/** A pidfile's pid: digits (surrounding whitespace allowed) in the kernel's range, else undefined. @category parsers */
export const parsePidfile = (text: string): number | undefined => {
  const match = /^\s*(\d{1,7})\s*$/.exec(text)
  if (match === null) return undefined
  const pid = Number(match[1])
  return Schema.is(Pid)(pid) ? pid : undefined
}

/** An entry with its pid (from `pid` or a pidfile) as the collector wants it. @category constructors */
export const toInstanceInfo = (entry: Entry, pid: number | undefined): InstanceInfo => {
  const taps =
    entry.taps ?? (entry.tap !== undefined ? [entry.tap] : entry.networkEnabled === true ? [tapNameFor(entry.id)] : [])
  return {
    id: entry.id,
    name: entry.name ?? entry.id,
    ...(pid === undefined ? {} : { hypervisorPid: pid }),
    ...tapFields(taps),
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

/**
 * The source's listing; one listing at a time (a parse of a changed file is not started twice).
 *
 * @category constructors
 */
export const makeListing = (
  options: Options
): Effect.Effect<Effect.Effect<ReadonlyArray<InstanceInfo>, InstanceSourceError>> =>
  Effect.map(Effect.makeSemaphore(1), (lock) => {
    const file = nodePath.resolve(options.path)
    const directory = nodePath.dirname(file)
    const json = file.toLowerCase().endsWith(".json")
    const reader = new SmallFileReader()
    let loaded: Loaded | undefined

    // `reason` names the file for the local log; kind, line and column are what clients may see.
    const toError = (failure: Failure) =>
      new InstanceSourceError({
        kind: failure.kind,
        ...(failure.line === undefined ? {} : { line: failure.line }),
        ...(failure.column === undefined ? {} : { column: failure.column }),
        reason: `${file}: ${failure.what}`
      })
    const readFailure = (code: string): Failure => ({
      kind: code === TOO_LARGE ? "too_large" : code === NOT_REGULAR ? "read_failed" : kindOfErrno(code),
      what: code === TOO_LARGE ? `larger than ${MAX_FILE_BYTES} bytes` : `cannot read: ${code}`
    })

    /** Pidfiles refused for their owner, each logged once (again only after a read that was not refused). */
    const refused = new Set<string>()

    /** `owners`: the uids a pidfile may belong to (root, the agent's user, the instances file's owner). */
    const pidOf = (entry: Entry, owners: ReadonlySet<number>, warnings: Array<string>): number | undefined => {
      if (entry.pidfile === undefined) return entry.pid
      const path = nodePath.resolve(directory, entry.pidfile)
      const bytes = reader.read(path, { limit: 4096, regularOnly: true, owners })
      if (bytes === NOT_OWNED) {
        if (!refused.has(path)) warnings.push(path)
        refused.add(path)
        return undefined
      }
      refused.delete(path)
      return typeof bytes === "string" ? undefined : parsePidfile(bytes.toString("latin1"))
    }

    const fromLoaded = (
      { result, fixed }: Loaded,
      fileOwner: number
    ): Effect.Effect<ReadonlyArray<InstanceInfo>, InstanceSourceError> => {
      if (fixed !== undefined) return Effect.succeed(fixed)
      if (Either.isLeft(result)) return Effect.fail(result.left)
      const owners = new Set([0, process.getuid?.() ?? 0, fileOwner])
      const warnings: Array<string> = []
      const infos = result.right.map((entry) => toInstanceInfo(entry, pidOf(entry, owners, warnings)))
      return Effect.as(
        Effect.forEach(warnings, (path) =>
          Effect.logWarning(
            `pidfile ${path} ignored: it belongs to neither root, this user nor the instances file's owner`
          )
        ),
        infos
      )
    }

    const load = (version: string, bytes: Uint8Array) =>
      Effect.map(Effect.either(Effect.mapError(parseInstancesFile(bytes, json), toError)), (result) => {
        const fixed =
          Either.isRight(result) && result.right.every((entry) => entry.pidfile === undefined)
            ? result.right.map((entry) => toInstanceInfo(entry, entry.pid))
            : undefined
        loaded = { version, result, fixed }
        return loaded
      })

    const list = Effect.suspend(() => {
      let version: string
      let fileOwner: number
      try {
        const stat = fs.statSync(file, { bigint: true })
        version = `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
        fileOwner = Number(stat.uid)
      } catch (error) {
        return Effect.fail(toError(readFailure(errnoOf(error))))
      }
      if (loaded?.version === version) return fromLoaded(loaded, fileOwner)
      const bytes = reader.read(file, { limit: MAX_FILE_BYTES, regularOnly: true })
      // A read failure is not remembered: the next listing tries again even if nothing changed.
      if (typeof bytes === "string") return Effect.fail(toError(readFailure(bytes)))
      // a copy: the reader reuses its buffer
      return Effect.flatMap(load(version, new Uint8Array(bytes)), (parsed) => fromLoaded(parsed, fileOwner))
    })

    return lock.withPermits(1)(list)
  })

/** @category constructors */
export const make = (options: Options): Effect.Effect<Context.Tag.Service<InstanceSource>> =>
  Effect.map(makeListing(options), (list) => InstanceSource.of({ list }))

/** Lists the instances in `path`, re-read when it changes. @category layers */
export const layer = (options: Options): Layer.Layer<InstanceSource> => Layer.effect(InstanceSource, make(options))
