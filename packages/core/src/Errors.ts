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

/** The instance source could not list instances. @category errors */
export class InstanceSourceError extends Schema.TaggedError<InstanceSourceError>()("InstanceSourceError", {
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
