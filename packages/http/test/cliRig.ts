/**
 * Running the real `vm-metrics` binary from tests: one-shot commands (bounded by a timeout) and a
 * `serve` process with its output kept for failure messages. Everything here waits with a bound.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { freePort as freePortEffect, exited as hasExited, outputTail, waitForPromise } from "@vm-metrics/testing"
import { Effect } from "effect"

export const REPO = path.resolve(import.meta.dirname, "..", "..", "..")
/** The bundle `pnpm build` writes (the http project's vitest globalSetup builds it before the tests). */
export const BIN = path.join(REPO, "dist", "vm-metrics.mjs")

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Runs `vm-metrics <args>` (or another build of it) to its end (killed after 90 s): exit code and both streams. */
export const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}, bin = BIN) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: { ...process.env, ...env, NO_COLOR: "1" }, timeout: 90_000 },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
    )
  })

/** A loopback port nobody listens on right now. */
export const freePort = (): Promise<number> => Effect.runPromise(freePortEffect)

export interface Served {
  readonly child: ChildProcess
  readonly base: string
  readonly output: () => string
  readonly exited: () => boolean
}

/**
 * Spawns `vm-metrics serve --port <free> <args>` (under `ulimit -n <nofile>` when given) and waits
 * (at most 90 s) until /healthz answers 200.
 */
export const serve = async (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string>; readonly nofile?: number } = {}
): Promise<Served> => {
  const port = await freePort()
  const node = [process.execPath, BIN, "serve", "--port", String(port), ...args]
  const [command, ...rest] =
    options.nofile === undefined ? node : ["sh", "-c", `ulimit -n ${options.nofile} && exec "$0" "$@"`, ...node]
  const child = spawn(command!, rest, {
    env: { ...process.env, ...options.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const output = outputTail(child)
  const exited = () => hasExited(child)
  const base = `http://127.0.0.1:${port}`
  const served = { child, base, output, exited }
  await until("the server's /healthz", 90_000, async () => {
    if (exited()) throw new Error(`the server exited (${child.exitCode ?? child.signalCode}):\n${output()}`)
    const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined)
    return response?.status === 200 ? true : undefined
  }).catch((error: Error) => {
    child.kill("SIGKILL")
    throw new Error(`${error.message}\n${output()}`)
  })
  return served
}

/**
 * Polls `probe` every 200 ms until it gives a value; fails with `what` after `timeoutMs` (testing's
 * waitFor), or at once with what the probe threw (it throws when waiting is pointless).
 */
export const until = <A>(what: string, timeoutMs: number, probe: () => Promise<A | undefined>): Promise<A> => {
  let thrown: string | undefined
  const tried = () =>
    probe().catch((error: unknown) => {
      thrown = error instanceof Error ? error.message : String(error)
      return undefined
    })
  return waitForPromise(what, tried, { timeout: timeoutMs, interval: "200 millis", gone: () => thrown })
}

/** Resolves with the exit code/signal, or undefined when the process is still running after `timeoutMs`. */
export const exitWithin = (child: ChildProcess, timeoutMs: number) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      return resolve({ code: child.exitCode, signal: child.signalCode })
    const timer = setTimeout(() => resolve(undefined), timeoutMs)
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal })
    })
  })

/** SIGTERM, then SIGKILL if still running after 10 s. */
export const stop = async (child: ChildProcess) => {
  child.kill("SIGTERM")
  if ((await exitWithin(child, 10_000)) === undefined) {
    child.kill("SIGKILL")
    await exitWithin(child, 10_000)
  }
}

/** The number of file descriptors `pid` has open (/proc/<pid>/fd). */
export const openFds = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length

/** GET a URL (5 s bound): status and body, or the error as status -1. */
export const get = async (url: string) => {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5_000) })
    return { status: response.status, body: await response.text() }
  } catch (error) {
    return { status: -1, body: String(error) }
  }
}
