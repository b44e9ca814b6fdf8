/** The node package's test helpers: the shared ones of @vm-metrics/testing, and temp dirs removed from `afterAll`. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export {
  childrenOf,
  createTap,
  deleteTap,
  getconf,
  hasCommand,
  ipLinkBytes,
  isRoot,
  namespaceSkipReason,
  psOf,
  pushFrames,
  runToEnd,
  sleepMs,
  spawnChild,
  statField,
  statFieldOf,
  stopChild,
  sysCounter,
  tapSkipReason
} from "@vm-metrics/testing"

const tempDirs: Array<string> = []

/** A fresh directory under the system temp dir; `removeTempDirs` (from `afterAll`) removes it even when a test fails. */
export const makeTempDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

export const removeTempDirs = (): void => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}
