/**
 * The four library packages as npm packages (part of `pnpm build`):
 * - `node scripts/packages.mjs`: compiles packages/{core,node,otel,http}/src to their dist/ (ESM, .d.ts and
 *   source maps; tsc with each package's tsconfig.build.json), from scratch, so no file of a removed module
 *   lingers; files tsc does not emit (the instances-file worker, plain JavaScript) are copied beside.
 * - `node scripts/packages.mjs pack <dir>`: the same, then `pnpm pack` of each package into <dir> (pnpm turns
 *   `workspace:^` into the version and `publishConfig.exports` into `exports`); prints the tarballs' paths.
 * In the workspace `exports` point at the TypeScript sources (vitest, tsc -b, esbuild and tsx run them);
 * a packed package's point at dist/.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "..")
/** In dependency order (pnpm packs them one by one). */
const packages = ["core", "node", "otel", "http"]

/** Plain files of src/ that dist/ needs as they are: JavaScript a worker loads, and its declarations. */
const isCopied = (file) => file.endsWith(".mjs") || file.endsWith(".d.mts")

const copyAssets = (dir, into) => {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const from = path.join(dir, entry.name)
    const to = path.join(into, entry.name)
    if (entry.isDirectory()) copyAssets(from, to)
    else if (isCopied(entry.name)) {
      fs.mkdirSync(into, { recursive: true })
      fs.copyFileSync(from, to)
    }
  }
}

const build = () => {
  for (const name of packages) {
    const dir = path.join(root, "packages", name)
    // The build info would let tsc skip files whose output was just removed.
    fs.rmSync(path.join(dir, "dist"), { recursive: true, force: true })
    fs.rmSync(path.join(dir, ".tsbuildinfo/build.tsbuildinfo"), { force: true })
  }
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
  const last = path.join(root, "packages", packages.at(-1), "tsconfig.build.json")
  execFileSync(process.execPath, [tsc, "-b", last], { cwd: root, stdio: "inherit" })
  for (const name of packages) {
    const dir = path.join(root, "packages", name)
    copyAssets(path.join(dir, "src"), path.join(dir, "dist"))
  }
}

/** pnpm as the caller ran it (`pnpm build` sets npm_execpath), else the version packageManager names. */
const pnpm = () => {
  const execPath = process.env.npm_execpath
  if (execPath !== undefined && /pnpm/.test(path.basename(execPath))) return [process.execPath, execPath]
  const manager = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")).packageManager
  return ["npx", "-y", manager]
}

const pack = (destination) => {
  fs.mkdirSync(destination, { recursive: true })
  const [command, ...prefix] = pnpm()
  return packages.map((name) => {
    const out = execFileSync(command, [...prefix, "pack", "--json", "--pack-destination", destination], {
      cwd: path.join(root, "packages", name),
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"]
    })
    return JSON.parse(out).filename
  })
}

const [command, destination] = process.argv.slice(2)
if (command === undefined) build()
else if (command === "pack" && destination !== undefined) {
  build()
  for (const tarball of pack(path.resolve(destination))) console.log(tarball)
} else {
  console.error("usage: node scripts/packages.mjs [pack <dir>]")
  process.exit(2)
}
