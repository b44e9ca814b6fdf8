/**
 * Cost of Discovery scans of the real /proc with N fake hypervisor processes:
 * `tsx packages/node/bench/discovery.ts [N ...]` (default N = 100 and 1000). Each fake is a copy of sh
 * named `qemu-system-x86_64` with its own `-name`, stopped by itself, in a root-owned directory so
 * discovery trusts it. Per N, round by round (BENCH_ROUNDS, default 7; interleaved so the machine's
 * noise hits both alike), medians of:
 * - a full scan: a fresh scanner, so every pid is read (comm; for a hypervisor cmdline, status, exe);
 * - a steady-state rescan: the same scanner again (one readdir + one pread per pid, two per VM);
 * - the same rescan through the Effect layer (`InstanceSource.list`).
 * Prints µs per scan, µs per VM and the ratio full / rescan.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { Context, Effect, Either, Exit, Layer, Scope } from "effect"
import * as Discovery from "../src/Discovery.js"
import * as Scanner from "../src/internal/processScanner.js"

const rounds = Number(process.env.BENCH_ROUNDS ?? 7)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const pidCount = () => fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).length
/** Closes a scanner's kept fds (an older scanner, which kept none, has no `close`: the bench runs on both). */
const closeScanner = (scanner: Scanner.Scanner): void => {
  if ("close" in scanner) scanner.close()
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** µs per call of `f`, over `times` calls. */
const timeIt = (times: number, f: () => void): number => {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < times; i++) f()
  return Number(process.hrtime.bigint() - t0) / 1e3 / times
}

/** Starts `n` fake QEMUs from one shell; resolves once a scan lists them all (bounded). */
const startFakes = async (binary: string, n: number): Promise<ChildProcess> => {
  const launcher = spawn(
    "sh",
    [
      "-c",
      `i=0; while [ $i -lt ${n} ]; do i=$((i + 1)); "$0" -c 'kill -STOP $$' -name "bench-$i" -smp 2 & done; wait`,
      binary
    ],
    { stdio: "ignore" }
  )
  const scanner = Scanner.makeScanner("/proc")
  try {
    for (let i = 0; i < 600; i++) {
      const listed = Either.getOrThrow(scanner.scan()).filter((vm) => vm.id.startsWith("bench-"))
      if (listed.length >= n) return launcher
      await sleep(100)
    }
  } finally {
    closeScanner(scanner)
  }
  throw new Error(`the ${n} fake hypervisors did not all start`)
}

const stopFakes = async (launcher: ChildProcess): Promise<void> => {
  const scanner = Scanner.makeScanner("/proc")
  const fakes = Either.getOrThrow(scanner.scan()).filter((vm) => vm.id.startsWith("bench-"))
  closeScanner(scanner)
  for (const vm of fakes) {
    try {
      process.kill(vm.hypervisorPid!, "SIGKILL")
    } catch {
      // already gone
    }
  }
  await new Promise((resolve) => (launcher.exitCode !== null ? resolve(undefined) : launcher.once("exit", resolve)))
}

const main = async () => {
  const sizes = process.argv.slice(2).map(Number)
  // Not under /tmp: discovery does not trust an executable in a world-writable directory.
  const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-bench-"))
  fs.chmodSync(dir, 0o755)
  const binary = path.join(dir, "qemu-system-x86_64")
  fs.copyFileSync("/bin/sh", binary)
  fs.chmodSync(binary, 0o755)
  console.log(`discovery: full scan vs steady-state rescan, median of ${rounds} interleaved rounds`)
  try {
    for (const n of sizes.length > 0 ? sizes : [100, 1000]) {
      const launcher = await startFakes(binary, n)
      const scope = Effect.runSync(Scope.make())
      const source = Context.get(Effect.runSync(Layer.buildWithScope(Discovery.layer(), scope)), InstanceSource)
      const steady = Scanner.makeScanner("/proc")
      const vms = Either.getOrThrow(steady.scan()).length
      Effect.runSync(source.list)
      const fullRounds: Array<number> = []
      const rescanRounds: Array<number> = []
      const layerRounds: Array<number> = []
      const fullTimes = n >= 1000 ? 5 : 20
      const rescanTimes = n >= 1000 ? 50 : 200
      for (let r = 0; r < rounds; r++) {
        fullRounds.push(
          timeIt(fullTimes, () => {
            const fresh = Scanner.makeScanner("/proc")
            fresh.scan()
            closeScanner(fresh)
          })
        )
        rescanRounds.push(timeIt(rescanTimes, () => steady.scan()))
        layerRounds.push(timeIt(rescanTimes, () => Effect.runSync(source.list)))
      }
      const pids = pidCount()
      const [full, rescan, layer] = [median(fullRounds), median(rescanRounds), median(layerRounds)]
      const perVm = (us: number) => (us / vms).toFixed(2)
      console.log(
        `N=${n}: ${vms} VMs among ${pids} pids; full scan ${full.toFixed(0)} µs (${perVm(full)} µs/VM); ` +
          `rescan ${rescan.toFixed(0)} µs (${perVm(rescan)} µs/VM); through the layer ${layer.toFixed(0)} µs ` +
          `(${perVm(layer)} µs/VM); full/rescan ${(full / rescan).toFixed(1)}×`
      )
      closeScanner(steady)
      Effect.runSync(Scope.close(scope, Exit.void))
      await stopFakes(launcher)
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

main()
