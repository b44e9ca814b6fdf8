/**
 * The Debian package (`pnpm package:deb`, scripts/deb.mjs) through its whole life on this machine: built,
 * lintian clean, installed with `dpkg -i`, configured as an operator does (lines in the conffile
 * /etc/default/vm-metrics), its unit's ExecStart run as systemd would run it (the unit's Environment= and
 * EnvironmentFile=, an unprivileged uid with the unit's two capabilities; systemd itself is not running
 * here), scraped, then removed (`dpkg -r`: only the conffile stays) and purged (nothing stays).
 *
 * It installs a package system-wide, so it runs only in CI (CI=true) or with VM_METRICS_TEST_DEB=1, as
 * root, with dpkg-deb and lintian (.ci/run installs lintian).
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import { isRoot, skipReason, which } from "@vm-metrics/testing"
import * as AppConfig from "../src/AppConfig.js"
import { exitWithin, freePort, REPO, stop } from "./cliRig.js"
import { assertServesVm, instancesYaml, startServing, startVm, stopVm } from "./exeRig.js"

const PACKAGE = "vm-metrics"
const wanted = process.env.CI === "true" || process.env.VM_METRICS_TEST_DEB === "1"
if (!wanted)
  console.warn("skipping the Debian package test: it installs a package; set VM_METRICS_TEST_DEB=1 (CI does)")
const missing = !wanted
  ? "not in CI"
  : skipReason(
      !isRoot
        ? "needs root (dpkg -i)"
        : which("dpkg-deb") === undefined
          ? "needs dpkg-deb"
          : which("lintian") === undefined
            ? "needs lintian (apt-get install lintian)"
            : which("setpriv") === undefined
              ? "needs setpriv (util-linux)"
              : undefined,
      "Debian package test"
    )

/** Runs a command to its end (≤ 10 min), without blocking the test's event loop: status and both streams. */
const run = (command: string, args: ReadonlyArray<string>) =>
  new Promise<{ status: number | null; stdout: string; output: string }>((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let output = ""
    child.stdout.on("data", (chunk) => {
      stdout += chunk
      output += chunk
    })
    child.stderr.on("data", (chunk) => (output += chunk))
    const timer = setTimeout(() => child.kill("SIGKILL"), 600_000)
    child.on("error", (error) => {
      clearTimeout(timer)
      resolve({ status: null, stdout, output: `${output}${error.message}` })
    })
    child.on("close", (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, output })
    })
  })

/** The [Service] settings of a unit file (`Key=value` lines; a repeated key adds to the list). */
const serviceSettings = (text: string): ReadonlyMap<string, ReadonlyArray<string>> => {
  const settings = new Map<string, Array<string>>()
  let section = ""
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue
    const header = /^\[(\w+)\]$/.exec(line)
    if (header !== null) section = header[1]!
    else if (section === "Service") {
      const eq = line.indexOf("=")
      settings.set(line.slice(0, eq), [...(settings.get(line.slice(0, eq)) ?? []), line.slice(eq + 1)])
    }
  }
  return settings
}

/** `KEY=value` lines of an environment file, as systemd reads them (comments and blank lines skipped). */
const environmentOf = (text: string): Record<string, string> =>
  Object.fromEntries(
    text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"))
      .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)])
  )

const installed = () => run("dpkg-query", ["-W", `-f=\${db:Status-Status}`, PACKAGE])

describe.skipIf(missing !== undefined)("the Debian package", () => {
  afterAll(async () => {
    // Whatever happened, leave the machine as it was.
    if ((await installed()).status === 0) await run("dpkg", ["--purge", PACKAGE])
  })

  it("builds lintian clean, installs, runs the unit's ExecStart, and is removed and purged without a trace", async () => {
    if ((await installed()).status === 0) assert.strictEqual((await run("dpkg", ["--purge", PACKAGE])).status, 0)

    const built = await run(process.execPath, [path.join(REPO, "scripts/deb.mjs")])
    assert.strictEqual(built.status, 0, built.output)
    const deb = built.stdout.trim().split("\n").at(-1)!
    assert.match(path.basename(deb), /^vm-metrics_\d+\.\d+\.\d+_amd64\.deb$/)

    const lintian = await run("lintian", ["--fail-on", "error,warning", deb])
    assert.strictEqual(lintian.status, 0, lintian.output)
    assert.notMatch(lintian.output, /^[EW]: /m, lintian.output)

    const install = await run("dpkg", ["-i", deb])
    assert.strictEqual(install.status, 0, install.output)
    const listed = (await run("dpkg", ["-L", PACKAGE])).stdout.trim().split("\n")
    for (const file of [
      "/usr/bin/vm-metrics",
      "/lib/systemd/system/vm-metrics.service",
      "/etc/default/vm-metrics",
      "/usr/share/man/man1/vm-metrics.1.gz",
      "/usr/share/doc/vm-metrics/copyright",
      "/usr/share/doc/vm-metrics/changelog.gz"
    ]) {
      assert.include(listed, file)
      assert.isTrue(fs.existsSync(file), file)
    }
    assert.include((await run("dpkg-query", ["-W", `-f=\${Conffiles}`, PACKAGE])).stdout, "/etc/default/vm-metrics")

    // The conffile sets nothing, and names every variable `serve` reads.
    const shipped = fs.readFileSync("/etc/default/vm-metrics", "utf8")
    assert.deepStrictEqual(environmentOf(shipped), {})
    for (const setting of Object.values(AppConfig.settings as Record<string, AppConfig.Setting<unknown>>)) {
      if (setting.env !== null && setting.scope !== "top") assert.include(shipped, `\n#${setting.env}=`)
    }

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vm-metrics-deb-"))
    fs.chmodSync(dir, 0o755) // readable by the service's unprivileged user
    const vm = await startVm()
    try {
      const file = path.join(dir, "vms.yaml")
      fs.writeFileSync(file, instancesYaml(vm.pid), { mode: 0o644 })
      const port = await freePort()
      // The operator's configuration: lines added to the conffile.
      fs.appendFileSync(
        "/etc/default/vm-metrics",
        `\nVM_METRICS_PORT=${port}\nVM_METRICS_SOURCE=file\nVM_METRICS_INSTANCES_FILE=${file}\n`
      )

      // The unit as systemd runs it: its environment (systemd's PATH, Environment=, then the
      // EnvironmentFile=), its ExecStart, as an unprivileged uid with the unit's ambient capabilities.
      const unit = serviceSettings(fs.readFileSync("/lib/systemd/system/vm-metrics.service", "utf8"))
      const env: Record<string, string> = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin" }
      for (const assignment of unit.get("Environment") ?? []) Object.assign(env, environmentOf(assignment))
      for (const entry of unit.get("EnvironmentFile") ?? []) {
        const optional = entry.startsWith("-")
        const envFile = optional ? entry.slice(1) : entry
        if (fs.existsSync(envFile) || !optional) Object.assign(env, environmentOf(fs.readFileSync(envFile, "utf8")))
      }
      assert.strictEqual(env.VM_METRICS_PORT, String(port), "EnvironmentFile= wins over Environment=")
      const execStart = (unit.get("ExecStart") ?? []).at(-1)!.split(/\s+/)
      assert.deepStrictEqual(execStart, ["/usr/bin/vm-metrics", "serve"])
      const caps = (unit.get("AmbientCapabilities") ?? [])
        .flatMap((value) => value.split(/\s+/))
        .map((cap) => `+${cap.replace(/^CAP_/, "").toLowerCase()}`)
        .join(",")
      assert.strictEqual(caps, "+sys_ptrace,+dac_read_search")
      const asTheUnit = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        `--inh-caps=-all,${caps}`,
        `--ambient-caps=-all,${caps}`,
        `--bounding-set=-all,${caps}`,
        "--no-new-privs",
        ...execStart
      ]
      const server = await startServing(asTheUnit, env, `http://127.0.0.1:${port}`)
      try {
        const status = fs.readFileSync(`/proc/${server.child.pid}/status`, "utf8")
        assert.match(status, /^Uid:\s+65534\s/m)
        assert.strictEqual(fs.readlinkSync(`/proc/${server.child.pid}/exe`), "/usr/bin/vm-metrics")
        await assertServesVm(`http://127.0.0.1:${port}`, vm.pid)
        server.child.kill("SIGTERM")
        assert.deepStrictEqual(await exitWithin(server.child, 30_000), { code: 0, signal: null }, server.output())
      } finally {
        await stop(server.child)
      }
    } finally {
      await stopVm(vm)
      fs.rmSync(dir, { recursive: true, force: true })
    }

    // Removed: every file of the package is gone but the conffile, which keeps the operator's lines.
    const remove = await run("dpkg", ["-r", PACKAGE])
    assert.strictEqual(remove.status, 0, remove.output)
    const isFile = (file: string) => fs.existsSync(file) && !fs.statSync(file).isDirectory()
    assert.deepStrictEqual(listed.filter(isFile), ["/etc/default/vm-metrics"])
    assert.include(fs.readFileSync("/etc/default/vm-metrics", "utf8"), "VM_METRICS_SOURCE=file")
    assert.strictEqual((await installed()).stdout, "config-files")

    // Purged: nothing is left, not the conffile, not dpkg's record, not deb-systemd-helper's state.
    const purge = await run("dpkg", ["--purge", PACKAGE])
    assert.strictEqual(purge.status, 0, purge.output)
    assert.deepStrictEqual(
      listed.filter((file) => fs.existsSync(file) && !isSharedDirectory(file)),
      []
    )
    assert.notStrictEqual((await installed()).status, 0, "dpkg still knows the package")
    assert.deepStrictEqual(
      fs.readdirSync("/var/lib/dpkg/info").filter((name) => name.startsWith(`${PACKAGE}.`)),
      []
    )
    assert.isFalse(fs.existsSync("/var/lib/systemd/deb-systemd-helper-enabled/vm-metrics.service.dsh-also"))
  }, 900_000)
})

/** A directory that other packages use too (/usr/bin, /etc/default, …): dpkg keeps it. */
const isSharedDirectory = (file: string): boolean =>
  fs.statSync(file).isDirectory() && !file.includes(PACKAGE) && fs.readdirSync(file).length > 0
