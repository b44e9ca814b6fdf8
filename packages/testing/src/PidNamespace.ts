/**
 * A fresh PID namespace (`unshare --pid --fork --mount-proc`) whose init is a shell taking commands on
 * stdin, one answer line per command. A test gives the `case` arms of that shell: writing
 * `ns_last_pid` before a fork hands out exactly the pid it wants, so a pid is reused on demand,
 * deterministically. Its /proc is reached through the init's root.
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as readline from "node:readline"
import { childrenOf } from "./Kernel.js"
import { stopChild } from "./Process.js"
import { sleepMs } from "./Wait.js"

export interface PidNamespace {
  /** The namespace's /proc, as seen from here. */
  readonly procRoot: string
  /** Sends one command line and returns the shell's answer line (at most 30 s). */
  readonly send: (command: string) => Promise<string>
  readonly stop: () => Promise<void>
}

/**
 * Starts the namespace. `arms` are `case "$cmd" in … esac` arms over the words `cmd n name` of each
 * command line; each arm must echo one line.
 */
export const pidNamespace = async (arms: string, env: Record<string, string> = {}): Promise<PidNamespace> => {
  const script = `
    while read cmd n name; do
      case "$cmd" in
${arms}
      esac
    done`
  const child = spawn("unshare", ["--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script], {
    stdio: ["pipe", "pipe", "inherit"],
    env: { ...process.env, ...env }
  })
  const { pid, stdin, stdout } = child
  if (pid === undefined || stdin === null || stdout === null) throw new Error("unshare did not start")
  const lines = readline.createInterface({ input: stdout })[Symbol.asyncIterator]()
  const send = async (command: string): Promise<string> => {
    stdin.write(`${command}\n`)
    const timeout = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer to ${command}`)), 30_000).unref()
    )
    const line = await Promise.race([lines.next(), timeout])
    if (line.done) throw new Error(`the namespace ended before answering ${command}`)
    return line.value
  }
  let init: number | undefined
  for (let i = 0; i < 400 && init === undefined; i++) {
    init = childrenOf(pid)[0]
    if (init === undefined || !fs.existsSync(`/proc/${init}/root/proc/1/stat`)) {
      init = undefined
      await sleepMs(25)
    }
  }
  if (init === undefined) throw new Error("the namespace's init did not start")
  return { procRoot: `/proc/${init}/root/proc`, send, stop: () => stopChild(child) }
}
