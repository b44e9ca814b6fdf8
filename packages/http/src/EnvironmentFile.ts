/**
 * The text of /etc/default/vm-metrics, the unit's EnvironmentFile as the Debian package ships it
 * (scripts/deb.mjs): every setting `vm-metrics serve` reads from the environment, from AppConfig's table,
 * each commented out with its description and default, so that the file documents itself and changes
 * nothing until a line is uncommented.
 *
 * @since 0.1.0
 */
import * as AppConfig from "./AppConfig.js"

const WIDTH = 100

/** `text` as `# ` comment lines of at most WIDTH characters (a longer word stays whole). */
const comment = (text: string): ReadonlyArray<string> => {
  const lines: Array<string> = []
  let line = "#"
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line.length > 1 && line.length + 1 + word.length > WIDTH) {
      lines.push(line)
      line = "#"
    }
    line += ` ${word}`
  }
  if (line.length > 1) lines.push(line)
  return lines
}

/** The value to show after `#NAME=`: the default itself when it is a plain value, else nothing. */
const shownValue = (setting: AppConfig.Setting<unknown>): string =>
  setting.shownDefault !== undefined || setting.default === undefined ? "" : AppConfig.shownDefault(setting)

/** One setting: its description and default as comments, then the commented assignment. */
const block = (variable: string, description: string, shownDefault: string, value: string): string =>
  [...comment(`${description} (default: ${shownDefault})`), `#${variable}=${value}`].join("\n")

/** The settings `serve` takes that have a variable, in `--help`'s order, with that variable. */
const serveSettings = (): ReadonlyArray<readonly [string, AppConfig.Setting<unknown>]> =>
  Object.values(AppConfig.settings as Record<string, AppConfig.Setting<unknown>>).flatMap((setting) =>
    setting.env !== null && setting.scope !== "top" ? [[setting.env, setting] as const] : []
  )

/** The whole file. @category constructors */
export const text = (): string => {
  const header = comment(
    "Settings of vm-metrics.service: systemd reads this file (EnvironmentFile=) when the service starts. " +
      "Every setting of `vm-metrics serve` is listed, commented out, with its default: uncomment a line " +
      "and set its value, then `systemctl restart vm-metrics`. `vm-metrics serve --help` and " +
      "vm-metrics(1) describe them. The file is the package's conffile: your changes are kept on upgrades."
  )
  const settings = serveSettings().map(([variable, setting]) =>
    block(variable, setting.description, AppConfig.shownDefault(setting), shownValue(setting))
  )
  // Read by the OTel exporter itself, not by vm-metrics; one entry may name two variables ("A / B").
  const exporter = AppConfig.exporterVariables.flatMap((variable) =>
    variable.env
      .split(" / ")
      .map((name) => block(name, `${variable.description}; read by the OTel exporter`, variable.default, ""))
  )
  return `${[header.join("\n"), ...settings, ...exporter].join("\n\n")}\n`
}
