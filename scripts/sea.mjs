/**
 * The self-contained executable dist/vm-metrics (called by scripts/build.mjs): Node 24 (scripts/node24.mjs)
 * with the agent injected as a Node single-executable application, so `vm-metrics serve` runs on a host
 * without Node.
 *
 * An executable's main script may require only Node's builtins, so the agent is bundled a second time, into
 * ONE CommonJS file (dist/sea/vm-metrics.cjs, entry packages/http/src/SeaMain.ts): no code splitting, the
 * lazily loaded parts (the server, the OTel SDK, the docs UI) are inlined and still initialised only when
 * used. `import.meta.url` is defined as a path that is never a directory (/proc/self/exe/), so the
 * instances-file worker is never looked for beside the executable: the executable runs no JavaScript
 * from disk, and an instances file is parsed on the main thread (StaticFileSource's fallback).
 *
 * Then, in dist/sea/: sea-config.json (the asset help.json is dist/help.json, the help texts build.mjs
 * captured, which SeaMain.ts prints as Launcher does), the blob (`node24 --experimental-sea-config`,
 * with V8's code cache: less compiling at each start), and postject injects the blob into a copy of the
 * Node 24 binary, stripped of its symbols when binutils' `strip` is there (.ci/run installs it). All of it
 * only when an input changed (dist/sea/stamp).
 */
import { spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as path from "node:path"
import { build } from "esbuild"
import { NODE24_VERSION, node24 } from "./node24.mjs"

/** The fuse Node looks for to know a blob was injected (Node's documentation, single-executable applications). */
const SEA_FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2"

/** Runs `command`; says nothing unless it fails, then all it said (postject's LIEF warns on every run). */
const quietly = (command, args, options = {}) => {
  const run = spawnSync(command, args, { ...options, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  if (run.status !== 0) {
    throw new Error(
      `${path.basename(command)} ${args.join(" ")} failed (${run.status ?? run.signal}):\n${run.stdout}${run.stderr}`
    )
  }
}

/** name, version and licence of each npm package the bundle has code of, from esbuild's metafile. */
const bundledPackages = (root, metafile) => {
  const dirs = new Set()
  for (const input of Object.keys(metafile.inputs)) {
    const match = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)
    if (match !== null) dirs.add(match[1])
  }
  return [...dirs]
    .map((dir) => JSON.parse(fs.readFileSync(path.join(root, dir, "package.json"), "utf8")))
    .map(({ name, version, license }) => ({ name, version, license: license ?? "see the package" }))
    .sort((a, b) => a.name.localeCompare(b.name))
}

/** Injects the blob into the executable `file` (postject's CLI, a devDependency). */
const inject = (file, blob) =>
  quietly(process.execPath, [
    createRequire(import.meta.url).resolve("postject/dist/cli.js"),
    file,
    "NODE_SEA_BLOB",
    blob,
    "--sentinel-fuse",
    SEA_FUSE
  ])

/** Writes `file` atomically (beside it, then renamed over). */
const writeAtomically = (file, contents, mode = 0o644) => {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const temporary = `${file}.${process.pid}.tmp`
  fs.writeFileSync(temporary, contents, { mode })
  fs.renameSync(temporary, file)
}

/**
 * Builds dist/vm-metrics when its inputs changed; whether it did. `revision` is BuildInfo's, as in the
 * bundle.
 */
export const buildExecutable = async ({ root, dist, revision, helpFile }) => {
  const work = path.join(dist, "sea")
  const node = node24()
  const bundleFile = path.join(work, "vm-metrics.cjs")
  const result = await build({
    absWorkingDir: root,
    entryPoints: ["packages/http/src/SeaMain.ts"],
    outfile: bundleFile,
    bundle: true,
    splitting: false,
    platform: "node",
    target: "node24",
    format: "cjs",
    define: { __VM_METRICS_REVISION__: JSON.stringify(revision), "import.meta.url": '"file:///proc/self/exe/"' },
    minifyWhitespace: true,
    minifySyntax: true,
    // import.meta is replaced above; the dependencies' own uses are in code paths the agent does not take.
    logOverride: { "empty-import-meta": "silent" },
    logLevel: "warning",
    metafile: true,
    write: false
  })
  const [bundle] = result.outputFiles
  // The npm packages inside, with their licences (scripts/deb.mjs lists them in the copyright file).
  writeAtomically(
    path.join(work, "packages.json"),
    `${JSON.stringify(bundledPackages(root, result.metafile), null, 1)}\n`
  )

  const config = {
    main: "vm-metrics.cjs",
    output: "sea-prep.blob",
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    // As Launcher's shebang and `pnpm start`: the heap stays smaller, idle and under load (Launcher.ts says why).
    execArgv: ["--max-semi-space-size=2", "--heap-growing-percent=50"],
    assets: { "help.json": "help.json" }
  }
  const help = fs.readFileSync(helpFile)
  const canStrip = spawnSync("strip", ["--version"], { stdio: "ignore" }).status === 0
  const stamp = crypto
    .createHash("sha256")
    .update(`${NODE24_VERSION}\0${canStrip}\0${JSON.stringify(config)}\0`)
    .update(bundle.contents)
    .update(help)
    .digest("hex")
  const executable = path.join(dist, "vm-metrics")
  const stampFile = path.join(work, "stamp")
  if (fs.existsSync(executable) && fs.existsSync(stampFile) && fs.readFileSync(stampFile, "utf8") === stamp) {
    return false
  }

  // A private directory per build: builds started at once (tests in parallel) never share a file.
  fs.rmSync(stampFile, { force: true })
  fs.mkdirSync(work, { recursive: true })
  const scratch = fs.mkdtempSync(path.join(work, "build-"))
  const temporary = `${executable}.${process.pid}.tmp`
  try {
    const inScratch = (name) => path.join(scratch, name)
    fs.writeFileSync(inScratch(config.main), bundle.contents)
    fs.writeFileSync(inScratch("help.json"), help)
    fs.writeFileSync(inScratch("sea-config.json"), `${JSON.stringify(config, null, 2)}\n`)
    quietly(node, ["--experimental-sea-config", "sea-config.json"], { cwd: scratch })
    // Without its symbols Node is 18 MB smaller and runs the same (the blob goes into a note of its own).
    if (canStrip) quietly("strip", ["--remove-section=.comment", "-o", temporary, node])
    else fs.copyFileSync(node, temporary)
    fs.chmodSync(temporary, 0o755)
    inject(temporary, inScratch(config.output))
    fs.renameSync(temporary, executable)
    // What went into it, kept for reading and for timing the bundle against the executable.
    writeAtomically(bundleFile, bundle.contents)
    writeAtomically(path.join(work, "help.json"), help)
    writeAtomically(path.join(work, "sea-config.json"), `${JSON.stringify(config, null, 2)}\n`)
    fs.writeFileSync(stampFile, stamp)
    return true
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
    fs.rmSync(temporary, { force: true })
  }
}
