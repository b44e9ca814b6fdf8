/** The static file source over real temp files: JSON, YAML, pidfiles, change detection, precise errors. */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import * as Collector from "@vm-metrics/core/Collector"
import type { InstanceSourceError } from "@vm-metrics/core/Errors"
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { makeTempDir, removeTempDirs } from "@vm-metrics/testing"
import { Effect, Either, FastCheck, Layer, Logger } from "effect"
import * as FileParser from "../src/internal/instancesFileWorker.mjs"
import * as NodeReaders from "../src/NodeReaders.js"
import * as StaticFileSource from "../src/StaticFileSource.js"

afterAll(removeTempDirs)
const MiB = 1024 * 1024
const GiB = 1024 * MiB

const tempDir = () => makeTempDir("vm-metrics-static-")

/** A listing of `file` as a function returning its Either (each call one listing, like a collection). */
const listWith = (file: string) => {
  const source = Effect.runSync(StaticFileSource.make({ path: file }))
  return () => Effect.runPromise(Effect.either(source.list))
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
            { id: "batch", networkEnabled: false, vcpus: 0, memory: "512M" },
            { id: "multi", taps: ["tap-m0", "tap-m1"], networkEnabled: true, vcpus: 1, memory: "1G" },
            { id: "one", taps: ["tap-o0"], vcpus: 1, memory: "1G" }
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
          { id: "batch", name: "batch", allocatedVcpus: 0, allocatedMemoryBytes: 512 * MiB },
          {
            id: "multi",
            name: "multi",
            tapDevice: "tap-m0",
            tapDevices: ["tap-m0", "tap-m1"],
            allocatedVcpus: 1,
            allocatedMemoryBytes: GiB
          },
          { id: "one", name: "one", tapDevice: "tap-o0", allocatedVcpus: 1, allocatedMemoryBytes: GiB }
        ])
      })
  )

  it("lists YAML with { instances: [...] } and reads pidfiles (relative to the file) on every listing", async () => {
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
    const pids = async () => Either.getOrThrow(await list()).map((vm) => [vm.id, vm.hypervisorPid])
    assert.deepStrictEqual(await pids(), [
      ["vm-a", undefined],
      ["vm-b", undefined]
    ])
    fs.writeFileSync(path.join(dir, "run", "vm-a.pid"), "1234\n")
    fs.writeFileSync(path.join(dir, "run", "vm-b.pid"), "not a pid\n")
    assert.deepStrictEqual(await pids(), [
      ["vm-a", 1234],
      ["vm-b", undefined]
    ])
    fs.writeFileSync(path.join(dir, "run", "vm-a.pid"), "5678")
    fs.writeFileSync(path.join(dir, "run", "vm-b.pid"), " 91\n")
    assert.deepStrictEqual(await pids(), [
      ["vm-a", 5678],
      ["vm-b", 91]
    ])
    fs.rmSync(path.join(dir, "run", "vm-a.pid"))
    assert.deepStrictEqual(Either.getOrThrow(await list())[0], {
      id: "vm-a",
      name: "vm-a",
      tapDevice: "hype-vm-a",
      allocatedVcpus: 1,
      allocatedMemoryBytes: 256 * MiB
    })
  })

  it.skipIf(process.getuid?.() !== 0)(
    "a pidfile of another user (not root, the agent's nor the file's owner) is no pid, logged once; its owner's is read",
    async () => {
      const dir = tempDir()
      fs.chmodSync(dir, 0o1777) // a /tmp-like directory: anyone may create the pidfile before the VM does
      const file = path.join(dir, "vms.json")
      fs.writeFileSync(file, JSON.stringify([{ id: "vm-a", pidfile: "vm-a.pid", vcpus: 1, memory: "1G" }]))
      const pidfile = path.join(dir, "vm-a.pid")
      fs.writeFileSync(pidfile, `${process.pid}\n`)
      fs.chownSync(pidfile, 65534, 65534) // nobody's
      const logs: Array<string> = []
      const logger = Logger.make(({ logLevel, message }) => logs.push(`${logLevel.label} ${String(message)}`))
      const source = Effect.runSync(StaticFileSource.make({ path: file }))
      const list = () =>
        Effect.runPromise(Effect.either(source.list).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger))))
      const pid = async () => Either.getOrThrow(await list())[0]?.hypervisorPid
      assert.isUndefined(await pid())
      assert.isUndefined(await pid())
      assert.deepStrictEqual(logs, [
        `WARN pidfile ${pidfile} ignored: it belongs to neither root, this user nor the instances file's owner`
      ])
      // Root's pidfile is read; so is one of the instances file's owner.
      fs.chownSync(pidfile, 0, 0)
      assert.strictEqual(await pid(), process.pid)
      fs.chownSync(pidfile, 65534, 65534)
      fs.chownSync(file, 65534, 65534)
      assert.strictEqual(await pid(), process.pid)
      assert.lengthOf(logs, 1)
    }
  )

  it("re-reads the file only when it changes: same listing object while unchanged, new one after a rewrite", async () => {
    const dir = tempDir()
    const file = path.join(dir, "vms.json")
    const write = (vcpus: number) => fs.writeFileSync(file, JSON.stringify([{ id: "a", vcpus, memory: "1G" }]))
    write(1)
    const list = listWith(file)
    const first = Either.getOrThrow(await list())
    assert.strictEqual(Either.getOrThrow(await list()), first) // not parsed again
    write(2) // same size; mtime and ctime move
    const second = Either.getOrThrow(await list())
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
    assert.strictEqual(Either.getOrThrow(await list())[0]?.allocatedVcpus, 3)
    // An atomic replace (write a temp file, rename over): a new inode.
    fs.writeFileSync(`${file}.tmp`, JSON.stringify([{ id: "b", vcpus: 4, memory: "2G" }]))
    fs.renameSync(`${file}.tmp`, file)
    assert.deepStrictEqual(Either.getOrThrow(await list()), [
      { id: "b", name: "b", allocatedVcpus: 4, allocatedMemoryBytes: 2 * GiB }
    ])
  })

  it("fails with the file's path and what is wrong, then lists again once the file is fixed", async () => {
    const dir = tempDir()
    const json = path.join(dir, "vms.json")
    const yaml = path.join(dir, "vms.yml")
    const list = listWith(json)
    const listYaml = listWith(yaml)
    const good = [{ id: "a", vcpus: 1, memory: "1G" }]
    fs.writeFileSync(json, JSON.stringify(good))
    assert.strictEqual(Either.getOrThrow(await list()).length, 1)

    const table: Array<[string, string]> = [
      ['[{"id":"a",', "invalid JSON: unexpected end of the file at line 1, column 12"],
      ["", "the file is empty"],
      ['"just a string"', 'expected a list of instances or an object with "instances", got string'],
      ['[{"id":"a","vcpus":2}]', "[0].memory: is missing"],
      [
        '[{"id":"a","vcpus":-1,"memory":true,"pid":0}]',
        '[0].pid: Expected a number between 1 and 4194304; [0].vcpus: Expected a non-negative number; [0].memory: expected bytes or a size such as "1G" or "512M", got boolean'
      ],
      [
        '[{"id":"a","vcpus":1,"memory":"lots"}]',
        '[0].memory: expected bytes or a size such as "1G" or "512M", got string'
      ],
      [
        '[{"id":"a","vcpus":1,"memory":1,"pidfle":"x"}]',
        '[0].<unknown key>: is unexpected, expected: "id" | "name" | "pid" | "pidfile" | "tap" | "taps" | "networkEnabled" | "vcpus" | "memory"'
      ],
      [
        '[{"id":"a","vcpus":1,"memory":1,"pidfle":"x","tpa":"t","nmae":"n"}]',
        '[0].<unknown key> (3 keys): is unexpected, expected: "id" | "name" | "pid" | "pidfile" | "tap" | "taps" | "networkEnabled" | "vcpus" | "memory"'
      ],
      // The library's and the JSON API's names for the fields are told the key meant.
      [
        '[{"id":"a","hypervisorPid":7,"tapDevice":"t","allocatedVcpus":2,"allocatedMemoryBytes":1}]',
        '[0].hypervisorPid: is not a key of an instance; the key is "pid"; [0].tapDevice: is not a key of an instance; the key is "tap"; [0].allocatedVcpus: is not a key of an instance; the key is "vcpus"; [0].allocatedMemoryBytes: is not a key of an instance; the key is "memory"; [0].vcpus: is missing; and 1 more'
      ],
      [
        '[{"instance_id":"a","vcpus":1,"memory":1,"pidFile":"x"}]',
        '[0].instance_id: is not a key of an instance; the key is "id"; [0].pidFile: is not a key of an instance; the key is "pidfile"; [0].id: is missing'
      ],
      // Outside an entry a spelling of the list is an unknown key like any other.
      ['{"instanceId":"a"}', 'instanceId: is unexpected, expected: "instances"; instances: is missing'],
      [
        '[{"id":"a","vcpus":1,"memory":1,"constructor":1}]',
        '[0].<unknown key>: is unexpected, expected: "id" | "name" | "pid" | "pidfile" | "tap" | "taps" | "networkEnabled" | "vcpus" | "memory"'
      ],
      ['[{"id":"a","vcpus":1,"memory":1,"pid":5,"pidfile":"x"}]', "[0]: give either pid or pidfile, not both"],
      ['[{"id":"a","vcpus":1,"memory":1,"tap":"a/b"}]', "[0].tap: not a valid interface name (contains '/')"],
      [
        '[{"id":"a","vcpus":1,"memory":1,"tap":"t","networkEnabled":false}]',
        "[0]: tap is set but networkEnabled is false"
      ],
      ['[{"id":"a","vcpus":1,"memory":1,"tap":"t","taps":["u"]}]', "[0]: give either tap or taps, not both"],
      ['[{"id":"a","vcpus":1,"memory":1,"taps":["t","t"]}]', "[0]: taps lists a TAP twice"],
      [
        '[{"id":"a","vcpus":1,"memory":1,"taps":["t"],"networkEnabled":false}]',
        "[0]: taps is set but networkEnabled is false"
      ],
      [
        '[{"id":"a","vcpus":1,"memory":1,"taps":["ok","../x"]}]',
        "[0].taps[1]: not a valid interface name (contains '/')"
      ],
      ['[{"id":"a","vcpus":1,"memory":1,"taps":[]}]', "[0].taps: Expected an array of at least 1 item(s)"],
      ['{"instances":[{"id":"","vcpus":1,"memory":1}]}', "instances[0].id: Expected a non empty string"],
      ['{"instance":[]}', '<unknown key>: is unexpected, expected: "instances"; instances: is missing'],
      [
        '[{"id":"a","vcpus":1,"memory":1},{"id":"b","vcpus":1,"memory":1},{"id":"a","vcpus":1,"memory":1}]',
        "duplicate id (entries 0 and 2)"
      ]
    ]
    for (const [text, what] of table) {
      fs.writeFileSync(json, text)
      assert.strictEqual(reasonOf(await list()), `${json}: ${what}`, text)
      assert.strictEqual(reasonOf(await list()), `${json}: ${what}`, "unchanged file: same error") // from the cache
    }

    fs.writeFileSync(yaml, "instances:\n  - id: a\n    vcpus: 2\n   memory: 1G\n")
    assert.strictEqual(reasonOf(await listYaml()), `${yaml}: invalid YAML: MISSING_CHAR at line 4, column 1`)
    fs.writeFileSync(yaml, "instances:\n  - id: 1234\n    vcpus: 2\n    memory: 1G\n")
    assert.strictEqual(reasonOf(await listYaml()), `${yaml}: instances[0].id: Expected string`)
    fs.writeFileSync(yaml, "instances:\n  - id: '1234'\n    vcpus: 2\n    memory: 1G\n")
    assert.deepStrictEqual(Either.getOrThrow(await listYaml()), [
      { id: "1234", name: "1234", allocatedVcpus: 2, allocatedMemoryBytes: GiB }
    ])

    fs.rmSync(json)
    assert.strictEqual(reasonOf(await list()), `${json}: cannot read: ENOENT`)
    fs.mkdirSync(json)
    assert.strictEqual(reasonOf(await list()), `${json}: cannot read: ENOTREG`)
    fs.rmdirSync(json)
    fs.writeFileSync(json, JSON.stringify([...good, { id: "b", vcpus: 2, memory: 1024 }]))
    assert.deepStrictEqual(
      Either.getOrThrow(await list()).map((vm) => vm.id),
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

/** Collections over one file: refresh, then the snapshot's ids and its source error, if any. */
const collectorOver = (file: string) => {
  const live = Collector.layer({ maxAge: 0 }).pipe(
    Layer.provide(Layer.merge(NodeReaders.layer(), StaticFileSource.layer({ path: file }))),
    Layer.orDie
  )
  return <A>(body: (refresh: Effect.Effect<Collector.Snapshot>) => Effect.Effect<A>) =>
    Effect.flatMap(Collector.Collector, (collector) => body(collector.refresh)).pipe(Effect.provide(live))
}

const goodEntries = [
  { id: "good-a", vcpus: 1, memory: "1G" },
  { id: "good-b", vcpus: 2, memory: "2G" }
]
const entriesLine = (n: number) =>
  `[${Array.from({ length: n }, (_, i) => `{"id":"vm-${i}","vcpus":1,"memory":1}`).join(",")}]`

describe("hostile instances files", () => {
  const hostile: ReadonlyArray<{
    readonly name: string
    readonly file: string
    readonly text: () => string
    readonly kind: string
    readonly line?: number
    readonly column?: number
  }> = [
    {
      name: "100,000 nested [ in JSON",
      file: "vms.json",
      text: () => "[".repeat(100_000) + "]".repeat(100_000),
      kind: "too_deep",
      line: 1,
      column: StaticFileSource.MAX_DEPTH + 1
    },
    {
      name: "5,002 nested [ in YAML (10 KB)",
      file: "vms.yaml",
      text: () => "[".repeat(5002) + "]".repeat(5002),
      kind: "too_deep",
      line: 1,
      column: StaticFileSource.MAX_DEPTH + 1
    },
    {
      name: "5,000 compact nested YAML sequences",
      file: "vms.yaml",
      text: () => `instances:\n  - ${"- ".repeat(5000)}x\n`,
      kind: "too_deep",
      line: 2
    },
    {
      name: "100,000 entries in JSON",
      file: "vms.json",
      text: () => entriesLine(100_000),
      kind: "too_large"
    },
    {
      name: "a 5 MB YAML file",
      file: "vms.yaml",
      text: () => `instances:\n${"  - {id: vm, vcpus: 1, memory: 1}\n".repeat(160_000)}`,
      kind: "too_large"
    }
  ]
  for (const { name, file: fileName, text, kind, line, column } of hostile) {
    it.live(`${name} over a good file: the last good listing stays, the error is ${kind}, the process lives`, () =>
      Effect.gen(function* () {
        const file = path.join(tempDir(), fileName)
        fs.writeFileSync(file, JSON.stringify(goodEntries))
        yield* collectorOver(file)((refresh) =>
          Effect.gen(function* () {
            const good = yield* refresh
            assert.strictEqual(good.sourceError, null)
            fs.writeFileSync(file, text())
            for (let round = 0; round < 2; round++) {
              // the second round is served from the remembered failure
              const broken = yield* refresh
              assert.deepStrictEqual(
                broken.stats.map((s) => s.instanceId),
                ["good-a", "good-b"]
              )
              assert.strictEqual(broken.sourceError?.kind, kind, broken.sourceError?.reason)
              if (line !== undefined) assert.strictEqual(broken.sourceError?.line, line)
              if (column !== undefined) assert.strictEqual(broken.sourceError?.column, column)
              assert.include(broken.sourceError?.reason ?? "", file) // the local log names the file
            }
            fs.writeFileSync(file, JSON.stringify([{ id: "fixed", vcpus: 1, memory: 1 }]))
            const fixed = yield* refresh
            assert.strictEqual(fixed.sourceError, null)
            assert.deepStrictEqual(
              fixed.stats.map((s) => s.instanceId),
              ["fixed"]
            )
          })
        )
      })
    )
  }

  it("accepts a file at the entry cap, and the event loop keeps turning while it is parsed", async () => {
    const file = path.join(tempDir(), "vms.yaml")
    const lines = Array.from(
      { length: StaticFileSource.MAX_ENTRIES },
      (_, i) => `  - id: vm-${i}\n    vcpus: 1\n    memory: 1G\n`
    )
    fs.writeFileSync(file, `instances:\n${lines.join("")}`)
    let turns = 0
    let spinning = true
    const spin = () => {
      if (!spinning) return
      turns++
      setImmediate(spin)
    }
    setImmediate(spin)
    const listed = await listWith(file)()
    spinning = false
    assert.strictEqual(Either.getOrThrow(listed).length, StaticFileSource.MAX_ENTRIES)
    // A parse on the main thread would run from start to end without one turn of the loop.
    assert.isAbove(turns, 10)
    fs.writeFileSync(file, `${entriesLine(StaticFileSource.MAX_ENTRIES + 1)}\n`)
    const over = await listWith(file)()
    assert.strictEqual(Either.isLeft(over) ? over.left.kind : "listed", "too_large")
  })

  const secret = "root:$6$Zx9secretHASH:20200:0:99999:7:::\nalice:$6$anotherSECRET:20200:0:99999:7:::\n"
  const exposed = (error: InstanceSourceError) =>
    JSON.stringify({ kind: error.kind, line: error.line, column: error.column })

  it("a symlink to a secret file: kind, line and column, and no content anywhere in the error", async () => {
    const dir = tempDir()
    const secretFile = path.join(dir, "shadow")
    fs.writeFileSync(secretFile, secret)
    const cases: Array<[string, string, number, number]> = [
      ["vms.json", "parse_error", 1, 1], // JSON.parse itself would say: Unexpected token 'r', "root:$6$Zx"…
      ["vms.yaml", "parse_error", 1, 1] // a scalar with ':' inside, then a second line: not a list
    ]
    for (const [name] of cases) fs.symlinkSync(secretFile, path.join(dir, name))
    for (const [name, kind, line, column] of cases) {
      const file = path.join(dir, name)
      const result = await listWith(file)()
      assert.isTrue(Either.isLeft(result), name)
      if (Either.isRight(result)) continue
      const error = result.left
      assert.strictEqual(error.kind, kind, error.reason)
      if (name.endsWith(".json")) assert.deepStrictEqual([error.line, error.column], [line, column])
      for (const leak of ["root", "$6$", "secret", "SECRET", "alice", "20200", dir, "shadow"]) {
        assert.notInclude(exposed(error), leak, `${name}: client-visible fields`)
      }
      for (const leak of ["root", "$6$", "secret", "SECRET", "alice", "20200"]) {
        assert.notInclude(error.reason, leak, `${name}: the local log`)
        assert.notInclude(error.message, leak, `${name}: the message`)
      }
    }
  })

  it("schema errors name paths, never the values the file held", async () => {
    const dir = tempDir()
    const file = path.join(dir, "vms.yaml")
    fs.writeFileSync(
      file,
      "instances:\n  - id: hunter2-password\n    vcpus: s3cr3t-token\n    memory: AKIAIOSFODNN7EXAMPLE\n    pid: -42\n"
    )
    const result = await listWith(file)()
    const error = Either.isLeft(result) ? result.left : assert.fail("expected a failure")
    assert.strictEqual(error.kind, "parse_error")
    assert.include(error.reason, "instances[0].vcpus")
    assert.include(error.reason, "instances[0].memory")
    for (const leak of ["hunter2", "s3cr3t", "AKIA", "-42"]) assert.notInclude(error.reason, leak)
    fs.writeFileSync(file, "- {id: twice, vcpus: 1, memory: 1}\n- {id: twice, vcpus: 1, memory: 1}\n")
    const duplicate = await listWith(file)()
    const dupError = Either.isLeft(duplicate) ? duplicate.left : assert.fail("expected a failure")
    assert.strictEqual(dupError.kind, "parse_error")
    assert.notInclude(dupError.reason, "twice")
  })

  it("read failures have their own kinds: not_found, read_failed (not a regular file), too_large", async () => {
    const dir = tempDir()
    const file = path.join(dir, "vms.json")
    const kindNow = async () => {
      const result = await listWith(file)()
      return Either.isLeft(result) ? result.left.kind : "listed"
    }
    assert.strictEqual(await kindNow(), "not_found")
    fs.mkdirSync(file)
    assert.strictEqual(await kindNow(), "read_failed")
    fs.rmdirSync(file)
    fs.writeFileSync(file, " ".repeat(StaticFileSource.MAX_FILE_BYTES + 1))
    assert.strictEqual(await kindNow(), "too_large")
  })
})

describe("the instances file's pre-scan", () => {
  it("the JSON syntax check agrees with JSON.parse (fast-check, fixed seed)", () => {
    FastCheck.assert(
      FastCheck.property(
        FastCheck.json({ maxDepth: 6 }),
        FastCheck.nat(),
        FastCheck.nat(3),
        FastCheck.string({ maxLength: 3, unit: FastCheck.constantFrom(...'[]{}:,"\\ \n0-1.eE+tfnul') }),
        (json, at, cut, insert) => {
          const i = at % (json.length + 1)
          const text = json.slice(0, i) + insert + json.slice(i + cut)
          let valid = true
          try {
            JSON.parse(text)
          } catch {
            valid = false
          }
          const problem = FileParser.checkJson(text, 64)
          assert.strictEqual(problem === undefined, valid, JSON.stringify(text))
          if (problem !== undefined) assert.isAtMost(problem.offset, text.length)
        }
      ),
      { seed: 20261205, numRuns: 30_000 }
    )
  })

  it("brackets inside YAML quotes, comments and plain scalars do not make a valid file too deep", async () => {
    const file = path.join(tempDir(), "vms.yaml")
    const brackets = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
    fs.writeFileSync(
      file,
      [
        `# ${brackets}`,
        "instances:",
        `  - id: "a${brackets}"`,
        `    name: 'it''s ${brackets}' # ${brackets}`,
        "    vcpus: 1",
        "    memory: 1G",
        `  - {id: b, name: "q\\"${brackets}", vcpus: 2, memory: 2G}`,
        `  - id: it's-c${"[".repeat(3)}`,
        "    vcpus: 3",
        "    memory: 3G",
        ""
      ].join("\n")
    )
    const listed = await listWith(file)()
    assert.deepStrictEqual(
      Either.getOrThrow(listed).map((vm) => [vm.id, vm.allocatedVcpus]),
      [
        [`a${brackets}`, 1],
        ["b", 2],
        ["it's-c[[[", 3]
      ]
    )
    // The map and 31 lists are 32 levels; one more is too deep, found at its own `[` or `- `.
    assert.strictEqual(FileParser.yamlTooDeepAt(`a: ${"[".repeat(31)}${"]".repeat(31)}`, 32), -1)
    assert.strictEqual(FileParser.yamlTooDeepAt(`a: ${"[".repeat(40)}`, 32), 3 + 31)
    assert.strictEqual(FileParser.yamlTooDeepAt(`a:\n  ${"- ".repeat(40)}x`, 32), 5 + 2 * 31)
  })
})
