import { assert, describe, it } from "@effect/vitest"
import { ignoredNote } from "../src/IgnoredNote.js"

describe("the note on hypervisor processes discovery did not list", () => {
  it("none (or only zero counts): no note", () => {
    assert.isUndefined(ignoredNote([]))
    assert.isUndefined(ignoredNote([{ reason: "unverifiable", count: 0 }]))
  })

  it("counts them, each reason with what it means and what to do", () => {
    assert.strictEqual(
      ignoredNote([
        { reason: "unverifiable", count: 2 },
        { reason: "untrusted_uid", count: 1 },
        { reason: "untrusted_exe", count: 0 }
      ]),
      "3 hypervisor processes not listed; 2 unverifiable: their owner or executable cannot be read by this user (run as root, or with CAP_SYS_PTRACE as the systemd unit does); 1 untrusted_uid: owned by a user other than root (trust that user with --discovery-uid)"
    )
    assert.strictEqual(
      ignoredNote([{ reason: "untrusted_exe", count: 1 }]),
      "1 hypervisor process not listed; 1 untrusted_exe: run from an executable that is not root's, or from a directory others can write to"
    )
  })
})
