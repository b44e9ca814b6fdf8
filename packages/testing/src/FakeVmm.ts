/**
 * A stand-in hypervisor process for the process-side tests (fake-vmm.py next to this file): threads
 * named like vCPU threads (busy or idle), anonymous and hugetlb memory, O_DIRECT disk writes, and
 * threads replaced or added on command. Its thread ids come from the process itself.
 */
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { Effect } from "effect"
import { outputTail } from "./Process.js"
import { waitFor } from "./Wait.js"

export interface FakeVmmOptions {
  /** Thread names; a busy thread spins (name → busy). */
  readonly threads?: ReadonlyArray<string | { readonly name: string; readonly busy: boolean }>
  /** Threads that keep the process's name. */
  readonly unnamed?: number
  readonly allocMib?: number
  readonly hugetlbPages?: number
  /** In a session of its own (setsid): its own scheduler autogroup, whose weight a test may set. */
  readonly ownSession?: boolean
}

export interface FakeVmm {
  readonly pid: number
  /** Thread name → tid. */
  readonly threads: Readonly<Record<string, number>>
  /** Why the hugetlb pages could not be mapped, when asked for and refused. */
  readonly hugetlbError: string | null
  /** Sends one command line and resolves with its one-line JSON answer. */
  readonly command: (line: string) => Promise<Record<string, unknown>>
  readonly stop: () => Promise<void>
}

const SCRIPT = path.join(import.meta.dirname, "fake-vmm.py")

const argsOf = (options: FakeVmmOptions): Array<string> => {
  const args: Array<string> = []
  for (const thread of options.threads ?? []) {
    const { name, busy } = typeof thread === "string" ? { name: thread, busy: false } : thread
    args.push("--thread", busy ? `${name}:busy` : name)
  }
  if (options.unnamed !== undefined) args.push("--unnamed", String(options.unnamed))
  if (options.allocMib !== undefined) args.push("--alloc-mib", String(options.allocMib))
  if (options.hugetlbPages !== undefined) args.push("--hugetlb", String(options.hugetlbPages))
  return args
}

/** Starts the fake and waits (bounded) for it to say it is ready. */
export const startFakeVmm = async (options: FakeVmmOptions = {}): Promise<FakeVmm> => {
  const child = spawn("python3", [SCRIPT, ...argsOf(options)], {
    stdio: ["pipe", "pipe", "pipe"],
    detached: options.ownSession === true
  })
  const tail = outputTail(child)
  const lines: Array<string> = []
  readline.createInterface({ input: child.stdout }).on("line", (line) => lines.push(line))
  const exitedWith = () => (child.exitCode !== null || child.signalCode !== null ? "fake-vmm.py exited" : undefined)
  const next = (what: string) =>
    Effect.runPromise(
      waitFor(what, () => lines.shift(), {
        timeout: "60 seconds",
        interval: "20 millis",
        gone: exitedWith,
        details: tail
      })
    ).then((line) => JSON.parse(line) as Record<string, unknown>)
  const ready = await next("fake-vmm.py to start")
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve()
      child.once("exit", () => resolve())
      child.kill("SIGKILL")
    })
  return {
    pid: ready.pid as number,
    threads: ready.threads as Record<string, number>,
    hugetlbError: (ready.hugetlb_error as string | null) ?? null,
    command: (line) => {
      child.stdin.write(`${line}\n`)
      return next(`fake-vmm.py to answer ${line}`)
    },
    stop
  }
}
