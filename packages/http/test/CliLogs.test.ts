/**
 * Issue 12, §3 (logs and the command line), with the real bundle and real streams:
 * - `--log-format logfmt|json|pretty`: stderr parsed as what it claims, logfmt by default on a pipe;
 * - the start-up line: listen address (IPv6 in brackets), source, VMs found, docs URL;
 * - no ANSI escape on a pipe or with NO_COLOR (help, errors, logs); colour on a terminal (a real pty: `script`);
 * - `--listen host:port|[v6]:port`, and exit 2 with one line for a bad one or one that disagrees with --host/--port;
 * - `--version`, `version`, `help [command]`, by the entry point and the full CLI alike;
 * - `pnpm start` stopped by Ctrl-C (SIGINT to its process group): exit 0, no ELIFECYCLE, no update banner.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { hasCommand, skipReason } from "@vm-metrics/testing"
import { Either, Option } from "effect"
import * as Ansi from "../src/Ansi.js"
import * as AppConfig from "../src/AppConfig.js"
import * as BuildInfo from "../src/BuildInfo.js"
import { ExitCode } from "../src/ExitCode.js"
import * as Logging from "../src/Logging.js"
import * as StartupLine from "../src/StartupLine.js"
import { BIN, exitWithin, freePort, get, REPO, until } from "./cliRig.js"

const FULL_CLI = path.join(path.dirname(BIN), "cli.mjs")
const ESC = "\x1b"

/** The environment without NO_COLOR (cliRig's `cli` always sets it): a pipe alone must mean no colour. */
const envWith = (extra: Record<string, string>): NodeJS.ProcessEnv => {
  const { NO_COLOR: _, FORCE_COLOR: __, ...rest } = process.env
  return { ...rest, TERM: "xterm-256color", ...extra }
}

/** Runs `node <bin> <args>` with piped stdout/stderr to its end (90 s bound). */
const run = (args: ReadonlyArray<string>, extra: Record<string, string> = {}, bin = BIN) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, ...args], { env: envWith(extra), timeout: 90_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
    )
  })

const scriptMissing = () =>
  skipReason(hasCommand("script") ? undefined : "needs script (util-linux) for a pseudo-terminal", "terminal tests")

/** Runs the command line under a pseudo-terminal (util-linux `script`): what a terminal would show, both streams. */
const quotedCommand = (args: ReadonlyArray<string>) =>
  [process.execPath, ...args].map((word) => `'${word.replace(/'/g, "'\\''")}'`).join(" ")

/**
 * A server on a terminal until its output matches `seen`, then Ctrl-C (SIGINT to its process group): what
 * it wrote. No clock decides when: only the output (the 90 s bound is a failure, not a wait).
 */
const onTerminalUntil = (args: ReadonlyArray<string>, extra: Record<string, string>, seen: RegExp) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn("script", ["-qefc", quotedCommand(args), "/dev/null"], {
      env: envWith(extra),
      detached: true,
      stdio: ["ignore", "pipe", "ignore"]
    })
    let output = ""
    const bound = setTimeout(() => {
      process.kill(-(child.pid ?? 0), "SIGKILL")
      reject(new Error(`no match for ${seen} within 90 s: ${output}`))
    }, 90_000)
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString("utf8")
      if (seen.test(Ansi.strip(output))) process.kill(-(child.pid ?? 0), "SIGINT")
    })
    child.on("exit", () => {
      clearTimeout(bound)
      resolve(output)
    })
  })

const onTerminal = (args: ReadonlyArray<string>, extra: Record<string, string> = {}) => {
  const quoted = quotedCommand(args)
  const result = spawnSync("script", ["-qefc", quoted, "/dev/null"], {
    env: envWith(extra),
    encoding: "utf8",
    timeout: 90_000
  })
  return { code: result.status, output: result.stdout }
}

/** One logfmt line → its fields; undefined when the line is not logfmt (every byte must be a key=value pair). */
const parseLogfmt = (line: string): Record<string, string> | undefined => {
  const pair = /([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)/y
  const fields: Record<string, string> = {}
  while (pair.lastIndex < line.length) {
    const match = pair.exec(line)
    if (match === null) return undefined
    const [, key, raw = ""] = match
    fields[key!] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw
  }
  return line === "" ? undefined : fields
}

const ipv6Loopback = () =>
  fs.existsSync("/proc/net/if_inet6") &&
  fs
    .readFileSync("/proc/net/if_inet6", "utf8")
    .split("\n")
    .some((line) => line.startsWith("00000000000000000000000000000001"))

/** A static instances file of two VMs (this test process, so that they are readable). */
const instancesFile = (dir: string) => {
  const file = path.join(dir, "vms.json")
  fs.writeFileSync(
    file,
    JSON.stringify([
      { id: "log-1", name: "first", pid: process.pid, vcpus: 1, memory: "1G" },
      { id: "log-2", name: "second", pid: process.pid, vcpus: 2, memory: "2G" }
    ])
  )
  return file
}

/** A server with stderr kept; resolves once its stderr holds a line naming `docs` (the start-up line). */
const startServer = async (args: ReadonlyArray<string>, extra: Record<string, string> = {}) => {
  const child = spawn(process.execPath, [BIN, "serve", ...args], {
    env: envWith(extra),
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stderr = ""
  let stdout = ""
  child.stderr?.on("data", (chunk) => (stderr += chunk))
  child.stdout?.on("data", (chunk) => (stdout += chunk))
  await until("the start-up line", 90_000, async () => {
    if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}:\n${stderr}`)
    return /docs/.test(stderr) ? true : undefined
  })
  return { child, stderr: () => stderr, stdout: () => stdout }
}

const stopServer = async (child: ChildProcess) => {
  child.kill("SIGTERM")
  const exit = await exitWithin(child, 30_000)
  if (exit === undefined) child.kill("SIGKILL")
  return exit
}

describe("pure parts", () => {
  it("parseListen: host:port and [v6]:port; anything else is one line saying what is wrong", () => {
    assert.deepStrictEqual(Either.getOrThrow(AppConfig.parseListen("127.0.0.1:9464")), {
      host: "127.0.0.1",
      port: 9464
    })
    assert.deepStrictEqual(Either.getOrThrow(AppConfig.parseListen("[::1]:80")), { host: "::1", port: 80 })
    assert.deepStrictEqual(Either.getOrThrow(AppConfig.parseListen("localhost:65535")), {
      host: "localhost",
      port: 65535
    })
    const cases: ReadonlyArray<[string, string]> = [
      ["::1:9464", "IPv6 address goes in brackets"],
      ["127.0.0.1", "expected host:port"],
      ["[::1]", "expected host:port"],
      ["[nope]:1", "not an IPv6 address"],
      [":9464", "no host"],
      ["host:0", "1-65535"],
      ["host:65536", "1-65535"],
      ["host:abc", "1-65535"],
      ["host:", "1-65535"],
      ["", "expected host:port"]
    ]
    for (const [text, expected] of cases) {
      const result = AppConfig.parseListen(text)
      assert.isTrue(Either.isLeft(result), text)
      if (Either.isLeft(result)) {
        assert.include(result.left.message, expected, text)
        assert.notInclude(result.left.message, "\n", text)
      }
    }
  })

  it("listenAddress: --listen wins when --host/--port agree or are absent; a disagreement is refused", () => {
    const none = Option.none()
    const address = (listen: Option.Option<string>, host: Option.Option<string>, port: Option.Option<number>) =>
      AppConfig.listenAddress({ listen, host, port })
    assert.deepStrictEqual(Either.getOrThrow(address(none, none, none)), { host: "127.0.0.1", port: 9464 })
    assert.deepStrictEqual(Either.getOrThrow(address(none, Option.some("::1"), Option.some(1))), {
      host: "::1",
      port: 1
    })
    assert.deepStrictEqual(Either.getOrThrow(address(Option.some("[::1]:9000"), none, none)), {
      host: "::1",
      port: 9000
    })
    assert.deepStrictEqual(
      Either.getOrThrow(address(Option.some("[::1]:9000"), Option.some("[::1]"), Option.some(9000))),
      { host: "::1", port: 9000 }
    )
    const host = address(Option.some("[::1]:9000"), Option.some("127.0.0.1"), none)
    assert.isTrue(Either.isLeft(host) && host.left.message.includes("--host 127.0.0.1 disagree"))
    const port = address(Option.some("[::1]:9000"), none, Option.some(9001))
    assert.isTrue(Either.isLeft(port) && port.left.message.includes("--port 9001 disagree"))
  })

  it("the start-up line's address and docs URL: IPv6 in brackets, a wildcard as loopback", () => {
    assert.strictEqual(StartupLine.hostPort("::1", 9464), "[::1]:9464")
    assert.strictEqual(StartupLine.hostPort("10.0.0.1", 80), "10.0.0.1:80")
    assert.strictEqual(StartupLine.docsUrl("http", "::", 9464), "http://[::1]:9464/docs")
    assert.strictEqual(StartupLine.docsUrl("https", "0.0.0.0", 1), "https://127.0.0.1:1/docs")
    assert.strictEqual(StartupLine.docsUrl("http", "fe80::1", 2), "http://[fe80::1]:2/docs")
    // The platform reports a server bound to :: as 0.0.0.0: the host asked for tells them apart.
    assert.strictEqual(StartupLine.shownHost("0.0.0.0", "::"), "::")
    assert.strictEqual(StartupLine.shownHost("0.0.0.0", "0.0.0.0"), "0.0.0.0")
    assert.strictEqual(StartupLine.shownHost("::1", "::1"), "::1")
    const facts = { address: "[::1]:1", source: "file", vms: 1, docs: "http://[::1]:1/docs" }
    assert.match(
      StartupLine.message(facts),
      /listening on \[::1\]:1: source file, 1 VM found, docs at http:\/\/\[::1\]:1\/docs$/
    )
    assert.match(
      StartupLine.message({ ...facts, vms: 0, source_error: "f.json: cannot read: ENOENT" }),
      /source file, cannot list the instances \(f\.json: cannot read: ENOENT\), docs at /
    )
  })

  it("colour only on a terminal and without NO_COLOR (or TERM=dumb); strip removes CSI and OSC escapes", () => {
    assert.isTrue(Ansi.colour({ isTTY: true }, {}))
    assert.isTrue(Ansi.colour({ isTTY: true }, { NO_COLOR: "" }))
    assert.isFalse(Ansi.colour({ isTTY: true }, { NO_COLOR: "1" }))
    assert.isFalse(Ansi.colour({ isTTY: true }, { TERM: "dumb" }))
    assert.isFalse(Ansi.colour({ isTTY: false }, {}))
    assert.isFalse(Ansi.colour({}, {}))
    assert.strictEqual(
      Ansi.strip("\x1b[1m\x1b[36mbold\x1b[0m \x1b]8;;http://x\x07link\x1b]8;;\x07 \x1b[?25h"),
      "bold link "
    )
    assert.strictEqual(Logging.defaultFormat({ isTTY: true }), "pretty")
    assert.strictEqual(Logging.defaultFormat({ isTTY: false }), "logfmt")
  })

  it("parseLogfmt reads Effect's logfmt and refuses what is not", () => {
    assert.deepStrictEqual(parseLogfmt('level=INFO message="a \\"b\\" c" vms=2'), {
      level: "INFO",
      message: 'a "b" c',
      vms: "2"
    })
    assert.isUndefined(parseLogfmt("[10:00:00.000] INFO (#1): hello"))
    assert.isUndefined(parseLogfmt('{"message":"x"}'))
  })
})

describe("vm-metrics logs (the bundle, real stderr)", () => {
  it("logfmt by default on a pipe, json and pretty when asked; the start-up line names address, source, VMs, docs", async () => {
    const v6 = ipv6Loopback()
    if (!v6 && skipReason("no IPv6 loopback (::1) on this host", "IPv6 start-up line test") !== undefined) return
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-logs-"))
    try {
      const file = instancesFile(dir)
      const source = ["--source", "file", "--instances-file", file]

      // Default on a pipe: logfmt; --listen with an IPv6 address.
      const port = await freePort()
      const logfmt = await startServer(["--listen", `[::1]:${port}`, ...source])
      assert.strictEqual((await get(`http://[::1]:${port}/healthz`)).status, 200)
      // The docs URL the line names is served.
      const named = /docs=(\S+)/.exec(logfmt.stderr())?.[1]
      assert.strictEqual(named, `http://[::1]:${port}/docs`, logfmt.stderr())
      assert.strictEqual((await get(named!)).status, 200)
      const exit = await stopServer(logfmt.child)
      assert.deepStrictEqual(exit, { code: 0, signal: null }, logfmt.stderr())
      assert.strictEqual(logfmt.stdout(), "", "logs never go to stdout")
      assert.notInclude(logfmt.stderr(), ESC)
      const lines = logfmt.stderr().trimEnd().split("\n")
      const records = lines.map((line) => {
        const fields = parseLogfmt(line)
        assert.isDefined(fields, `not logfmt: ${line}`)
        return fields!
      })
      const startup = records.filter((fields) => fields.docs !== undefined)
      assert.lengthOf(startup, 1, logfmt.stderr())
      assert.strictEqual(startup[0]!.level, "INFO")
      assert.strictEqual(startup[0]!.address, `[::1]:${port}`)
      assert.strictEqual(startup[0]!.source, "file")
      assert.strictEqual(startup[0]!.vms, "2")
      assert.strictEqual(startup[0]!.docs, `http://[::1]:${port}/docs`)
      assert.include(startup[0]!.message, `listening on [::1]:${port}`)
      assert.include(startup[0]!.message, "2 VMs found")
      // How the connection limit was chosen is said once, before the start-up line.
      const connections = records.findIndex((fields) => fields.message?.startsWith("connections: at most") === true)
      assert.isAtLeast(connections, 0, logfmt.stderr())
      assert.isBelow(connections, records.indexOf(startup[0]!), logfmt.stderr())
      assert.match(
        records[connections]!.message!,
        /^connections: at most \d+; open files: soft limit (\d+|unlimited) \(/
      )

      // JSON through the environment (the config model), IPv4 through --host/--port.
      const port4 = await freePort()
      const json = await startServer(["--host", "127.0.0.1", "--port", String(port4), ...source], {
        VM_METRICS_LOG_FORMAT: "json"
      })
      const docs = await get(`http://127.0.0.1:${port4}/docs`)
      assert.strictEqual(docs.status, 200)
      assert.deepStrictEqual(await stopServer(json.child), { code: 0, signal: null }, json.stderr())
      const objects = json
        .stderr()
        .trimEnd()
        .split("\n")
        .map((line) => JSON.parse(line) as { message: string; logLevel: string; annotations: Record<string, unknown> })
      const line = objects.find((object) => object.annotations.docs !== undefined)
      assert.isDefined(line, json.stderr())
      assert.deepStrictEqual(line!.annotations, {
        vms: 2,
        address: `127.0.0.1:${port4}`,
        source: "file",
        docs: `http://127.0.0.1:${port4}/docs`
      })
      assert.strictEqual(line!.logLevel, "INFO")

      // Pretty on a pipe: for a person, and still no escapes.
      const prettyPort = await freePort()
      const pretty = await startServer(["--port", String(prettyPort), "--log-format", "pretty", ...source])
      assert.deepStrictEqual(await stopServer(pretty.child), { code: 0, signal: null }, pretty.stderr())
      assert.match(
        pretty.stderr(),
        /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(#\d+\): vm-metrics .* listening on 127\.0\.0\.1:/m
      )
      assert.notInclude(pretty.stderr(), ESC)
      assert.isUndefined(parseLogfmt(pretty.stderr().split("\n")[0]!))
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)

  it("a source that cannot be listed: the start-up line is a warning saying why, not 0 VMs found", async () => {
    const port = await freePort()
    const missing = path.join(os.tmpdir(), `vm-metrics-no-such-file-${process.pid}.json`)
    const server = await startServer(["--port", String(port), "--source", "file", "--instances-file", missing])
    assert.deepStrictEqual(await stopServer(server.child), { code: 0, signal: null }, server.stderr())
    const line = server
      .stderr()
      .split("\n")
      .map((text) => parseLogfmt(text))
      .find((fields) => fields?.docs !== undefined)
    assert.isDefined(line, server.stderr())
    assert.strictEqual(line!.level, "WARN")
    assert.match(line!.source_error ?? "", /ENOENT/)
    assert.include(line!.message, "cannot list the instances")
    assert.notInclude(line!.message, "VMs found")
  }, 120_000)

  it("a bad --log-format or VM_METRICS_LOG_FORMAT exits 2", async () => {
    for (const [args, env] of [
      [["list", "--log-format", "xml"], {}],
      [["list"], { VM_METRICS_LOG_FORMAT: "xml" }]
    ] as const) {
      const result = await run(args, env)
      assert.strictEqual(result.code, ExitCode.usage, `${args.join(" ")}: ${result.stderr}`)
      assert.include(result.stderr, "logfmt")
      assert.notInclude(result.stderr + result.stdout, ESC)
    }
  }, 120_000)

  it("on a terminal: pretty logs and help in colour; NO_COLOR: none", async () => {
    if (scriptMissing() !== undefined) return
    const help = onTerminal([FULL_CLI, "--help"])
    assert.strictEqual(help.code, 0)
    assert.include(help.output, ESC, "the full CLI's help has colour on a terminal")
    const plain = onTerminal([FULL_CLI, "--help"], { NO_COLOR: "1" })
    assert.strictEqual(plain.code, 0)
    assert.notInclude(plain.output, ESC)
    assert.include(plain.output, "USAGE")
    // The entry point prints the captured text: plain on a terminal too.
    const fast = onTerminal([BIN, "serve", "--help"])
    assert.notInclude(fast.output, ESC)
    assert.include(fast.output, "--log-format")
    // Logs of a one-shot command: pretty on a terminal, coloured unless NO_COLOR.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-logs-"))
    try {
      // A file that is not JSON: the server logs why it cannot be read, then is stopped with Ctrl-C.
      const bad = path.join(dir, "bad.json")
      fs.writeFileSync(bad, "{not json")
      const logLine = /^\[\d\d:\d\d:\d\d\.\d{3}\] (WARN|ERROR|INFO)/m
      const serving = async (extra: Record<string, string>) => {
        const args = ["serve", "--port", String(await freePort()), "--source", "file", "--instances-file", bad]
        return { output: await onTerminalUntil([BIN, ...args], extra, /instance source failed/) }
      }
      const coloured = await serving({})
      assert.match(Ansi.strip(coloured.output), logLine, coloured.output)
      assert.include(coloured.output, ESC)
      const uncoloured = await serving({ NO_COLOR: "1" })
      assert.match(uncoloured.output, logLine, uncoloured.output)
      assert.notInclude(uncoloured.output, ESC)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})

describe("vm-metrics help, version and --listen (the bundle)", () => {
  it("help on a pipe has no escape: every help text, the entry point's and the full CLI's, and usage errors", async () => {
    for (const args of [
      [],
      ["--help"],
      ["help"],
      ["help", "serve"],
      ["serve", "--help"],
      ["list", "-h"],
      ["stats", "--help"],
      ["top", "--help"],
      ["serve", "--port", "abc"],
      ["frobnicate"]
    ]) {
      for (const bin of [BIN, FULL_CLI]) {
        const result = await run(args, {}, bin)
        assert.notInclude(result.stdout, ESC, `${bin} ${args.join(" ")}`)
        assert.notInclude(result.stderr, ESC, `${bin} ${args.join(" ")}`)
        assert.isAbove(result.stdout.length + result.stderr.length, 0)
      }
    }
  }, 600_000)

  it("--version and version print version, revision and Node; help [command] is <command> --help", async () => {
    const dots = (text: string) => text.replace(/\./g, "\\.")
    const expected = new RegExp(
      `^vm-metrics ${dots(BuildInfo.version)} \\(revision [^,\\s]+, node ${dots(process.versions.node)}\\)\\n$`
    )
    for (const bin of [BIN, FULL_CLI]) {
      for (const args of [["--version"], ["version"]]) {
        const result = await run(args, {}, bin)
        assert.strictEqual(result.code, 0, result.stderr)
        assert.match(result.stdout, expected, `${bin} ${args.join(" ")}`)
        assert.strictEqual(result.stderr, "")
      }
    }
    for (const command of ["serve", "list", "stats", "top"]) {
      const viaHelp = await run(["help", command], {}, FULL_CLI)
      const viaFlag = await run([command, "--help"], {}, FULL_CLI)
      const fast = await run(["help", command])
      assert.strictEqual(viaHelp.code, 0, viaHelp.stderr)
      assert.strictEqual(viaHelp.stdout, viaFlag.stdout, command)
      assert.strictEqual(fast.stdout, viaFlag.stdout, command)
    }
    const root = await run(["help"], {}, FULL_CLI)
    assert.strictEqual(root.stdout, (await run(["--help"], {}, FULL_CLI)).stdout)
    assert.match(root.stdout, /^\s*- help\b/m, "help is listed as a command")
    assert.match(root.stdout, /^\s*- version\b/m, "version is listed as a command")
    const unknown = await run(["help", "nope"])
    assert.strictEqual(unknown.code, ExitCode.usage)
    assert.strictEqual(
      unknown.stderr,
      'vm-metrics: no command "nope"; the commands are serve, list, stats, top, version\n'
    )
  }, 300_000)

  it("a bad --listen, or one that disagrees with --host/--port, exits 2 with one line", async () => {
    const cases: ReadonlyArray<[ReadonlyArray<string>, Record<string, string>, string]> = [
      [["--listen", "::1:9464"], {}, "IPv6 address goes in brackets"],
      [["--listen", "localhost"], {}, "expected host:port"],
      [["--listen", "[localhost]:1"], {}, "not an IPv6 address"],
      [["--listen", ":9464"], {}, "no host"],
      [["--listen", "127.0.0.1:70000"], {}, "1-65535"],
      [[], { VM_METRICS_LISTEN: "127.0.0.1:x" }, "1-65535"],
      [["--listen", "127.0.0.1:9000", "--port", "9001"], {}, "--port 9001 disagree"],
      [["--listen", "[::1]:9000", "--host", "127.0.0.1"], {}, "--host 127.0.0.1 disagree"],
      [["--listen", "[::1]:9000"], { VM_METRICS_HOST: "0.0.0.0" }, "--host 0.0.0.0 disagree"]
    ]
    for (const [args, env, expected] of cases) {
      const result = await run(["serve", ...args], env)
      const what = `${args.join(" ")} ${JSON.stringify(env)}`
      assert.strictEqual(result.code, ExitCode.usage, `${what}: ${result.stderr}`)
      assert.strictEqual(result.stdout, "", what)
      const lines = result.stderr.trimEnd().split("\n")
      assert.lengthOf(lines, 1, `${what}: ${result.stderr}`)
      assert.match(lines[0]!, /^vm-metrics: --listen /, what)
      assert.include(lines[0]!, expected, what)
    }
  }, 300_000)
})

describe("`pnpm start` stopped with Ctrl-C", () => {
  const npx = spawnSync("sh", ["-c", "command -v npx"], { encoding: "utf8" }).stdout.trim()
  const missing = skipReason(npx === "" ? "needs npx" : undefined, "pnpm start Ctrl-C test")

  it.skipIf(missing !== undefined)(
    "SIGINT to the whole process group (as a terminal sends it): exit 0, no ELIFECYCLE, no update banner",
    async () => {
      const port = await freePort()
      // Its own process group, as a shell gives a foreground job; Ctrl-C signals every process in it.
      const top = spawn(npx, ["-y", "pnpm@10.34.9", "start"], {
        cwd: REPO,
        detached: true,
        env: envWith({ VM_METRICS_PORT: String(port) }),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      top.stdout?.on("data", (chunk) => (stdout += chunk))
      top.stderr?.on("data", (chunk) => (stderr += chunk))
      try {
        await until("the server started by `pnpm start`", 240_000, async () => {
          if (top.exitCode !== null) throw new Error(`npx exited (${top.exitCode}):\n${stdout}${stderr}`)
          return /docs at /.test(stderr) ? true : undefined
        })
        assert.strictEqual((await get(`http://127.0.0.1:${port}/healthz`)).status, 200)
        process.kill(-top.pid!, "SIGINT")
        const exit = await exitWithin(top, 60_000)
        const output = `${stdout}${stderr}`
        assert.deepStrictEqual(exit, { code: 0, signal: null }, output)
        assert.notInclude(output, "ELIFECYCLE")
        assert.notMatch(output, /update available/i)
        assert.notInclude(output, ESC)
        // The start-up line in logfmt (stderr is a pipe).
        const startup = stderr.split("\n").find((line) => line.includes("docs at "))
        assert.strictEqual(parseLogfmt(startup ?? "")?.address, `127.0.0.1:${port}`, stderr)
      } finally {
        try {
          process.kill(-top.pid!, "SIGKILL")
        } catch {
          // the group is gone already
        }
      }
    },
    300_000
  )
})
