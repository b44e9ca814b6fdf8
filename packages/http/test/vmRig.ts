/**
 * The real-VM rig of the http package's end-to-end tests (QEMU, libvirt, top, peer): the tiny guest that
 * `.ci/qemu-guest.sh` builds, run by `qemu-system-x86_64` (TCG) or by the system libvirtd
 * (`<domain type='qemu'>`), its network, the real `vm-metrics serve` CLI, and readings of the same VM
 * that the test takes itself from the kernel (/proc, `ps`, `ip -s -j link`).
 *
 * Network: netns `vmm-<tag>-ns` holds the peer 10.77.0.1/24 on a veth whose other end is a port of bridge
 * `vmm-<tag>-br` in the host netns; the VM's TAP is also in the HOST netns (so the server can read
 * /sys/class/net/<tap>), is a port of the same bridge and has no address. IPv6 is off on every link and
 * in the guest, and the host has no address on any of them: the guest's pings (every 0.2 s, to
 * 10.77.0.1) never leave the namespace and the bridge.
 *
 * Everything here is released with its scope, also when the test fails: QEMU (SIGTERM, then SIGKILL) or
 * the libvirt domain (destroy, undefine), the server's process group, the TAP, veth, bridge and netns, the
 * temporary directory. Leftovers of an earlier run that was killed (a QEMU on the same TAP, a domain of
 * the same name, the links, the netns) are removed first.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import {
  CLK_TCK,
  hasCommand,
  ipLinkBytes,
  isRoot,
  killPid,
  pidAlive,
  processStartMs,
  psOf,
  run,
  skipReason,
  sleepMs,
  statCpuSeconds,
  tempDir,
  tryRun,
  waitFor
} from "@vm-metrics/testing"
import { Context, Duration, Effect, Layer, Schema, type Scope } from "effect"
import { assert } from "vitest"
import * as ExactJson from "../src/ExactJson.js"
import { InstanceStats } from "../src/StatsJson.js"
import { type CliServer, serveCli } from "./rig.js"

// ---------------------------------------------------------------------------------------------------
// Prerequisites

/** The guest of `.ci/qemu-guest.sh`: `$VM_METRICS_GUEST_DIR`, else `${VM_METRICS_CI_CACHE:-/var/cache/vm-metrics-ci}/guest`. */
const guestDir = (): string =>
  process.env.VM_METRICS_GUEST_DIR ?? path.join(process.env.VM_METRICS_CI_CACHE ?? "/var/cache/vm-metrics-ci", "guest")

/** The tiny guest's kernel and initrd. */
export const guest = () => ({ kernel: path.join(guestDir(), "vmlinuz"), initrd: path.join(guestDir(), "initrd.gz") })

/** Why a real QEMU guest cannot run here, or undefined when it can. */
const qemuMissing = (): string | undefined => {
  if (process.platform !== "linux") return "needs Linux"
  if (!isRoot) return "needs root (TAP devices, a netns, a bridge); .ci/run runs as root"
  if (!fs.existsSync("/dev/net/tun")) return "needs /dev/net/tun"
  for (const [command, pkg] of [
    ["ip", "iproute2"],
    ["ps", "procps"],
    ["getconf", "libc-bin"],
    ["qemu-system-x86_64", "qemu-system-x86; run `bash .ci/qemu-guest.sh`"]
  ] as const) {
    if (!hasCommand(command)) return `needs ${command} (${pkg})`
  }
  const { initrd, kernel } = guest()
  if (!fs.existsSync(kernel) || !fs.existsSync(initrd)) {
    return `the tiny guest is not built: no ${kernel} / ${initrd} (run \`bash .ci/qemu-guest.sh\`, or set VM_METRICS_GUEST_DIR)`
  }
  return undefined
}

export const LIBVIRT_URI = "qemu:///system"

/** Where libvirt's QEMU driver keeps the status XML and pid of each running domain. */
export const LIBVIRT_RUN_DIR = "/run/libvirt/qemu"

const virsh = (...args: ReadonlyArray<string>) =>
  spawnSync("virsh", ["-q", "-c", LIBVIRT_URI, ...args], { encoding: "utf8", timeout: 30_000 })

/** Why libvirtd cannot be used here, or undefined when `virsh -c qemu:///system version` answers. */
export const libvirtMissing = (): string | undefined => {
  if (!hasCommand("virsh")) return "needs virsh and a running libvirtd (run `bash .ci/libvirt.sh`)"
  const version = spawnSync("virsh", ["-c", LIBVIRT_URI, "version"], { encoding: "utf8", timeout: 10_000 })
  if (version.status !== 0) {
    return `libvirtd is not available at ${LIBVIRT_URI} (run \`bash .ci/libvirt.sh\`): ${version.stderr.trim()}`
  }
  return undefined
}

/** First missing prerequisite of `what`, as a skip reason (a failure under CI=true). */
export const vmSkipReason = (what: string, ...more: ReadonlyArray<() => string | undefined>): string | undefined => {
  for (const check of [qemuMissing, ...more]) {
    const missing = check()
    if (missing !== undefined) return skipReason(missing, what)
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Commands

const linkExists = (name: string): boolean => fs.existsSync(`/sys/class/net/${name}`)

const netnsExists = (netns: string): boolean => fs.existsSync(`/run/netns/${netns}`)

const disableIpv6 = (link: string): void => fs.writeFileSync(`/proc/sys/net/ipv6/conf/${link}/disable_ipv6`, "1")

/** Pids of QEMU processes (comm `qemu-system-*`) whose command line contains `needle` (leftovers of a killed run). */
export const qemuPidsWith = (needle: string): Array<number> => {
  const pids: Array<number> = []
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (!fs.readFileSync(`/proc/${entry}/comm`, "utf8").startsWith("qemu-system-")) continue
      if (
        fs
          .readFileSync(`/proc/${entry}/cmdline`, "utf8")
          .split("\0")
          .some((arg) => arg.includes(needle))
      ) {
        pids.push(Number(entry))
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/** The last `lines` lines of a file, without the terminal escape sequences SeaBIOS prints. */
export const tailOf = (file: string, lines = 40): string => {
  try {
    return (
      fs
        .readFileSync(file, "utf8")
        // biome-ignore lint/suspicious/noControlCharactersInRegex: strips terminal escape sequences
        .replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001bc/g, "")
        .split(/\r?\n/)
        .slice(-lines)
        .join("\n")
    )
  } catch (error) {
    return `(cannot read ${file}: ${String(error)})`
  }
}

// ---------------------------------------------------------------------------------------------------
// The network: netns + veth + bridge, and the VM's TAP in the host netns

export interface NetConfig {
  /** Network namespace holding the peer. */
  readonly netns: string
  /** Bridge in the host netns (no address). */
  readonly bridge: string
  /** veth end in the host netns, a port of the bridge. */
  readonly vethHost: string
  /** veth end inside the netns, with `peerAddress`. */
  readonly vethPeer: string
}

/** The guest pings this address, which exists only inside the netns. */
export const PEER_ADDRESS = "10.77.0.1"
export const GUEST_ADDRESS = "10.77.0.2"

const removeNetwork = (net: NetConfig): void => {
  if (linkExists(net.vethHost)) tryRun("ip", ["link", "del", net.vethHost])
  if (linkExists(net.bridge)) tryRun("ip", ["link", "del", net.bridge])
  if (netnsExists(net.netns)) tryRun("ip", ["netns", "del", net.netns])
}

/** The netns with the peer behind the bridge; removed with the scope (leftovers of a killed run first). */
export const guestNetwork = (net: NetConfig): Effect.Effect<NetConfig, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      removeNetwork(net)
      try {
        run("ip", ["netns", "add", net.netns])
        run("ip", ["netns", "exec", net.netns, "sh", "-c", ipv6OffInNetns])
        run("ip", ["-n", net.netns, "link", "set", "lo", "up"])
        run("ip", ["link", "add", net.bridge, "type", "bridge"])
        disableIpv6(net.bridge)
        run("ip", ["link", "set", net.bridge, "up"])
        run("ip", ["link", "add", net.vethHost, "type", "veth", "peer", "name", net.vethPeer, "netns", net.netns])
        disableIpv6(net.vethHost)
        run("ip", ["-n", net.netns, "addr", "add", `${PEER_ADDRESS}/24`, "dev", net.vethPeer])
        run("ip", ["-n", net.netns, "link", "set", net.vethPeer, "up"])
        run("ip", ["link", "set", net.vethHost, "master", net.bridge])
        run("ip", ["link", "set", net.vethHost, "up"])
      } catch (error) {
        removeNetwork(net)
        throw error
      }
      return net
    }),
    (net) => Effect.sync(() => removeNetwork(net))
  )

const ipv6OffInNetns =
  "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"

/** Kills any QEMU still attached to `tap` (a killed earlier run) and deletes the TAP. */
const removeTap = async (tap: string): Promise<void> => {
  for (const pid of qemuPidsWith(`ifname=${tap},`)) await killPid(pid, 3_000)
  if (linkExists(tap)) tryRun("ip", ["link", "del", tap])
}

/**
 * A persistent TAP (≤ 15 characters) in the host netns, IPv6 off, a port of `bridge`, up; deleted with
 * the scope. QEMU (`ifname=`) or libvirt (`managed='no'`) attaches to it.
 */
export const hostTap = (tap: string, bridge: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      if (tap.length > 15) throw new Error(`TAP name ${tap} is longer than 15 characters`)
      await removeTap(tap)
      run("ip", ["tuntap", "add", "dev", tap, "mode", "tap"])
      try {
        disableIpv6(tap)
        run("ip", ["link", "set", tap, "master", bridge])
        run("ip", ["link", "set", tap, "up"])
      } catch (error) {
        tryRun("ip", ["link", "del", tap])
        throw error
      }
      return tap
    }),
    (tap) => Effect.promise(() => removeTap(tap))
  )

// ---------------------------------------------------------------------------------------------------
// The guest

/**
 * The kernel command line of the tiny guest: its address, and pings to the peer every 0.2 s; optionally
 * the command channel on ttyS1 and how much CPU work it does each second (see .ci/qemu-guest.sh).
 */
const guestCmdline = (options: Pick<GuestOptions, "commands" | "work"> = {}): string =>
  [
    "console=ttyS0 quiet panic=-1 ipv6.disable=1",
    `vmm.ip=${GUEST_ADDRESS}/24 vmm.peer=${PEER_ADDRESS} vmm.interval=0.2 vmm.size=1000`,
    ...(options.commands === true ? ["vmm.cmd=ttyS1"] : []),
    ...(options.work === undefined ? [] : [`vmm.work=${options.work}`])
  ].join(" ")

/** What the guest's /init prints on the serial console once eth0 is up. */
const NETWORK_UP = "vm-metrics-guest: network up"

const GUEST_MAC = "52:54:00:77:00:02"
/** The MAC of the guest's NIC number `n` (0 is GUEST_MAC). */
const guestMac = (n: number): string => (n === 0 ? GUEST_MAC : `52:54:00:77:01:${n.toString(16).padStart(2, "0")}`)
export const GUEST_MEMORY_MIB = 256
export const GUEST_MEMORY_BYTES = GUEST_MEMORY_MIB * 1024 * 1024
export const GUEST_VCPUS = 1

const readSerial = (serial: string): string => {
  try {
    return fs.readFileSync(serial, "utf8")
  } catch {
    return "" // not created yet
  }
}

/**
 * Waits (≤ 30 s) for the guest's "network up" line in the serial log; fails early when `alive` says the
 * VM is gone. The error carries the serial log's tail. The time it took, ms.
 */
const waitForGuestNetwork = (serial: string, alive: () => boolean): Effect.Effect<number> =>
  waitFor("the guest's network", () => (readSerial(serial).includes(NETWORK_UP) ? true : undefined), {
    timeout: "30 seconds",
    interval: "100 millis",
    gone: () => (alive() ? undefined : "the VM exited"),
    details: () => `serial log tail:\n${tailOf(serial)}`
  }).pipe(
    Effect.timed,
    Effect.map(([elapsed]) => Math.round(Duration.toMillis(elapsed)))
  )

/** One running VM, under plain QEMU or libvirt. */
export interface Vm {
  readonly name: string
  readonly uuid: string
  /** QEMU's pid (libvirt: from its pidfile). */
  readonly pid: number
  readonly tap: string
  /** Every TAP of the VM, `tap` first (eth0, eth1, … in the guest). */
  readonly taps: ReadonlyArray<string>
  /** The file behind the guest's virtio-blk disk /dev/vda, when it has one. */
  readonly disk: string | undefined
  /**
   * Runs `line` in the guest (`sh -c`, over the command channel on ttyS1) and resolves with its output once
   * it has finished; rejects when it exits non-zero, after `timeoutMs`, or when the VM has no channel.
   */
  readonly command: (line: string, timeoutMs?: number) => Promise<string>
  /** How long the guest took from start to "network up", ms. */
  readonly bootMs: number
  readonly serialTail: () => string
  /** libvirt's status XML of the domain (undefined under plain QEMU). */
  readonly statusXml: () => string | undefined
  /** Stops the VM: SIGTERM to QEMU (SIGKILL after 5 s) while the pid is still it, or `virsh destroy`. */
  readonly stop: () => Promise<void>
}

/** What a plain-QEMU guest gets beyond the default one (libvirt guests get none of it). */
export interface GuestOptions {
  /** More TAPs (each a `-netdev tap` with a virtio-net NIC: eth1, eth2, … in the guest). */
  readonly moreTaps?: ReadonlyArray<string> | undefined
  /** `-accel`: TCG by default; "kvm" needs a working /dev/kvm. */
  readonly accel?: "tcg" | "kvm" | undefined
  /**
   * A virtio-blk disk (/dev/vda in the guest) of this many MiB, backed by a zero-filled file on a disk
   * filesystem (not tmpfs: the kernel counts no write_bytes there), opened by QEMU with O_DIRECT (cache=none).
   */
  readonly diskMiB?: number | undefined
  /** The guest's command channel (Vm.command): a second serial port on a unix socket. */
  readonly commands?: boolean | undefined
  /** The guest's CPU work each second (loop iterations; 0 leaves it idle but pinging; the guest's default otherwise). */
  readonly work?: number | undefined
}

interface VmOptions extends GuestOptions {
  readonly name: string
  readonly uuid: string
  readonly tap: string
}

/** The marker the guest's command channel prints after each command's output. */
const COMMAND_DONE = /vm-metrics-guest: done (\d+)\n$/

/**
 * Sends one line to the guest's command channel (a QEMU `socket` chardev in server mode) and collects what
 * comes back until the guest's done marker; one connection per command.
 */
const guestCommand =
  (socket: string | undefined) =>
  (line: string, timeoutMs = 60_000): Promise<string> =>
    new Promise((resolve, reject) => {
      if (socket === undefined) return reject(new Error("this VM has no command channel (GuestOptions.commands)"))
      if (line.includes("\n")) return reject(new Error(`one line only: ${JSON.stringify(line)}`))
      let output = ""
      const connection = net.connect(socket)
      const timer = setTimeout(() => {
        connection.destroy()
        reject(
          new Error(`guest command ${JSON.stringify(line)}: no end after ${timeoutMs} ms; output so far: ${output}`)
        )
      }, timeoutMs)
      connection.setEncoding("utf8")
      connection.on("connect", () => connection.write(`${line}\n`))
      connection.on("data", (chunk: string) => {
        output += chunk
        const done = COMMAND_DONE.exec(output)
        if (done === null) return
        clearTimeout(timer)
        connection.end()
        const text = output.slice(0, done.index)
        if (done[1] === "0") resolve(text)
        else reject(new Error(`guest command ${JSON.stringify(line)} exited ${done[1]}: ${text}`))
      })
      connection.on("error", (error) => {
        clearTimeout(timer)
        reject(error)
      })
    })

/** A zero-filled file of `mib` MiB in a fresh directory under /var/tmp (a disk filesystem), removed with the scope. */
const diskFile = (mib: number): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join("/var/tmp", "vm-metrics-disk-"))
      const file = path.join(dir, "disk.raw")
      const type = spawnSync("stat", ["-f", "-c", "%T", dir], { encoding: "utf8" }).stdout.trim()
      if (type === "tmpfs" || type === "ramfs") {
        fs.rmSync(dir, { recursive: true, force: true })
        throw new Error(`/var/tmp is ${type}: the kernel counts no write_bytes there; the disk needs a disk filesystem`)
      }
      const fd = fs.openSync(file, "w")
      try {
        const mebibyte = Buffer.alloc(1024 * 1024)
        for (let i = 0; i < mib; i++) fs.writeSync(fd, mebibyte)
        fs.fsyncSync(fd)
      } finally {
        fs.closeSync(fd)
      }
      return file
    }),
    (file) => Effect.sync(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }))
  )

/**
 * `qemu-system-x86_64 -name <name>,debug-threads=on -uuid <uuid> -accel tcg -m 256 -smp 1 … -netdev
 * tap,ifname=<tap> … -daemonize`, booted until the guest's network is up (≤ 30 s). Killed with the scope.
 * debug-threads=on names the vCPU thread `CPU 0/TCG` (`CPU 0/KVM`). GuestOptions add NICs, a disk, the
 * command channel or KVM.
 */
const qemuVm = (options: VmOptions): Effect.Effect<Vm, never, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-qemu-")
    const serial = path.join(dir, "serial")
    const pidfile = path.join(dir, "pid")
    const socket = options.commands === true ? path.join(dir, "commands") : undefined
    const disk = options.diskMiB === undefined ? undefined : yield* diskFile(options.diskMiB)
    const taps = [options.tap, ...(options.moreTaps ?? [])]
    const { initrd, kernel } = guest()
    const args = [
      "-name",
      `${options.name},debug-threads=on`,
      "-uuid",
      options.uuid,
      "-accel",
      options.accel ?? "tcg",
      "-m",
      String(GUEST_MEMORY_MIB),
      "-smp",
      String(GUEST_VCPUS),
      "-nographic",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      `file:${serial}`,
      "-monitor",
      "none",
      "-kernel",
      kernel,
      "-initrd",
      initrd,
      "-append",
      guestCmdline(options),
      ...taps.flatMap((tap, n) => [
        "-netdev",
        `tap,id=n${n},ifname=${tap},script=no,downscript=no`,
        "-device",
        `virtio-net-pci,netdev=n${n},mac=${guestMac(n)}`
      ]),
      ...(socket === undefined
        ? []
        : ["-chardev", `socket,id=commands,path=${socket},server=on,wait=off`, "-serial", "chardev:commands"]),
      ...(disk === undefined
        ? []
        : ["-drive", `file=${disk},format=raw,if=none,id=d0,cache=none`, "-device", "virtio-blk-pci,drive=d0"]),
      "-pidfile",
      pidfile,
      "-daemonize"
    ]
    // Only while the pid is still this QEMU (on this TAP): a pid the kernel reused is left alone.
    const stop = async (pid: number) => {
      if (qemuPidsWith(`ifname=${options.tap},`).includes(pid)) await killPid(pid)
    }
    const pid = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const started = spawnSync("qemu-system-x86_64", args, { encoding: "utf8", timeout: 30_000 })
        const pid = fs.existsSync(pidfile) ? Number(fs.readFileSync(pidfile, "utf8").trim()) : Number.NaN
        if (started.status !== 0 || !Number.isInteger(pid)) {
          if (Number.isInteger(pid)) process.kill(pid, "SIGKILL")
          throw new Error(
            `qemu-system-x86_64 ${args.join(" ")} exited ${started.status ?? started.signal}: ${started.stderr}${started.error ?? ""}`
          )
        }
        return pid
      }),
      (pid) => Effect.promise(() => stop(pid))
    )
    const bootMs = yield* waitForGuestNetwork(serial, () => pidAlive(pid))
    return {
      name: options.name,
      uuid: options.uuid,
      tap: options.tap,
      taps,
      disk,
      command: guestCommand(socket),
      pid,
      bootMs,
      serialTail: () => tailOf(serial),
      statusXml: () => undefined,
      stop: () => stop(pid)
    }
  })

/** The domain XML (the same guest as under plain QEMU, on an unmanaged pre-made TAP). */
const domainXml = (options: VmOptions & { readonly serial: string }): string => {
  const { initrd, kernel } = guest()
  return `<domain type='qemu'>
  <name>${options.name}</name>
  <uuid>${options.uuid}</uuid>
  <memory unit='MiB'>${GUEST_MEMORY_MIB}</memory>
  <vcpu>${GUEST_VCPUS}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${kernel}</kernel>
    <initrd>${initrd}</initrd>
    <cmdline>${guestCmdline()}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='ethernet'>
      <target dev='${options.tap}' managed='no'/>
      <model type='virtio'/>
      <mac address='${GUEST_MAC}'/>
    </interface>
    <serial type='file'><source path='${options.serial}'/><target port='0'/></serial>
    <console type='file'><source path='${options.serial}'/><target type='serial' port='0'/></console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`
}

const virshOk = (...args: ReadonlyArray<string>): string => {
  const result = virsh(...args)
  if (result.status !== 0) {
    throw new Error(
      `virsh ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr}${result.error ?? ""}`
    )
  }
  return result.stdout
}

const removeDomain = (name: string): void => {
  if (virsh("domstate", name).status !== 0) return // not defined
  virsh("destroy", name)
  virsh("undefine", name)
}

/**
 * A libvirt `<domain type='qemu'>` on `tap` (`<interface type='ethernet'><target dev=… managed='no'/>`),
 * defined and started, booted until the guest's network is up (≤ 30 s); destroyed and undefined with the
 * scope. `stop` is `virsh destroy` (the scope still undefines it).
 */
const libvirtVm = (options: VmOptions): Effect.Effect<Vm, never, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-libvirt-")
    const serial = path.join(dir, "serial")
    const xml = path.join(dir, "domain.xml")
    fs.writeFileSync(xml, domainXml({ ...options, serial }))
    const pidfile = path.join(LIBVIRT_RUN_DIR, `${options.name}.pid`)
    const pid = yield* Effect.acquireRelease(
      Effect.sync(() => {
        removeDomain(options.name)
        try {
          virshOk("define", xml)
          virshOk("start", options.name)
          return Number(fs.readFileSync(pidfile, "utf8").trim())
        } catch (error) {
          removeDomain(options.name)
          throw error
        }
      }),
      () => Effect.sync(() => removeDomain(options.name))
    )
    const bootMs = yield* waitForGuestNetwork(serial, () => virsh("domstate", options.name).stdout.trim() === "running")
    return {
      ...options,
      taps: [options.tap],
      disk: undefined,
      command: guestCommand(undefined),
      pid,
      bootMs,
      serialTail: () =>
        `${tailOf(serial)}\n--- /var/log/libvirt/qemu/${options.name}.log (tail) ---\n` +
        tailOf(`/var/log/libvirt/qemu/${options.name}.log`, 10),
      statusXml: () => fs.readFileSync(path.join(LIBVIRT_RUN_DIR, `${options.name}.xml`), "utf8"),
      stop: async () => {
        virshOk("destroy", options.name)
      }
    }
  })

// ---------------------------------------------------------------------------------------------------
// The server under test

/** The server's `--max-age`: a response may reuse a snapshot up to this old. */
export const SERVER_MAX_AGE_MS = 200

/**
 * `vm-metrics serve --collection on-demand --max-age 200millis <extra>` on 127.0.0.1 (rig.ts's serveCli).
 * On demand because these tests bracket a response between kernel readings taken just before and after
 * the request; the background loop (the default) serves a snapshot up to one interval old, and is
 * tested in Render.test.ts.
 */
export const vmMetricsServer = (extra: ReadonlyArray<string>): Effect.Effect<CliServer, never, Scope.Scope> =>
  serveCli({
    name: "vm-metrics serve",
    args: ["--collection", "on-demand", "--max-age", `${SERVER_MAX_AGE_MS}millis`, ...extra]
  })

// ---------------------------------------------------------------------------------------------------
// The rig: network, TAP, VM and server in one scope

/** The hypervisor running the guest. */
export type Hypervisor = "qemu" | "libvirt"

export interface VmRigOptions extends GuestOptions {
  readonly hypervisor: Hypervisor
  /** This file's own link names: netns `vmm-<tag>-ns`, bridge `vmm-<tag>-br`, veth `vmm-<tag>-v0`/`-v1`. */
  readonly tag: string
  /** The TAP (≤ 15 characters, unique to the file: files may run at once). */
  readonly tap: string
  readonly name: string
  readonly uuid: string
  /** `vm-metrics serve` flags after --host, --port and --max-age. */
  readonly serve: ReadonlyArray<string>
}

const hasGuestOptions = (options: GuestOptions): boolean =>
  [options.moreTaps, options.accel, options.diskMiB, options.commands, options.work].some((o) => o !== undefined)

/** The guest's network, its TAP, the VM and then the server, all released with the scope. */
export const vmRig = (options: VmRigOptions): Effect.Effect<VmRigService, never, Scope.Scope> =>
  Effect.gen(function* () {
    const net = yield* guestNetwork({
      netns: `vmm-${options.tag}-ns`,
      bridge: `vmm-${options.tag}-br`,
      vethHost: `vmm-${options.tag}-v0`,
      vethPeer: `vmm-${options.tag}-v1`
    })
    const tap = yield* hostTap(options.tap, net.bridge)
    const moreTaps = yield* Effect.forEach(options.moreTaps ?? [], (more) => hostTap(more, net.bridge))
    if (options.hypervisor === "libvirt" && hasGuestOptions(options)) {
      return yield* Effect.dieMessage("GuestOptions are for plain QEMU only")
    }
    const start = options.hypervisor === "qemu" ? qemuVm : libvirtVm
    const { accel, commands, diskMiB, work } = options
    const vm = yield* start({ name: options.name, uuid: options.uuid, tap, moreTaps, accel, commands, diskMiB, work })
    const [elapsed, server] = yield* Effect.timed(vmMetricsServer(options.serve))
    yield* Effect.log(
      `${options.hypervisor} VM ${options.name} (${options.uuid}, pid ${vm.pid}, TAP ${tap}): network up after ` +
        `${vm.bootMs} ms; server healthy at ${server.base} after ${Math.round(Duration.toMillis(elapsed))} ms`
    )
    const expected: Expected = {
      id: options.uuid,
      name: options.name,
      pid: vm.pid,
      tap,
      vcpus: GUEST_VCPUS,
      memoryBytes: GUEST_MEMORY_BYTES
    }
    return { vm, server, expected }
  })

export interface VmRigService {
  readonly vm: Vm
  readonly server: CliServer
  /** What the server must say about the VM. */
  readonly expected: Expected
}

/** The rig of a test file (one per file: `layer(layerVmRig(…))`). */
export class VmRig extends Context.Tag("e2e/VmRig")<VmRig, VmRigService>() {}

export const layerVmRig = (options: VmRigOptions): Layer.Layer<VmRig> => Layer.scoped(VmRig, vmRig(options))

/** `bracketedGet` against the rig's server and VM. */
export const rigGet = (pathname: string) =>
  Effect.flatMap(VmRig, ({ server, vm }) => Effect.promise(() => bracketedGet(server, pathname, vm)))

/** `withDiagnostics` with the rig's VM and server. */
export const diagnosed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(VmRig, ({ server, vm }) => withDiagnostics(self, vm, server))

// ---------------------------------------------------------------------------------------------------
// The API's JSON

/** The contract's 64-bit fields, as numbers for the test's arithmetic (every value here is far below 2^53). */
type Int64Field = "memory_rss_bytes" | "memory_vms_bytes" | "network_rx_bytes" | "network_tx_bytes"

/** A stats body as the tests check it: the API's own schema, counts as non-negative numbers. */
export type StatsJson = Omit<InstanceStats, Int64Field | "allocated_memory_bytes"> & {
  readonly [K in Int64Field]: number | null
} & { readonly allocated_memory_bytes: number }

/**
 * Parses a stats body with the API's schema (InstanceStats, exact 64-bit integers; extra fields are
 * ignored); fails with the body and what is wrong, also when a count is negative or beyond 2^53.
 */
export const decodeStats = (body: string): StatsJson => {
  let json: unknown
  try {
    json = ExactJson.read(body)
  } catch {
    throw new Error(`not JSON: ${body}`)
  }
  const decoded = Schema.decodeUnknownEither(InstanceStats)(json, { onExcessProperty: "ignore" })
  if (decoded._tag === "Left") throw new Error(`unexpected stats JSON ${body}:\n${decoded.left.message}`)
  const stats = decoded.right
  const count = (field: string, value: number | bigint): number => {
    if (value < 0 || value > Number.MAX_SAFE_INTEGER) throw new Error(`${field} ${value} is not a count: ${body}`)
    return Number(value)
  }
  const nullableCount = (field: Int64Field) => {
    const value = stats[field]
    return value === null ? null : count(field, value)
  }
  if (stats.cpu_seconds !== null) count("cpu_seconds", stats.cpu_seconds)
  count("allocated_vcpus", stats.allocated_vcpus)
  return {
    ...stats,
    memory_rss_bytes: nullableCount("memory_rss_bytes"),
    memory_vms_bytes: nullableCount("memory_vms_bytes"),
    network_rx_bytes: nullableCount("network_rx_bytes"),
    network_tx_bytes: nullableCount("network_tx_bytes"),
    allocated_memory_bytes: count("allocated_memory_bytes", stats.allocated_memory_bytes)
  }
}

/** An ISO 8601 timestamp as epoch ms (NaN when it is none). */
export const isoMs = (value: string): number =>
  /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(value) ? Date.parse(value) : Number.NaN

// ---------------------------------------------------------------------------------------------------
// The test's own readings of the VM, independent of vm-metrics

/** What the kernel says about the VM right now, through other tools than vm-metrics. */
export interface Reading {
  readonly atMs: number
  /** utime + stime (stat fields 14 + 15) ÷ CLK_TCK. */
  readonly cpuSeconds: number
  /** `ps -o rss=` × 1024. */
  readonly rssBytes: number
  /** `ps -o vsz=` × 1024. */
  readonly vszBytes: number
  /** `ip -s -j link show dev <tap>` tx bytes: what the VM received. */
  readonly vmRxBytes: number
  /** … rx bytes: what the VM sent. */
  readonly vmTxBytes: number
}

export const readVm = (pid: number, tap: string): Reading => {
  const atMs = Date.now()
  const cpu = statCpuSeconds(pid)
  const ps = psOf(pid)
  const link = ipLinkBytes(tap)
  return {
    atMs,
    cpuSeconds: cpu,
    rssBytes: ps.rssKiB * 1024,
    vszBytes: ps.vszKiB * 1024,
    vmRxBytes: Number(link.tx),
    vmTxBytes: Number(link.rx)
  }
}

/**
 * `GET path` bracketed by two readings of the VM, with no cached snapshot in play: it first waits until
 * the server has been idle longer than its max age (plus a margin), so the response must come from a
 * collection that started after `before` was taken.
 */
export const bracketedGet = async (server: CliServer, pathname: string, vm: { pid: number; tap: string }) => {
  const wait = SERVER_MAX_AGE_MS + 150 - server.idleMs()
  if (wait > 0) await sleepMs(wait)
  const before = readVm(vm.pid, vm.tap)
  const response = await server.get(pathname)
  const after = readVm(vm.pid, vm.tap)
  return { before, response, after }
}

/** Asserts `low - slack ≤ value ≤ high + slack`, with a message that shows all three. */
export const assertWithin = (value: number, low: number, high: number, what: string, slack = 1e-9): void => {
  if (!(value >= low - slack && value <= high + slack)) assert.fail(`${what}: ${value} is not within [${low}, ${high}]`)
}

/** What the server must say about a VM (the test's own knowledge of it). */
export interface Expected {
  readonly id: string
  readonly name: string
  readonly pid: number
  readonly tap: string
  readonly vcpus: number
  readonly memoryBytes: number
}

/** Every check of one stats response against what the test knows and the readings right before and after it. */
export const checkStats = (stats: StatsJson, expected: Expected, before: Reading, after: Reading): void => {
  assert.strictEqual(stats.instance_id, expected.id, "instance_id")
  assert.strictEqual(stats.instance_name, expected.name, "instance_name")
  assert.strictEqual(stats.state, "running")
  assert.strictEqual(stats.pid, expected.pid, "pid: the hypervisor's")
  assert.strictEqual(stats.tap_device, expected.tap, "tap_device")
  assert.strictEqual(stats.allocated_vcpus, expected.vcpus, "allocated_vcpus")
  assert.strictEqual(stats.allocated_memory_bytes, expected.memoryBytes, "allocated_memory_bytes")
  assert.deepStrictEqual(stats.unavailable, [], "every value was read")

  assert.isNotNull(stats.cpu_seconds, "cpu_seconds")
  assertWithin(stats.cpu_seconds!, before.cpuSeconds, after.cpuSeconds, "cpu_seconds vs /proc/<pid>/stat utime+stime")
  assert.isAbove(stats.cpu_seconds!, 0)

  // RSS moves while the guest runs: within 3 % of what ps saw before and after.
  assert.isNotNull(stats.memory_rss_bytes, "memory_rss_bytes")
  assertWithin(
    stats.memory_rss_bytes!,
    Math.min(before.rssBytes, after.rssBytes) * 0.97,
    Math.max(before.rssBytes, after.rssBytes) * 1.03,
    "memory_rss_bytes vs ps rss"
  )
  assert.isNotNull(stats.memory_vms_bytes, "memory_vms_bytes")
  assertWithin(
    stats.memory_vms_bytes!,
    Math.min(before.vszBytes, after.vszBytes) * 0.99,
    Math.max(before.vszBytes, after.vszBytes) * 1.01,
    "memory_vms_bytes vs ps vsz"
  )
  assert.isNotNull(stats.memory_utilization_ratio, "memory_utilization_ratio")
  assert.closeTo(
    stats.memory_utilization_ratio!,
    stats.memory_rss_bytes! / expected.memoryBytes,
    1e-9,
    "RSS / allocated"
  )

  // The VM's perspective: what it received is the TAP's tx, what it sent the TAP's rx.
  assert.isNotNull(stats.network_rx_bytes, "network_rx_bytes")
  assert.isNotNull(stats.network_tx_bytes, "network_tx_bytes")
  assertWithin(stats.network_rx_bytes!, before.vmRxBytes, after.vmRxBytes, "network_rx_bytes vs the TAP's tx bytes")
  assertWithin(stats.network_tx_bytes!, before.vmTxBytes, after.vmTxBytes, "network_tx_bytes vs the TAP's rx bytes")
  assert.isAbove(stats.network_rx_bytes!, 0, "the peer answered the guest's pings")
  assert.isAbove(stats.network_tx_bytes!, 0, "the guest pinged")

  assert.isTrue(Number.isInteger(stats.epoch) && stats.epoch >= 0, `epoch ${stats.epoch}`)
  assert.isNotNull(stats.process_start_time, "process_start_time")
  const startMs = isoMs(stats.process_start_time!)
  assert.closeTo(
    startMs,
    processStartMs(expected.pid),
    1000 / CLK_TCK + 1,
    `process_start_time ${stats.process_start_time}`
  )
  // No cached snapshot was in play (bracketedGet waited out --max-age), so it was sampled in between.
  assertWithin(isoMs(stats.sampled_at), before.atMs, after.atMs, `sampled_at ${stats.sampled_at}`, 2)
}

/** Checks the Prometheus text's per-VM samples, labelled exactly {instance_id, instance_name}. */
export const checkMetrics = (body: string, expected: Expected, before: Reading, after: Reading): void => {
  const labels = `\\{instance_id="${expected.id}",instance_name="${expected.name}"\\}`
  const sample = (metric: string): number => {
    const found = new RegExp(`^${metric}${labels} (\\S+)$`, "m").exec(body)
    if (found === null) {
      assert.fail(`no ${metric}{instance_id="${expected.id}",instance_name="${expected.name}"} in:\n${body}`)
    }
    return Number(found[1])
  }
  assertWithin(sample("hypeman_vm_cpu_seconds_total"), before.cpuSeconds, after.cpuSeconds, "cpu seconds counter")
  assertWithin(sample("hypeman_vm_network_rx_bytes_total"), before.vmRxBytes, after.vmRxBytes, "rx bytes counter")
  assertWithin(sample("hypeman_vm_network_tx_bytes_total"), before.vmTxBytes, after.vmTxBytes, "tx bytes counter")
  assert.strictEqual(sample("hypeman_vm_allocated_vcpus"), expected.vcpus, "allocated vcpus gauge")
  assert.strictEqual(sample("hypeman_vm_allocated_memory_bytes"), expected.memoryBytes, "allocated memory gauge")
}

/** On failure, the guest's serial log and the server's output go to stderr next to the assertion. */
export const withDiagnostics = <A, E, R>(
  self: Effect.Effect<A, E, R>,
  vm: { readonly name: string; readonly serialTail: () => string },
  server: CliServer
): Effect.Effect<A, E, R> =>
  self.pipe(
    Effect.onError(() =>
      Effect.sync(() =>
        console.error(
          `--- serial log of ${vm.name} (tail) ---\n${vm.serialTail()}\n` +
            `--- vm-metrics serve ${server.args.join(" ")} (output tail) ---\n${server.output()}`
        )
      )
    )
  )

/**
 * After the VM is gone (and the server's max age has passed): the instance is either no longer listed
 * (404 `not_found`) or listed as `exited` with null usage, never with stale or zero counters; and
 * /metrics has no series of it any more.
 */
export const checkGone = async (server: CliServer, expected: Pick<Expected, "id" | "name">): Promise<string> => {
  await sleepMs(SERVER_MAX_AGE_MS + 150)
  const response = await server.get(`/instances/${expected.id}/stats`)
  let outcome: string
  if (response.status === 404) {
    assert.strictEqual((JSON.parse(response.body) as { code?: unknown }).code, "not_found", response.body)
    outcome = "404 not_found"
  } else {
    assert.strictEqual(response.status, 200, response.body)
    const stats = decodeStats(response.body)
    assert.strictEqual(stats.state, "exited", response.body)
    for (const field of ["cpu_seconds", "memory_rss_bytes", "memory_vms_bytes"] as const) {
      assert.isNull(stats[field], `${field} of an exited VM: ${response.body}`)
    }
    outcome = "200 state exited"
  }
  const metrics = await server.get("/metrics")
  assert.strictEqual(metrics.status, 200)
  assert.notInclude(metrics.body, `instance_id="${expected.id}"`, "no series of a VM that is gone")
  return outcome
}
