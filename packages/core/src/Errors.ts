/**
 * The typed failures of vm-metrics. They are `Schema.TaggedError`s so that they can be carried in a
 * snapshot and sent over HTTP as they are; `reasonOf` gives each one the short label used in metrics.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/** The process is gone: its /proc entry is missing, or a kept fd of it reads ESRCH. @category errors */
export class ProcessGone extends Schema.TaggedError<ProcessGone>()("ProcessGone", {
  pid: Schema.Number,
  path: Schema.String
}) {
  override get message() {
    return `process ${this.pid} is gone (${this.path})`
  }
}

/** The kernel refused the read (EACCES / EPERM), e.g. another user's process without CAP_SYS_PTRACE. @category errors */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  path: Schema.String
}) {
  override get message() {
    return `permission denied reading ${this.path}`
  }
}

/** The TAP device does not exist (ENOENT on open, ENODEV on a kept fd). @category errors */
export class TapMissing extends Schema.TaggedError<TapMissing>()("TapMissing", {
  tap: Schema.String,
  path: Schema.String
}) {
  override get message() {
    return `TAP device ${this.tap} is missing (${this.path})`
  }
}

/** A kernel file did not have the shape we rely on. @category errors */
export class ParseError extends Schema.TaggedError<ParseError>()("ParseError", {
  file: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `cannot parse ${this.file}: ${this.reason}`
  }
}

/** A TAP name that must never be joined into a /sys path. @category errors */
export class InvalidTapName extends Schema.TaggedError<InvalidTapName>()("InvalidTapName", {
  name: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `invalid TAP name ${JSON.stringify(this.name)}: ${this.reason}`
  }
}

/** A pid that is not a positive integer in the kernel's range. @category errors */
export class InvalidPid extends Schema.TaggedError<InvalidPid>()("InvalidPid", {
  pid: Schema.Unknown
}) {
  override get message() {
    return `invalid pid ${String(this.pid)}`
  }
}

/** Any other I/O failure, with the errno code. @category errors */
export class ReadFailed extends Schema.TaggedError<ReadFailed>()("ReadFailed", {
  path: Schema.String,
  code: Schema.String
}) {
  override get message() {
    return `reading ${this.path} failed: ${this.code}`
  }
}

/**
 * What kind of failure an instance source had: a closed, low-cardinality set that is safe to show to any
 * client (it names no path and carries no content). @category models
 */
export const InstanceSourceErrorKind = Schema.Literal(
  "parse_error", // the file is not valid JSON/YAML or not a valid instance list (see line/column)
  "permission_denied", // EACCES / EPERM
  "not_found", // ENOENT
  "too_large", // over the size or entry-count cap
  "too_deep", // nesting deeper than the cap
  "read_failed", // any other I/O failure
  "invalid_config", // the source's own configuration is invalid (e.g. a relative proc root)
  "unavailable" // anything else, e.g. a library user's source that failed
)

/** @category models */
export type InstanceSourceErrorKind = typeof InstanceSourceErrorKind.Type

/**
 * The instance source could not list instances. `kind`, `line` and `column` may be shown to API clients;
 * `reason` is for the local log only (it may name paths, never file content). @category errors
 */
export class InstanceSourceError extends Schema.TaggedError<InstanceSourceError>()("InstanceSourceError", {
  kind: Schema.optionalWith(InstanceSourceErrorKind, { default: () => "unavailable" as const }),
  /** 1-based line of a parse error, when known. */
  line: Schema.optional(Schema.Int.pipe(Schema.positive())),
  /** 1-based column of a parse error, when known. */
  column: Schema.optional(Schema.Int.pipe(Schema.positive())),
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {
  override get message() {
    return `instance source failed: ${this.reason}`
  }
}

/** @category errors */
export type ProcReadError = ProcessGone | PermissionDenied | ParseError | InvalidPid | ReadFailed

/** @category errors */
export type TapReadError = TapMissing | PermissionDenied | ParseError | InvalidTapName | ReadFailed

/** @category errors */
export type ReadError = ProcReadError | TapReadError

const reasons: Record<ReadError["_tag"], string> = {
  ProcessGone: "process_gone",
  PermissionDenied: "permission_denied",
  TapMissing: "tap_missing",
  ParseError: "parse_error",
  InvalidTapName: "invalid_tap_name",
  InvalidPid: "invalid_pid",
  ReadFailed: "read_failed"
}

/** The low-cardinality label of a read error, for metrics and JSON. @category utils */
export const reasonOf = (error: ReadError): string => reasons[error._tag]
