/**
 * Cost of one Discovery scan of the real /proc: `tsx packages/node/bench/discovery.ts [EXTRA ...]`
 * (default EXTRA = 0 and 250: that many `sleep` children are added to the host's processes, one of
 * them renamed `qemu-system-x86_64` so a hypervisor is parsed too). Prints µs per scan and per pid,
 * median of BENCH_ROUNDS (default 7) rounds of 200 scans, for the scanner alone and through the
 * Effect layer (`InstanceSource.list`).
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { Effect, Either } from "effect"
import * as Discovery from "../src/Discovery.js"
import * as Scanner from "../src/internal/processScanner.js"

const rounds = Number(process.env.BENCH_ROUNDS ?? 7)
const scansPerRound = 200
const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const pidCount = () => fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e)).length

const timeRounds = (scan: () => void): number => {
  const perScan: Array<number> = []
  for (let r = 0; r < rounds; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < scansPerRound; i++) scan()
    perScan.push(Number(process.hrtime.bigint() - t0) / 1e3 / scansPerRound)
  }
  return median(perScan)
}

const main = async () => {
  const extras = process.argv.slice(2).map(Number)
  // Not under /tmp: discovery does not trust an executable in a world-writable directory.
  const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-bench-"))
  fs.chmodSync(dir, 0o755)
  const fakeQemu = path.join(dir, "qemu-system-x86_64")
  fs.copyFileSync("/bin/sh", fakeQemu)
  const qemu = spawn(fakeQemu, ["-c", "read -r _", "-name", "bench", "-smp", "2", "-m", "1G"], {
    stdio: ["pipe", "ignore", "ignore"]
  })
  for (const extra of extras.length > 0 ? extras : [0, 250]) {
    const children: Array<ChildProcess> = []
    for (let i = 0; i < extra; i++) children.push(spawn("sleep", ["600"], { stdio: "ignore" }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    const pids = pidCount()
    const scanner = Scanner.makeScanner("/proc")
    const t0 = process.hrtime.bigint()
    const first = Either.getOrThrow(scanner.scan())
    const coldUs = Number(process.hrtime.bigint() - t0) / 1e3
    const warmUs = timeRounds(() => scanner.scan())
    const effectUs = await Effect.runPromise(
      Effect.gen(function* () {
        const source = yield* InstanceSource
        return timeRounds(() => Effect.runSync(source.list))
      }).pipe(Effect.provide(Discovery.layer()))
    )
    console.log(
      `${pids} pids, ${first.length} hypervisor(s): first scan ${coldUs.toFixed(0)} µs; ` +
        `scanner ${warmUs.toFixed(0)} µs/scan (${(warmUs / pids).toFixed(2)} µs/pid); ` +
        `through the layer ${effectUs.toFixed(0)} µs/scan`
    )
    for (const child of children) child.kill("SIGKILL")
  }
  qemu.kill("SIGKILL")
  fs.rmSync(dir, { recursive: true })
}

main()
