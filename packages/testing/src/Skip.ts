/**
 * Prerequisites: a test that needs something absent skips with a message saying what is missing, except
 * under CI (CI=true, as .ci/run runs), which installs everything: there a missing prerequisite fails.
 */
import * as fs from "node:fs"
import { hasCommand, isRoot } from "./Process.js"

/** `missing` as the skip reason of `what` (undefined: it can run); throws under CI. */
export const skipReason = (missing: string | undefined, what: string): string | undefined => {
  if (missing === undefined) return undefined
  if (process.env.CI === "true") throw new Error(`CI must not skip the ${what}: ${missing}`)
  console.warn(`skipping ${what}: ${missing}`)
  return missing
}

const tapMissing = (): string | undefined => {
  if (!isRoot) return "needs root to create TAP devices (ip tuntap); .ci/run runs as root"
  if (!fs.existsSync("/dev/net/tun")) return "needs /dev/net/tun"
  if (!hasCommand("ip")) return "needs iproute2 (ip)"
  if (!hasCommand("python3")) return "needs python3 to push frames through the TAP"
  return undefined
}

/** Why real TAP devices cannot be made here, or undefined. */
export const tapSkipReason = (): string | undefined => skipReason(tapMissing(), "real TAP tests")

/** Why tests that need namespaces and dropped capabilities (unshare, setpriv, mount -t proc) cannot run here. */
export const namespaceSkipReason = (): string | undefined =>
  skipReason(
    !isRoot
      ? "needs root to unshare namespaces, mount proc and drop capabilities"
      : !hasCommand("unshare") || !hasCommand("setpriv")
        ? "needs unshare and setpriv (util-linux)"
        : undefined,
    "namespace tests"
  )
