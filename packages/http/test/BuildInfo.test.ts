import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import * as BuildInfo from "../src/BuildInfo.js"

describe("BuildInfo", () => {
  it("the version is the package's", () => {
    const pkg = JSON.parse(fs.readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }
    assert.strictEqual(BuildInfo.version, pkg.version)
  })

  it("run from the sources, the revision is unknown and the Node is this one", () => {
    assert.strictEqual(BuildInfo.revision, "unknown")
    assert.strictEqual(BuildInfo.nodeVersion, process.versions.node)
  })
})
