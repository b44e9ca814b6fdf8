/**
 * Which command lines the bundle's entry point (Launcher) answers from the help texts captured at build
 * time, and under which key of dist/help.json; every other command line goes to the full CLI.
 *
 * @since 0.1.0
 */

/** The command lines answered without the full CLI, keyed as in help.json. @category utils */
export const helpKey = (args: ReadonlyArray<string>): string | undefined => {
  const isHelp = (flag: string | undefined) => flag === "--help" || flag === "-h"
  if (args.length === 0) return "help"
  if (args.length === 1 && isHelp(args[0])) return "help"
  if (args.length === 1 && args[0] === "--version") return "version"
  if (args.length === 2 && isHelp(args[1]) && /^[a-z]+$/.test(args[0] ?? "")) return `help ${args[0]}`
  return undefined
}
