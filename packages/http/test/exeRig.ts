/**
 * Running the self-contained executable (dist/vm-metrics, `pnpm build`) and the installed package as an
 * operator would: a real process standing in for a VM, listed in an instances file, and a check that
 * /healthz and /metrics report that process's real values. Every wait is bounded.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert } from "@effect/vitest"
import { outputTail, spawnChild, statCpuSeconds, statField, statmRssBytes, stopChild } from "@vm-metrics/testing"
import { get, REPO, stop, until } from "./cliRig.js"

/** The executable `pnpm build` writes (the http project's globalSetup builds it). */
export const EXECUTABLE = path.join(REPO, "dist", "vm-metrics")

export const VM_ID = "exe-vm"
export const VM_NAME = "exe-1"

/** The VM stand-in: a shell that burns some CPU, then becomes `sleep` under the same pid (its CPU time then stays). */
export const startVm = async (): Promise<ChildProcess & { pid: number }> => {
  const child = spawnChild("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 300")
  await until("the VM stand-in to exec sleep", 30_000, async () => {
    const comm = fs.readFileSync(`/proc/${child.pid}/comm`, "utf8").trim()
    return comm === "sleep" && statField(child.pid, 3) === "S" ? true : undefined
  })
  return child
}

export const stopVm = (vm: ChildProcess): Promise<void> => stopChild(vm)

/** An instances file (YAML, the format an operator writes) listing `pid` as one VM with 2 vCPUs and 1 GiB. */
export const instancesYaml = (pid: number): string =>
  `# one VM\n- id: ${VM_ID}\n  name: ${VM_NAME}\n  pid: ${pid}\n  vcpus: 2\n  memory: 1G\n`

/** The value of the sample `name{instance_id="<id>",…}` in a Prometheus text, if there is one. */
export const sample = (text: string, name: string, id = VM_ID): number | undefined => {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) && line.includes(`instance_id="${id}"`)) {
      return Number(line.slice(line.lastIndexOf(" ") + 1))
    }
  }
  return undefined
}

/** A running server process, its base URL and what it printed. */
export interface Running {
  readonly child: ChildProcess
  readonly base: string
  readonly output: () => string
}

/** Spawns `argv` (its own env, nothing inherited) and waits (≤ 60 s) until `base`/healthz answers 200. */
export const startServing = async (
  argv: ReadonlyArray<string>,
  env: Record<string, string>,
  base: string
): Promise<Running> => {
  const [command, ...args] = argv
  const child = spawn(command!, args, { env, stdio: ["ignore", "pipe", "pipe"] })
  const output = outputTail(child)
  try {
    await until(`${base}/healthz`, 60_000, async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`it exited (${child.exitCode ?? child.signalCode}):\n${output()}`)
      }
      return (await get(`${base}/healthz`)).status === 200 ? true : undefined
    })
  } catch (error) {
    await stop(child)
    throw new Error(`${argv.join(" ")}: ${error instanceof Error ? error.message : String(error)}\n${output()}`)
  }
  return { child, base, output }
}

/**
 * Asserts what `base` serves about the VM `pid`: /healthz ok, and /metrics with its CPU time and RSS as the
 * kernel reports them (the process sleeps, so both hold still) and its allocation from the file.
 */
export const assertServesVm = async (base: string, pid: number): Promise<void> => {
  const health = await get(`${base}/healthz`)
  assert.strictEqual(health.status, 200, health.body)
  assert.deepStrictEqual(JSON.parse(health.body), { status: "ok" })
  const metrics = await get(`${base}/metrics`)
  assert.strictEqual(metrics.status, 200, metrics.body)
  const cpu = sample(metrics.body, "hypeman_vm_cpu_seconds_total")
  assert.isDefined(cpu, metrics.body)
  assert.isAbove(cpu!, 0, "the stand-in burnt CPU before it slept")
  assert.closeTo(cpu!, statCpuSeconds(pid), 1e-9)
  assert.strictEqual(sample(metrics.body, "hypeman_vm_memory_rss_bytes"), statmRssBytes(pid))
  assert.strictEqual(sample(metrics.body, "hypeman_vm_allocated_vcpus"), 2)
  assert.strictEqual(sample(metrics.body, "hypeman_vm_allocated_memory_bytes"), 1024 ** 3)
  assert.include(metrics.body, `instance_name="${VM_NAME}"`)
}
