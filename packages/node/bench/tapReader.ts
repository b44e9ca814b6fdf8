/**
 * The TAP reader alone, before/after reading the host's TAPs from the agent's own net/dev:
 * `tsx packages/node/bench/tapReader.ts [N]` (root: N real TAPs, removed at exit). Per round, in random
 * order, each variant reads every TAP as the Collector does (chunks of 32, one `collection` per sweep):
 * the sysfs files only, and the agent's own net/dev; the seed's bytes and the default groups' bytes +
 * dropped. Prints µs per TAP (median over rounds), the ratios within a round (median), and how many
 * interfaces the host had (net/dev lists them all, the TAPs of other VMs and other interfaces too).
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import { bytesOnly, type TapWanted } from "@vm-metrics/core/TapReader"
import { Either } from "effect"
import { FdBudget } from "../src/internal/fdBudget.js"
import { makeSyncTapReader } from "../src/internal/syncTapReader.js"

const n = Number(process.argv[2] ?? 1000)
const rounds = Number(process.env.BENCH_ROUNDS ?? 15)
const names = Array.from({ length: n }, (_, i) => `nd${process.pid % 10000}-${i}`)
const remove = () => {
  try {
    execFileSync("ip", ["-force", "-batch", "-"], {
      input: names.map((t) => `link del ${t}`).join("\n"),
      stdio: ["pipe", "ignore", "ignore"]
    })
  } catch {
    // some already gone
  }
}
process.on("exit", remove)
execFileSync("ip", ["-batch", "-"], { input: names.map((t) => `tuntap add dev ${t} mode tap`).join("\n") })

const requests = names.map((name) => ({ name }))
const defaultGroups: TapWanted = { packets: false, dropped: true }
const budget = new FdBudget(1_000_000)
let collection = 0
const variants = [
  { name: "seed, sysfs", reader: makeSyncTapReader("/sys", "/proc", budget, { selfNetDev: false }), wanted: bytesOnly },
  { name: "seed, net/dev", reader: makeSyncTapReader("/sys", "/proc", budget), wanted: bytesOnly },
  {
    name: "default, sysfs",
    reader: makeSyncTapReader("/sys", "/proc", budget, { selfNetDev: false }),
    wanted: defaultGroups
  },
  { name: "default, net/dev", reader: makeSyncTapReader("/sys", "/proc", budget), wanted: defaultGroups }
]
const sweep = (v: (typeof variants)[number]) => {
  collection++
  let sum = 0n
  for (let i = 0; i < requests.length; i += 32) {
    for (const s of v.reader.sample(requests.slice(i, i + 32), v.wanted, collection)) {
      sum += Either.getOrThrow(s.counters).rxBytes
    }
  }
  return sum
}
const timeOne = (v: (typeof variants)[number]) => {
  for (let i = 0; i < 3; i++) sweep(v)
  const times: Array<number> = []
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now()
    sweep(v)
    times.push(performance.now() - t0)
  }
  return times.sort((a, b) => a - b)[3]!
}
const median = (xs: Array<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const perTap: Record<string, Array<number>> = {}
const ratios: Record<string, Array<number>> = { seed: [], default: [] }
const links: Array<number> = []
for (let round = 0; round < rounds; round++) {
  links.push(fs.readdirSync("/sys/class/net").length)
  const ms: Record<string, number> = {}
  for (const v of [...variants].sort(() => Math.random() - 0.5)) ms[v.name] = timeOne(v)
  for (const [name, value] of Object.entries(ms)) {
    perTap[name] ??= []
    perTap[name].push((value * 1000) / n)
  }
  ratios.seed!.push(ms["seed, net/dev"]! / ms["seed, sysfs"]!)
  ratios.default!.push(ms["default, net/dev"]! / ms["default, sysfs"]!)
}
console.log(`TAP reader, N = ${n} TAPs, ${rounds} rounds; host interfaces ${Math.min(...links)}–${Math.max(...links)}`)
console.log(
  `net/dev in use: ${variants[1]!.reader.selfNetDevInUse()}, checks ${variants[1]!.reader.selfNetDevChecks()}`
)
for (const [name, values] of Object.entries(perTap))
  console.log(`  ${name.padEnd(18)} ${median(values).toFixed(2)} µs/TAP`)
console.log(
  `  net/dev ÷ sysfs: seed ${median(ratios.seed!).toFixed(2)}, default groups ${median(ratios.default!).toFixed(2)}`
)
for (const v of variants) v.reader.closeAll()
remove()
