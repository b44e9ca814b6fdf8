#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The bundle's entry point (dist/vm-metrics.mjs). `--help`, `help [command]` and `<command> --help` are
 * answered from the texts the build captured from the full CLI (dist/help.json, see scripts/build.mjs), byte
 * for byte what it prints piped (no colour); `--version` and `version` print BuildInfo's line, as the full CLI
 * does; every other command line loads the full CLI (dist/cli.mjs). Why: loading Effect,
 * @effect/cli and the server graph costs most of a second and ~50 MB before a word of help is printed.
 *
 * `--max-semi-space-size=2` (MB; here, in `pnpm start` and in the unit): V8's default young generation lets an
 * idle server sit at ~85 MiB; with 2 MB semi-spaces it stays near 75 MiB for a few more, cheap, scavenges.
 *
 * Node types here on purpose: this runs only as the bundle's first module, before anything else is loaded.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as BuildInfo from "./BuildInfo.js"
import { exitQuietlyWhenStdoutCloses } from "./ClosedStdout.js"
import { capturedText } from "./HelpKey.js"

// No help.json beside the bundle: readFileSync throws and the full CLI answers.
const text = capturedText(process.argv.slice(2), BuildInfo.summary, () =>
  fs.readFileSync(new URL("./help.json", import.meta.url), "utf8")
)
exitQuietlyWhenStdoutCloses()
if (text !== undefined) process.stdout.write(text)
else await import(new URL("./cli.mjs", import.meta.url).href)
