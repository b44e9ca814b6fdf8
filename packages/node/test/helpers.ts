/** Real processes and real TAP devices for the node package's tests. */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

export const isRoot = typeof process.getuid === "function" && process.getuid() === 0

export const hasCommand = (command: string): boolean => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const tapMissing = (): string | undefined => {
  if (!isRoot) return "needs root to create TAP devices (ip tuntap); .ci/run runs as root"
  if (!fs.existsSync("/dev/net/tun")) return "needs /dev/net/tun"
  if (!hasCommand("ip")) return "needs iproute2 (ip)"
  if (!hasCommand("python3")) return "needs python3 to push frames through the TAP"
  return undefined
}

/**
 * Why the TAP tests cannot run here, or undefined when they can. Under CI (CI=true, as .ci/run runs)
 * a missing prerequisite is a failure, not a skip: .ci/run installs everything these tests need.
 */
export const tapSkipReason = (): string | undefined => {
  const missing = tapMissing()
  if (missing === undefined) return undefined
  if (process.env.CI === "true") throw new Error(`CI must not skip the real TAP tests: ${missing}`)
  console.warn(`skipping real TAP tests: ${missing}`)
  return missing
}

export const spawnChild = (script: string): ChildProcess & { pid: number } => {
  const child = spawn("sh", ["-c", script], { stdio: "ignore" })
  if (child.pid === undefined) throw new Error(`could not spawn ${script}`)
  return child as ChildProcess & { pid: number }
}

export const stopChild = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

export const sleepMs = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** `ps -o rss=,vsz=,times=` of a pid: KiB, KiB, CPU seconds. */
export const psOf = (pid: number) => {
  const [rss, vsz, times] = execFileSync("ps", ["-o", "rss=,vsz=,times=", "-p", String(pid)], { encoding: "utf8" })
    .trim()
    .split(/\s+/)
    .map(Number)
  return { rssKiB: rss!, vszKiB: vsz!, cpuSeconds: times! }
}

export const getconf = (name: string): number => Number(execFileSync("getconf", [name], { encoding: "utf8" }).trim())

let tapCounter = 0
/** A fresh persistent TAP with IPv6 off (so the kernel sends nothing into it by itself). */
export const createTap = (name = `vmmt${process.pid % 100000}${tapCounter++}`.slice(0, 15)): string => {
  execFileSync("ip", ["tuntap", "add", "dev", name, "mode", "tap"])
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1")
  return name
}

export const deleteTap = (name: string): void => {
  try {
    execFileSync("ip", ["link", "del", name], { stdio: "ignore" })
  } catch {
    // already gone
  }
}

/** The guest sends `count` frames and receives `receiveCount` through the TAP (test/fixtures/tap-frames.py). */
export const pushFrames = (tap: string, count: number, payload: number, receiveCount = count) =>
  JSON.parse(
    execFileSync(
      "python3",
      [
        path.join(import.meta.dirname, "fixtures", "tap-frames.py"),
        tap,
        String(count),
        String(payload),
        String(receiveCount)
      ],
      {
        encoding: "utf8"
      }
    )
  ) as { sent_by_guest: number; received_by_guest: number; frame_bytes: number }

export const sysCounter = (tap: string, counter: "rx_bytes" | "tx_bytes"): bigint =>
  BigInt(fs.readFileSync(`/sys/class/net/${tap}/statistics/${counter}`, "utf8").trim())

/** The TAP's byte counters as `ip -s -j link` reports them (independent of sysfs reading code). */
export const ipLinkBytes = (tap: string): { rx: bigint; tx: bigint } => {
  const [link] = JSON.parse(execFileSync("ip", ["-s", "-j", "link", "show", "dev", tap], { encoding: "utf8" }))
  return { rx: BigInt(link.stats64.rx.bytes), tx: BigInt(link.stats64.tx.bytes) }
}

/** Children of a pid (from /proc/<pid>/task/<pid>/children). */
export const childrenOf = (pid: number): Array<number> =>
  fs
    .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter((s) => s !== "")
    .map(Number)

const tempDirs: Array<string> = []

/** A fresh directory under the system temp dir; `removeTempDirs` (from `afterAll`) removes it even when a test fails. */
export const makeTempDir = (prefix: string): string => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  tempDirs.push(dir)
  return dir
}

export const removeTempDirs = (): void => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
}

/**
 * Why tests that need namespaces and dropped capabilities (unshare, setpriv, mount -t proc) cannot run
 * here, or undefined. Under CI a missing prerequisite is a failure, not a skip.
 */
export const namespaceSkipReason = (): string | undefined => {
  const missing = !isRoot
    ? "needs root to unshare namespaces, mount proc and drop capabilities"
    : !hasCommand("unshare") || !hasCommand("setpriv")
      ? "needs unshare and setpriv (util-linux)"
      : undefined
  if (missing === undefined) return undefined
  if (process.env.CI === "true") throw new Error(`CI must not skip the namespace tests: ${missing}`)
  console.warn(`skipping namespace tests: ${missing}`)
  return missing
}

/** Runs a command to its end (bounded: killed after 60 s); stdout, and stdout + stderr for messages. */
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
