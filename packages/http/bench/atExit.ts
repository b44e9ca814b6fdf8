/** What the bench must undo however it ends: one `exit` listener runs them all (a child to kill, a file to remove). */
const hooks = new Set<() => void>()
let hooked = false

/** Runs `f` when the process exits, unless the returned function removes it first. */
export const atExit = (f: () => void): (() => void) => {
  if (!hooked) {
    hooked = true
    process.on("exit", () => {
      for (const hook of hooks) hook()
    })
  }
  hooks.add(f)
  return () => hooks.delete(f)
}
