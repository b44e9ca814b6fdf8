/**
 * Tells a process that is gone from one that is only hidden from us. A proc mounted with
 * `hidepid=2` / `invisible` (or `4` / `ptraceable`) makes `/proc/<pid>` of a process we may not
 * ptrace vanish: opening it gives ENOENT, exactly as for a process that exited. Reporting such a VM
 * as exited would be a lie, so on ENOENT the reader asks:
 *
 * - when the proc root shows our own pid namespace (`<procRoot>/self` is our pid), the kernel itself:
 *   `kill(pid, 0)` succeeds or fails with EPERM for a live process and fails with ESRCH for a gone
 *   one, whatever /proc hides;
 * - otherwise (another pid namespace's proc, e.g. the host's at /host/proc in a container), the
 *   mount: if it hides processes and we cannot see through it (no CAP_SYS_PTRACE, not in its `gid=`
 *   group), a missing pid may be hidden, so it is not called gone.
 *
 * Only the (rare) ENOENT path pays for this; a kept fd that reads ESRCH is gone for sure.
 *
 * @internal
 */
import * as fs from "node:fs"

/** Whether a pid that is missing under the proc root may still be alive. @internal */
export type MayBeHidden = (pid: number) => boolean

/** CAP_SYS_PTRACE: sees through hidepid. */
const CAP_SYS_PTRACE = 19n

/**
 * The super options ("rw,hidepid=invisible,gid=4") of the mount at `mountPoint` in a mountinfo text,
 * the last such mount (it is the one on top), or undefined. @internal
 */
export const superOptionsAt = (mountinfo: string, mountPoint: string): string | undefined => {
  let found: string | undefined
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ")
    const separator = fields.indexOf("-")
    // id parent dev root mountpoint options [optional…] - fstype source superoptions
    if (separator < 6 || fields.length < separator + 4) continue
    if (unescapeOctal(fields[4]) === mountPoint) found = fields[separator + 3]
  }
  return found
}

/** mountinfo writes space, tab, newline and backslash as \ooo. */
const unescapeOctal = (field: string): string =>
  field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))

/**
 * The hidepid mode of proc super options, 0 (off), 1 (noaccess), 2 (invisible) or 4 (ptraceable), and
 * the group that sees through it. @internal
 */
export const hidepidOf = (options: string): { readonly hidepid: number; readonly gid: number } => {
  let hidepid = 0
  let gid = 0 // the kernel's default, not shown in mountinfo
  for (const option of options.split(",")) {
    const [key, value] = option.split("=")
    if (key === "hidepid") {
      hidepid = value === "noaccess" ? 1 : value === "invisible" ? 2 : value === "ptraceable" ? 4 : Number(value) || 0
    } else if (key === "gid" && value !== undefined) {
      gid = Number(value)
    }
  }
  return { hidepid, gid }
}

/** Whether a CapEff hex mask (from /proc/self/status) holds CAP_SYS_PTRACE. @internal */
export const hasSysPtrace = (status: string): boolean => {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)
  return match !== null && ((BigInt(`0x${match[1]}`) >> CAP_SYS_PTRACE) & 1n) === 1n
}

const readOr = <A>(read: () => A, fallback: A): A => {
  try {
    return read()
  } catch {
    return fallback
  }
}

/** kill(pid, 0): the process exists (we may or may not signal it) unless ESRCH. */
const aliveByKill: MayBeHidden = (pid) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as { code?: unknown }).code === "EPERM"
  }
}

const never: MayBeHidden = () => false
const always: MayBeHidden = () => true

/** How to tell hidden from gone under this proc root (read once, when the reader is built). @internal */
export const mayBeHiddenFor = (procRoot: string): MayBeHidden => {
  const self = readOr(() => fs.readlinkSync(`${procRoot}/self`), "")
  if (self === String(process.pid)) return aliveByKill
  const mountPoint = readOr(() => fs.realpathSync(procRoot), procRoot)
  const options = superOptionsAt(
    readOr(() => fs.readFileSync("/proc/self/mountinfo", "latin1"), ""),
    mountPoint
  )
  if (options === undefined) return never
  const { gid, hidepid } = hidepidOf(options)
  if (hidepid < 2) return never
  const inGroup = process.getegid?.() === gid || (process.getgroups?.() ?? []).includes(gid)
  const ptrace = hasSysPtrace(readOr(() => fs.readFileSync("/proc/self/status", "latin1"), ""))
  return inGroup || ptrace ? never : always
}
