/** Which command lines the bundle's entry point answers itself (the rest load the full CLI). */
import { assert, describe, it } from "@effect/vitest"
import { helpKey } from "../src/HelpKey.js"

describe("HelpKey.helpKey", () => {
  it("keys the bare command, --help/-h, --version and `<command> --help`", () => {
    assert.strictEqual(helpKey([]), "help")
    assert.strictEqual(helpKey(["--help"]), "help")
    assert.strictEqual(helpKey(["-h"]), "help")
    assert.strictEqual(helpKey(["--version"]), "version")
    assert.strictEqual(helpKey(["stats", "--help"]), "help stats")
    assert.strictEqual(helpKey(["serve", "-h"]), "help serve")
  })

  it("keys the subcommands help, help <command> and version as their flags", () => {
    assert.strictEqual(helpKey(["help"]), "help")
    assert.strictEqual(helpKey(["help", "serve"]), "help serve")
    assert.strictEqual(helpKey(["version"]), "version")
    for (const args of [
      ["help", "../x"],
      ["help", "serve", "extra"],
      ["version", "--help"],
      ["help", "--help"]
    ]) {
      assert.notStrictEqual(helpKey(args), "version", args.join(" "))
      assert.isFalse(helpKey(args)?.includes("..") ?? false, args.join(" "))
    }
  })

  it("leaves everything else to the full CLI", () => {
    for (const args of [
      ["serve"],
      ["stats", "vm-1"],
      ["serve", "--port", "1", "--help"],
      ["--help", "serve"],
      ["../x", "--help"],
      ["--version", "--help"],
      ["-v"]
    ]) {
      assert.isUndefined(helpKey(args), args.join(" "))
    }
  })
})
