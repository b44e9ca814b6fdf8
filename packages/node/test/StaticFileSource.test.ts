/** The static file source over real temp files: JSON, YAML, pidfiles, change detection, precise errors. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceSourceError } from "@vm-metrics/core/Errors"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { Effect, Either, Layer } from "effect"
import * as NodeReaders from "../src/NodeReaders.js"
import * as StaticFileSource from "../src/StaticFileSource.js"
import { makeTempDir, removeTempDirs } from "./helpers.js"

afterAll(removeTempDirs)
const MiB = 1024 * 1024
const GiB = 1024 * MiB

const tempDir = () => makeTempDir("vm-metrics-static-")

const listWith = (file: string) => {
  const source = StaticFileSource.makeSync({ path: file })
  return () => source.list()
}

const reasonOf = (result: Either.Either<unknown, InstanceSourceError>): string =>
  Either.isLeft(result) ? result.left.reason : assert.fail(`expected a failure, got ${JSON.stringify(result)}`)

describe("parseMemorySize", () => {
  it("reads sizes in powers of 1024 and plain bytes", () => {
    const table: Array<[string, number | undefined]> = [
      ["1G", GiB],
      ["1g", GiB],
      ["1GiB", GiB],
      ["1Gi", GiB],
      ["1GB", GiB],
      ["512M", 512 * MiB],
      ["1.5G", 1.5 * GiB],
      ["64K", 65536],
      ["2T", 2048 * GiB],
      ["4096B", 4096],
      ["4096", 4096],
      [" 1 G ", GiB],
      ["0", 0],
      ["", undefined],
      ["G", undefined],
      ["1X", undefined],
      ["-1G", undefined],
      ["1P", undefined],
      ["9999999999T", undefined]
    ]
    for (const [text, expected] of table) assert.strictEqual(StaticFileSource.parseMemorySize(text), expected, text)
  })

  it("parsePidfile accepts one pid in the kernel's range, with surrounding whitespace", () => {
    assert.strictEqual(StaticFileSource.parsePidfile("4242\n"), 4242)
    assert.strictEqual(StaticFileSource.parsePidfile("  17  "), 17)
    assert.strictEqual(StaticFileSource.parsePidfile("0\n"), undefined)
    assert.strictEqual(StaticFileSource.parsePidfile("4194305"), undefined)
    assert.strictEqual(StaticFileSource.parsePidfile("12 13"), undefined)
    assert.strictEqual(StaticFileSource.parsePidfile("pid=12"), undefined)
    assert.strictEqual(StaticFileSource.parsePidfile(""), undefined)
  })
})

describe("StaticFileSource", () => {
  it.effect(
    "lists a JSON array: pid, tap, networkEnabled → tapNameFor(id), name defaulting to id, both memory forms",
    () =>
      Effect.gen(function* () {
        const dir = tempDir()
        const file = path.join(dir, "instances.json")
        fs.writeFileSync(
          file,
          JSON.stringify([
            { id: "QILVIFFNqzck2jrim1x6s2b1", name: "web-1", pid: 4242, networkEnabled: true, vcpus: 2, memory: "1G" },
            { id: "db", tap: "tap-db0", vcpus: 4, memory: 536870912 },
            { id: "batch", networkEnabled: false, vcpus: 0, memory: "512M" }
          ])
        )
        const listed = yield* Effect.flatMap(InstanceSource, (source) => source.list).pipe(
          Effect.provide(StaticFileSource.layer({ path: file }))
        )
        assert.deepStrictEqual(listed, [
          {
            id: "QILVIFFNqzck2jrim1x6s2b1",
            name: "web-1",
            hypervisorPid: 4242,
            tapDevice: "hype-qilviffn",
            allocatedVcpus: 2,
            allocatedMemoryBytes: GiB
          },
          { id: "db", name: "db", tapDevice: "tap-db0", allocatedVcpus: 4, allocatedMemoryBytes: 512 * MiB },
          { id: "batch", name: "batch", allocatedVcpus: 0, allocatedMemoryBytes: 512 * MiB }
        ])
      })
  )

  it("lists YAML with { instances: [...] } and reads pidfiles (relative to the file) on every listing", () => {
    const dir = tempDir()
    const file = path.join(dir, "vms.yaml")
    fs.mkdirSync(path.join(dir, "run"))
    fs.writeFileSync(
      file,
      [
        "# instances on this host",
        "instances:",
        "  - id: vm-a",
        "    pidfile: run/vm-a.pid",
        "    networkEnabled: true",
        "    vcpus: 1",
        "    memory: 256M",
        "  - id: vm-b",
        `    pidfile: ${path.join(dir, "run", "vm-b.pid")}`,
        "    vcpus: 2",
        "    memory: 1073741824",
        ""
      ].join("\n")
    )
    const list = listWith(file)
    const pids = () => Either.getOrThrow(list()).map((vm) => [vm.id, vm.hypervisorPid])
    assert.deepStrictEqual(pids(), [
      ["vm-a", undefined],
      ["vm-b", undefined]
    ])
    fs.writeFileSync(path.join(dir, "run", "vm-a.pid"), "1234\n")
    fs.writeFileSync(path.join(dir, "run", "vm-b.pid"), "not a pid\n")
    assert.deepStrictEqual(pids(), [
      ["vm-a", 1234],
      ["vm-b", undefined]
    ])
    fs.writeFileSync(path.join(dir, "run", "vm-a.pid"), "5678")
    fs.writeFileSync(path.join(dir, "run", "vm-b.pid"), " 91\n")
    assert.deepStrictEqual(pids(), [
      ["vm-a", 5678],
      ["vm-b", 91]
    ])
    fs.rmSync(path.join(dir, "run", "vm-a.pid"))
    assert.deepStrictEqual(Either.getOrThrow(list())[0], {
      id: "vm-a",
      name: "vm-a",
      tapDevice: "hype-vm-a",
      allocatedVcpus: 1,
      allocatedMemoryBytes: 256 * MiB
    })
  })

  it("re-reads the file only when it changes: same listing object while unchanged, new one after a rewrite", () => {
    const dir = tempDir()
    const file = path.join(dir, "vms.json")
    const write = (vcpus: number) => fs.writeFileSync(file, JSON.stringify([{ id: "a", vcpus, memory: "1G" }]))
    write(1)
    const list = listWith(file)
    const first = Either.getOrThrow(list())
    assert.strictEqual(Either.getOrThrow(list()), first) // not parsed again
    write(2) // same size; mtime and ctime move
    const second = Either.getOrThrow(list())
    assert.strictEqual(second[0]?.allocatedVcpus, 2)
    // A same-size rewrite whose writer restores the old mtime to the nanosecond (cp -p, tar, rsync -t)
    // still changes ctime.
    const reference = path.join(dir, "reference")
    fs.writeFileSync(reference, "")
    execFileSync("touch", ["-r", file, reference])
    const before = fs.statSync(file, { bigint: true })
    write(3)
    execFileSync("touch", ["-r", reference, file])
    const after = fs.statSync(file, { bigint: true })
    assert.deepStrictEqual([after.ino, after.size, after.mtimeNs], [before.ino, before.size, before.mtimeNs])
    assert.notStrictEqual(after.ctimeNs, before.ctimeNs)
    assert.strictEqual(Either.getOrThrow(list())[0]?.allocatedVcpus, 3)
    // An atomic replace (write a temp file, rename over): a new inode.
    fs.writeFileSync(`${file}.tmp`, JSON.stringify([{ id: "b", vcpus: 4, memory: "2G" }]))
    fs.renameSync(`${file}.tmp`, file)
    assert.deepStrictEqual(Either.getOrThrow(list()), [
      { id: "b", name: "b", allocatedVcpus: 4, allocatedMemoryBytes: 2 * GiB }
    ])
  })

  it("fails with the file's path and what is wrong, then lists again once the file is fixed", () => {
    const dir = tempDir()
    const json = path.join(dir, "vms.json")
    const yaml = path.join(dir, "vms.yml")
    const list = listWith(json)
    const listYaml = listWith(yaml)
    const good = [{ id: "a", vcpus: 1, memory: "1G" }]
    fs.writeFileSync(json, JSON.stringify(good))
    assert.strictEqual(Either.getOrThrow(list()).length, 1)

    const table: Array<[string, string]> = [
      ['[{"id":"a",', "invalid JSON: Expected double-quoted property name in JSON at position 11"],
      ["", "the file is empty"],
      ['"just a string"', 'expected a list of instances or an object with "instances", got string'],
      ['[{"id":"a","vcpus":2}]', "[0].memory: is missing"],
      [
        '[{"id":"a","vcpus":-1,"memory":true,"pid":0}]',
        '[0].pid: Expected a number between 1 and 4194304, actual 0; [0].vcpus: Expected a non-negative number, actual -1; [0].memory: expected bytes or a size such as "1G" or "512M", got true'
      ],
      [
        '[{"id":"a","vcpus":1,"memory":"lots"}]',
        '[0].memory: expected bytes or a size such as "1G" or "512M", got "lots"'
      ],
      [
        '[{"id":"a","vcpus":1,"memory":1,"pidFile":"x"}]',
        '[0].pidFile: is unexpected, expected: "id" | "name" | "pid" | "pidfile" | "tap" | "networkEnabled" | "vcpus" | "memory"'
      ],
      ['[{"id":"a","vcpus":1,"memory":1,"pid":5,"pidfile":"x"}]', "[0]: give either pid or pidfile, not both"],
      ['[{"id":"a","vcpus":1,"memory":1,"tap":"a/b"}]', "[0].tap: not a valid interface name (contains '/')"],
      [
        '[{"id":"a","vcpus":1,"memory":1,"tap":"t","networkEnabled":false}]',
        "[0]: tap is set but networkEnabled is false"
      ],
      ['{"instances":[{"id":"","vcpus":1,"memory":1}]}', 'instances[0].id: Expected a non empty string, actual ""'],
      ['{"instance":[]}', 'instance: is unexpected, expected: "instances"; instances: is missing'],
      [
        '[{"id":"a","vcpus":1,"memory":1},{"id":"b","vcpus":1,"memory":1},{"id":"a","vcpus":1,"memory":1}]',
        'duplicate id "a" (entries 0 and 2)'
      ]
    ]
    for (const [text, what] of table) {
      fs.writeFileSync(json, text)
      assert.strictEqual(reasonOf(list()), `${json}: ${what}`, text)
      assert.strictEqual(reasonOf(list()), `${json}: ${what}`, "unchanged file: same error") // from the cache
    }

    fs.writeFileSync(yaml, "instances:\n  - id: a\n    vcpus: 2\n   memory: 1G\n")
    assert.strictEqual(
      reasonOf(listYaml()),
      `${yaml}: invalid YAML: Sequence item without - indicator at line 4, column 1`
    )
    fs.writeFileSync(yaml, "instances:\n  - id: 1234\n    vcpus: 2\n    memory: 1G\n")
    assert.strictEqual(reasonOf(listYaml()), `${yaml}: instances[0].id: Expected string, actual 1234`)
    fs.writeFileSync(yaml, "instances:\n  - id: '1234'\n    vcpus: 2\n    memory: 1G\n")
    assert.deepStrictEqual(Either.getOrThrow(listYaml()), [
      { id: "1234", name: "1234", allocatedVcpus: 2, allocatedMemoryBytes: GiB }
    ])

    fs.rmSync(json)
    assert.strictEqual(reasonOf(list()), `${json}: cannot read: ENOENT`)
    fs.mkdirSync(json)
    assert.strictEqual(reasonOf(list()), `${json}: cannot read: ENOTREG`)
    fs.rmdirSync(json)
    fs.writeFileSync(json, JSON.stringify([...good, { id: "b", vcpus: 2, memory: 1024 }]))
    assert.deepStrictEqual(
      Either.getOrThrow(list()).map((vm) => vm.id),
      ["a", "b"]
    )
  })

  it.live("under the collector: a broken file is reported in the snapshot while the last good listing is read", () =>
    Effect.gen(function* () {
      const dir = tempDir()
      const file = path.join(dir, "vms.json")
      const vm = { id: "self", pid: process.pid, vcpus: 1, memory: "1G" }
      fs.writeFileSync(file, JSON.stringify([vm]))
      const live = Collector.layer({ maxAge: 0 }).pipe(
        Layer.provide(Layer.merge(NodeReaders.layer(), StaticFileSource.layer({ path: file }))),
        Layer.orDie
      )
      yield* Effect.gen(function* () {
        const collector = yield* Collector.Collector
        const good = yield* collector.refresh
        assert.strictEqual(good.sourceError, null)
        assert.deepStrictEqual(
          good.stats.map((s) => [s.instanceId, s.pid, s.state]),
          [["self", process.pid, "running"]]
        )
        fs.writeFileSync(file, '[{"id": "self", "vcpus": 1}]')
        const broken = yield* collector.refresh
        assert.strictEqual(broken.sourceError?.reason, `${file}: [0].memory: is missing`)
        assert.deepStrictEqual(
          broken.stats.map((s) => [s.instanceId, s.pid, s.state]),
          [["self", process.pid, "running"]]
        )
        fs.writeFileSync(file, JSON.stringify([{ ...vm, id: "renamed" }]))
        const fixed = yield* collector.refresh
        assert.strictEqual(fixed.sourceError, null)
        assert.strictEqual(fixed.sourceErrorsTotal, 1)
        assert.deepStrictEqual(
          fixed.stats.map((s) => s.instanceId),
          ["renamed"]
        )
      }).pipe(Effect.provide(live))
    })
  )
})
