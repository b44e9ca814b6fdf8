/**
 * Which command lines the entry points (Launcher for the bundle, SeaMain for the executable) answer without the full CLI: the help texts
 * captured at build time, keyed as in dist/help.json, and the version line (BuildInfo, computed where it
 * runs: the executable carries another Node than the build's). Every other command line goes to the full CLI.
 *
 * @since 0.1.0
 */

/** The command lines answered without the full CLI: a key of help.json, or "version". @category utils */
export const helpKey = (args: ReadonlyArray<string>): string | undefined => {
  const isHelp = (flag: string | undefined) => flag === "--help" || flag === "-h"
  const isCommand = (word: string | undefined) => /^[a-z]+$/.test(word ?? "")
  if (args.length === 0) return "help"
  if (args.length === 1 && (isHelp(args[0]) || args[0] === "help")) return "help"
  if (args.length === 1 && (args[0] === "--version" || args[0] === "version")) return "version"
  if (args.length === 2 && isHelp(args[1]) && isCommand(args[0])) return `help ${args[0]}`
  // `help <command>` is `<command> --help`.
  if (args.length === 2 && args[0] === "help" && isCommand(args[1])) return `help ${args[1]}`
  return undefined
}

/**
 * What an entry point prints for `args` without the full CLI: the version line, or the captured help text
 * from `readTexts` (help.json's contents); undefined — the full CLI answers — for any other command line,
 * or when the texts cannot be read or lack the key. @category utils
 */
export const capturedText = (
  args: ReadonlyArray<string>,
  version: string,
  readTexts: () => string
): string | undefined => {
  const key = helpKey(args)
  if (key === undefined) return undefined
  if (key === "version") return `${version}\n`
  try {
    const texts = JSON.parse(readTexts()) as Record<string, string>
    return Object.hasOwn(texts, key) ? texts[key] : undefined
  } catch {
    return undefined
  }
}
