/**
 * Builds the CLI bundle (dist/vm-metrics.mjs, `pnpm build`) once before the http tests: every test that spawns
 * `vm-metrics` runs the bundle, so the README test command needs no separate build step on a fresh clone.
 */
import { execFileSync } from "node:child_process"
import * as path from "node:path"

export default function setup(): void {
  const repo = path.resolve(import.meta.dirname, "..", "..", "..")
  execFileSync(process.execPath, [path.join(repo, "scripts", "build.mjs")], { cwd: repo, stdio: "inherit" })
}
