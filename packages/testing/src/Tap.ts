/** Real TAP devices for the tests: create, delete, push frames through, read their counters two ways. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

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

/** The guest sends `count` frames and receives `receiveCount` through the TAP (tap-frames.py next to this file). */
export const pushFrames = (tap: string, count: number, payload: number, receiveCount = count) =>
  JSON.parse(
    execFileSync(
      "python3",
      [path.join(import.meta.dirname, "tap-frames.py"), tap, String(count), String(payload), String(receiveCount)],
      { encoding: "utf8" }
    )
  ) as { sent_by_guest: number; received_by_guest: number; frame_bytes: number }

export const sysCounter = (tap: string, counter: "rx_bytes" | "tx_bytes"): bigint =>
  BigInt(fs.readFileSync(`/sys/class/net/${tap}/statistics/${counter}`, "utf8").trim())

/** The TAP's sysfs counters in the VM's perspective: what it received is the TAP's tx. */
export const tapBytes = (tap: string) => ({
  vmRx: Number(sysCounter(tap, "tx_bytes")),
  vmTx: Number(sysCounter(tap, "rx_bytes"))
})

/** The TAP's byte counters as `ip -s -j link` reports them (independent of sysfs reading code). */
export const ipLinkBytes = (tap: string): { rx: bigint; tx: bigint } => {
  const [link] = JSON.parse(execFileSync("ip", ["-s", "-j", "link", "show", "dev", tap], { encoding: "utf8" }))
  return { rx: BigInt(link.stats64.rx.bytes), tx: BigInt(link.stats64.tx.bytes) }
}
