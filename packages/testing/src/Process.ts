/**
 * Real processes for the tests: which commands exist, free ports and temporary directories, children
 * spawned with their output kept for failure messages, and stopped (by pid or process group) with a bound.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { pidAlive } from "./Kernel.js"
import { waitForPromise } from "./Wait.js"

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0

/** Where `command` resolves on PATH (`command -v`), or undefined. */
export const which = (command: string): string | undefined => {
  const found = spawnSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" })
  const resolved = found.status === 0 ? found.stdout.trim() : ""
  return resolved === "" ? undefined : resolved
}

export const hasCommand = (command: string): boolean => which(command) !== undefined

/** A loopback port nobody listens on right now (listen on 0, read it, close). */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.once("error", (error) => resume(Effect.die(error)))
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A temporary directory, removed with the scope. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), prefix))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )

const tempDirs: Array<string> = []

/** A fresh directory under the system temp dir for a promise-style test; `removeTempDirs` (from `afterAll`) removes it. */
export const makeTempDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

export const removeTempDirs = (): void => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/**
 * A copy of sh named `name` (default `qemu-system-x86_64`, so /proc shows QEMU's comm) in a root-owned 0755
 * directory outside /tmp (under /run, else the home directory): an executable discovery trusts, where a
 * copy under the world-writable /tmp is `untrusted_exe`. `removeTempDirs` (from `afterAll`) removes it.
 */
export const trustedFakeBinary = (name = "qemu-system-x86_64"): string => {
  const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-bin-"))
  fs.chmodSync(dir, 0o755)
  tempDirs.push(dir)
  const binary = path.join(dir, name)
  fs.copyFileSync("/bin/sh", binary)
  fs.chmodSync(binary, 0o755)
  return binary
}

export const exited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/** `sh -c <script>` with no stdio; its pid is known. */
export const spawnChild = (script: string): ChildProcess & { pid: number } => {
  const child = spawn("sh", ["-c", script], { stdio: "ignore" })
  if (child.pid === undefined) throw new Error(`could not spawn ${script}`)
  return child as ChildProcess & { pid: number }
}

/** SIGKILL; resolves when it has exited. */
export const stopChild = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (exited(child)) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. With `group`, both
 * signals go to its process group (tsx and its node child), and a SIGKILL follows for any grandchild.
 */
export const stopProcess = (
  child: ChildProcess,
  options: { readonly group?: boolean; readonly graceMs?: number } = {}
) =>
  new Promise<void>((resolve) => {
    const signal = (name: NodeJS.Signals) => {
      try {
        if (options.group === true && child.pid !== undefined) process.kill(-child.pid, name)
        else child.kill(name)
      } catch {
        // already gone
      }
    }
    if (exited(child)) {
      if (options.group === true) signal("SIGKILL") // a grandchild may outlive its parent
      return resolve()
    }
    const kill = setTimeout(() => signal("SIGKILL"), options.graceMs ?? 5_000)
    child.once("exit", () => {
      clearTimeout(kill)
      if (options.group === true) signal("SIGKILL")
      resolve()
    })
    signal("SIGTERM")
  })

/** A pid that is not our child: SIGTERM, up to `graceMs` for it to go, then SIGKILL and up to 3 s more. */
export const killPid = async (pid: number, graceMs = 5_000): Promise<void> => {
  const gone = (timeoutMs: number) =>
    waitForPromise(`pid ${pid} to exit`, () => (pidAlive(pid) ? undefined : true), {
      timeout: timeoutMs,
      interval: "50 millis"
    }).then(
      () => true,
      () => false
    )
  try {
    process.kill(pid, "SIGTERM")
  } catch {
    return
  }
  if (await gone(graceMs)) return
  try {
    process.kill(pid, "SIGKILL")
  } catch {
    return
  }
  await gone(3_000)
}

/** Keeps the last 16 kB of a child's stdout and stderr (and a spawn error), for failure messages. */
export const outputTail = (child: ChildProcess): (() => string) => {
  let output = ""
  const keep = (text: string) => {
    output = (output + text).slice(-16_000)
  }
  child.stdout?.on("data", (chunk: Buffer) => keep(chunk.toString("utf8")))
  child.stderr?.on("data", (chunk: Buffer) => keep(chunk.toString("utf8")))
  child.on("error", (error) => keep(`spawn error: ${error.message}\n`))
  return () => output
}

/** A long-running process with its recent output, for failure messages. */
export interface Server {
  readonly name: string
  readonly process: ChildProcess
  readonly output: () => string
  /** Why it is no longer running (for `waitFor`'s `gone`), or undefined. */
  readonly gone: () => string | undefined
}

/** Spawns a server (in its own process group with `group`); stopped with the scope (`stopProcess`). */
export const startServer = (
  name: string,
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv; readonly group?: boolean } = {}
): Effect.Effect<Server, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(command, args, {
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        ...(options.env === undefined ? {} : { env: options.env }),
        detached: options.group === true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      const output = outputTail(child)
      const gone = () =>
        exited(child) ? `${name} exited (${child.exitCode ?? child.signalCode}):\n${output()}` : undefined
      return { name, process: child, output, gone }
    }),
    (server) => Effect.promise(() => stopProcess(server.process, { group: options.group === true }))
  )

/** Runs a command to its end (30 s bound); its stdout, or an error with its stderr. */
export const run = (command: string, args: ReadonlyArray<string>): string => {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 30_000 })
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr}${result.error ?? ""}`
    )
  }
  return result.stdout
}

/** Runs a command, ignoring failure (cleanup of what may not exist). */
export const tryRun = (command: string, args: ReadonlyArray<string>): void => {
  spawnSync(command, args, { stdio: "ignore", timeout: 30_000 })
}

/** Runs a command to its end (killed after 60 s); stdout, and stdout + stderr for messages. */
export const runToEnd = (command: string, args: ReadonlyArray<string>, cwd?: string) =>
  new Promise<{ status: number | null; stdout: string; output: string }>((resolve) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk) => (stdout += chunk))
    child.stderr.on("data", (chunk) => (stderr += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000)
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, output: stdout + stderr })
    })
  })

/** The version line of a binary, for the log. */
export const versionOf = (binary: string, flag = "--version"): string => {
  try {
    return execFileSync(binary, [flag], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0] ?? ""
  } catch {
    return "unknown version"
  }
}
