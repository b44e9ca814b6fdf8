#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=50
/**
 * The bundle's entry point (dist/vm-metrics.mjs). `--help`, `help [command]` and `<command> --help` are
 * answered from the texts the build captured from the full CLI (dist/help.json, see scripts/build.mjs), byte
 * for byte what it prints piped (no colour); `--version` and `version` print BuildInfo's line, as the full CLI
 * does; every other command line loads the full CLI (dist/cli.mjs). Why: loading Effect,
 * @effect/cli and the server graph costs most of a second and ~50 MB before a word of help is printed.
 *
 * `--max-semi-space-size=2 --heap-growing-percent=50` (here, in `pnpm start` and in the executable): V8's
 * default young generation lets an idle server sit at ~85 MiB; with 2 MB semi-spaces it stays near 75 MiB
 * for a few more, cheap, scavenges. V8 sets the old generation's next limit from the live size at each
 * mark-compact times a factor it picks from GC and mutator speed: taken at start-up (16 MB live), it let the
 * old generation grow to ~57 MB under 30 s of stats requests before the next one (RSS 118–124 MiB at 1,000
 * VMs). A fixed factor of 1.5 marks at ~33 MB instead (RSS 93–96 MiB; five mark-compacts of ~5 ms in those
 * 30 s), for no CPU beyond the noise at rest (three interleaved pairs of 60 s: 2.87, 2.89, 2.83 % → 2.94, 2.96,
 * 2.81 %).
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
