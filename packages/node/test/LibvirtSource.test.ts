/** The libvirt status-file source: the parser on realistic libvirt 9 status files, and the source over a temp run dir. */
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { makeTempDir, removeTempDirs } from "@vm-metrics/testing"
import { Effect, Either, Logger, LogLevel } from "effect"
import * as DomainStatus from "../src/internal/domainStatus.js"
import { makeRunDirScanner } from "../src/internal/libvirtRunDir.js"
import * as LibvirtSource from "../src/LibvirtSource.js"
import { bridgeInterface, ethernetInterface, statusXml, userInterface, vhostUserInterface } from "./fixtures/libvirt.js"

afterAll(removeTempDirs)
const MiB = 1024 * 1024
const GiB = 1024 * MiB
const UUID_A = "5f0e6c39-8a1b-4d2e-9c3f-7a6b5c4d3e2f"
const UUID_B = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
const UUID_C = "c0ffee00-1111-4222-8333-444455556666"

const parse = (xml: string) => Either.getOrThrow(DomainStatus.parseDomainStatus(xml))

describe("parseDomainStatus", () => {
  it("reads a running domain: pid, name, uuid, vCPUs, memory in KiB and the ethernet TAP", () => {
    const xml = statusXml({
      name: "hype-lv",
      uuid: UUID_A,
      pid: 31337,
      vcpu: "placement='static'>2",
      interfaces: [ethernetInterface("hype-lv")]
    })
    assert.deepStrictEqual(parse(xml), {
      state: "running",
      pid: 31337,
      name: "hype-lv",
      uuid: UUID_A,
      vcpus: 2,
      memoryBytes: 256 * MiB,
      taps: ["hype-lv"]
    })
    assert.deepStrictEqual(DomainStatus.toInstanceInfo(parse(xml)), {
      id: UUID_A,
      name: "hype-lv",
      hypervisorPid: 31337,
      tapDevice: "hype-lv",
      allocatedVcpus: 2,
      allocatedMemoryBytes: 256 * MiB
    })
  })

  it("takes vCPUs from current= over the element text", () => {
    const xml = statusXml({ name: "v", uuid: UUID_A, pid: 5, vcpu: "placement='static' current='2'>8" })
    assert.strictEqual(parse(xml).vcpus, 2)
    assert.strictEqual(parse(statusXml({ name: "v", uuid: UUID_A, pid: 5, vcpu: 'placement="static">4' })).vcpus, 4)
  })

  it("scales memory by its unit as libvirt spells them", () => {
    const table: Array<[string, string, number | undefined]> = [
      ["KiB", "262144", 256 * MiB],
      ["k", "1024", MiB],
      ["KB", "1000", 1_000_000],
      ["b", "1073741824", GiB],
      ["bytes", "1073741824", GiB],
      ["MiB", "512", 512 * MiB],
      ["M", "512", 512 * MiB],
      ["GiB", "2", 2 * GiB],
      ["G", "2", 2 * GiB],
      ["GB", "2", 2e9],
      ["TiB", "1", 1024 * GiB],
      ["parsecs", "1", undefined],
      ["KiB", "-5", undefined],
      ["KiB", "1.5", undefined],
      ["TiB", "99999999", undefined]
    ]
    for (const [unit, value, expected] of table) {
      assert.strictEqual(DomainStatus.memoryBytesOf(value, unit), expected, `${value} ${unit}`)
    }
    assert.strictEqual(DomainStatus.memoryBytesOf("4", undefined), 4096)
    const xml = statusXml({ name: "g", uuid: UUID_A, pid: 5, memory: ["GiB", "4"] })
    assert.strictEqual(parse(xml).memoryBytes, 4 * GiB)
  })

  it("takes every interface that has a target and can be a TAP, in order (the first is tapDevice)", () => {
    const taps = (interfaces: ReadonlyArray<string>) =>
      DomainStatus.toInstanceInfo(parse(statusXml({ name: "n", uuid: UUID_A, pid: 9, interfaces })))?.tapDevices
    assert.deepStrictEqual(
      taps([ethernetInterface("eth-a"), userInterface, bridgeInterface("vnet-b"), vhostUserInterface]),
      ["eth-a", "vnet-b"]
    )
    assert.deepStrictEqual(taps([ethernetInterface("one"), userInterface]), undefined) // one NIC: tapDevice alone
    assert.deepStrictEqual(taps([bridgeInterface("twice"), bridgeInterface("twice")]), undefined)
    const tap = (interfaces: ReadonlyArray<string>) =>
      DomainStatus.toInstanceInfo(parse(statusXml({ name: "n", uuid: UUID_A, interfaces })))?.tapDevice
    assert.strictEqual(tap([userInterface, bridgeInterface("vnet3")]), "vnet3")
    assert.strictEqual(tap([vhostUserInterface, ethernetInterface("tap-eth")]), "tap-eth")
    assert.strictEqual(tap([ethernetInterface("first"), bridgeInterface("second")]), "first")
    assert.strictEqual(tap([userInterface]), undefined)
    // A self-closing <interface/> has no body: a disk's <target dev='vda'> after it is not its TAP.
    const disk = "<disk type='file' device='disk'><source file='/x.img'/><target dev='vda' bus='virtio'/></disk>"
    assert.strictEqual(tap(["<interface type='ethernet'/>", disk, bridgeInterface('v"q')]), 'v"q')
    assert.strictEqual(tap([]), undefined)
  })

  it("decodes entities and ignores names outside the domain and in metadata", () => {
    const xml = statusXml({
      name: "web &amp; db &#x2013; &lt;1&gt;",
      uuid: UUID_A,
      interfaces: [bridgeInterface("a&amp;b")]
    })
    const status = parse(xml)
    assert.strictEqual(status.name, "web & db \u2013 <1>")
    assert.deepStrictEqual(status.taps, ["a&b"])
    assert.strictEqual(DomainStatus.decodeEntities("&bogus; &#1114112; &#65;"), "&bogus; &#1114112; A")
  })

  it("is not misled by an application's <metadata> holding its own name, memory, vcpu and interface", () => {
    const xml = statusXml({ name: "real", uuid: UUID_A, interfaces: [bridgeInterface("vnet0")] }).replace(
      "<name>not-the-domain-name</name>",
      "<name>meta</name><memory unit='GiB'>64</memory><vcpu>32</vcpu><metadata><interface type='ethernet'><target dev='meta0'/></interface></metadata>"
    )
    assert.deepStrictEqual(parse(xml), {
      state: "running",
      pid: undefined,
      name: "real",
      uuid: UUID_A,
      vcpus: 1,
      memoryBytes: 256 * MiB,
      taps: ["vnet0"]
    })
    assert.strictEqual(
      Either.getLeft(DomainStatus.parseDomainStatus(xml.replace("<name>real</name>", ""))).pipe(
        (o) => o._tag === "Some" && o.value
      ),
      "the domain has no <name>"
    )
  })

  it("reads state and a missing or bad pid", () => {
    assert.strictEqual(
      parse(statusXml({ name: "p", uuid: UUID_A, state: "paused", reason: "user", pid: 9 })).state,
      "paused"
    )
    assert.strictEqual(parse(statusXml({ name: "p", uuid: UUID_A })).pid, undefined)
    assert.strictEqual(
      parse(statusXml({ name: "p", uuid: UUID_A }).replace("<domstatus ", "<domstatus pid='0' ")).pid,
      undefined
    )
    assert.strictEqual(
      parse(statusXml({ name: "p", uuid: UUID_A }).replace("<domstatus ", "<domstatus pid='12x' ")).pid,
      undefined
    )
  })

  it("lists only running and paused domains; falls back to the name as id without a uuid", () => {
    const shutoff = parse(statusXml({ name: "off", uuid: UUID_A, state: "shutoff", reason: "destroyed" }))
    assert.isUndefined(DomainStatus.toInstanceInfo(shutoff))
    assert.isUndefined(DomainStatus.toInstanceInfo({ ...shutoff, state: "crashed" }))
    assert.deepStrictEqual(DomainStatus.toInstanceInfo({ ...shutoff, state: "paused", uuid: undefined }), {
      id: "off",
      name: "off",
      allocatedVcpus: 1,
      allocatedMemoryBytes: 256 * MiB
    })
  })

  it("says why a file cannot be read", () => {
    const reason = (xml: string) => {
      const result = DomainStatus.parseDomainStatus(xml)
      return Either.isLeft(result) ? result.left : "parsed"
    }
    const good = statusXml({ name: "x", uuid: UUID_A, pid: 3 })
    assert.strictEqual(reason("\u0000\u0001 garbage <<<"), "no <domstatus> element")
    assert.strictEqual(reason(good.replace(/state='running' /, "")), "<domstatus> has no state")
    assert.strictEqual(reason(good.slice(0, good.indexOf("<domain "))), "no <domain> element inside <domstatus>")
    assert.strictEqual(reason(good.replace("<name>x</name>", "")), "the domain has no <name>")
    assert.strictEqual(reason(good.replace(/<memory unit='KiB'>262144<\/memory>/, "")), "the domain has no <memory>")
    assert.strictEqual(
      reason(good.replace("<memory unit='KiB'>262144", "<memory unit='furlong'>262144")),
      "cannot read <memory unit='furlong'>262144</memory>"
    )
    assert.strictEqual(reason(good.replace(/<vcpu [^<]*<\/vcpu>/, "")), "parsed") // libvirt's default: 1 vCPU
    assert.strictEqual(
      Either.getOrThrow(DomainStatus.parseDomainStatus(good.replace(/<vcpu [^<]*<\/vcpu>/, ""))).vcpus,
      1
    )
  })
})

/** Runs `effect` with DEBUG logs captured into `lines`. */
const capturingLogs =
  (lines: Array<string>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    effect.pipe(
      Effect.provide(
        Logger.replace(
          Logger.defaultLogger,
          Logger.make(({ logLevel, message }) => {
            lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
          })
        )
      ),
      Logger.withMinimumLogLevel(LogLevel.Debug)
    )

describe("LibvirtSource over a run directory", () => {
  it.effect("lists running and paused domains sorted by id, skipping shut-off, garbage and non-XML files", () =>
    Effect.gen(function* () {
      const runDir = makeTempDir("vm-metrics-libvirt-")
      const write = (file: string, text: string) => fs.writeFileSync(path.join(runDir, file), text)
      write(
        "hype-lv.xml",
        statusXml({
          name: "hype-lv",
          uuid: UUID_B,
          pid: 4001,
          vcpu: "placement='static'>2",
          interfaces: [ethernetInterface("hype-lv")]
        })
      )
      write(
        "paused-vm.xml",
        statusXml({
          name: "paused-vm",
          uuid: UUID_A,
          state: "paused",
          reason: "user",
          pid: 4002,
          domainId: 2,
          memory: ["MiB", "1024"],
          vcpu: "placement='static' current='3'>4",
          interfaces: [userInterface, bridgeInterface("vnet7"), ethernetInterface("vnet8", "52:54:00:5a:2b:02")]
        })
      )
      write(
        "stopped.xml",
        statusXml({ name: "stopped", uuid: UUID_C, state: "shutoff", reason: "shutdown", pid: 4003 })
      )
      write("garbage.xml", "this is not <xml at all")
      write("hype-lv.pid", "4001")
      fs.mkdirSync(path.join(runDir, "domain-1-hype-lv"))
      fs.mkdirSync(path.join(runDir, "dir.xml"))

      const logs: Array<string> = []
      const listed = yield* Effect.gen(function* () {
        const source = yield* InstanceSource
        const first = yield* source.list
        const second = yield* source.list
        assert.deepStrictEqual(second, first)
        return first
      }).pipe(Effect.provide(LibvirtSource.layer({ runDir: `${runDir}/` })), capturingLogs(logs))
      assert.deepStrictEqual(listed, [
        {
          id: UUID_A,
          name: "paused-vm",
          hypervisorPid: 4002,
          tapDevice: "vnet7",
          tapDevices: ["vnet7", "vnet8"],
          allocatedVcpus: 3,
          allocatedMemoryBytes: GiB
        },
        {
          id: UUID_B,
          name: "hype-lv",
          hypervisorPid: 4001,
          tapDevice: "hype-lv",
          allocatedVcpus: 2,
          allocatedMemoryBytes: 256 * MiB
        }
      ])
      // The garbage file is logged once, although it was listed twice.
      assert.deepStrictEqual(logs, [`DEBUG skipping libvirt status file ${runDir}/garbage.xml: no <domstatus> element`])
    })
  )

  it("follows state changes and removals, re-parsing only changed files", () => {
    const runDir = makeTempDir("vm-metrics-libvirt-")
    const file = path.join(runDir, "vm.xml")
    const source = makeRunDirScanner(runDir)
    const scan = () => Either.getOrThrow(source.scan())
    fs.writeFileSync(file, statusXml({ name: "vm", uuid: UUID_A, pid: 10 }))
    assert.deepStrictEqual(
      scan().instances.map((vm) => [vm.name, vm.hypervisorPid]),
      [["vm", 10]]
    )
    fs.writeFileSync(file, statusXml({ name: "vm", uuid: UUID_A, state: "paused", reason: "user", pid: 10 }))
    assert.strictEqual(scan().instances.length, 1)
    fs.writeFileSync(file, statusXml({ name: "vm", uuid: UUID_A, state: "shutoff", reason: "destroyed", pid: 10 }))
    assert.deepStrictEqual(scan().instances, [])
    fs.writeFileSync(file, statusXml({ name: "vm", uuid: UUID_A, pid: 11, domainId: 2 }))
    assert.deepStrictEqual(
      scan().instances.map((vm) => [vm.name, vm.hypervisorPid]),
      [["vm", 11]]
    )
    fs.writeFileSync(path.join(runDir, "bad.xml"), "<domstatus>")
    assert.deepStrictEqual(scan().unparsable, [
      { path: path.join(runDir, "bad.xml"), reason: "<domstatus> has no state" }
    ])
    assert.deepStrictEqual(scan().unparsable, []) // unchanged: not parsed (nor reported) again
    fs.writeFileSync(path.join(runDir, "bad.xml"), "<domstatus state='running'>")
    assert.deepStrictEqual(scan().unparsable, [
      { path: path.join(runDir, "bad.xml"), reason: "no <domain> element inside <domstatus>" }
    ])
    fs.rmSync(file)
    assert.deepStrictEqual(scan().instances, [])
  })

  it.effect("is empty when the run directory does not exist, and fails only when it cannot be listed", () =>
    Effect.gen(function* () {
      const list = (runDir: string) =>
        Effect.flatMap(InstanceSource, (source) => source.list).pipe(Effect.provide(LibvirtSource.layer({ runDir })))
      assert.deepStrictEqual(yield* list("/nonexistent/libvirt/qemu"), [])
      const notADir = path.join(makeTempDir("vm-metrics-libvirt-"), "file")
      fs.writeFileSync(notADir, "")
      const error = yield* Effect.flip(list(notADir))
      assert.strictEqual(error._tag, "InstanceSourceError")
      assert.strictEqual(error.reason, `cannot list libvirt run directory ${notADir}: ENOTDIR`)
    })
  )
})
