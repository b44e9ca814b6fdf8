/** Discovery over a fake proc root, and over the real /proc with real processes (a renamed sh, and QEMU when installed). */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import {
  createTap,
  deleteTap,
  hasCommand,
  isRoot,
  makeTempDir,
  removeTempDirs,
  sleepMs,
  stopChild
} from "@vm-metrics/testing"
import { Effect, Either, Layer } from "effect"
import { statLine } from "../../core/src/internal/statLine.js"
import * as Discovery from "../src/Discovery.js"
import * as Scanner from "../src/internal/processScanner.js"
import * as NodeReaders from "../src/NodeReaders.js"
import * as ProcessTrust from "../src/ProcessTrust.js"

afterAll(removeTempDirs)

const trustedDirs: Array<string> = []
afterAll(() => {
  for (const dir of trustedDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true })
})

/**
 * A directory for fake hypervisor binaries that discovery trusts: root-owned 0755 in a root-owned
 * 0755 /run (a copy under /tmp is refused as `untrusted_exe`: /tmp is world-writable).
 */
const makeTrustedDir = (prefix: string): string => {
  const parent = fs.existsSync("/run") ? "/run" : os.homedir()
  const dir = fs.mkdtempSync(path.join(parent, prefix))
  fs.chmodSync(dir, 0o755)
  trustedDirs.push(dir)
  return dir
}
const MiB = 1024 * 1024
const GiB = 1024 * MiB

/**
 * A fake `<root>/<pid>` with `comm` (as the kernel writes it: newline-terminated), a NUL-separated
 * `cmdline`, a `status` with its uids (root's unless told; no Uid line when null) and an `exe` link to /bin/sh
 * whose directories, seen through `<pid>/root`, are real root-owned 0755 directories of the fake tree.
 */
const fakeProcess = (
  root: string,
  pid: number | string,
  comm: string | undefined,
  argv: ReadonlyArray<string>,
  uids: ReadonlyArray<number> | null = [0, 0, 0, 0]
) => {
  const dir = path.join(root, String(pid))
  fs.mkdirSync(path.join(dir, "root", "bin"), { recursive: true, mode: 0o755 })
  if (comm !== undefined) fs.writeFileSync(path.join(dir, "comm"), `${comm}\n`)
  if (comm !== undefined)
    fs.writeFileSync(path.join(dir, "stat"), statLine({ pid: typeof pid === "number" ? pid : 0, comm }))
  fs.writeFileSync(path.join(dir, "cmdline"), argv.length === 0 ? "" : `${argv.join("\u0000")}\u0000`)
  const uidLine = uids === null ? "" : `Uid:\t${uids.join("\t")}\n`
  fs.writeFileSync(path.join(dir, "status"), `Name:\t${comm}\nUmask:\t0022\n${uidLine}`)
  if (!fs.existsSync(path.join(dir, "exe"))) fs.symlinkSync("/bin/sh", path.join(dir, "exe"))
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
    for (const [entry, expected] of table) assert.strictEqual(Scanner.pidOfEntry(entry), expected, entry)
  })

  it("liveAs finds the comm between the first ( and the last ) of any stat line, and its state after it", () => {
    // A seeded generator (no dependency): comms of 1–16 bytes from an alphabet of the bytes that could fool a
    // parser (parentheses, spaces, digits, a state letter, a newline, bytes above 0x7f).
    let seed = 0x2545f491
    const next = (n: number) => {
      seed ^= seed << 13
      seed ^= seed >>> 17
      seed ^= seed << 5
      return (seed >>> 0) % n
    }
    const alphabet = Buffer.from("() )(Z X S1 9\nq\u00e9", "latin1")
    const states = ["R", "S", "D", "T", "t", "I", "Z", "X"]
    for (let i = 0; i < 20_000; i++) {
      const comm = Buffer.from(Array.from({ length: 1 + next(16) }, () => alphabet[next(alphabet.length)]!))
      const state = states[next(states.length)]!
      const line = Buffer.from(
        statLine({
          pid: 1 + next(4_194_304),
          comm: comm.toString("latin1"),
          state,
          utime: next(1e6),
          stime: next(1e6),
          startTime: next(1e9)
        }),
        "latin1"
      )
      const live = state !== "Z" && state !== "X"
      assert.strictEqual(Scanner.liveAs(line, line.length, comm), live, `${line.toString("latin1")}`)
      const other = Buffer.concat([comm, Buffer.from("x")])
      assert.isFalse(Scanner.liveAs(line, line.length, other))
      assert.isFalse(Scanner.liveAs(line, -1, comm), "a failed read is no live process")
    }
    assert.isFalse(Scanner.liveAs(Buffer.from("1 (qemu"), 7, Buffer.from("qemu")), "cut short")
    assert.isFalse(Scanner.liveAs(Buffer.from("1 qemu) S"), 9, Buffer.from("qemu")), "no (")
  })

  it("keptCommFdsFor keeps 1,024 comm fds, a 64th of a larger open-files limit, at most 8,192", () => {
    assert.deepStrictEqual(
      [256, 20_000, 65_536, 131_072, 524_288, 1_048_576, null].map(Scanner.keptCommFdsFor),
      [1_024, 1_024, 1_024, 2_048, 8_192, 8_192, 8_192]
    )
  })

  it("firecrackerConfigPath reads through the process's root or cwd and refuses .. and NUL", () => {
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "/etc/fc.json"), "/proc/7/root/etc/fc.json")
    assert.strictEqual(Scanner.firecrackerConfigPath("/host/proc", 7, "fc.json"), "/host/proc/7/cwd/fc.json")
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "./a/fc.json"), "/proc/7/cwd/./a/fc.json")
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "/etc/../root/x.json"), undefined)
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "../x.json"), undefined)
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, ".."), undefined)
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "/etc/x\u0000.json"), undefined)
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, ""), undefined)
    assert.strictEqual(Scanner.firecrackerConfigPath("/proc", 7, "a..b/fc.json"), "/proc/7/cwd/a..b/fc.json")
  })
})

describe("Discovery over a fake proc root", () => {
  it.effect("lists each hypervisor's derived instance, sorted by id, and nothing else", () =>
    Effect.gen(function* () {
      const root = makeFakeProc()
      assert.deepStrictEqual(yield* listOnce({ procRoot: root }), expectedFake)
    })
  )

  it.live(
    "a scan runs in steps of stepSize pids with a turn of the event loop between them, listing what a whole scan lists",
    () =>
      Effect.gen(function* () {
        const root = makeFakeProc()
        // 300 processes besides the hypervisors: a scan of 64 pids a step takes at least 4 turns.
        for (let pid = 1000; pid < 1300; pid++) fakeProcess(root, pid, "sleep", ["sleep", "30"])
        let turns = 0
        let handle: NodeJS.Immediate | undefined
        const tick = () => {
          turns++
          handle = setImmediate(tick)
        }
        const listed = yield* Effect.gen(function* () {
          const source = yield* InstanceSource
          handle = setImmediate(tick)
          turns = 0
          return yield* source.list.pipe(Effect.ensuring(Effect.sync(() => clearImmediate(handle))))
        }).pipe(Effect.provide(Discovery.layer({ procRoot: root })))
        assert.isAtLeast(turns, 4)
        assert.deepStrictEqual(listed, expectedFake)
        assert.deepStrictEqual(Either.getOrThrow(Scanner.makeScanner(root).scan()), expectedFake)
      })
  )

  it("a scan in steps forgets, once finished, the processes it did not see; an abandoned one leaves nothing wrong", () => {
    const root = makeFakeProc()
    const scanner = Scanner.makeScanner(root)
    const whole = (steps: Scanner.ScanInSteps) => {
      while (steps.step(1));
      return steps.finish()
    }
    assert.deepStrictEqual(whole(Either.getOrThrow(scanner.begin())), expectedFake)
    const cached = scanner.cached()
    // Abandoned after one pid: the next scan settles the cache as a whole scan would.
    Either.getOrThrow(scanner.begin()).step(1)
    fs.rmSync(path.join(root, "200"), { recursive: true })
    assert.deepStrictEqual(
      whole(Either.getOrThrow(scanner.begin())),
      expectedFake.filter((vm) => vm.hypervisorPid !== 200)
    )
    assert.strictEqual(scanner.cached(), cached - 1)
  })

  it("re-parses a pid only when its cmdline bytes change (seen at the next re-check), and forgets pids that are gone", () => {
    const root = makeFakeProc()
    let now = 0
    const scanner = Scanner.makeScanner(root, [], { now: () => now })
    const first = Either.getOrThrow(scanner.scan())
    assert.strictEqual(scanner.known(), 5)
    // The config file changes but the command line does not: the cached result (config included) stays.
    fs.writeFileSync(path.join(root, "300", "root", "etc", "fc", "vm.json"), firecrackerConfig(8, 8192, "other"))
    const second = Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(second, expectedFake)
    assert.strictEqual(second[0], first[0]) // the very same object: not parsed again
    // The same pid, the same comm, new arguments (an exec() into the same program: on a real /proc a
    // restarted VMM on a reused pid fails its kept comm fd at once): seen when its re-check is due.
    fakeProcess(root, 300, "firecracker", ["firecracker", "--id", "fc-new", "--config-file", "/etc/fc/vm.json"])
    now += Scanner.DEFAULT_RECHECK_MS - 1
    assert.deepStrictEqual(Either.getOrThrow(scanner.scan()), expectedFake)
    assert.strictEqual(scanner.counters().rechecked, 0)
    now += 1
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

  it("drops a hypervisor at the next scan once its stat shows a zombie, long before its re-check; a comm with ( and ) is matched whole", () => {
    const root = makeTempDir("vm-metrics-discovery-zombie-")
    fakeProcess(root, 10, "qemu-system-x86", ["qemu-system-x86_64", "-name", "z1"])
    fakeProcess(root, 11, "qemu-system-x86", ["qemu-system-x86_64", "-name", "z2"])
    const scanner = Scanner.makeScanner(root, [], { now: () => 0 })
    const names = () => Either.getOrThrow(scanner.scan()).map((vm) => vm.name)
    assert.deepStrictEqual(names(), ["z1", "z2"])
    fs.writeFileSync(path.join(root, "10", "stat"), statLine({ pid: 10, comm: "qemu-system-x86", state: "Z" }))
    assert.deepStrictEqual(names(), ["z2"])
    assert.strictEqual(scanner.counters().rechecked, 0)
    assert.strictEqual(scanner.counters().inspected, 3, "the zombie was read afresh, and skipped")
    fs.rmSync(path.join(root, "10"), { recursive: true }) // reaped
    // Its stat shows another comm than its comm file ("x) (y": the first "(" and the last ")" are the
    // bounds): read afresh, and skipped while the two disagree.
    fs.writeFileSync(path.join(root, "11", "stat"), statLine({ pid: 11, comm: "x) (y" }))
    assert.deepStrictEqual(names(), [])
    assert.strictEqual(scanner.counters().inspected, 4)
    fs.writeFileSync(path.join(root, "11", "stat"), statLine({ pid: 11, comm: "qemu-system-x86", state: "R" }))
    assert.deepStrictEqual(names(), ["z2"])
    assert.strictEqual(scanner.counters().inspected, 5)
    assert.deepStrictEqual(names(), ["z2"])
    assert.strictEqual(scanner.counters().inspected, 5, "known again: not read afresh")
    scanner.close()
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
        (file) => fs.writeFileSync(file, `${firecrackerConfig(4, 4096, "big")}${" ".repeat(Scanner.MAX_CONFIG_BYTES)}`)
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
      create(path.join(dir, "root", "vm.json"))
    }
    // Just under the cap is still read.
    const ok = fakeProcess(root, 16, "firecracker", ["firecracker", "--id", "fc16", "--config-file", "/vm.json"])
    const body = firecrackerConfig(4, 4096, "big")
    fs.writeFileSync(path.join(ok, "root", "vm.json"), body + " ".repeat(Scanner.MAX_CONFIG_BYTES - body.length))
    const listed = Either.getOrThrow(Scanner.makeScanner(root).scan())
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
    const listed = Either.getOrThrow(Scanner.makeScanner(root).scan())
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
  for (let i = 0; i < 1500; i++) {
    try {
      if (fs.readFileSync(`/proc/${pid}/comm`, "utf8") === `${comm}\n`) return
    } catch {
      // not there yet
    }
    await sleepMs(20) // up to 30 s: a loaded machine may be slow to exec
  }
  throw new Error(`/proc/${pid}/comm never became ${comm}`)
}

describe("Discovery over the real /proc", () => {
  it.live("finds a real process named qemu-system-x86_64 by comm and cmdline, and drops it once it exits", () =>
    Effect.gen(function* () {
      // comm comes from the executable's file name, so a copy of sh under QEMU's name is a QEMU to /proc.
      // sh runs `read` (blocks on our stdin pipe); the QEMU flags that follow are only its $0, $1, ….
      const dir = makeTrustedDir("vm-metrics-fake-qemu-")
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
    const ids = Scanner.uniqueIds([info("dup", 20), info("dup", 31), info("solo", 5)]).map((i) => i.id)
    assert.deepStrictEqual(ids, ["dup-pid20", "dup-pid31", "solo"])
  })

  it("two real QEMU-named processes with one -name and no -uuid are listed apart", async () => {
    const dir = makeTrustedDir("vm-metrics-discovery-twins-")
    const exe = path.join(dir, "qemu-system-x86_64")
    fs.copyFileSync("/bin/sh", exe)
    const start = () => spawn(exe, ["-c", "sleep 30", "-name", "twin-vm", "-m", "256"], { stdio: "ignore" })
    const [a, b] = [start(), start()]
    try {
      await sleepMs(300)
      const listed = await Effect.runPromise(
        Effect.flatMap(InstanceSource, (s) => s.list).pipe(Effect.provide(Discovery.layer()))
      )
      const twins = listed.filter((i) => i.name === "twin-vm")
      assert.deepStrictEqual(twins.map((i) => i.id).sort(), [`twin-vm-pid${a.pid}`, `twin-vm-pid${b.pid}`].sort())
    } finally {
      await Promise.all([stopChild(a), stopChild(b)])
    }
  })
})

const totalsOf = (totals: ReadonlyArray<{ reason: string; count: number }>) =>
  Object.fromEntries(totals.map((t) => [t.reason, t.count]))

describe("Discovery trusts only root's and configured users' hypervisors", () => {
  const uuid = "5e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"

  it("over a fake proc root: a foreign uid, an untrusted executable or unknown uids is ignored and counted once", () => {
    const root = makeTempDir("vm-metrics-discovery-trust-")
    const qemu = (name: string, memory: string) => ["qemu-system-x86_64", "-uuid", uuid, "-name", name, "-m", memory]
    fakeProcess(root, 10, "qemu-system-x86", qemu("real", "1G"))
    fakeProcess(root, 11, "qemu-system-x86", qemu("impostor", "1T"), [65534, 65534, 65534, 65534])
    fakeProcess(root, 12, "qemu-system-x86", qemu("setuid", "1G"), [0, 65534, 0, 0]) // effective uid nobody
    fakeProcess(root, 13, "qemu-system-x86", qemu("no-uid-line", "1G"), null)
    const worldWritable = fakeProcess(root, 14, "qemu-system-x86", qemu("tmp-exe", "1G"))
    fs.chmodSync(path.join(worldWritable, "root", "bin"), 0o1777) // like /tmp: sticky does not help
    const ownedByNobody = fakeProcess(root, 15, "qemu-system-x86", qemu("nobody-dir", "1G"))
    fs.chownSync(path.join(ownedByNobody, "root"), 65534, 65534)

    const scanner = Scanner.makeScanner(root)
    const listed = Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(
      listed.map((vm) => [vm.id, vm.name, vm.hypervisorPid, vm.allocatedMemoryBytes]),
      [[uuid, "real", 10, GiB]] // keeps its id: no impostor makes it `<uuid>-pid10`
    )
    const expected = { untrusted_uid: 2, untrusted_exe: 2, unverifiable: 1 }
    assert.deepStrictEqual(totalsOf(scanner.ignoredTotals()), expected)
    Either.getOrThrow(scanner.scan())
    assert.deepStrictEqual(totalsOf(scanner.ignoredTotals()), expected, "the same processes are not counted again")

    // Trusting nobody: its processes are listed, and duplicates among trusted ones get `-pid<pid>` as before.
    const trusting = Scanner.makeScanner(root, [65534])
    assert.deepStrictEqual(
      Either.getOrThrow(trusting.scan()).map((vm) => [vm.id, vm.name]),
      [
        [`${uuid}-pid10`, "real"],
        [`${uuid}-pid11`, "impostor"],
        [`${uuid}-pid12`, "setuid"],
        [`${uuid}-pid15`, "nobody-dir"]
      ]
    )
    assert.deepStrictEqual(totalsOf(trusting.ignoredTotals()), { untrusted_uid: 0, untrusted_exe: 1, unverifiable: 1 })
  })

  it("a listed hypervisor that setuid()s to an untrusted uid is ignored from its next re-check on, and counted once", () => {
    const root = makeTempDir("vm-metrics-discovery-recheck-")
    const argv = ["qemu-system-x86_64", "-uuid", uuid, "-name", "runas", "-m", "1G"]
    fakeProcess(root, 10, "qemu-system-x86", argv)
    let now = 1_000
    const scanner = Scanner.makeScanner(root, [], { now: () => now, recheckMs: 5_000 })
    const ids = () => Either.getOrThrow(scanner.scan()).map((vm) => vm.id)
    assert.deepStrictEqual(ids(), [uuid])
    // `-runas nobody`: the status now shows uid 65534; nothing else changes.
    fakeProcess(root, 10, "qemu-system-x86", argv, [65534, 65534, 65534, 65534])
    now += 4_999
    assert.deepStrictEqual(ids(), [uuid], "not due: only its comm was read")
    assert.strictEqual(scanner.counters().rechecked, 0)
    now += 1
    assert.deepStrictEqual(ids(), [])
    assert.strictEqual(scanner.counters().rechecked, 1)
    assert.strictEqual(scanner.counters().inspected, 1, "re-checked, not inspected afresh")
    assert.deepStrictEqual(totalsOf(scanner.ignoredTotals()), { untrusted_uid: 1, untrusted_exe: 0, unverifiable: 0 })
    now += 5_000
    assert.deepStrictEqual(ids(), [])
    assert.deepStrictEqual(totalsOf(scanner.ignoredTotals()), { untrusted_uid: 1, untrusted_exe: 0, unverifiable: 0 })
    // Back to root (a re-check can list it again), and with recheckMs 0 every scan re-checks.
    fakeProcess(root, 10, "qemu-system-x86", argv)
    now += 5_000
    assert.deepStrictEqual(ids(), [uuid])
    const everyScan = Scanner.makeScanner(root, [], { now: () => now, recheckMs: 0 })
    Either.getOrThrow(everyScan.scan())
    Either.getOrThrow(everyScan.scan())
    Either.getOrThrow(everyScan.scan())
    assert.strictEqual(everyScan.counters().rechecked, 2)
    scanner.close()
    everyScan.close()
  })

  it("resolveUid takes a uid or a user name from /etc/passwd", () => {
    assert.deepStrictEqual(ProcessTrust.resolveUid("0"), Either.right(0))
    assert.deepStrictEqual(ProcessTrust.resolveUid("65534"), Either.right(65534))
    assert.deepStrictEqual(ProcessTrust.resolveUid("root"), Either.right(0))
    assert.isTrue(Either.isLeft(ProcessTrust.resolveUid("no-such-user-vm-metrics")))
    assert.isTrue(Either.isLeft(ProcessTrust.resolveUid("99999999999")))
    assert.strictEqual(
      ProcessTrust.uidInPasswd("a:x:1:1::/:/bin/sh\nqemu:x:64055:64055::/:/bin/false\n", "qemu"),
      64055
    )
    assert.deepStrictEqual(
      ProcessTrust.parseStatusUids("Name:\tx\nUid:\t0\t1000\t0\t1000\nGid:\t0\t0\t0\t0\n"),
      [0, 1000, 0, 1000]
    )
    assert.isUndefined(ProcessTrust.parseStatusUids("Name:\tx\n"))
  })

  const setprivMissing = !isRoot
    ? "needs root to run a process as nobody"
    : !hasCommand("setpriv")
      ? "needs setpriv (util-linux)"
      : undefined
  if (setprivMissing !== undefined) {
    if (process.env.CI === "true") throw new Error(`CI must not skip the impersonation test: ${setprivMissing}`)
    console.warn(`skipping the real impersonation test: ${setprivMissing}`)
  }

  it.live.skipIf(setprivMissing !== undefined)(
    "a real process run as nobody posing as a root-owned VM (same -uuid, its TAP, -m 1T) is ignored and counted",
    () =>
      Effect.gen(function* () {
        const dir = makeTrustedDir("vm-metrics-impostor-")
        const binary = path.join(dir, "qemu-system-x86_64")
        fs.copyFileSync("/bin/sh", binary)
        fs.chmodSync(binary, 0o755)
        const qemuArgs = (name: string, memory: string) => [
          ...["-c", "read -r _", "-uuid", uuid, "-name", name, "-m", memory],
          ...["-netdev", "tap,id=n0,ifname=hv-real"]
        ]
        const real = spawn(binary, qemuArgs("real", "1G"), { stdio: ["pipe", "ignore", "ignore"] })
        const impostor = spawn(
          "setpriv",
          ["--reuid=65534", "--regid=65534", "--clear-groups", binary, ...qemuArgs("impostor", "1T")],
          { stdio: ["pipe", "ignore", "ignore"] }
        )
        // The same binary, root's, but from a directory under /tmp (world-writable).
        const tmpBinary = path.join(makeTempDir("vm-metrics-tmp-exe-"), "qemu-system-x86_64")
        fs.copyFileSync("/bin/sh", tmpBinary)
        const fromTmp = spawn(tmpBinary, qemuArgs("from-tmp", "1G"), { stdio: ["pipe", "ignore", "ignore"] })
        const children = [real, impostor, fromTmp] as Array<ChildProcess & { pid: number }>
        try {
          for (const child of children) yield* Effect.promise(() => waitForComm(child.pid, "qemu-system-x86"))
          const uidOf = (pid: number) => ProcessTrust.parseStatusUids(fs.readFileSync(`/proc/${pid}/status`, "utf8"))
          assert.deepStrictEqual(uidOf(impostor.pid!), [65534, 65534, 65534, 65534])
          const pids = new Set(children.map((child) => child.pid))
          const ours = (listing: ReadonlyArray<InstanceInfo>) => listing.filter((vm) => pids.has(vm.hypervisorPid ?? 0))

          const scanner = Scanner.makeScanner("/proc")
          assert.deepStrictEqual(ours(Either.getOrThrow(scanner.scan())), [
            {
              id: uuid,
              name: "real",
              hypervisorPid: real.pid!,
              allocatedVcpus: 1,
              allocatedMemoryBytes: GiB,
              tapDevice: "hv-real"
            }
          ])
          const totals = totalsOf(scanner.ignoredTotals())
          assert.isAtLeast(totals.untrusted_uid ?? 0, 1)
          assert.isAtLeast(totals.untrusted_exe ?? 0, 1)

          // Through the collector, the counts reach the snapshot.
          const snapshot = yield* Effect.flatMap(Collector.Collector, (c) => c.refresh).pipe(
            Effect.provide(
              Collector.layer({ maxAge: 0 }).pipe(
                Layer.provide(Layer.merge(Discovery.layer(), NodeReaders.layer())),
                Layer.orDie
              )
            )
          )
          assert.isAtLeast(totalsOf(snapshot.sourceIgnored ?? []).untrusted_uid ?? 0, 1)
          assert.deepStrictEqual(
            snapshot.stats.filter((vm) => pids.has(vm.pid ?? 0)).map((vm) => [vm.instanceId, vm.pid]),
            [[uuid, real.pid!]]
          )

          // --discovery-uid nobody: trusted, and the two then share the uuid as `<uuid>-pid<pid>`.
          const nobody = Either.getOrThrow(ProcessTrust.resolveUid("nobody"))
          const trusting = Scanner.makeScanner("/proc", [nobody])
          assert.deepStrictEqual(
            ours(Either.getOrThrow(trusting.scan()))
              .map((vm) => [vm.id, vm.name])
              .sort(),
            [
              [`${uuid}-pid${impostor.pid}`, "impostor"],
              [`${uuid}-pid${real.pid}`, "real"]
            ].sort()
          )
        } finally {
          for (const child of children) yield* Effect.promise(() => stopChild(child))
        }
      })
  )
  const runasMissing = !isRoot
    ? "needs root (a process of root's that drops to nobody)"
    : hasCommand("python3")
      ? undefined
      : "needs python3"
  if (runasMissing !== undefined) {
    if (process.env.CI === "true") throw new Error(`CI must not skip the -runas re-check test: ${runasMissing}`)
    console.warn(`skipping the real -runas re-check test: ${runasMissing}`)
  }

  it.live.skipIf(runasMissing !== undefined)(
    "a real listed QEMU-named process that setresuid()s to nobody (-runas) is ignored from its next re-check on",
    () =>
      Effect.gen(function* () {
        // Python under QEMU's comm (prctl PR_SET_NAME): discovery parses its command line as a QEMU's and
        // trusts it (root's uids, root's /usr/bin/python3), until it drops to nobody on a line from us.
        const script = [
          "import ctypes, os, sys",
          "ctypes.CDLL(None).prctl(15, b'qemu-system-x86', 0, 0, 0)",
          "print('named', flush=True)",
          "sys.stdin.readline()",
          "os.setresgid(65534, 65534, 65534)",
          "os.setresuid(65534, 65534, 65534)",
          "print('dropped', flush=True)",
          "sys.stdin.read()"
        ].join("\n")
        const child = spawn("python3", ["-c", script], { stdio: ["pipe", "pipe", "inherit"] })
        const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
        try {
          assert.strictEqual((yield* Effect.promise(() => lines.next())).value, "named")
          yield* Effect.promise(() => waitForComm(child.pid!, "qemu-system-x86"))
          let now = 0
          const scanner = Scanner.makeScanner("/proc", [], { now: () => now, recheckMs: 60_000 })
          const listed = () => Either.getOrThrow(scanner.scan()).some((vm) => vm.hypervisorPid === child.pid)
          assert.isTrue(listed())
          const ignoredBefore = totalsOf(scanner.ignoredTotals()).untrusted_uid ?? 0
          child.stdin!.write("drop\n")
          assert.strictEqual((yield* Effect.promise(() => lines.next())).value, "dropped")
          const uids = ProcessTrust.parseStatusUids(fs.readFileSync(`/proc/${child.pid}/status`, "utf8"))
          assert.deepStrictEqual(uids, [65534, 65534, 65534, 65534])
          now += 59_999
          assert.isTrue(listed(), "not yet re-checked: its stat alone was read")
          now += 1
          assert.isFalse(listed(), "re-checked: its uids are nobody's")
          assert.strictEqual(totalsOf(scanner.ignoredTotals()).untrusted_uid ?? 0, ignoredBefore + 1)
          assert.isFalse(listed())
          assert.strictEqual(totalsOf(scanner.ignoredTotals()).untrusted_uid ?? 0, ignoredBefore + 1, "counted once")
          scanner.close()
        } finally {
          yield* Effect.promise(() => stopChild(child))
        }
      })
  )
})
