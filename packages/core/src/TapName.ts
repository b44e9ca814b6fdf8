/**
 * The TAP naming rule of the Go original and the validation every TAP name passes before it may
 * become part of a /sys path.
 *
 * Validation follows the kernel's `dev_valid_name`: 1–15 characters (IFNAMSIZ − 1), not `.` or
 * `..`, no `/`; we also require printable ASCII without space and `:` (the kernel rejects both
 * whitespace and `:` in names), so no escape, NUL or unicode lookalike reaches the file system.
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { InvalidTapName } from "./Errors.js"

/** @category constants */
export const TAP_PREFIX = "hype-"

/** `hype-` + the first 8 characters of the instance id, lower-cased (`ABCD1234…` → `hype-abcd1234`). @category constructors */
export const tapNameFor = (instanceId: string): string => TAP_PREFIX + instanceId.slice(0, 8).toLowerCase()

const MAX_LENGTH = 15

/** Why a name is not safe as a network interface name, or undefined when it is. @category validation */
export const tapNameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "empty"
  if (name.length > MAX_LENGTH) return `longer than ${MAX_LENGTH} characters`
  if (name === "." || name === "..") return "a path component"
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === 0x2f) return "contains '/'"
    if (c === 0x3a) return "contains ':'"
    if (c <= 0x20 || c >= 0x7f) return "not printable ASCII"
  }
  return undefined
}

/** Returns the name when it is safe to use as a network interface name, else the typed error. @category validation */
export const validateTapName = (name: string): Either.Either<string, InvalidTapName> => {
  const reason = tapNameProblem(name)
  return reason === undefined ? Either.right(name) : Either.left(new InvalidTapName({ name, reason }))
}
