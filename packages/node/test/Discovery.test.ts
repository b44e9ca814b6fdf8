/** Discovery over a fake proc root, and over the real /proc with real processes (a renamed sh, and QEMU when installed). */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { Effect, Either, Layer } from "effect"
import * as Discovery from "../src/Discovery.js"
import * as NodeReaders from "../src/NodeReaders.js"
import { createTap, deleteTap, hasCommand, isRoot, makeTempDir, removeTempDirs, sleepMs, stopChild } from "./helpers.js"

afterAll(removeTempDirs)
const MiB = 1024 * 1024
const GiB = 1024 * MiB

/** A fake `<root>/<pid>` with `comm` (as the kernel writes it: newline-terminated) and a NUL-separated `cmdline`. */
const fakeProcess = (root: string, pid: number | string, comm: string | undefined, argv: ReadonlyArray<string>) => {
  const dir = path.join(root, String(pid))
  fs.mkdirSync(dir, { recursive: true })
  if (comm !== undefined) fs.writeFileSync(path.join(dir, "comm"), `${comm}\n`)
  fs.writeFileSync(path.join(dir, "cmdline"), argv.length === 0 ? "" : `${argv.join("\u0000")}\u0000`)
  return dir
}

const firecrackerConfig = (vcpus: number, memMib: number, tap: string) =>
  JSON.stringify({
    "boot-source": { kernel_image_path: "/vmlinux" },
    "machine-config": { vcpu_count: vcpus, mem_size_mib: memMib },
    "network-interfaces": [{ iface_id: "eth0", host_dev_name: tap }]
  })

/** A fake /proc with one of each hypervisor, plus processes that must not be listed. */
const makeFakeProc = () => {
  const root = makeTempDir("vm-metrics-discovery-")
  fakeProcess(root, 100, "qemu-system-x86", [
    "/usr/bin/qemu-system-x86_64",
    "-name",
    "vm1,debug-threads=on",
    "-m",
    "256",
    "-smp",
    "1",
    "-netdev",
    "tap,id=n0,ifname=hv-vm1,script=no,downscript=no"
  ])
  fakeProcess(root, 200, "cloud-hyperviso", [
    "cloud-hypervisor",
    "--api-socket",
    "/run/vms/web-2/ch.sock",
    "--cpus",
    "boot=4",
    "--memory",
    "size=2G",
    "--net",
    "tap=ch-tap0,mac=52:54:00:00:00:01"
  ])
  // Firecracker with an absolute config path, read through <pid>/root (its chroot, if jailed).
  const fc = fakeProcess(root, 300, "firecracker", [
    "firecracker",
    "--id",
    "fc-abs",
    "--config-file",
    "/etc/fc/vm.json"
  ])
  fs.mkdirSync(path.join(fc, "root", "etc", "fc"), { recursive: true })
  fs.writeFileSync(path.join(fc, "root", "etc", "fc", "vm.json"), firecrackerConfig(2, 1024, "fc-tap0"))
  // A relative config path, read through <pid>/cwd.
  const fcRelative = fakeProcess(root, 301, "firecracker", [
    "firecracker",
    "--id=fc-rel",
    "--config-file",
    "conf/fc.json"
  ])
  fs.mkdirSync(path.join(fcRelative, "cwd", "conf"), { recursive: true })
  fs.writeFileSync(path.join(fcRelative, "cwd", "conf", "fc.json"), firecrackerConfig(3, 512, "fc-tap1"))
  // A config path that climbs out: refused, defaults.
  fakeProcess(root, 302, "firecracker", ["firecracker", "--config-file", "/etc/../../../secret.json"])
  // Not hypervisors, or not processes.
  fakeProcess(root, 400, "bash", ["bash", "-name", "not-a-vm"])
  fakeProcess(root, 401, "qemu-img", ["qemu-img", "info", "x.qcow2"])
  fakeProcess(root, 500, undefined, ["qemu-system-x86_64", "-name", "vanished"]) // comm missing: gone mid-scan
  fakeProcess(root, 600, "qemu-system-x86", []) // a zombie: empty cmdline
  fakeProcess(root, "self", "qemu-system-x86", ["qemu-system-x86_64", "-name", "self"])
  fakeProcess(root, 0, "qemu-system-x86", ["qemu-system-x86_64", "-name", "pid-zero"])
  fakeProcess(root, 99999999, "qemu-system-x86", ["qemu-system-x86_64", "-name", "pid-too-large"])
  fs.writeFileSync(path.join(root, "stat"), "cpu 1 2 3\n")
  return root
}

const expectedFake: ReadonlyArray<InstanceInfo> = [
  {
    id: "fc-abs",
    name: "fc-abs",
    hypervisorPid: 300,
    allocatedVcpus: 2,
    allocatedMemoryBytes: GiB,
    tapDevice: "fc-tap0"
  },
  {
    id: "fc-rel",
    name: "fc-rel",
    hypervisorPid: 301,
    allocatedVcpus: 3,
    allocatedMemoryBytes: 512 * MiB,
    tapDevice: "fc-tap1"
  },
  {
    id: "firecracker-302",
    name: "firecracker-302",
    hypervisorPid: 302,
    allocatedVcpus: 1,
    allocatedMemoryBytes: 128 * MiB
  },
  {
    id: "vm1",
    name: "vm1",
    hypervisorPid: 100,
    allocatedVcpus: 1,
    allocatedMemoryBytes: 256 * MiB,
    tapDevice: "hv-vm1"
  },
  {
    id: "web-2",
    name: "web-2",
    hypervisorPid: 200,
    allocatedVcpus: 4,
    allocatedMemoryBytes: 2 * GiB,
    tapDevice: "ch-tap0"
  }
]

const listOnce = (options: Discovery.Options) =>
  Effect.flatMap(InstanceSource, (source) => source.list).pipe(Effect.provide(Discovery.layer(options)))

describe("Discovery helpers", () => {
  it("pidOfEntry accepts only pids in the kernel's range", () => {
    const table: Array<[string, number | undefined]> = [
      ["1", 1],
      ["4242", 4242],
      ["4194304", 4_194_304],
      ["4194305", undefined],
      ["0", undefined],
      ["self", undefined],
      ["12a", undefined],
      ["", undefined],
      ["99999999", undefined]
    ]
    for (const [entry, expected] of table) assert.strictEqual(Discovery.pidOfEntry(entry), expected, entry)
  })

  it("firecrackerConfigPath reads through the process's root or cwd and refuses .. and NUL", () => {
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "/etc/fc.json"), "/proc/7/root/etc/fc.json")
    assert.strictEqual(Discovery.firecrackerConfigPath("/host/proc", 7, "fc.json"), "/host/proc/7/cwd/fc.json")
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "./a/fc.json"), "/proc/7/cwd/./a/fc.json")
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "/etc/../root/x.json"), undefined)
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "../x.json"), undefined)
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, ".."), undefined)
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "/etc/x\u0000.json"), undefined)
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, ""), undefined)
    assert.strictEqual(Discovery.firecrackerConfigPath("/proc", 7, "a..b/fc.json"), "/proc/7/cwd/a..b/fc.json")
  })
})

describe("Discovery over a fake proc root", () => {
  it.effect("lists each hypervisor's derived instance, sorted by id, and nothing else", () =>
    Effect.gen(function* () {
      const root = makeFakeProc()
      assert.deepStrictEqual(yield* listOnce({ procRoot: root }), expectedFake)
    })
  )

  it("re-parses a pid only when its cmdline bytes change, and forgets pids that are gone", () => {
    const root = makeFakeProc()
    const scanner = Discovery.makeScanner(root)
    const first = Either.getOrThrow(scanner.scan())
    assert.strictEqual(scanner.known(), 5)
    // The config file changes but the command line does not: the cached result (config included) stays.
    fs.writeFileSync(path.join(root, "300", "root", "etc", "fc", "vm.json"), firecrackerConfig(8, 8192, "other"))
    const second = Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(second, expectedFake)
    assert.strictEqual(second[0], first[0]) // the very same object: not parsed again
    // The same pid with new arguments (a restarted VMM that got the same pid): parsed afresh.
    fakeProcess(root, 300, "firecracker", ["firecracker", "--id", "fc-new", "--config-file", "/etc/fc/vm.json"])
    const third = Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(
      third.find((vm) => vm.hypervisorPid === 300),
      {
        id: "fc-new",
        name: "fc-new",
        hypervisorPid: 300,
        allocatedVcpus: 8,
        allocatedMemoryBytes: 8 * GiB,
        tapDevice: "other"
      }
    )
    // A process that execs into a hypervisor (libvirt, hypeman: fork, then exec) is seen by its new comm.
    fakeProcess(root, 400, "qemu-system-aar", ["qemu-system-aarch64", "-name", "arm1", "-smp", "2"])
    // One that exits disappears, and its cache entry with it.
    fs.rmSync(path.join(root, "200"), { recursive: true })
    const fourth = Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(
      fourth.map((vm) => [vm.id, vm.hypervisorPid]),
      [
        ["arm1", 400],
        ["fc-new", 300],
        ["fc-rel", 301],
        ["firecracker-302", 302],
        ["vm1", 100]
      ]
    )
    assert.strictEqual(scanner.known(), 5)
    // A hypervisor whose comm changes (exec into something else) is dropped.
    fakeProcess(root, 100, "sleep", ["sleep", "30"])
    assert.isUndefined(Either.getOrThrow(scanner.scan()).find((vm) => vm.hypervisorPid === 100))
  })

  it("keeps defaults when the Firecracker config is a symlink, a FIFO, too large or not JSON (and does not hang)", () => {
    const root = makeTempDir("vm-metrics-discovery-fc-")
    const outside = path.join(root, "outside.json")
    fs.writeFileSync(outside, firecrackerConfig(9, 9000, "leak"))
    const cases: Array<[number, (file: string) => void]> = [
      [10, (file) => fs.symlinkSync(outside, file)],
      [11, (file) => execFileSync("mkfifo", [file])],
      [
        12,
        (file) =>
          fs.writeFileSync(file, `${firecrackerConfig(4, 4096, "big")}${" ".repeat(Discovery.MAX_CONFIG_BYTES)}`)
      ],
      [13, (file) => fs.writeFileSync(file, "{ not json")],
      [14, (file) => fs.mkdirSync(file)],
      [15, () => {}] // missing
    ]
    for (const [pid, create] of cases) {
      const dir = fakeProcess(root, pid, "firecracker", [
        "firecracker",
        "--id",
        `fc${pid}`,
        "--config-file",
        "/vm.json"
      ])
      fs.mkdirSync(path.join(dir, "root"))
      create(path.join(dir, "root", "vm.json"))
    }
    // Just under the cap is still read.
    const ok = fakeProcess(root, 16, "firecracker", ["firecracker", "--id", "fc16", "--config-file", "/vm.json"])
    const body = firecrackerConfig(4, 4096, "big")
    fs.mkdirSync(path.join(ok, "root"))
    fs.writeFileSync(path.join(ok, "root", "vm.json"), body + " ".repeat(Discovery.MAX_CONFIG_BYTES - body.length))
    const listed = Either.getOrThrow(Discovery.makeScanner(root).scan())
    assert.deepStrictEqual(
      listed.map((vm) => [vm.id, vm.allocatedVcpus, vm.allocatedMemoryBytes, vm.tapDevice]),
      [
        ["fc10", 1, 128 * MiB, undefined],
        ["fc11", 1, 128 * MiB, undefined],
        ["fc12", 1, 128 * MiB, undefined],
        ["fc13", 1, 128 * MiB, undefined],
        ["fc14", 1, 128 * MiB, undefined],
        ["fc15", 1, 128 * MiB, undefined],
        ["fc16", 4, 4 * GiB, "big"]
      ]
    )
  })

  it("sorts instances with the same id by pid, and tells their ids apart", () => {
    const root = makeTempDir("vm-metrics-discovery-dup-")
    // Enough of them that the directory's own order is practically never already sorted.
    const pids = [731, 95, 4000, 12, 3999, 250, 17, 1024, 600, 88, 2, 40000]
    for (const pid of pids) fakeProcess(root, pid, "qemu-system-x86", ["qemu", "-name", "same"])
    fakeProcess(root, 29, "qemu-system-x86", ["qemu", "-name", "b"])
    const listed = Either.getOrThrow(Discovery.makeScanner(root).scan())
    assert.deepStrictEqual(
      listed.map((vm) => [vm.id, vm.hypervisorPid]),
      [["b", 29], ...[...pids].sort((a, b) => a - b).map((pid) => [`same-pid${pid}`, pid])]
    )
  })

  it.effect(
    "fails with InstanceSourceError only when the proc root cannot be listed or is not a plain absolute path",
    () =>
      Effect.gen(function* () {
        const missing = yield* Effect.flip(listOnce({ procRoot: "/nonexistent/proc" }))
        assert.strictEqual(missing._tag, "InstanceSourceError")
        assert.strictEqual(missing.reason, "cannot list /nonexistent/proc: ENOENT")
        const relative = yield* Effect.flip(listOnce({ procRoot: "proc" }))
        assert.strictEqual(relative.reason, 'procRoot must be an absolute path without "..": "proc"')
        const climbing = yield* Effect.flip(listOnce({ procRoot: "/host/../proc" }))
        assert.include(climbing.reason, "must be an absolute path")
        const empty = makeTempDir("vm-metrics-discovery-empty-")
        assert.deepStrictEqual(yield* listOnce({ procRoot: `${empty}/` }), [])
      })
  )
})

/** Waits until /proc/<pid>/comm reads `comm` (the child has exec'd). */
const waitForComm = async (pid: number, comm: string) => {
  for (let i = 0; i < 100; i++) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, "utf8") === `${comm}\n`) return
    } catch {
      // not there yet
    }
    await sleepMs(20)
  }
  throw new Error(`/proc/${pid}/comm never became ${comm}`)
}

describe("Discovery over the real /proc", () => {
  it.live("finds a real process named qemu-system-x86_64 by comm and cmdline, and drops it once it exits", () =>
    Effect.gen(function* () {
      // comm comes from the executable's file name, so a copy of sh under QEMU's name is a QEMU to /proc.
      // sh runs `read` (blocks on our stdin pipe); the QEMU flags that follow are only its $0, $1, ….
      const dir = makeTempDir("vm-metrics-fake-qemu-")
      const binary = path.join(dir, "qemu-system-x86_64")
      fs.copyFileSync("/bin/sh", binary)
      fs.chmodSync(binary, 0o755)
      const uuid = "0b5c8bc2-2d5e-4d7e-9a57-1d6c3f0c9e11"
      const args = [
        ...["-c", "read -r _", "-name", "testvm,debug-threads=on", "-uuid", uuid],
        ...["-smp", "2", "-m", "1G", "-netdev", "tap,id=n0,ifname=hv-test"]
      ]
      const child = spawn(binary, args, { stdio: ["pipe", "ignore", "ignore"] }) as ChildProcess & { pid: number }
      try {
        yield* Effect.promise(() => waitForComm(child.pid, "qemu-system-x86"))
        assert.strictEqual(
          fs.readFileSync(`/proc/${child.pid}/cmdline`, "utf8"),
          `${[binary, ...args].join("\u0000")}\u0000`
        )
        const source = yield* InstanceSource
        const mine = (listing: ReadonlyArray<InstanceInfo>) => listing.filter((vm) => vm.hypervisorPid === child.pid)
        const listed = yield* source.list
        assert.deepStrictEqual(mine(listed), [
          {
            id: uuid,
            name: "testvm",
            hypervisorPid: child.pid,
            allocatedVcpus: 2,
            allocatedMemoryBytes: GiB,
            tapDevice: "hv-test"
          }
        ])
        const ids = listed.map((vm) => vm.id)
        assert.deepStrictEqual(ids, [...ids].sort())
        assert.deepStrictEqual(mine(yield* source.list), mine(listed)) // from the cache, same answer
        yield* Effect.promise(() => stopChild(child))
        assert.deepStrictEqual(mine(yield* source.list), [])
      } finally {
        yield* Effect.promise(() => stopChild(child))
      }
    }).pipe(Effect.provide(Discovery.layer()))
  )
})

const qemuMissing = hasCommand("qemu-system-x86_64") ? undefined : "qemu-system-x86_64 is not installed"
if (qemuMissing !== undefined) console.warn(`skipping the real QEMU discovery test: ${qemuMissing}`)

describe.skipIf(qemuMissing !== undefined)("Discovery of a real QEMU", () => {
  it.live(
    "lists a paused QEMU (-S) with its uuid, name, topology, memory and (as root) TAP; the collector reads it",
    () =>
      Effect.gen(function* () {
        const tap = isRoot && fs.existsSync("/dev/net/tun") && hasCommand("ip") ? createTap() : undefined
        const uuid = "6f3a4c1e-9d2b-4c8a-b1e7-2a5d9c0f7e13"
        const args = [
          ...["-name", "realqemu,debug-threads=on", "-uuid", uuid, "-accel", "tcg"],
          ...["-smp", "sockets=1,cores=2,threads=1", "-m", "64", "-S", "-nodefaults", "-nographic"],
          ...["-display", "none", "-monitor", "none", "-serial", "none"],
          ...(tap === undefined ? [] : ["-netdev", `tap,id=n0,ifname=${tap},script=no,downscript=no`])
        ]
        const child = spawn("qemu-system-x86_64", args, { stdio: "ignore" }) as ChildProcess & { pid: number }
        try {
          yield* Effect.promise(() => waitForComm(child.pid, "qemu-system-x86"))
          const source = yield* InstanceSource
          const listed = (yield* source.list).filter((vm) => vm.hypervisorPid === child.pid)
          assert.deepStrictEqual(listed, [
            {
              id: uuid,
              name: "realqemu",
              hypervisorPid: child.pid,
              allocatedVcpus: 2,
              allocatedMemoryBytes: 64 * MiB,
              ...(tap === undefined ? {} : { tapDevice: tap })
            }
          ])
          const collector = yield* Collector.Collector
          const stats = (yield* collector.refresh).stats.find((vm) => vm.instanceId === uuid)
          assert.strictEqual(stats?.state, "running")
          assert.strictEqual(stats?.pid, child.pid)
          assert.isAbove(Number(stats?.memoryRssBytes ?? 0), 0)
          if (tap !== undefined) assert.isNotNull(stats?.netRxBytes)
        } finally {
          yield* Effect.promise(() => stopChild(child))
          if (tap !== undefined) deleteTap(tap)
        }
      }).pipe(
        Effect.provide(
          Collector.layer({ maxAge: 0 }).pipe(
            Layer.provideMerge(Layer.merge(Discovery.layer(), NodeReaders.layer())),
            Layer.orDie
          )
        )
      )
  )
})

describe("Discovery ids are unique", () => {
  it("two hypervisors that derive the same id get <id>-pid<pid>; unique ids stay", () => {
    const info = (id: string, pid: number): InstanceInfo => ({
      id,
      name: id,
      hypervisorPid: pid,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 1
    })
    const ids = Discovery.uniqueIds([info("dup", 20), info("dup", 31), info("solo", 5)]).map((i) => i.id)
    assert.deepStrictEqual(ids, ["dup-pid20", "dup-pid31", "solo"])
  })

  it("two real QEMU-named processes with one -name and no -uuid are listed apart", async () => {
    const dir = makeTempDir("vm-metrics-discovery-twins-")
    const exe = path.join(dir, "qemu-system-x86_64")
    fs.copyFileSync("/bin/sh", exe)
    const start = () => spawn(exe, ["-c", "sleep 30", "-name", "twin-vm", "-m", "256"], { stdio: "ignore" })
    const [a, b] = [start(), start()]
    try {
      await sleepMs(300)
      const listed = Effect.runSync(
        Effect.flatMap(InstanceSource, (s) => s.list).pipe(Effect.provide(Discovery.layer()))
      )
      const twins = listed.filter((i) => i.name === "twin-vm")
      assert.deepStrictEqual(twins.map((i) => i.id).sort(), [`twin-vm-pid${a.pid}`, `twin-vm-pid${b.pid}`].sort())
    } finally {
      await Promise.all([stopChild(a), stopChild(b)])
    }
  })
})
