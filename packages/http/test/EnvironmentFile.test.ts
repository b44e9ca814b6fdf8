/** /etc/default/vm-metrics as the Debian package ships it: every setting of `serve`, commented out, with its default. */
import { assert, describe, it } from "@effect/vitest"
import * as AppConfig from "../src/AppConfig.js"
import * as EnvironmentFile from "../src/EnvironmentFile.js"

const text = EnvironmentFile.text()
const lines = text.split("\n")
const settings = Object.values(AppConfig.settings as Record<string, AppConfig.Setting<unknown>>)

describe("EnvironmentFile", () => {
  it("sets nothing: every line is a comment or blank", () => {
    assert.deepStrictEqual(
      lines.filter((line) => line !== "" && !line.startsWith("#")),
      []
    )
    assert.isTrue(text.endsWith("\n"))
  })

  it("lists each variable `serve` reads once, commented out, after its description and default", () => {
    const serve = settings.filter((setting) => setting.env !== null && setting.scope !== "top")
    assert.isAbove(serve.length, 20)
    for (const setting of serve) {
      const at = lines.flatMap((line, index) => (line.startsWith(`#${setting.env}=`) ? [index] : []))
      assert.strictEqual(at.length, 1, `${setting.env} once`)
      // The comment block: the lines between the blank line before the assignment and the assignment.
      const comment = lines.slice(0, at[0]).reverse().indexOf("")
      const described = lines
        .slice(at[0]! - comment, at[0])
        .map((line) => line.replace(/^# ?/, ""))
        .join(" ")
      assert.include(described, `(default: ${AppConfig.shownDefault(setting)})`, setting.env!)
    }
    // The value shown is the default itself where it is a plain value (uncommenting it changes nothing).
    assert.include(lines, `#VM_METRICS_PORT=${AppConfig.settings.port.default}`)
    assert.include(lines, `#VM_METRICS_HOST=${AppConfig.settings.host.default}`)
    assert.include(lines, "#VM_METRICS_LISTEN=")
  })

  it("leaves out what `serve` does not read and lists the OTel exporter's own variables", () => {
    for (const setting of settings.filter((s) => s.scope === "top" && s.env !== null)) {
      assert.notInclude(text, `#${setting.env}=`)
    }
    for (const variable of AppConfig.exporterVariables.flatMap((v) => v.env.split(" / "))) {
      assert.include(lines, `#${variable}=`)
    }
  })

  it("keeps every line within 100 characters but for a single long word", () => {
    for (const line of lines) {
      if (line.length > 100) assert.notInclude(line.slice(2), " ", line)
    }
  })
})
