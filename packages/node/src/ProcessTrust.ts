/**
 * Which hypervisor processes discovery believes. Any local user can start a process named
 * `qemu-system-x86_64` with another VM's `-uuid`, its TAP and `-m 1T`; so a process is taken as a VM
 * only when both hold:
 *
 * - **Owner**: every uid of the process (real, effective, saved and filesystem, from the `Uid:` line of
 *   `/proc/<pid>/status`) is root or a trusted uid. A user whose uid is any of these can signal or
 *   ptrace the process, or it runs with that user's rights: it is that user's process.
 * - **Executable**: `/proc/<pid>/exe` is a regular file owned by root or a trusted uid and not
 *   writable by others; and every directory from its own up to `/` (seen through `/proc/<pid>/root`,
 *   so a chroot or another mount namespace is honoured) is owned by root or a trusted uid and not
 *   world-writable, with or without the sticky bit (so nothing under /tmp, /var/tmp or /dev/shm).
 *   Anyone else who could write there could swap the binary a trusted user runs. Group write bits
 *   are not judged. An executable deleted since the start (an upgrade) is judged by the file it still
 *   is and the directory it was in.
 *
 * Everything else is ignored, with a reason for `…_discovery_ignored_total{reason}`.
 *
 * @since 0.2.0
 */
import * as fs from "node:fs"
import * as nodePath from "node:path"
import { Either } from "effect"

/** Why a hypervisor-named process was not listed. @category models */
export type IgnoreReason =
  /** One of its uids is neither root nor trusted. */
  | "untrusted_uid"
  /** Its executable is not a regular file of a trusted owner in trusted directories. */
  | "untrusted_exe"
  /** Its status or executable could not be read (another user's process without CAP_SYS_PTRACE). */
  | "unverifiable"

/** @category models */
export const ignoreReasons: ReadonlyArray<IgnoreReason> = ["untrusted_uid", "untrusted_exe", "unverifiable"]

/** The uids of a `/proc/<pid>/status` text (real, effective, saved, filesystem), or undefined. @category parsers */
export const parseStatusUids = (status: string): ReadonlyArray<number> | undefined => {
  const match = /^Uid:\t(\d{1,10})\t(\d{1,10})\t(\d{1,10})\t(\d{1,10})$/m.exec(status)
  return match === null ? undefined : match.slice(1, 5).map(Number)
}

/** The uid of a user name in an /etc/passwd text, or undefined. @category parsers */
export const uidInPasswd = (passwd: string, name: string): number | undefined => {
  for (const line of passwd.split("\n")) {
    const fields = line.split(":")
    if (fields.length >= 3 && fields[0] === name && /^\d{1,10}$/.test(fields[2])) return Number(fields[2])
  }
  return undefined
}

const MAX_UID = 4_294_967_294 // (uid_t)-1 is "no uid"

/**
 * A `--discovery-uid` value: a uid (digits) or a user name looked up in `passwd` (default
 * /etc/passwd). Left: why it is not one.
 *
 * @category parsers
 */
export const resolveUid = (spec: string, passwdPath = "/etc/passwd"): Either.Either<number, string> => {
  if (/^\d{1,10}$/.test(spec)) {
    const uid = Number(spec)
    return uid <= MAX_UID ? Either.right(uid) : Either.left(`uid ${spec} is out of range`)
  }
  let passwd: string
  try {
    passwd = fs.readFileSync(passwdPath, "utf8")
  } catch {
    return Either.left(`cannot read ${passwdPath} to look up user ${JSON.stringify(spec)}`)
  }
  const uid = uidInPasswd(passwd, spec)
  return uid === undefined ? Either.left(`no user ${JSON.stringify(spec)} in ${passwdPath}`) : Either.right(uid)
}

const DELETED = " (deleted)"

/** Owned by a trusted uid and not writable by others. */
const isGuarded = (stat: fs.Stats, trusted: (uid: number) => boolean): boolean =>
  trusted(stat.uid) && (stat.mode & 0o002) === 0

/**
 * Why the executable of `<procRoot>/<pid>` is not to be trusted, or undefined when it is (see the
 * module comment for the rule); `gone` when the process vanished meanwhile.
 *
 * @category utils
 */
export const exeProblem = (
  procRoot: string,
  pid: number,
  trusted: (uid: number) => boolean
): IgnoreReason | "gone" | undefined => {
  const link = `${procRoot}/${pid}/exe`
  let exe: fs.Stats
  let target: string
  try {
    exe = fs.statSync(link) // the file itself, through the magic link
    target = fs.readlinkSync(link)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return code === "ENOENT" || code === "ESRCH" ? "gone" : "unverifiable"
  }
  if (!exe.isFile() || !isGuarded(exe, trusted)) return "untrusted_exe"
  if (target.endsWith(DELETED)) target = target.slice(0, -DELETED.length)
  if (!target.startsWith("/")) return "untrusted_exe"
  for (let dir = nodePath.posix.dirname(target); ; dir = nodePath.posix.dirname(dir)) {
    let stat: fs.Stats
    try {
      stat = fs.statSync(`${procRoot}/${pid}/root${dir === "/" ? "" : dir}`)
    } catch {
      return "untrusted_exe" // a directory that cannot be checked is not vouched for
    }
    if (!stat.isDirectory() || !isGuarded(stat, trusted)) return "untrusted_exe"
    if (dir === "/") return undefined
  }
}
