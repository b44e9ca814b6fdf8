/**
 * What to tell a person about the hypervisor processes discovery saw and did not list (ProcessTrust.ts
 * says why it refuses them). Without it, a user who runs the agent without root sees "0 VMs" and no
 * reason: discovery cannot read root's QEMU's executable from another user.
 *
 * @since 0.1.0
 */
import type { IgnoredTotal } from "@vm-metrics/core/InstanceSource"

/** What each reason means and what to do about it. */
const MEANING: Record<string, string> = {
  unverifiable:
    "their owner or executable cannot be read by this user (run as root, or with CAP_SYS_PTRACE as the systemd unit does)",
  untrusted_uid: "owned by a user other than root (trust that user with --discovery-uid)",
  untrusted_exe: "run from an executable that is not root's, or from a directory others can write to"
}

/** A one-line note, or undefined when nothing was ignored. @category format */
export const ignoredNote = (ignored: ReadonlyArray<IgnoredTotal>): string | undefined => {
  const counted = ignored.filter((total) => total.count > 0)
  const total = counted.reduce((sum, { count }) => sum + count, 0)
  if (total === 0) return undefined
  const reasons = counted.map(({ reason, count }) => `${count} ${reason}: ${MEANING[reason] ?? "see the docs"}`)
  return `${total} hypervisor process${total === 1 ? "" : "es"} not listed; ${reasons.join("; ")}`
}
