/**
 * The TAP naming rule of the Go original and the validation every TAP name passes before it may
 * become part of a /sys path.
 *
 * Naming: Go's `GenerateTAPName` is `"hype-" + strings.ToLower(id[:8])`, and `id[:8]` is the first 8
 * BYTES of the UTF-8 id. For an id whose first 8 bytes are ASCII (every id the original's API makes)
 * bytes and characters coincide and `tapNameFor` gives exactly Go's name. An id with a non-ASCII
 * character in those bytes gets no usable name, by choice: Go would cut a character in two (its
 * ToLower turns the stray bytes into U+FFFD) or lower-case by Unicode tables that JavaScript's
 * `toLowerCase` does not share, and the result is not ASCII anyway. For such an id `tapNameFor`
 * returns `hype-` + the characters of those 8 bytes (a cut one as U+FFFD), which
 * `validateTapName` rejects as `InvalidTapName` with a reason that says why, so the VM's network is
 * reported unavailable (source `tap`) instead of a name being guessed.
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

/** Bytes of the id the original's rule keeps. */
const ID_BYTES = 8

const isAscii = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false
  return true
}

/** Lower-cases A–Z only: Go's ASCII fast path; other characters are left alone (the name is rejected). */
const asciiLower = (text: string): string => text.replace(/[A-Z]+/g, (run) => run.toLowerCase())

/** UTF-8 length of a code point (a lone surrogate is encoded as U+FFFD: 3 bytes). */
const utf8Length = (codePoint: number): number =>
  codePoint < 0x80 ? 1 : codePoint < 0x800 ? 2 : codePoint < 0x10000 ? 3 : 4

/** The characters of the first `limit` UTF-8 bytes of `text`; a character cut by the limit becomes U+FFFD. */
const firstUtf8Bytes = (text: string, limit: number): string => {
  let result = ""
  let bytes = 0
  for (const char of text) {
    bytes += utf8Length(char.codePointAt(0) ?? 0)
    if (bytes > limit) return `${result}\ufffd`
    result += char
    if (bytes === limit) break
  }
  return result
}

/**
 * `hype-` + the first 8 bytes of the instance id, lower-cased (`ABCD1234…` → `hype-abcd1234`, `abc` →
 * `hype-abc`). An id that is not ASCII within those bytes gives a name `validateTapName` rejects
 * (see the module header). @category constructors
 */
export const tapNameFor = (instanceId: string): string => {
  const head = instanceId.slice(0, ID_BYTES)
  return TAP_PREFIX + (isAscii(head) ? head.toLowerCase() : asciiLower(firstUtf8Bytes(instanceId, ID_BYTES)))
}

const MAX_LENGTH = 15

const nonAsciiProblem = (name: string, index: number): string => {
  const code = (name.codePointAt(index) ?? 0).toString(16).toUpperCase().padStart(4, "0")
  const why = name.startsWith(TAP_PREFIX)
    ? "; if made from an instance id: the id is not ASCII in its first 8 bytes, where the original's rule" +
      " (hype- + the first 8 bytes, lower-cased) cuts UTF-8 characters or lower-cases by Go's Unicode tables," +
      " so such ids get no TAP name"
    : ""
  return `not ASCII (U+${code} at index ${index})${why}`
}

/** Why a name is not safe as a network interface name, or undefined when it is. @category validation */
export const tapNameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "empty"
  for (let i = 0; i < name.length; i++) {
    if (name.charCodeAt(i) > 0x7f) return nonAsciiProblem(name, i)
  }
  if (name.length > MAX_LENGTH) return `longer than ${MAX_LENGTH} characters`
  if (name === "." || name === "..") return "a path component"
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c === 0x2f) return "contains '/'"
    if (c === 0x3a) return "contains ':'"
    if (c <= 0x20 || c === 0x7f) return "not printable ASCII"
  }
  return undefined
}

/** Returns the name when it is safe to use as a network interface name, else the typed error. @category validation */
export const validateTapName = (name: string): Either.Either<string, InvalidTapName> => {
  const reason = tapNameProblem(name)
  return reason === undefined ? Either.right(name) : Either.left(new InvalidTapName({ name, reason }))
}
