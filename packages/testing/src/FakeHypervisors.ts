/**
 * A fleet of fake hypervisors for the benchmarks: N processes that discovery accepts as QEMUs, each with
 * its own real TAP device (as root). Each fake is a copy of `sh` named `qemu-system-x86_64`, run as
 * `qemu-system-x86_64 -c 'kill -STOP $$' -name <fleet>-<i> -smp 2 -m 1024 -netdev tap,id=n0,ifname=<tap>`:
 * it stops itself at once, so its counters hold still and every reader sees the same values. The copy lives
 * in a root-owned 0755 directory outside /tmp, because discovery does not trust an executable in a
 * world-writable directory (ProcessTrust).
 *
 * With `vcpuThreads: k` the fakes are instead forked by one Python process (fake-fleet.py), each with k
 * threads named like QEMU's vCPU threads (`CPU 0/KVM` …) and its main thread named `vcpu-fake`, stopped
 * in place the same way. That name is no hypervisor's, so discovery does not list them (use a static
 * listing): named `qemu-system-x86` they were listed as QEMUs, whatever their Python command line, and
 * the bench's collector over discovery read both fleets. A shell cannot start threads, and 1,000 separate
 * interpreters would cost ~10 GB.
 *
 * `stop` (idempotent, synchronous) kills the fakes, deletes the TAPs and the directory; it also runs on
 * process exit and on SIGINT/SIGTERM/SIGHUP, so an interrupted or failed bench leaves nothing behind.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** One fake: its pid, the `-name` discovery reads as its name, and its TAP (none when not root). */
export interface FakeVm {
  readonly pid: number
  readonly name: string
  readonly tap: string | undefined
}

export interface Fleet {
  readonly vms: ReadonlyArray<FakeVm>
  /** The fake hypervisor executable (for process matchers such as process-exporter's). */
  readonly binary: string
  readonly stop: () => void
}

const canTap = () => process.getuid?.() === 0 && fs.existsSync("/dev/net/tun")

const live = new Set<() => void>()
let hooked = false
/** Stops every fleet still running when the process exits or is interrupted. */
const hookExit = () => {
  if (hooked) return
  hooked = true
  process.on("exit", () => {
    for (const stop of [...live]) stop()
  })
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      for (const stop of [...live]) stop()
      process.exit(130)
    })
  }
}

const ipBatch = (lines: ReadonlyArray<string>) => {
  if (lines.length > 0)
    execFileSync("ip", ["-batch", "-"], { input: lines.join("\n"), stdio: ["pipe", "ignore", "pipe"] })
}

/** Deletes those of the named TAPs that exist (a leftover of an earlier run, or ours). */
export const deleteTaps = (names: ReadonlyArray<string>): void =>
  ipBatch(names.filter((name) => fs.existsSync(`/sys/class/net/${name}`)).map((name) => `link del ${name}`))

/** The pids whose cmdline carries `-name <prefix><i>`, by i (read from /proc). */
const findFakes = (prefix: string): Map<number, number> => {
  const found = new Map<number, number>()
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    let argv: Array<string>
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, "latin1").split("\u0000")
    } catch {
      continue // gone
    }
    if (!argv[0]?.endsWith("qemu-system-x86_64")) continue
    const name = argv[argv.indexOf("-name") + 1]
    if (name?.startsWith(prefix)) found.set(Number(name.slice(prefix.length)), Number(entry))
  }
  return found
}

/** Whether the process has stopped itself (state T), so its counters no longer move. */
const isStopped = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat[stat.lastIndexOf(")") + 2] === "T"
  } catch {
    return false
  }
}

const FLEET_SCRIPT = path.join(import.meta.dirname, "fake-fleet.py")

/** The pids fake-fleet.py prints (one JSON line) once every fake has stopped itself; fails after `timeoutMs`. */
const forkedPids = (launcher: ChildProcess, timeoutMs: number) =>
  new Promise<Array<number>>((resolve, reject) => {
    let out = ""
    const timer = setTimeout(() => reject(new Error(`fake-fleet.py: no pids after ${timeoutMs} ms`)), timeoutMs)
    if (launcher.stdout === null) return reject(new Error("fake-fleet.py: no stdout"))
    launcher.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      if (!out.includes("\n")) return
      clearTimeout(timer)
      resolve(JSON.parse(out) as Array<number>)
    })
    launcher.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`fake-fleet.py exited (${code}) before its fakes stopped`))
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Starts `n` fakes (and `n` TAPs named `<tapPrefix><i>` when root) and resolves once all are stopped in
 * place; fails after `timeoutMs`.
 */
export const startFleet = async (
  n: number,
  options: { readonly tapPrefix?: string; readonly timeoutMs?: number; readonly vcpuThreads?: number } = {}
): Promise<Fleet> => {
  hookExit()
  const tapPrefix = options.tapPrefix ?? "vmb"
  const prefix = `fleet${process.pid}x${Date.now() % 100_000}-`
  const taps = canTap() ? Array.from({ length: n }, (_, i) => `${tapPrefix}${i}`) : []
  const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-fleet-"))
  fs.chmodSync(dir, 0o755)
  const binary = path.join(dir, "qemu-system-x86_64")
  let launcher: ChildProcess | undefined
  let pids: Array<number> = []
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    live.delete(stop)
    for (const pid of pids.length > 0 ? pids : [...findFakes(prefix).values()]) {
      if (pid <= 1) continue // never a process group or everything
      try {
        process.kill(pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
    launcher?.kill("SIGKILL")
    try {
      deleteTaps(taps)
    } catch (error) {
      console.error(`could not delete the TAPs ${tapPrefix}0..: ${error}`)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
  live.add(stop)
  try {
    fs.copyFileSync("/bin/sh", binary)
    fs.chmodSync(binary, 0o755)
    deleteTaps(taps)
    ipBatch(taps.map((tap) => `tuntap add dev ${tap} mode tap`))
    if (options.vcpuThreads !== undefined) {
      launcher = spawn("python3", [FLEET_SCRIPT, String(n), String(options.vcpuThreads)], {
        stdio: ["pipe", "pipe", "inherit"]
      })
      pids = await forkedPids(launcher, options.timeoutMs ?? 60_000 + 50 * n)
      const vms = pids.map((pid, i) => ({ pid, name: `${prefix}${i}`, tap: taps[i] }))
      return { vms, binary: "", stop }
    }
    const tapArg = taps.length > 0 ? `-netdev "tap,id=n0,ifname=${tapPrefix}$i"` : ""
    launcher = spawn(
      "sh",
      [
        "-c",
        `i=0; while [ $i -lt ${n} ]; do "$0" -c 'kill -STOP $$' -name "${prefix}$i" -smp 2 -m 1024 ${tapArg} & i=$((i + 1)); done; wait`,
        binary
      ],
      { stdio: "ignore" }
    )
    const deadline = Date.now() + (options.timeoutMs ?? 60_000 + 20 * n)
    for (;;) {
      const found = findFakes(prefix)
      if (found.size >= n && [...found.values()].every(isStopped)) {
        const ordered = Array.from({ length: n }, (_, i) => found.get(i) ?? 0)
        if (!ordered.includes(0)) {
          pids = ordered
          break
        }
      }
      if (Date.now() > deadline) throw new Error(`only ${found.size} of ${n} fake hypervisors started`)
      await sleep(100)
    }
    const vms = pids.map((pid, i) => ({ pid, name: `${prefix}${i}`, tap: taps[i] }))
    return { vms, binary, stop }
  } catch (error) {
    stop()
    throw error
  }
}
