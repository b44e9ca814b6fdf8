/** The `vm-metrics` binary, run as a user runs it: flags, env fallbacks, exit codes, list/stats/serve. */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as MetricGroup from "@vm-metrics/core/MetricGroup"
import * as MetricOptions from "@vm-metrics/otel/MetricOptions"
import { hasCommand } from "@vm-metrics/testing"
import { skipReason, tapSkipReason } from "@vm-metrics/testing/Skip"
import { createTap, deleteTap, pushFrames, sysCounter } from "@vm-metrics/testing/Tap"
import { ConfigProvider, Duration, Effect, Either, Option } from "effect"
import * as AppConfig from "../src/AppConfig.js"
import { parseDuration } from "../src/AppConfig.js"
import * as Connections from "../src/Connections.js"
import { ExitCode } from "../src/ExitCode.js"
import * as Server from "../src/Server.js"
import { BIN, cli, freePort } from "./cliRig.js"

/** A process that discovery takes for QEMU: /bin/sh copied under QEMU's name, with QEMU-like flags. */
const fakeQemu = (dir: string): ChildProcess => {
  const exe = path.join(dir, "qemu-system-x86_64")
  fs.copyFileSync("/bin/sh", exe)
  return spawn(
    exe,
    [
      "-c",
      "sleep 60",
      "-name",
      "cli-vm,debug-threads=on",
      "-uuid",
      "7d2f1c3a-0000-4000-8000-00000000c11e",
      "-smp",
      "3",
      "-m",
      "512M"
    ],
    { stdio: "ignore" }
  )
}

describe("parseDuration", () => {
  it("reads ms, s and minutes; refuses anything else", () => {
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("500ms"))), 500)
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("2s"))), 2000)
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("1.5 seconds"))), 1500)
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("250 millis"))), 250)
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("1m"))), 60_000)
    for (const bad of ["soon", "", "-1s", "1h", "5 parsecs"]) assert.isTrue(Either.isLeft(parseDuration(bad)), bad)
    // What a timer holds, and no more (Node would run a longer timer after 1 ms).
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("2147483647ms"))), 2_147_483_647)
    assert.strictEqual(Duration.toMillis(Either.getOrThrow(parseDuration("35791 min"))), 35_791 * 60_000)
    for (const long of ["2147483648ms", "10000000000s", `1${"0".repeat(400)}s`]) {
      const parsed = parseDuration(long)
      assert.isTrue(Either.isLeft(parsed), long)
      if (Either.isLeft(parsed)) assert.include(parsed.left.message, "too long")
    }
  })
})

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

/** What `serve` is given when no flag is set (the table's defaults). */
const noFlags: AppConfig.ServeInput = {
  host: AppConfig.settings.host.default,
  port: AppConfig.settings.port.default,
  source: AppConfig.settings.source.default,
  instancesFile: Option.none(),
  libvirtRunDir: AppConfig.settings.libvirtRunDir.default,
  maxAge: AppConfig.settings.maxAge.default,
  procRoot: AppConfig.settings.procRoot.default,
  sysRoot: AppConfig.settings.sysRoot.default,
  discoveryUids: [],
  authTokenFile: Option.none(),
  metricsWithoutAuth: false,
  maxConnections: Option.none(),
  headersTimeout: AppConfig.settings.headersTimeout.default,
  requestTimeout: AppConfig.settings.requestTimeout.default,
  keepAliveTimeout: AppConfig.settings.keepAliveTimeout.default,
  shutdownGrace: AppConfig.settings.shutdownGrace.default,
  metricPrefix: AppConfig.settings.metricPrefix.default,
  otlp: AppConfig.settings.otlp.default
}

const REPO_ROOT = path.resolve(import.meta.dirname, "..", "..", "..")

describe("AppConfig: the one table of settings", () => {
  it("its defaults are the ones the server, the connections and the metric options use", () => {
    assert.strictEqual(AppConfig.defaults.host, Server.defaults.host)
    assert.strictEqual(AppConfig.defaults.port, Server.defaults.port)
    assert.deepStrictEqual(AppConfig.defaults.limits, Connections.defaults)
    assert.deepStrictEqual(AppConfig.defaults.metrics, MetricOptions.defaults)
  })

  it.effect("environment-only settings reach the AppConfig; a bad value is a one-line UsageError naming it", () =>
    Effect.gen(function* () {
      const plain = yield* AppConfig.resolveServe(noFlags).pipe(withEnv({}))
      assert.deepStrictEqual(plain.metrics, MetricOptions.defaults)
      assert.strictEqual(Duration.toMillis(Duration.decode(plain.otlpInterval)), 60_000)
      assert.deepStrictEqual(plain.resource, {})
      const set = yield* AppConfig.resolveServe(noFlags).pipe(
        withEnv({
          VM_METRICS_LABEL_BUDGET: "7",
          VM_METRICS_SERIES_BUDGET: "70",
          VM_METRICS_UTILIZATION_RATIO: "false",
          OTEL_METRIC_EXPORT_INTERVAL: "1500",
          OTEL_RESOURCE_ATTRIBUTES: "host.name=hv-9,service.name=from-list"
        })
      )
      assert.deepStrictEqual(set.metrics, {
        prefix: "hypeman_vm",
        utilizationRatio: false,
        labelBudget: 7,
        seriesBudget: 70,
        groups: MetricGroup.defaultGroups
      })
      assert.strictEqual(Duration.toMillis(Duration.decode(set.otlpInterval)), 1500)
      assert.deepStrictEqual(set.resource, {
        serviceName: "from-list",
        attributes: { "host.name": "hv-9", "service.name": "from-list" }
      })
      for (const [variable, value] of [
        ["OTEL_METRIC_EXPORT_INTERVAL", "soon"],
        ["OTEL_METRIC_EXPORT_INTERVAL", "0"],
        ["OTEL_METRIC_EXPORT_INTERVAL", "2147483648"], // beyond a timer: Node would push every 1 ms
        ["VM_METRICS_LABEL_BUDGET", "many"],
        ["VM_METRICS_SERIES_BUDGET", "0"],
        ["VM_METRICS_UTILIZATION_RATIO", "perhaps"]
      ] as const) {
        const error = yield* Effect.flip(AppConfig.resolveServe(noFlags).pipe(withEnv({ [variable]: value })))
        assert.strictEqual(error._tag, "UsageError")
        assert.include(error.message, variable)
        assert.notInclude(error.message, "\n")
      }
    })
  )

  it.effect(
    "--collect adds groups to the default ones, --no-collect removes them (it wins); both reach the collector and the metrics",
    () =>
      Effect.gen(function* () {
        const groups = (collect: ReadonlyArray<string>, noCollect: ReadonlyArray<string>) =>
          Effect.map(AppConfig.resolveServe({ ...noFlags, collect, noCollect }).pipe(withEnv({})), (config) => {
            assert.deepStrictEqual(config.metrics.groups, config.groups, "the groups exported are the groups collected")
            return [...config.groups].sort()
          })
        assert.deepStrictEqual(yield* groups([], []), ["cpu", "disk", "memory", "network"])
        assert.deepStrictEqual(yield* groups(["vcpu", "interfaces,packets"], []), [
          "cpu",
          "disk",
          "interfaces",
          "memory",
          "network",
          "packets",
          "vcpu"
        ])
        assert.deepStrictEqual(yield* groups(["all"], ["disk", "vcpu"]), [
          "cpu",
          "interfaces",
          "memory",
          "network",
          "packets"
        ])
        assert.deepStrictEqual(yield* groups(["vcpu"], ["default"]), ["vcpu"])
        assert.deepStrictEqual(yield* groups([], ["all"]), [])
        assert.deepStrictEqual(yield* groups(["disk"], ["disk"]), ["cpu", "memory", "network"])
        for (const [collect, noCollect, flag] of [
          [["vcpus"], [], "--collect"],
          [["cpu,memry"], [], "--collect"],
          [[], ["cpu", "NETWORK"], "--no-collect"],
          [["on-demand"], [], "the collection mode is set by --collection"]
        ] as const) {
          const error = yield* Effect.flip(AppConfig.resolveServe({ ...noFlags, collect, noCollect }).pipe(withEnv({})))
          assert.strictEqual(error._tag, "UsageError")
          assert.include(error.message, flag)
          assert.include(error.message, "cpu, memory, disk, network, packets, vcpu, interfaces", "names the groups")
        }
      })
  )

  it("README's configuration table is the table", () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8")
    assert.include(readme, AppConfig.markdownTable())
  })

  it("every variable the deploy files set or name is a setting of the table", () => {
    const known = new Set<string>(
      [
        ...Object.values(AppConfig.settings).map((setting: AppConfig.Setting<unknown>) => setting.env),
        ...AppConfig.exporterVariables.flatMap((v) => v.env.split(" / "))
      ].filter((env): env is string => env !== null)
    )
    for (const file of ["deploy/vm-metrics.service", "deploy/README.md"]) {
      const named = fs.readFileSync(path.join(REPO_ROOT, file), "utf8").match(/\b(VM_METRICS|OTEL)_[A-Z_]+/g) ?? []
      assert.isAbove(named.length, 3, file)
      for (const variable of named) assert.isTrue(known.has(variable), `${file}: ${variable} is not in AppConfig`)
    }
  })
})

describe("vm-metrics CLI", () => {
  it("--help of serve and top shows every setting of the table: flag, variable and default", async () => {
    for (const [command, scopes] of [
      ["serve", ["serve", "collect"]],
      ["top", ["top", "collect"]]
    ] as const) {
      const { code, stdout } = await cli([command, "--help"])
      assert.strictEqual(code, 0)
      const help = stdout.replace(/\s+/g, " ")
      const shown = Object.values(AppConfig.settings).filter(
        (setting: AppConfig.Setting<unknown>) =>
          (scopes as ReadonlyArray<string>).includes(setting.scope) && (command === "serve" || setting.flag !== null)
      )
      for (const setting of shown as ReadonlyArray<AppConfig.Setting<unknown>>) {
        const what = `${command}: ${setting.flag ?? setting.env}`
        if (setting.flag !== null) assert.include(help, `--${setting.flag}`, what)
        if (setting.env !== null) assert.include(help, setting.env, what)
        assert.include(help, `default ${AppConfig.shownDefault(setting)}`, what)
      }
    }
  }, 120_000)

  it("--help of serve documents every flag with its environment variable", async () => {
    const { code, stdout } = await cli(["serve", "--help"])
    assert.strictEqual(code, 0)
    for (const flag of [
      "host",
      "port",
      "source",
      "instances-file",
      "libvirt-run-dir",
      "max-age",
      "proc-root",
      "sys-root",
      "auth-token-file",
      "otlp",
      "metric-prefix",
      "max-connections",
      "headers-timeout",
      "request-timeout",
      "keep-alive-timeout",
      "shutdown-grace"
    ]) {
      assert.include(stdout, `--${flag}`)
    }
    for (const variable of [
      "VM_METRICS_HOST",
      "VM_METRICS_PORT",
      "VM_METRICS_SOURCE",
      "VM_METRICS_MAX_AGE",
      "VM_METRICS_AUTH_TOKEN_FILE",
      "VM_METRICS_OTLP",
      "VM_METRICS_METRIC_PREFIX",
      "VM_METRICS_MAX_CONNECTIONS",
      "VM_METRICS_HEADERS_TIMEOUT",
      "VM_METRICS_SHUTDOWN_GRACE"
    ]) {
      assert.include(stdout, variable)
    }
  }, 120_000)

  it("--help lists the exit statuses", async () => {
    const { code, stdout } = await cli(["--help"])
    assert.strictEqual(code, 0)
    assert.include(stdout.replace(/\s+/g, " "), "2 usage error")
    assert.include(stdout.replace(/\s+/g, " "), "5 cannot listen")
  }, 120_000)

  it("the entry point answers help and version from the build's capture, byte for byte the full CLI's", async () => {
    const full = (args: ReadonlyArray<string>) => cli(args, {}, path.join(path.dirname(BIN), "cli.mjs"))
    for (const args of [
      [],
      ["--help"],
      ["-h"],
      ["--version"],
      ["stats", "--help"],
      ["serve", "-h"],
      ["top", "--help"]
    ]) {
      const [fast, slow] = [await cli(args), await full(args)]
      assert.strictEqual(fast.code, slow.code, args.join(" "))
      assert.strictEqual(fast.stdout, slow.stdout, args.join(" "))
      assert.strictEqual(fast.stderr, slow.stderr, args.join(" "))
    }
    // Not captured (an unknown command, help after a flag): the full CLI answers, so the same again.
    for (const args of [
      ["nope", "--help"],
      ["serve", "--port", "1", "--help"]
    ]) {
      assert.deepStrictEqual(await cli(args), await full(args), args.join(" "))
    }
  }, 180_000)

  it("bad flags and values exit with status 2 and say what is wrong", async () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, Record<string, string>, string]> = [
      [["serve", "--source", "nope"], {}, "discovery, file, libvirt"],
      [["serve", "--port", "abc"], {}, "abc"],
      [["serve", "--port", "70000"], {}, "1-65535"],
      [["serve", "--max-age", "soon"], {}, "not a duration"],
      [["serve", "--source", "file"], {}, "--instances-file"],
      [["serve", "--proc-root", "relative"], {}, "procRoot"],
      [["list", "--proc-root", "/etc"], {}, "--proc-root /etc is not a procfs mount"],
      [["stats", "x", "--sys-root", "/proc"], {}, "--sys-root /proc is not a sysfs mount"],
      [["list", "--proc-root", "/nonexistent"], {}, "--proc-root /nonexistent: cannot read it (ENOENT)"],
      [["serve"], { VM_METRICS_PORT: "nope" }, "VM_METRICS_PORT"],
      [["serve", "--auth-token-file", "/nonexistent/token"], {}, "auth token file"],
      [["serve", "--headers-timeout", "40s"], {}, "at most --request-timeout"],
      [["serve", "--keep-alive-timeout", "0s"], {}, "--keep-alive-timeout must be > 0"],
      [["serve", "--shutdown-grace", "10000000000s"], {}, '--shutdown-grace: too long: "10000000000s"'],
      [["serve"], { VM_METRICS_MAX_CONNECTIONS: "0" }, "--max-connections must be a positive integer"],
      [["serve"], { OTEL_METRIC_EXPORT_INTERVAL: "soon" }, "OTEL_METRIC_EXPORT_INTERVAL"],
      [["serve", "--collect", "vcpus"], {}, "cpu, memory, disk, network, packets, vcpu, interfaces"],
      [["list"], { VM_METRICS_NO_COLLECT: "cpu,bogus" }, 'unknown metric group "bogus"'],
      [["stats"], {}, "Missing argument"],
      [["top", "--url", "ftp://x"], {}, "--url: not an http(s) URL: ftp://x"],
      [["top", "--url", "http://[::1"], {}, "not an http(s) URL: http://[::1"],
      [["top"], {}, "top draws on a terminal and stdout is not one"],
      [["top", "--interval", "0s"], {}, "--interval must be > 0, got 0s"],
      [["top", "--interval", "soon"], {}, '--interval: not a duration: "soon"'],
      [["top", "--url", "http://user:s3cret@127.0.0.1:9"], {}, "--url must not hold a user or password"],
      [["top", "--url", "http://127.0.0.1:9"], {}, "top draws on a terminal and stdout is not one"],
      [["frobnicate"], {}, "serve"],
      [
        ["serve", "--metric-prefix", "1bad"],
        {},
        "--metric-prefix (VM_METRICS_METRIC_PREFIX): not a Prometheus name: 1bad"
      ],
      [["serve"], { VM_METRICS_LABEL_BUDGET: "0" }, "VM_METRICS_LABEL_BUDGET: must be a positive integer"],
      [["serve", "--discovery-uid", "no-such-user-here"], {}, '--discovery-uid: no user "no-such-user-here"'],
      // The OTel exporter would push to localhost, or without the key, rather than refuse these.
      [
        ["serve", "--otlp", "on"],
        { OTEL_EXPORTER_OTLP_ENDPOINT: "collector.example:4318" },
        'OTEL_EXPORTER_OTLP_ENDPOINT="collector.example:4318": not an http(s) URL'
      ],
      [["serve"], { OTEL_METRICS_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_HEADERS: "s3cret" }, "item 1 has no '='"]
    ]
    // One at a time: ten tsx CLIs at once on two loaded cores can take longer than any sane timeout.
    for (const [args, env, expected] of cases) {
      const { code, stderr, stdout } = await cli(args, env)
      assert.strictEqual(code, ExitCode.usage, `${args.join(" ")}: ${stderr}`)
      assert.include(stderr + stdout, expected, args.join(" "))
      // The error alone: no log line of a server that was never going to start comes before it.
      assert.notInclude(stderr + stdout, "level=", args.join(" "))
    }
  }, 600_000)

  it("what @effect/cli finds wrong with a command line is one line, as the binary's other errors are", async () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, Record<string, string>, string]> = [
      [["stats"], {}, "vm-metrics: Missing argument <id>\n"],
      [["serve", "--bogus"], {}, "vm-metrics: Received unknown argument: '--bogus'\n"],
      [["stats", "a", "b"], {}, "vm-metrics: Received unknown argument: 'b'\n"],
      [
        ["frobnicate"],
        {},
        "vm-metrics: Invalid subcommand for vm-metrics - use one of 'serve', 'list', 'stats', 'top', 'help', 'version'\n"
      ],
      [["list", "--source", "nope"], {}, "vm-metrics: Expected one of the following cases: discovery, file, libvirt\n"],
      // A flag last without its value: @effect/cli said "unknown argument", or took a repeatable one as not given.
      [["serve", "--port"], {}, "vm-metrics: --port needs a value\n"],
      [["list", "--no-collect"], {}, "vm-metrics: --no-collect needs a value\n"],
      [["list", "--collect"], {}, "vm-metrics: --collect needs a value\n"]
    ]
    for (const [args, env, expected] of cases) {
      const { code, stderr, stdout } = await cli(args, env)
      assert.strictEqual(code, ExitCode.usage, `${args.join(" ")}: ${stderr}`)
      assert.strictEqual(stderr, expected, args.join(" "))
      assert.strictEqual(stdout, "", args.join(" "))
    }
  }, 600_000)

  it("an error quoting what was typed is one printable line: escapes in a flag are not written to the terminal", async () => {
    const { code, stderr } = await cli(["top", "--url", "http://x\u001b]0;owned\u0007\u001b[2J y\nz"])
    assert.strictEqual(code, ExitCode.usage, stderr)
    assert.strictEqual(stderr, "vm-metrics: --url: not an http(s) URL: http://x?]0;owned??[2J y?z\n")
  }, 120_000)

  it("list and stats show a discovered hypervisor process; stats of an unknown id exits 3 (not found)", async () => {
    // Not under /tmp: discovery ignores an executable in a world-writable directory (untrusted_exe).
    const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-cli-"))
    fs.chmodSync(dir, 0o755)
    const qemu = fakeQemu(dir)
    try {
      await new Promise((resolve) => setTimeout(resolve, 300))
      const listed = await cli(["list"])
      assert.strictEqual(listed.code, 0, listed.stderr)
      const row = listed.stdout.split("\n").find((line) => line.includes("cli-vm"))
      assert.isDefined(row)
      assert.match(
        row!,
        new RegExp(`^7d2f1c3a-0000-4000-8000-00000000c11e\\s+cli-vm\\s+running\\s+${qemu.pid}\\s+3\\s`)
      )
      const stats = await cli(["stats", "cli-vm"])
      assert.strictEqual(stats.code, 0, stats.stderr)
      const body = JSON.parse(stats.stdout)
      assert.strictEqual(body.instance_id, "7d2f1c3a-0000-4000-8000-00000000c11e")
      assert.strictEqual(body.allocated_vcpus, 3)
      assert.strictEqual(body.allocated_memory_bytes, 512 * 1024 * 1024)
      assert.strictEqual(body.pid, qemu.pid)
      // The default groups' values (a shell has anonymous memory), and no rate from one collection.
      assert.isAbove(body.memory_anon_bytes, 0)
      assert.isAtLeast(body.disk_read_bytes, 0)
      assert.isNull(body.cpu_cores)
      assert.isNull(body.cpu_delay_ratio)
      const unknown = await cli(["stats", "no-such-vm"])
      assert.strictEqual(unknown.code, ExitCode.notFound, unknown.stderr)
      assert.strictEqual(unknown.stdout, "")
      assert.match(unknown.stderr, /^vm-metrics: no instance matches "no-such-vm"$/m)
    } finally {
      qemu.kill("SIGKILL")
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)

  const asNobodyMissing =
    process.getuid?.() !== 0
      ? "not root (the test runs list as nobody)"
      : hasCommand("setpriv")
        ? undefined
        : "no setpriv"
  it.skipIf(skipReason(asNobodyMissing, "list-as-another-user test") !== undefined)(
    "list as a user who cannot verify root's hypervisor: not listed, and said on stderr, not a silent empty table",
    async () => {
      const dir = fs.mkdtempSync(path.join(fs.existsSync("/run") ? "/run" : os.homedir(), "vm-metrics-cli-"))
      fs.chmodSync(dir, 0o755)
      const qemu = fakeQemu(dir)
      try {
        await new Promise((resolve) => setTimeout(resolve, 300))
        const asNobody = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          const args = ["--reuid", "nobody", "--regid", "nogroup", "--clear-groups", process.execPath, BIN, "list"]
          execFile(
            "setpriv",
            args,
            { env: { ...process.env, NO_COLOR: "1" }, timeout: 90_000 },
            (error, stdout, stderr) =>
              resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
          )
        })
        assert.strictEqual(asNobody.code, 0, asNobody.stderr)
        assert.notInclude(asNobody.stdout, "cli-vm")
        // Other tests' QEMUs may be running too: at least this one is counted.
        assert.match(
          asNobody.stderr,
          /^vm-metrics: \d+ hypervisor process(es)? not listed; \d+ unverifiable: their owner or executable cannot be read by this user \(run as root, or with CAP_SYS_PTRACE/m
        )
        // As root the same process is listed, and nothing is said.
        const asRoot = await cli(["list"])
        assert.include(asRoot.stdout, "cli-vm")
      } finally {
        qemu.kill("SIGKILL")
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
    180_000
  )

  it.skipIf(tapSkipReason() !== undefined)(
    "stats reads the one instance it names (its TAP's counters, VM perspective); an id prefix of two instances exits 3",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-cli-"))
      const tap = createTap()
      try {
        const vms = [
          { id: "pair-a1", name: "a1", pid: process.pid, tap, vcpus: 1, memory: "1G" },
          { id: "pair-a2", name: "a2", pid: process.pid, vcpus: 1, memory: "1G" }
        ]
        fs.writeFileSync(path.join(dir, "vms.json"), JSON.stringify(vms))
        const source = ["--source", "file", "--instances-file", path.join(dir, "vms.json")]
        pushFrames(tap, 5, 100) // from the guest: the TAP's rx, the VM's tx
        const stats = await cli(["stats", "pair-a1", ...source])
        assert.strictEqual(stats.code, 0, stats.stderr)
        const body = JSON.parse(stats.stdout)
        assert.strictEqual(body.instance_id, "pair-a1")
        assert.strictEqual(body.pid, process.pid)
        assert.strictEqual(BigInt(body.network_tx_bytes), sysCounter(tap, "rx_bytes"))
        assert.strictEqual(BigInt(body.network_rx_bytes), sysCounter(tap, "tx_bytes"))
        assert.strictEqual(body.network_tx_bytes, 5 * (100 + 14))
        const ambiguous = await cli(["stats", "pair-a", ...source])
        assert.strictEqual(ambiguous.code, ExitCode.notFound, ambiguous.stderr)
        assert.strictEqual(ambiguous.stdout, "")
        assert.match(ambiguous.stderr, /^vm-metrics: 2 instances match "pair-a", use the full id$/m)
      } finally {
        deleteTap(tap)
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
    120_000
  )

  it("list into a reader that stops early (`| head -1`) stops quietly: status 0, nothing on stderr", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-cli-"))
    try {
      // 3,000 rows: far more than a pipe holds, so the CLI is still writing when the reader goes.
      const vms = Array.from({ length: 3000 }, (_, i) => ({ id: `pipe-${i}`, vcpus: 1, memory: "1G" }))
      fs.writeFileSync(path.join(dir, "vms.json"), JSON.stringify(vms))
      const child = spawn(
        process.execPath,
        [BIN, "list", "--source", "file", "--instances-file", path.join(dir, "vms.json")],
        { stdio: ["ignore", "pipe", "pipe"] }
      )
      let stderr = ""
      child.stderr.on("data", (chunk: Buffer) => {
        stderr += chunk.toString()
      })
      const first = await new Promise<string>((resolve) =>
        child.stdout.once("data", (chunk: Buffer) => resolve(String(chunk)))
      )
      child.stdout.destroy() // the reader is gone, as `head` exits after its line
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve))
      assert.match(first, /^ID\s+NAME/)
      assert.strictEqual(code, 0, stderr)
      assert.strictEqual(stderr, "")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 120_000)

  it("serve: env fallbacks, a static file source and the bearer token from a file", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-cli-"))
    const port = await freePort()
    fs.writeFileSync(path.join(dir, "token"), "tok-123\n")
    fs.writeFileSync(
      path.join(dir, "vms.json"),
      JSON.stringify([{ id: "static-1", name: "from-file", pid: process.pid, vcpus: 2, memory: "1G" }])
    )
    const server = spawn(
      process.execPath,
      [BIN, "serve", "--source", "file", "--instances-file", path.join(dir, "vms.json")],
      {
        env: { ...process.env, VM_METRICS_PORT: String(port), VM_METRICS_AUTH_TOKEN_FILE: path.join(dir, "token") },
        stdio: ["ignore", "ignore", "pipe"]
      }
    )
    let stderr = ""
    server.stderr?.on("data", (chunk) => (stderr += chunk))
    try {
      const base = `http://127.0.0.1:${port}`
      let health: Response | undefined
      for (let i = 0; i < 100 && health === undefined; i++) {
        // Refused before the socket listens, 503 before the app is attached: both mean "not yet".
        health = await fetch(`${base}/healthz`).then(
          (response) => (response.status === 200 ? response : undefined),
          () => undefined
        )
        if (health === undefined) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      assert.strictEqual(health?.status, 200, stderr)
      assert.strictEqual((await fetch(`${base}/instances/from-file/stats`)).status, 401)
      const res = await fetch(`${base}/instances/from-file/stats`, { headers: { authorization: "Bearer tok-123" } })
      assert.strictEqual(res.status, 200)
      const body = (await res.json()) as Record<string, unknown>
      assert.strictEqual(body.instance_id, "static-1")
      assert.strictEqual(body.pid, process.pid)
      assert.strictEqual(body.state, "running")
      assert.strictEqual(body.allocated_memory_bytes, 1024 ** 3)
    } finally {
      server.kill("SIGINT")
      await new Promise((resolve) => server.once("exit", resolve))
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 180_000)
  it.skipIf(process.getuid?.() !== 0)(
    "list keeps the source's own warnings: another user's pidfile is said, the VM is no-process",
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-cli-"))
      try {
        const file = path.join(dir, "vms.json")
        fs.writeFileSync(file, JSON.stringify([{ id: "vm-p", pidfile: "vm-p.pid", vcpus: 1, memory: "1G" }]))
        fs.writeFileSync(path.join(dir, "vm-p.pid"), `${process.pid}\n`)
        fs.chownSync(path.join(dir, "vm-p.pid"), 65534, 65534)
        const listed = await cli(["list", "--source", "file", "--instances-file", file])
        assert.strictEqual(listed.code, 0, listed.stderr)
        assert.match(listed.stdout, /^vm-p\s+vm-p\s+no-process\s+-\s/m)
        assert.include(listed.stderr, `pidfile ${path.join(dir, "vm-p.pid")} ignored: it belongs to neither root`)
      } finally {
        fs.rmSync(dir, { recursive: true, force: true })
      }
    },
    180_000
  )

  it("list and stats of a source that cannot be read exit 4, the error alone on stderr and nothing on stdout", async () => {
    for (const command of [["list"], ["stats", "any"]]) {
      const result = await cli([...command, "--source", "file", "--instances-file", "/nonexistent/vms.json"])
      assert.strictEqual(result.code, ExitCode.sourceUnavailable, `${command[0]}: ${result.stderr}`)
      assert.strictEqual(result.stdout, "", command[0])
      // One line: not the collector's warning about the same failure before it.
      assert.match(result.stderr, /^vm-metrics: cannot list the instances: [^\n]*ENOENT\n$/, command[0])
    }
  }, 180_000)

  it("a busy port or an address not of this host: one line on stderr naming it and the cause, exit 5", async () => {
    const busy = net.createServer()
    const port = await new Promise<number>((resolve) =>
      busy.listen(0, "127.0.0.1", () => resolve((busy.address() as net.AddressInfo).port))
    )
    try {
      const cases: ReadonlyArray<[ReadonlyArray<string>, RegExp]> = [
        [
          ["--port", String(port)],
          new RegExp(`^vm-metrics: cannot listen on 127\\.0\\.0\\.1:${port}: .*\\(EADDRINUSE\\)$`)
        ],
        [
          ["--host", "192.0.2.1", "--port", String(port)],
          /^vm-metrics: cannot listen on 192\.0\.2\.1:\d+: .*\(EADDRNOTAVAIL\)$/
        ],
        [
          ["--host", "no-such-host.invalid"],
          /^vm-metrics: cannot listen on no-such-host\.invalid:9464: .*\((ENOTFOUND|EAI_AGAIN)\)$/
        ]
      ]
      for (const [args, expected] of cases) {
        const result = await cli(["serve", ...args])
        assert.strictEqual(result.code, ExitCode.cannotListen, `${args.join(" ")}: ${result.stderr}`)
        const errors = result.stderr.split("\n").filter((line) => line.startsWith("vm-metrics:"))
        assert.lengthOf(errors, 1, result.stderr)
        assert.match(errors[0]!, expected)
        assert.notInclude(result.stdout + result.stderr, "ServeError")
        assert.notMatch(result.stdout + result.stderr, /^\s+at /m, "no stack trace")
      }
    } finally {
      busy.close()
    }
  }, 300_000)

  it("an empty VM_METRICS_AUTH_TOKEN or a token file with whitespace inside is a usage error (exit 2)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-cli-"))
    try {
      const port = String(await freePort())
      fs.writeFileSync(path.join(dir, "spaced"), "tok 123\n")
      fs.writeFileSync(path.join(dir, "blank"), "\n")
      const cases: ReadonlyArray<[ReadonlyArray<string>, Record<string, string>, string]> = [
        [[], { VM_METRICS_AUTH_TOKEN: "" }, "VM_METRICS_AUTH_TOKEN is empty"],
        [[], { VM_METRICS_AUTH_TOKEN: "a\tb" }, "VM_METRICS_AUTH_TOKEN contains whitespace"],
        [["--auth-token-file", path.join(dir, "spaced")], {}, "contains whitespace"],
        [["--auth-token-file", path.join(dir, "blank")], {}, "is empty"]
      ]
      for (const [args, env, expected] of cases) {
        const result = await cli(["serve", "--port", port, ...args], env)
        assert.strictEqual(result.code, ExitCode.usage, `${args.join(" ")} ${JSON.stringify(env)}: ${result.stderr}`)
        assert.include(result.stderr, expected)
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
