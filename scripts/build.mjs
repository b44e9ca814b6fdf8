/**
 * `pnpm build`: the `vm-metrics` CLI bundled with esbuild into dist/:
 * - dist/cli.mjs, the full CLI, and its chunks in dist/chunks/ (code split: the OTel SDK with the OTLP
 *   exporter, and the docs UI, are chunks loaded only by the paths that use them);
 * - dist/internal/instancesFileWorker.mjs, the worker that parses an instances file (StaticFileSource finds
 *   it at `new URL("./internal/instancesFileWorker.mjs", import.meta.url)`);
 * - dist/vm-metrics.mjs, the entry point (packages/http/src/Launcher.ts), and dist/help.json, the help and
 *   version texts captured here from dist/cli.mjs, which the entry point prints without loading the CLI.
 * No node_modules is needed beside dist/, but Node ≥ 20.19 is.
 * - dist/vm-metrics, the self-contained executable: Node 24 with the agent inside, for hosts without Node
 *   (scripts/sea.mjs; built again only when its bundle changed).
 *
 * A file whose bytes did not change is not written again, and a changed one is written beside and renamed
 * over: a build (`pnpm start` runs one) never shows a half-written file to a CLI that is starting.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "esbuild"
import { buildExecutable } from "./sea.mjs"

const root = path.resolve(import.meta.dirname, "..")
const dist = path.join(root, "dist")

/** Writes `file` unless it already holds `contents`; whether it wrote. */
const writeIfChanged = (file, contents, mode = 0o644) => {
  if (fs.existsSync(file) && Buffer.compare(fs.readFileSync(file), Buffer.from(contents)) === 0) return false
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const temporary = `${file}.${process.pid}.tmp`
  fs.writeFileSync(temporary, contents, { mode })
  fs.renameSync(temporary, file)
  return true
}

/** The source revision (BuildInfo.revision): short hash, `-dirty` with uncommitted changes; `unknown` outside git. */
const revision = (() => {
  try {
    const git = (...args) =>
      execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    return `${git("rev-parse", "--short=12", "HEAD").trim()}${git("status", "--porcelain").trim() === "" ? "" : "-dirty"}`
  } catch {
    return "unknown"
  }
})()

const result = await build({
  absWorkingDir: root,
  entryPoints: {
    cli: "packages/http/src/bin.ts",
    "vm-metrics": "packages/http/src/Launcher.ts",
    "internal/instancesFileWorker": "packages/node/src/internal/instancesFileWorker.mjs"
  },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  platform: "node",
  target: "node20",
  format: "esm",
  // CommonJS dependencies call require(); an ESM file has none of its own.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  // Less to parse at every start (compile time dominates a one-shot command); names kept for stack traces.
  minifyWhitespace: true,
  minifySyntax: true,
  define: { __VM_METRICS_REVISION__: JSON.stringify(revision) },
  logLevel: "warning",
  write: false
})
const written = result.outputFiles.filter((file) =>
  writeIfChanged(file.path, file.contents, path.basename(file.path) === "vm-metrics.mjs" ? 0o755 : 0o644)
)

// Chunks are named by their hash: those of earlier builds are nobody's now (547 had piled up in one checkout).
const chunks = path.join(dist, "chunks")
const current = new Set(result.outputFiles.map((file) => file.path))
for (const name of fs.existsSync(chunks) ? fs.readdirSync(chunks) : []) {
  // A `.tmp` is another build's file on its way in.
  if (!name.endsWith(".tmp") && !current.has(path.join(chunks, name)))
    fs.rmSync(path.join(chunks, name), { force: true })
}

// What the full CLI prints for each command line the entry point answers itself (HelpKey.helpKey). Six runs
// of the CLI: only when the bundle is newer than the capture (`pnpm start` and the tests build every time;
// an interrupted build leaves the capture older, so the next one captures).
const helpFile = path.join(dist, "help.json")
const mtime = (file) => (fs.existsSync(file) ? fs.statSync(file).mtimeMs : -1)
if (written.length > 0 || mtime(helpFile) < mtime(path.join(dist, "cli.mjs"))) captureHelp()

function captureHelp() {
  const run = (args) =>
    execFileSync(process.execPath, [path.join(dist, "cli.mjs"), ...args], {
      // Plain text (Ansi): the entry point prints it to a terminal and to a pipe alike.
      env: { ...process.env, NO_COLOR: "1" },
      encoding: "utf8"
    })
  // No `--version`: the entry point prints BuildInfo's line, with the Node that runs it.
  const texts = { help: run(["--help"]) }
  for (const command of ["serve", "list", "stats", "top"]) texts[`help ${command}`] = run([command, "--help"])
  // Written even when the same, so its time says it is as new as the bundle.
  const temporary = `${helpFile}.${process.pid}.tmp`
  fs.writeFileSync(temporary, `${JSON.stringify(texts, null, 1)}\n`)
  fs.renameSync(temporary, helpFile)
}

// `pnpm start` passes --bundle-only: it runs the bundle, and a first executable build fetches Node 24 and
// takes a minute.
if (!process.argv.includes("--bundle-only") && (await buildExecutable({ root, dist, revision, helpFile }))) {
  console.log(`built ${path.relative(root, path.join(dist, "vm-metrics"))} (Node 24 inside, scripts/sea.mjs)`)
}
