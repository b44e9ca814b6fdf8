/** Choosing the instance source: `--discovery-uid` names (issue 8, item 6). */
import { assert, describe, it } from "@effect/vitest"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { Effect, Option } from "effect"
import * as Sources from "../src/Sources.js"

const discovery = (discoveryUids: ReadonlyArray<string>) =>
  Sources.layer({
    kind: "discovery",
    procRoot: "/proc",
    instancesFile: Option.none(),
    libvirtRunDir: "/x",
    discoveryUids
  })

describe("Sources", () => {
  it.effect("--discovery-uid takes uids and user names; an unknown user is a start-up error that names it", () =>
    Effect.gen(function* () {
      const source = yield* Effect.provide(InstanceSource, discovery(["nobody", "1000"]))
      assert.isFunction(source.ignoredTotals)
      const error = yield* Effect.flip(Effect.provide(InstanceSource, discovery(["no-such-user-vm-metrics"])))
      assert.strictEqual(error._tag, "SourceOptionError")
      assert.include(error.message, '"no-such-user-vm-metrics"')
    })
  )
})
