/**
 * `pnpm build`: the `vm-metrics` CLI bundled with esbuild into dist/: dist/vm-metrics.mjs and its chunks in
 * dist/chunks/ (code split: the OTel SDK with the OTLP exporter, and the docs UI, are chunks loaded only by
 * the paths that use them, so `--help`, `list` and `stats` start fast). The second entry point is the worker
 * that parses an instances file: StaticFileSource finds it at
 * `new URL("./internal/instancesFileWorker.mjs", import.meta.url)`, i.e. dist/internal/. No node_modules is
 * needed beside dist/ (deploy/README.md).
 *
 * A file whose bytes did not change is not written again, and a changed one is written beside and renamed
 * over: a build (`pnpm start` runs one) never shows a half-written file to a CLI that is starting.
 */
import * as fs from "node:fs"
import * as path from "node:path"
import { build } from "esbuild"

const root = path.resolve(import.meta.dirname, "..")

const result = await build({
  absWorkingDir: root,
  entryPoints: {
    "vm-metrics": "packages/http/src/bin.ts",
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
  logLevel: "warning",
  write: false
})

for (const file of result.outputFiles) {
  const same = fs.existsSync(file.path) && Buffer.compare(fs.readFileSync(file.path), file.contents) === 0
  if (same) continue
  fs.mkdirSync(path.dirname(file.path), { recursive: true })
  const temporary = `${file.path}.${process.pid}.tmp`
  fs.writeFileSync(temporary, file.contents, { mode: file.text.startsWith("#!") ? 0o755 : 0o644 })
  fs.renameSync(temporary, file.path)
}
