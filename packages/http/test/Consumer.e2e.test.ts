/**
 * The four packages as a control plane gets them: `pnpm pack` of each (scripts/packages.mjs pack), then a
 * project of its own outside the workspace (under the system temp dir) that `npm install`s the tarballs with
 * their peers from the registry, at the versions the workspace uses, compiles the README's `ts file=…` blocks
 * with `tsc --strict` and runs them: a platform that imports only @vm-metrics/core with its own readers, and a
 * control plane serving its own endpoint and vm-metrics' instances endpoints for its own process.
 * Needs the npm registry (skips without it, fails under CI).
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { outputTail, skipReason, statCpuSeconds, statmRssBytes, stopProcess, waitForPromise } from "@vm-metrics/testing"
import { freePort, REPO } from "./cliRig.js"

const registryMissing = (): string | undefined => {
  const ping = spawnSync("npm", ["ping"], { encoding: "utf8", timeout: 60_000, cwd: os.tmpdir() })
  return ping.status === 0 ? undefined : `needs the npm registry (npm ping: ${ping.stderr.trim() || ping.error}`
}
const missing = skipReason(registryMissing(), "consumer test of the npm packages")

/** The README's compiled blocks: ```ts file=<name> … ```. */
const readmeFiles = (): Map<string, string> => {
  const readme = fs.readFileSync(path.join(REPO, "README.md"), "utf8")
  return new Map([...readme.matchAll(/^```ts file=([\w.-]+)\n([\s\S]*?)^```$/gm)].map((m) => [m[1], m[2]]))
}

/** The version the workspace has installed of `name`, as `packageDir` resolves it. */
const installedVersion = (packageDir: string, name: string): string =>
  JSON.parse(fs.readFileSync(path.join(REPO, packageDir, "node_modules", name, "package.json"), "utf8")).version

/** The environment without the npm/pnpm settings of the workspace's own run (`pnpm test` sets npm_config_*). */
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith("npm_") && key !== "NODE_OPTIONS") env[key] = value
  }
  return { ...env, NO_COLOR: "1" }
}

/** Runs a command to its end within `timeoutMs`; its stdout, or an error with both streams. */
const exec = (command: string, args: ReadonlyArray<string>, cwd: string, timeoutMs: number, env = cleanEnv()) =>
  new Promise<string>((resolve, reject) => {
    execFile(command, args, { cwd, env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) =>
      error === null
        ? resolve(stdout)
        : reject(new Error(`${command} ${args.join(" ")} failed (${error.message}):\n${stdout}\n${stderr}`))
    )
  })

const getJson = async (url: string): Promise<{ status: number; body: any }> => {
  const response = await fetch(url)
  return { status: response.status, body: await response.json() }
}

describe.skipIf(missing !== undefined)("the npm packages in a control plane's own project", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-consumer-"))
  let server: ChildProcess | undefined

  afterAll(async () => {
    if (server !== undefined) await stopProcess(server)
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it("packs, installs with npm, compiles the README's files with tsc --strict and runs them", async () => {
    // 1. The tarballs, as a registry would serve them.
    const tarballs = path.join(dir, "tarballs")
    const packed = (
      await exec(process.execPath, ["scripts/packages.mjs", "pack", tarballs], REPO, 600_000, process.env)
    )
      .trim()
      .split("\n")
    assert.strictEqual(packed.length, 4, packed.join("\n"))
    for (const tarball of packed) {
      const list = (await exec("tar", ["-tzf", tarball], dir, 60_000)).split("\n")
      for (const file of [
        "LICENSE",
        "README.md",
        "package.json",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/index.js.map"
      ]) {
        assert.include(list, `package/${file}`, `${path.basename(tarball)} has ${file}`)
      }
      assert.isFalse(
        list.some((file) => file.includes("/test/")),
        `${path.basename(tarball)} holds no tests`
      )
      const manifest = JSON.parse(await exec("tar", ["-xzOf", tarball, "package/package.json"], dir, 60_000))
      assert.deepStrictEqual(manifest.exports, {
        ".": { types: "./dist/index.d.ts", default: "./dist/index.js" },
        "./*": { types: "./dist/*.d.ts", default: "./dist/*.js" },
        "./internal/*": null
      })
      assert.strictEqual(manifest.license, "MIT")
      assert.isUndefined(manifest.private)
      assert.notInclude(JSON.stringify(manifest.dependencies ?? {}), "workspace:")
      assert.strictEqual(manifest.peerDependencies.effect, "~3.22.4")
      assert.isUndefined(manifest.dependencies?.effect, "effect is a peer, never a dependency")
      console.log(`${path.basename(tarball)}: ${fs.statSync(tarball).size} bytes, ${list.length - 1} files`)
    }

    // 2. A project of its own, outside the workspace: the tarballs and their peers from the registry.
    const project = path.join(dir, "control-plane")
    fs.mkdirSync(path.join(project, "src"), { recursive: true })
    fs.writeFileSync(
      path.join(project, "package.json"),
      JSON.stringify({ name: "control-plane", private: true, type: "module" })
    )
    fs.writeFileSync(
      path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          lib: ["ES2022"],
          types: ["node"],
          // As Effect's own project templates: the platform packages' declarations assume DOM types.
          skipLibCheck: true,
          outDir: "out",
          rootDir: "src"
        },
        include: ["src"]
      })
    )
    const files = readmeFiles()
    assert.includeMembers([...files.keys()], ["custom-platform.ts", "control-plane.ts", "exporters.ts"])
    for (const [name, text] of files) fs.writeFileSync(path.join(project, "src", name), text)

    const peers = [
      "effect",
      ...["cli", "cluster", "platform", "platform-node", "printer", "printer-ansi", "rpc", "sql"].map(
        (name) => `@effect/${name}`
      )
    ].map((name) => `${name}@${installedVersion("packages/http", name)}`)
    const otel = ["@opentelemetry/api", "@opentelemetry/sdk-metrics"].map(
      (name) => `${name}@${installedVersion("packages/otel", name)}`
    )
    const tools = ["typescript", "@types/node"].map((name) => `${name}@${installedVersion(".", name)}`)
    await exec(
      "npm",
      ["install", "--no-audit", "--no-fund", "--save-exact", ...packed, ...peers, ...otel, ...tools],
      project,
      900_000
    )
    // One Effect runtime: every package uses the project's own effect.
    const effects = (await exec("npm", ["ls", "effect", "--all", "--parseable"], project, 120_000))
      .split("\n")
      .filter((line) => line !== "")
    assert.deepStrictEqual([...new Set(effects)], [path.join(fs.realpathSync(project), "node_modules/effect")])

    // 3. tsc --strict (the tsconfig's strict), then run.
    await exec(process.execPath, [path.join("node_modules", "typescript", "bin", "tsc"), "-p", "."], project, 600_000)

    // (a) @vm-metrics/core alone, with the platform's own readers: the values its API reported.
    const custom = await exec(process.execPath, ["out/custom-platform.js"], project, 120_000)
    assert.deepStrictEqual(JSON.parse(custom), {
      instanceName: "web-1",
      state: "running",
      cpuSeconds: 15, // (1200 + 300) ticks at 100 per second
      memoryRssBytes: String(25600 * 4096),
      memoryUtilization: (25600 * 4096) / 2 ** 30,
      netRxBytes: "654321", // the VM received what the host's TAP sent
      netTxBytes: "123456"
    })

    // The CLI of the installed @vm-metrics/http (its `bin`, from dist/) runs too.
    const version = await exec(
      path.join(project, "node_modules", ".bin", "vm-metrics"),
      ["--version"],
      project,
      120_000
    )
    assert.match(version, /0\.1\.0/)

    // (b) The control plane: its own endpoint and vm-metrics' instances, for its own process.
    const port = await freePort()
    const base = `http://127.0.0.1:${port}`
    const child = spawn(process.execPath, ["out/control-plane.js"], {
      cwd: project,
      env: { ...cleanEnv(), PORT: String(port) },
      stdio: ["ignore", "pipe", "pipe"]
    })
    server = child
    const output = outputTail(child)
    const fleet = await waitForPromise(
      "the control plane's /fleet/memory",
      async () => {
        const { status, body } = await getJson(`${base}/fleet/memory`)
        return status === 200 && body.length > 0 ? body : undefined
      },
      {
        timeout: "90 seconds",
        gone: () => (child.exitCode === null && child.signalCode === null ? undefined : "the control plane exited"),
        details: output
      }
    )
    const pid = child.pid!
    const list = await getJson(`${base}/instances`)
    const one = await getJson(`${base}/instances/cp0000/stats`)
    const unknown = await getJson(`${base}/instances/nope/stats`)
    const rssNow = statmRssBytes(pid)
    const cpuNow = statCpuSeconds(pid)

    assert.strictEqual(list.status, 200, output())
    assert.lengthOf(list.body.instances, 1)
    const vm = list.body.instances[0]
    assert.strictEqual(vm.pid, pid, "the control plane's own process")
    assert.strictEqual(vm.instance_name, "control-plane")
    assert.strictEqual(vm.state, "running")
    assert.isAbove(vm.cpu_seconds, 0)
    assert.isAtMost(vm.cpu_seconds, cpuNow, "CPU read before /proc says now")
    // The same process read at different moments: within a factor of 2 of /proc/<pid>/statm now.
    for (const rss of [vm.memory_rss_bytes, fleet[0].rssBytes]) {
      assert.isAbove(rss, rssNow / 2)
      assert.isBelow(rss, rssNow * 2)
    }
    assert.deepStrictEqual(
      fleet.map((entry: { vm: string }) => entry.vm),
      ["control-plane"],
      "the control plane's MeterProvider has the VM's RSS gauge"
    )
    assert.strictEqual(one.status, 200)
    assert.strictEqual(one.body.instance_id, "cp0000000000000000000000", "found by its id prefix")
    assert.strictEqual(one.body.pid, pid)
    assert.strictEqual(unknown.status, 404)
    assert.deepStrictEqual(unknown.body, { code: "not_found", message: "resource not found" })
  }, 1_800_000)
})
