/**
 * `pnpm build`: the `vm-metrics` CLI bundled with esbuild into dist/:
 * - dist/cli.mjs, the full CLI, and its chunks in dist/chunks/ (code split: the OTel SDK with the OTLP
 *   exporter, and the docs UI, are chunks loaded only by the paths that use them);
 * - dist/internal/instancesFileWorker.mjs, the worker that parses an instances file (StaticFileSource finds
 *   it at `new URL("./internal/instancesFileWorker.mjs", import.meta.url)`);
 * - dist/vm-metrics.mjs, the entry point (packages/http/src/Launcher.ts), and dist/help.json, the help and
 *   version texts captured here from dist/cli.mjs, which the entry point prints without loading the CLI.
 * No node_modules is needed beside dist/ (deploy/README.md).
 *
 * A file whose bytes did not change is not written again, and a changed one is written beside and renamed
 * over: a build (`pnpm start` runs one) never shows a half-written file to a CLI that is starting.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "esbuild"

const root = path.resolve(import.meta.dirname, "..")
const dist = path.join(root, "dist")

const writeIfChanged = (file, contents, mode = 0o644) => {
  if (fs.existsSync(file) && Buffer.compare(fs.readFileSync(file), Buffer.from(contents)) === 0) return
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const temporary = `${file}.${process.pid}.tmp`
  fs.writeFileSync(temporary, contents, { mode })
  fs.renameSync(temporary, file)
}

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
  logLevel: "warning",
  write: false
})
for (const file of result.outputFiles) {
  writeIfChanged(file.path, file.contents, path.basename(file.path) === "vm-metrics.mjs" ? 0o755 : 0o644)
}

// What the full CLI prints for each command line the entry point answers itself (Launcher.helpKey).
const run = (args) =>
  execFileSync(process.execPath, [path.join(dist, "cli.mjs"), ...args], { env: { ...process.env }, encoding: "utf8" })
const texts = { help: run(["--help"]), version: run(["--version"]) }
for (const command of ["serve", "list", "stats", "top"]) texts[`help ${command}`] = run([command, "--help"])
writeIfChanged(path.join(dist, "help.json"), `${JSON.stringify(texts, null, 1)}\n`)
