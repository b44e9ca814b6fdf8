/**
 * The entry point of the self-contained executable dist/vm-metrics: Node 24 with one CommonJS bundle of this
 * file injected (a Node single-executable application, scripts/sea.mjs). Like Launcher, `--help`,
 * `<command> --help` and `--version` are answered from the texts captured at build time (the asset
 * help.json, captured from this same bundle on the same Node); every other command line starts the CLI.
 * Outside an executable (the capture itself runs the bundle with plain Node) there is no asset and the CLI
 * answers.
 *
 * @since 0.1.0
 */
import * as sea from "node:sea"
import * as BuildInfo from "./BuildInfo.js"
import { helpKey } from "./HelpKey.js"

/** The version line, or the captured help text for `args` if the executable carries one (else the CLI answers). */
const capturedText = (args: ReadonlyArray<string>): string | undefined => {
  const key = helpKey(args)
  if (key === undefined || !sea.isSea()) return undefined
  if (key === "version") return `${BuildInfo.summary}\n`
  try {
    const texts = JSON.parse(sea.getAsset("help.json", "utf8")) as Record<string, string>
    return Object.hasOwn(texts, key) ? texts[key] : undefined
  } catch {
    return undefined
  }
}

// In an executable process.argv[1] is the executable itself, as the script's path is for `node script`.
const text = capturedText(process.argv.slice(2))
if (text !== undefined) process.stdout.write(text)
// Bundled, not fetched: the bundler inlines this module and runs it only here.
else void import("./bin.js")
