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

/** `argv` as it runs in network namespace `netns` (`ip netns exec`), or as it is. */
const inNetns = (netns: string | undefined, argv: ReadonlyArray<string>): [string, Array<string>] =>
  netns === undefined ? [argv[0], argv.slice(1)] : ["ip", ["netns", "exec", netns, ...argv]]

const python = (netns: string | undefined, script: string, args: ReadonlyArray<string | number>): unknown => {
  const [command, argv] = inNetns(netns, ["python3", path.join(import.meta.dirname, script), ...args.map(String)])
  return JSON.parse(execFileSync(command, argv, { encoding: "utf8" }))
}

/**
 * The guest sends `count` frames and receives `receiveCount` through the TAP (tap-frames.py next to this
 * file), in network namespace `netns` when given. The guest's frames have an ethertype nobody handles, so
 * the host also counts each as rx dropped.
 */
export const pushFrames = (tap: string, count: number, payload: number, receiveCount = count, netns?: string) =>
  python(netns, "tap-frames.py", [tap, count, payload, receiveCount]) as {
    sent_by_guest: number
    received_by_guest: number
    frame_bytes: number
  }

/** `count` frames sent into the TAP while the guest never reads: all but the queue's 2 are tx dropped (tap-drops.py). */
export const dropFrames = (tap: string, count: number, payload: number, netns?: string) =>
  python(netns, "tap-drops.py", [tap, count, payload]) as { sent_to_guest: number; frame_bytes: number }

/** `count` frames sent into an up TAP from the host side only, for a TAP a VMM holds (tap-send.py). */
export const sendIntoTap = (tap: string, count: number, payload: number, netns?: string) =>
  python(netns, "tap-send.py", [tap, count, payload]) as { sent: number; frame_bytes: number }

/** rx or tx counters of one interface, as `ip -s -j link` reports them. */
export interface LinkDirection {
  readonly bytes: bigint
  readonly packets: bigint
  readonly errors: bigint
  readonly dropped: bigint
}

/** All eight counters of an interface (host perspective) from `ip [-n netns] -s -j link show dev <tap>`. */
export const ipLinkStats = (tap: string, netns?: string): { rx: LinkDirection; tx: LinkDirection } => {
  const args = [...(netns === undefined ? [] : ["-n", netns]), "-s", "-j", "link", "show", "dev", tap]
  const [link] = JSON.parse(execFileSync("ip", args, { encoding: "utf8" }))
  const direction = (d: Record<string, number>): LinkDirection => ({
    bytes: BigInt(d.bytes),
    packets: BigInt(d.packets),
    errors: BigInt(d.errors),
    dropped: BigInt(d.dropped)
  })
  return { rx: direction(link.stats64.rx), tx: direction(link.stats64.tx) }
}

let netnsCounter = 0
/** A fresh network namespace (`ip netns add`). */
export const createNetns = (name = `vmmns${process.pid % 100000}${netnsCounter++}`): string => {
  execFileSync("ip", ["netns", "add", name])
  return name
}

export const deleteNetns = (name: string): void => {
  try {
    execFileSync("ip", ["netns", "del", name], { stdio: "ignore" })
  } catch {
    // already gone
  }
}

/** Moves a TAP into a network namespace (gone from the host's /sys/class/net), IPv6 off there too. */
export const moveTapToNetns = (tap: string, netns: string): void => {
  execFileSync("ip", ["link", "set", "dev", tap, "netns", netns])
  execFileSync("ip", ["netns", "exec", netns, "sh", "-c", `echo 1 > /proc/sys/net/ipv6/conf/${tap}/disable_ipv6`])
}

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
