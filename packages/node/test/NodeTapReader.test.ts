import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { createTap, deleteTap, ipLinkBytes, pushFrames, sysCounter, tapSkipReason } from "@vm-metrics/testing"
import { Either } from "effect"
import { makeSyncTapReader } from "../src/internal/syncTapReader.js"

const skip = tapSkipReason()

describe.skipIf(skip !== undefined)("NodeTapReader on a real TAP", () => {
  it("reads exact host-side counters that grow as frames pass, on kept fds", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys")
    try {
      const before = reader.sampleOne(tap)
      assert.deepStrictEqual(Either.getOrThrow(before), { rxBytes: 0n, txBytes: 0n })
      const pushed = pushFrames(tap, 50, 986)
      assert.strictEqual(pushed.received_by_guest, 50)
      const after = Either.getOrThrow(reader.sampleOne(tap))
      const expected = BigInt(50 * pushed.frame_bytes)
      // The guest sent 50 frames: the host received them (rx); the host sent 50 into the guest (tx).
      assert.deepStrictEqual(after, { rxBytes: expected, txBytes: expected })
      const ip = ipLinkBytes(tap)
      assert.deepStrictEqual({ rxBytes: ip.rx, txBytes: ip.tx }, after)
      assert.strictEqual(reader.openTaps(), 1)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })

  it("reports a deleted TAP as TapMissing, and reads it again once re-created", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys")
    try {
      assert.isTrue(Either.isRight(reader.sampleOne(tap)))
      deleteTap(tap)
      const gone = reader.sampleOne(tap)
      assert.strictEqual(Either.isLeft(gone) && gone.left._tag, "TapMissing")
      assert.strictEqual(reader.openTaps(), 0)
      createTap(tap) // same name, new device: a kept fd of the old one would read ENODEV forever
      pushFrames(tap, 3, 100)
      const back = Either.getOrThrow(reader.sampleOne(tap))
      assert.strictEqual(back.rxBytes, sysCounter(tap, "rx_bytes"))
      assert.strictEqual(back.rxBytes, 3n * 114n)
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })
})

describe.skipIf(skip !== undefined)("NodeTapReader across TAP re-creation", () => {
  it("re-opens by path when a kept fd reads ENODEV (TAP deleted and created again between reads)", () => {
    const tap = createTap()
    const reader = makeSyncTapReader("/sys")
    try {
      assert.isTrue(Either.isRight(reader.sampleOne(tap)))
      deleteTap(tap)
      createTap(tap)
      pushFrames(tap, 2, 100)
      assert.deepStrictEqual(Either.getOrThrow(reader.sampleOne(tap)), { rxBytes: 228n, txBytes: 228n })
    } finally {
      reader.closeAll()
      deleteTap(tap)
    }
  })
})

describe("NodeTapReader input checks", () => {
  it("rejects hostile names before any path is built", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-sys-"))
    const reader = makeSyncTapReader(root)
    for (const name of ["", "../../../etc", "..", ".", "a/b", "eth0:1", "tap 0", "tap\u0000", "täp", "x".repeat(16)]) {
      const result = reader.sampleOne(name)
      assert.strictEqual(Either.isLeft(result) && result.left._tag, "InvalidTapName", name)
    }
    assert.strictEqual(reader.openTaps(), 0)
    fs.rmSync(root, { recursive: true })
  })

  it("reads <sysRoot>/class/net/<tap>/statistics and types a malformed counter as ParseError", () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-sys-"))
    const dir = path.join(root, "class", "net", "hype-abc", "statistics")
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(path.join(dir, "rx_bytes"), "18446744073709551615\n")
    fs.writeFileSync(path.join(dir, "tx_bytes"), "42\n")
    const reader = makeSyncTapReader(root)
    assert.deepStrictEqual(Either.getOrThrow(reader.sampleOne("hype-abc")), {
      rxBytes: 18446744073709551615n,
      txBytes: 42n
    })
    fs.writeFileSync(path.join(dir, "tx_bytes"), "garbage\n")
    const bad = reader.sampleOne("hype-abc")
    assert.strictEqual(Either.isLeft(bad) && bad.left._tag, "ParseError")
    const missing = reader.sampleOne("hype-none")
    assert.strictEqual(Either.isLeft(missing) && missing.left._tag, "TapMissing")
    reader.closeAll()
    fs.rmSync(root, { recursive: true })
  })
})
