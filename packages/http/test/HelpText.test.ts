import { assert, describe, it } from "@effect/vitest"
import { bracketedRepeats, isHelp, withoutStockLines } from "../src/HelpText.js"

describe("help without @effect/cli's stock lines", () => {
  it("drops each stock line and the blank line after it, coloured or not; keeps everything else", () => {
    const option = (name: string, ...paragraphs: ReadonlyArray<string>) =>
      [name, "", ...paragraphs.flatMap((p) => [`  ${p}`, ""]), ""].join("\n")
    const rendered = [
      option("--port integer", "An integer.", "port to listen on (env VM_METRICS_PORT)", "This setting is optional."),
      option(
        "--host text",
        "\u001b[1mA user-defined piece of text.\u001b[0m",
        "address to listen on",
        "This option can be set from environment variables.",
        "This setting is optional. Defaults to: 127.0.0.1"
      )
    ].join("")
    assert.strictEqual(
      withoutStockLines(rendered),
      [
        option("--port integer", "port to listen on (env VM_METRICS_PORT)"),
        option("--host text", "address to listen on", "This setting is optional. Defaults to: 127.0.0.1")
      ].join("")
    )
    // A description that merely contains a stock sentence is not a stock line.
    const own = "  An integer. Or so it says."
    assert.strictEqual(withoutStockLines(own), own)
  })
})

describe("the usage line's repeatable options", () => {
  it("are in brackets, as optional; other lines and other options are left as they are", () => {
    const usage =
      "$ list [--source discovery | file | libvirt] --discovery-uid text... --collect text... [--log-format logfmt]"
    assert.strictEqual(
      bracketedRepeats(`USAGE\n\n${usage}\n\n--collect text...\n`),
      "USAGE\n\n$ list [--source discovery | file | libvirt] [--discovery-uid text]... [--collect text]... [--log-format logfmt]\n\n--collect text...\n"
    )
  })
})

describe("what is cleaned", () => {
  it("only help texts (a USAGE section, coloured or not); any other output is printed as it is", () => {
    assert.isTrue(isHelp("vm-metrics\n\nUSAGE\n\n$ list [--source text]\n"))
    assert.isTrue(isHelp("vm-metrics\n\n\u001b[1mUSAGE\u001b[0m\n\n$ list\n"))
    assert.isFalse(isHelp("ID  NAME\nvm-1  This setting is optional.\n"))
    assert.isFalse(isHelp('{"instance_id":"USAGE"}'))
  })
})
