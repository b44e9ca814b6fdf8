/**
 * The entry point of the self-contained executable dist/vm-metrics: Node 24 with one CommonJS bundle of this
 * file injected (a Node single-executable application, scripts/sea.mjs). Like Launcher, `--help`,
 * `<command> --help` and `--version` are answered from the texts captured at build time (the asset
 * help.json, captured from this same bundle on the same Node); every other command line starts the CLI.
 * Outside an executable (the capture itself runs the bundle with plain Node) there is no asset and the CLI
 * answers help. The choosing is HelpKey.capturedText, shared with Launcher.
 *
 * @since 0.1.0
 */
import * as sea from "node:sea"
import * as BuildInfo from "./BuildInfo.js"
import { exitQuietlyWhenStdoutCloses } from "./ClosedStdout.js"
import { capturedText } from "./HelpKey.js"

// In an executable process.argv[1] is the executable itself, as the script's path is for `node script`.
// Outside an executable getAsset throws: the CLI answers help (the version line is the same either way).
const text = capturedText(process.argv.slice(2), BuildInfo.summary, () => sea.getAsset("help.json", "utf8"))
exitQuietlyWhenStdoutCloses()
if (text !== undefined) process.stdout.write(text)
// Bundled, not fetched: the bundler inlines this module and runs it only here.
else void import("./bin.js")
