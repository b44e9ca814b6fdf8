/**
 * deploy/kubernetes, checked two ways: against the Kubernetes and Prometheus Operator schemas (the validator
 * of .ci/kubernetes, npm packages pinned there, installed into a cache on first use), and against the
 * code: its variables are settings of AppConfig with values the agent accepts, its port, probe and scrape
 * paths are the server's, its capabilities the systemd unit's. Then the DaemonSet's container is played
 * without Kubernetes: the real `vm-metrics serve` with the manifest's environment, in a mount and pid
 * namespace of its own whose /proc and /sys show nothing of the host (a pod's), the host's mounted
 * read-only where the manifest mounts them, a read-only root, and only the manifest's capabilities.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, assert, describe, it } from "@effect/vitest"
import {
  createNetns,
  deleteNetns,
  deleteTap,
  exited,
  makeTempDir,
  namespaceSkipReason,
  outputTail,
  removeTempDirs,
  statmRssBytes,
  tapSkipReason
} from "@vm-metrics/testing"
import { HealthGroup, MetricsGroup } from "../src/Api.js"
import * as AppConfig from "../src/AppConfig.js"
import * as BuildInfo from "../src/BuildInfo.js"
import { BIN, cli, freePort, REPO, until } from "./cliRig.js"

afterAll(removeTempDirs)

const DIR = path.join(REPO, "deploy", "kubernetes")
const VALIDATOR = path.join(REPO, ".ci", "kubernetes", "validate.mjs")

interface Validated {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the validator on `dir` (installing its packages first when they are not cached: up to a minute). */
const validate = (dir: string, json: boolean) =>
  new Promise<Validated>((resolve) => {
    execFile(
      process.execPath,
      [VALIDATOR, ...(json ? ["--json"] : []), dir],
      { timeout: 240_000, maxBuffer: 16 << 20 },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })
    )
  })

type Json = any

/** The manifests as the validator parsed them, after checking that it found no problem. */
let parsed: Promise<ReadonlyArray<{ file: string; object: Json }>> | undefined
const manifests = () => {
  parsed ??= validate(DIR, true).then((result) => {
    assert.strictEqual(result.code, 0, `${result.stdout}\n${result.stderr}`)
    const out = JSON.parse(result.stdout) as { problems: Array<string>; objects: Array<{ file: string; object: Json }> }
    assert.deepStrictEqual(out.problems, [])
    return out.objects
  })
  return parsed
}
const byKind = async (kind: string): Promise<Json> => {
  const found = (await manifests()).filter((m) => m.object.kind === kind)
  assert.strictEqual(found.length, 1, `one ${kind}`)
  return found[0]!.object
}
const container = async (): Promise<Json> => {
  const containers = (await byKind("DaemonSet")).spec.template.spec.containers
  assert.strictEqual(containers.length, 1)
  return containers[0]
}

/** The capabilities a systemd unit's (uncommented) line grants, without the CAP_ prefix. */
const unitCapabilities = (unit: string, key: string): Array<string> => {
  const lines = unit.split("\n").filter((line) => line.startsWith(`${key}=`))
  assert.strictEqual(lines.length, 1, `one ${key}= line in deploy/vm-metrics.service`)
  return lines[0]!
    .slice(key.length + 1)
    .split(/\s+/)
    .filter((c) => c !== "")
    .map((c) => c.replace(/^CAP_/, ""))
    .sort()
}

const settingsByEnv = new Map(
  Object.values(AppConfig.settings as Record<string, AppConfig.Setting<unknown>>)
    .filter((s) => s.env !== null)
    .map((s) => [s.env!, s])
)
const exporterEnv = new Set(AppConfig.exporterVariables.flatMap((v) => v.env.split(" / ")))

describe("deploy/kubernetes against the schemas", () => {
  it("every manifest of the kustomization is valid (Kubernetes API and the ServiceMonitor CRD), no unknown field", async () => {
    const kinds = (await manifests()).map((m) => `${m.file}: ${m.object.apiVersion} ${m.object.kind}`)
    assert.deepStrictEqual(kinds, [
      "namespace.yaml: v1 Namespace",
      "daemonset.yaml: apps/v1 DaemonSet",
      "service.yaml: v1 Service",
      "servicemonitor.yaml: monitoring.coreos.com/v1 ServiceMonitor"
    ])
  }, 240_000)

  it("the validator refuses a misspelt field, a value outside an enum, a bad CRD field and an unlisted manifest", async () => {
    const dir = makeTempDir("vm-metrics-k8s-bad-")
    fs.cpSync(DIR, dir, { recursive: true })
    const edit = (file: string, from: string, to: string) => {
      const text = fs.readFileSync(path.join(dir, file), "utf8")
      assert.include(text, from)
      fs.writeFileSync(path.join(dir, file), text.replace(from, to))
    }
    edit("daemonset.yaml", "readinessProbe:", "readinesProbe:")
    edit("daemonset.yaml", "type: RollingUpdate", "type: Rolling")
    edit("servicemonitor.yaml", "scrapeTimeout: 10s", "scrapeTimout: 10s")
    fs.writeFileSync(path.join(dir, "extra.yaml"), "apiVersion: v1\nkind: ConfigMap\n")
    const result = await validate(dir, false)
    assert.strictEqual(result.code, 1, `${result.stdout}\n${result.stderr}`)
    const lines = result.stdout.trim().split("\n")
    const has = (pattern: RegExp) =>
      assert.isTrue(
        lines.some((l) => pattern.test(l)),
        `${pattern} in:\n${result.stdout}`
      )
    has(/^daemonset\.yaml: DaemonSet\/vm-metrics: .*'"readinesProbe"' does not exist in type 'IContainer'/)
    has(
      /^daemonset\.yaml: DaemonSet\/vm-metrics: \/spec\/updateStrategy\/type must be equal to one of the allowed values/
    )
    has(/^servicemonitor\.yaml: ServiceMonitor\/vm-metrics: .*'"scrapeTimout"' does not exist/)
    has(/^kustomization\.yaml: extra\.yaml is not in resources$/)
    assert.match(lines.at(-1)!, /^4 objects in .*: [1-9]\d* problems$/)
  }, 240_000)
})

describe("deploy/kubernetes against the code", () => {
  it("every variable it names is a setting of AppConfig (or the OTel exporter's), with the value the manifest means", async () => {
    const c = await container()
    const env = new Map<string, Json>(c.env.map((e: Json) => [e.name, e]))
    // Also the commented-out ones: an operator uncomments them.
    const text = fs.readFileSync(path.join(DIR, "daemonset.yaml"), "utf8")
    const named = new Set([...text.matchAll(/\b(VM_METRICS_[A-Z0-9_]+|OTEL_[A-Z0-9_]+)\b/g)].map((m) => m[1]!))
    for (const name of [...named, ...env.keys()]) {
      if (settingsByEnv.has(name) || exporterEnv.has(name)) continue
      // Not a setting: only an input to another variable's $(NAME) expansion.
      const users = c.env.filter((e: Json) => typeof e.value === "string" && e.value.includes(`$(${name})`))
      assert.isAbove(users.length, 0, `${name} is neither a setting of AppConfig nor used as $(${name})`)
    }
    assert.includeMembers([...named], ["VM_METRICS_PROC_ROOT", "VM_METRICS_SYS_ROOT", "VM_METRICS_AUTH_TOKEN"])
    assert.strictEqual(env.get("VM_METRICS_PORT").value, String(AppConfig.settings.port.default))
    assert.strictEqual(env.get("VM_METRICS_HOST").valueFrom.fieldRef.fieldPath, "status.podIP")
    // The roots are where the host's /proc and /sys are mounted, read-only.
    const pod = (await byKind("DaemonSet")).spec.template.spec
    const hostPathOf = (mountPath: string) => {
      const mount = c.volumeMounts.find((m: Json) => m.mountPath === mountPath)
      assert.isDefined(mount, `a volume mounted at ${mountPath}`)
      assert.isTrue(mount.readOnly, `${mountPath} read-only`)
      return pod.volumes.find((v: Json) => v.name === mount.name)?.hostPath?.path
    }
    assert.strictEqual(hostPathOf(env.get("VM_METRICS_PROC_ROOT").value), "/proc")
    assert.strictEqual(hostPathOf(env.get("VM_METRICS_SYS_ROOT").value), "/sys")
    // OTEL_RESOURCE_ATTRIBUTES, with the node's name put in, is a list the agent parses.
    assert.strictEqual(env.get("K8S_NODE_NAME").valueFrom.fieldRef.fieldPath, "spec.nodeName")
  })

  it("the port is the default one, and the Service, the ServiceMonitor and the probes use it by name", async () => {
    const c = await container()
    const service = await byKind("Service")
    const monitor = await byKind("ServiceMonitor")
    assert.deepStrictEqual(c.ports, [
      { name: "metrics", containerPort: AppConfig.settings.port.default, protocol: "TCP" }
    ])
    assert.deepStrictEqual(service.spec.ports, [
      { name: "metrics", port: AppConfig.settings.port.default, targetPort: "metrics", protocol: "TCP" }
    ])
    assert.strictEqual(service.spec.clusterIP, "None", "headless: every agent is scraped, none load-balanced")
    assert.deepStrictEqual(service.spec.selector, (await byKind("DaemonSet")).spec.template.metadata.labels)
    assert.deepStrictEqual(monitor.spec.selector.matchLabels, service.metadata.labels)
    assert.strictEqual(monitor.spec.endpoints.length, 1)
    assert.strictEqual(monitor.spec.endpoints[0].port, "metrics")
    assert.strictEqual(monitor.spec.endpoints[0].path, MetricsGroup.endpoints.metrics.path)
    for (const probe of [c.livenessProbe, c.readinessProbe]) {
      assert.deepStrictEqual(probe.httpGet, { path: HealthGroup.endpoints.healthz.path, port: "metrics" })
    }
    assert.strictEqual(HealthGroup.endpoints.healthz.path, "/healthz")
  })

  it("the capabilities are the systemd unit's two, every other dropped; hostPID, a read-only root, no escalation", async () => {
    const unit = fs.readFileSync(path.join(REPO, "deploy", "vm-metrics.service"), "utf8")
    const granted = unitCapabilities(unit, "AmbientCapabilities")
    assert.deepStrictEqual(unitCapabilities(unit, "CapabilityBoundingSet"), granted)
    assert.deepStrictEqual(granted, ["DAC_READ_SEARCH", "SYS_PTRACE"])
    const c = await container()
    const pod = (await byKind("DaemonSet")).spec.template.spec
    assert.deepStrictEqual(c.securityContext.capabilities.drop, ["ALL"])
    assert.deepStrictEqual([...c.securityContext.capabilities.add].sort(), granted)
    // uid 0: Kubernetes has no ambient capabilities, a non-root process would lose the two at exec.
    assert.strictEqual(c.securityContext.runAsUser, 0)
    assert.isFalse(c.securityContext.runAsNonRoot)
    assert.isFalse(c.securityContext.privileged)
    assert.isFalse(c.securityContext.allowPrivilegeEscalation)
    assert.isTrue(c.securityContext.readOnlyRootFilesystem)
    assert.isTrue(pod.hostPID)
    assert.isUndefined(pod.hostNetwork)
    assert.isFalse(pod.automountServiceAccountToken)
    assert.isDefined(c.resources.requests.memory)
    assert.isDefined(c.resources.limits.memory)
    // The namespace admits such a pod (hostPID, hostPath and added capabilities are not "baseline").
    const namespace = await byKind("Namespace")
    assert.strictEqual(namespace.metadata.labels["pod-security.kubernetes.io/enforce"], "privileged")
  })

  it("service links are off: the kubelet's VM_METRICS_PORT=tcp://… for a Service named vm-metrics stops the agent", async () => {
    const pod = (await byKind("DaemonSet")).spec.template.spec
    const service = await byKind("Service")
    assert.isFalse(pod.enableServiceLinks)
    // What the kubelet would inject for this Service (<NAME>_PORT, the name upper-cased, - as _).
    const injected = `${service.metadata.name.toUpperCase().replaceAll("-", "_")}_PORT`
    assert.strictEqual(injected, AppConfig.settings.port.env)
    const result = await cli(["serve"], { [injected]: "tcp://10.96.0.10:9464" })
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, "VM_METRICS_PORT")
  }, 120_000)

  it("the image: the Dockerfile runs the executable `pnpm build` writes with the container's args; tags are the version", async () => {
    const c = await container()
    const docker = fs.readFileSync(path.join(DIR, "Dockerfile"), "utf8")
    const instruction = (name: string) => {
      const lines = docker.split("\n").filter((l) => l.startsWith(`${name} `))
      assert.strictEqual(lines.length, 1, `one ${name}`)
      return lines[0]!.slice(name.length + 1)
    }
    // The build context is dist/: `vm-metrics` there is the executable scripts/sea.mjs writes.
    assert.strictEqual(instruction("COPY"), "--chmod=0755 vm-metrics /usr/bin/vm-metrics")
    assert.include(fs.readFileSync(path.join(REPO, "scripts", "sea.mjs"), "utf8"), 'path.join(dist, "vm-metrics")')
    assert.deepStrictEqual(JSON.parse(instruction("ENTRYPOINT")), ["/usr/bin/vm-metrics"])
    assert.deepStrictEqual(JSON.parse(instruction("CMD")), c.args)
    assert.deepStrictEqual(c.args, ["serve"])
    assert.strictEqual(instruction("EXPOSE"), String(AppConfig.settings.port.default))
    assert.strictEqual(c.image, `vm-metrics:${BuildInfo.version}`)
    const kustomization = fs.readFileSync(path.join(DIR, "kustomization.yaml"), "utf8")
    assert.match(kustomization, new RegExp(`^ {2}- name: vm-metrics$[^]*^ {4}newTag: ${BuildInfo.version}$`, "m"))
    // The base has glibc, libstdc++ and libgcc_s only: the executable must need nothing else.
    const executable = path.join(REPO, "dist", "vm-metrics")
    if (!fs.existsSync(executable)) return console.warn(`${executable} not built: its libraries not checked`)
    const needed = execFileSync("ldd", [executable], { encoding: "utf8" })
      .split("\n")
      .map((l) => /^\s*(\S+\.so[.\d]*)/.exec(l)?.[1])
      .filter((l) => l !== undefined && !l.startsWith("linux-vdso") && !l.startsWith("/lib64/ld-linux"))
    const base = [
      "libc.so.6",
      "libm.so.6",
      "libdl.so.2",
      "libpthread.so.0",
      "librt.so.1",
      "libstdc++.so.6",
      "libgcc_s.so.1"
    ]
    for (const lib of needed) assert.include(base, lib, `${executable} needs ${lib}`)
  })
})

// ---------- the DaemonSet's container, played without Kubernetes ----------

const podSkip = tapSkipReason() ?? namespaceSkipReason()

/** A process discovery takes for QEMU (a copy of sh under its name), stopped in place, with one TAP. */
const startFake = async (binary: string, name: string, tap: string, netns?: string) => {
  const argv = [binary, "-c", "kill -STOP $$", "-name", name, "-netdev", `tap,id=n0,ifname=${tap}`]
  const child = netns === undefined ? spawn(argv[0]!, argv.slice(1)) : spawn("ip", ["netns", "exec", netns, ...argv])
  const pid = child.pid!
  await until(`${name} to stop itself`, 30_000, async () => {
    if (exited(child)) throw new Error(`${name} exited`)
    return /^\d+ \([^)]*\) T /.test(fs.readFileSync(`/proc/${pid}/stat`, "latin1")) ? true : undefined
  })
  return { child, pid }
}

describe.skipIf(podSkip)("the DaemonSet's container, without Kubernetes", () => {
  it("sees the host's VMs and TAPs (sysfs and a VMM's netns) only through the manifest's roots, read-only, with its two capabilities", async () => {
    const c = await container()
    const env = new Map<string, Json>(c.env.map((e: Json) => [e.name, e]))
    // The image's program, the executable `pnpm build` writes (else the bundle it is made from).
    const executable = path.join(REPO, "dist", "vm-metrics")
    const agent = fs.existsSync(executable) ? [executable] : [process.execPath, BIN]
    if (agent.length > 1) console.warn(`${executable} not built: the bundle plays the container`)
    const unique = `${process.pid % 100000}`
    // A root-owned 0755 directory outside /tmp: discovery trusts no executable in a world-writable one.
    const dir = fs.mkdtempSync(path.join("/run", "vm-metrics-k8s-"))
    fs.chmodSync(dir, 0o755)
    const binary = path.join(dir, "qemu-system-x86_64")
    fs.copyFileSync("/bin/sh", binary)
    const hostTap = `k8h${unique}`
    const nsTap = `k8n${unique}`
    const netns = createNetns(`k8sns${unique}`)
    const children: Array<ChildProcess> = []
    try {
      execFileSync("ip", ["tuntap", "add", "dev", hostTap, "mode", "tap"])
      execFileSync("ip", ["-n", netns, "tuntap", "add", "dev", nsTap, "mode", "tap"])
      const onHost = await startFake(binary, `k8s-host-${unique}`, hostTap)
      children.push(onHost.child)
      const inNetns = await startFake(binary, `k8s-netns-${unique}`, nsTap, netns)
      children.push(inNetns.child)

      // The manifest's mount paths, moved under a temporary directory (nothing is created at the real /host).
      const top = makeTempDir("vm-metrics-k8s-pod-")
      fs.chmodSync(top, 0o755) // a path every user can walk, as /host is in the pod
      const moved = (p: string) => path.join(top, p)
      const procRoot = moved(env.get("VM_METRICS_PROC_ROOT").value)
      const sysRoot = moved(env.get("VM_METRICS_SYS_ROOT").value)
      fs.mkdirSync(procRoot, { recursive: true })
      fs.mkdirSync(sysRoot, { recursive: true })
      const caps = c.securityContext.capabilities.add.map((cap: string) => `+${cap.toLowerCase()}`).join(",")
      // The pod: its own /proc (its own pid namespace: stricter than hostPID, no host pid is seen there), a
      // /sys without the host's interfaces, the host's at the roots read-only, the root filesystem read-only;
      // then `setpriv` with the securityContext: uid 0 with only the added capabilities, no privilege gain.
      const sandbox = [
        'mount --rbind /proc "$1" && mount -o remount,bind,ro "$1"',
        'mount --rbind /sys "$2" && mount -o remount,bind,ro "$2"',
        "mount -t proc proc /proc && mount -t tmpfs -o ro tmpfs /sys && mount -o remount,bind,ro /",
        'shift 2 && exec setpriv "$@"'
      ].join(" && ")
      const asManifest = [`--bounding-set=-all,${caps}`, "--inh-caps=-all", "--no-new-privs"]
      /** The fakes this pod lists, and how many processes its discovery could not verify. */
      const run = async (
        withRoots: boolean,
        privileges: ReadonlyArray<string>,
        expect: "listed" | "ignored" | "unseen"
      ) => {
        const port = await freePort()
        const pending: Record<string, string> = {}
        for (const [name, e] of env) if (typeof e.value === "string") pending[name] = e.value
        const podEnv: Record<string, string> = {
          ...pending,
          K8S_NODE_NAME: os.hostname(),
          OTEL_RESOURCE_ATTRIBUTES: pending.OTEL_RESOURCE_ATTRIBUTES!.replaceAll("$(K8S_NODE_NAME)", os.hostname()),
          VM_METRICS_HOST: "127.0.0.1", // status.podIP
          VM_METRICS_PORT: String(port),
          VM_METRICS_PROC_ROOT: procRoot,
          VM_METRICS_SYS_ROOT: sysRoot,
          VM_METRICS_COLLECT: "interfaces", // to see which way each TAP was read
          NO_COLOR: "1"
        }
        if (!withRoots) {
          delete podEnv.VM_METRICS_PROC_ROOT
          delete podEnv.VM_METRICS_SYS_ROOT
        }
        const child = spawn(
          "unshare",
          [
            "-m",
            "-p",
            "-f",
            "--kill-child",
            "--propagation",
            "private",
            "sh",
            "-c",
            sandbox,
            "sh",
            procRoot,
            sysRoot,
            ...privileges
          ].concat([...agent, ...c.args]),
          { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...podEnv }, stdio: ["ignore", "pipe", "pipe"] }
        )
        children.push(child)
        const output = outputTail(child)
        const base = `http://127.0.0.1:${port}`
        try {
          await until("the agent's readiness probe", 90_000, async () => {
            if (exited(child)) throw new Error(`the agent exited (${child.exitCode}):\n${output()}`)
            const r = await fetch(`${base}${c.readinessProbe.httpGet.path}`).catch(() => undefined)
            return r?.status === 200 ? true : undefined
          })
          const get = async (p: string) => {
            const r = await fetch(`${base}${p}`)
            assert.strictEqual(r.status, 200, `${p}: ${await r.clone().text()}\n${output()}`)
            return r.json() as Promise<Json>
          }
          // The start-up listing is done before the agent listens; its counters reach /metrics with a
          // collection or two: wait, bounded, for what is expected.
          return await until(`a collection where the fakes are ${expect}`, 60_000, async () => {
            const list: Json = await get("/instances")
            const ours: Array<Json> = list.instances.filter((i: Json) => `${i.instance_name}`.endsWith(`-${unique}`))
            const metrics = await (await fetch(`${base}/metrics`)).text()
            const counted = /^\w+_discovery_ignored_total\{reason="unverifiable"\} (\d+)$/m.exec(metrics)?.[1]
            const unverifiable = Number(counted ?? 0)
            const done = expect === "listed" ? ours.length >= 2 : expect === "ignored" ? unverifiable >= 2 : true
            return done ? { ours, unverifiable } : undefined
          })
        } finally {
          child.kill("SIGTERM")
        }
      }
      const seen = (await run(true, asManifest, "listed")).ours
      const byName = new Map(seen.map((s) => [s.instance_name, s]))
      const host = byName.get(`k8s-host-${unique}`)
      const netnsVm = byName.get(`k8s-netns-${unique}`)
      assert.isDefined(host, JSON.stringify(seen))
      assert.isDefined(netnsVm, JSON.stringify(seen))
      for (const [vm, fake] of [
        [host, onHost],
        [netnsVm, inNetns]
      ]) {
        // Read from <procRoot>/<pid>/statm: the fake's own resident pages.
        assert.strictEqual(vm.memory_rss_bytes, statmRssBytes(fake.pid), JSON.stringify(vm))
        assert.strictEqual(vm.network_rx_bytes, 0, JSON.stringify(vm))
        assert.strictEqual(vm.network_tx_bytes, 0, JSON.stringify(vm))
      }
      // The host's TAP through <sysRoot>/class/net, the VMM's through <procRoot>/<pid>/net/dev.
      assert.deepStrictEqual(
        host.interfaces.map((n: Json) => [n.name, n.via]),
        [[hostTap, "sysfs"]]
      )
      assert.deepStrictEqual(
        netnsVm.interfaces.map((n: Json) => [n.name, n.via]),
        [[nsTap, "netns"]]
      )
      // Without the variables the same pod sees none of them: the roots are what it reads.
      assert.deepStrictEqual(await run(false, asManifest, "unseen"), { ours: [], unverifiable: 0 })
      // Without the capabilities discovery cannot verify root's hypervisors (their /proc/<pid>/exe): none
      // listed. And as a non-root user (runAsUser: 65534) the same added capabilities are lost at exec, as
      // Kubernetes gives them (no ambient set): hence uid 0.
      const nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
      for (const privileges of [
        ["--bounding-set=-all", "--inh-caps=-all", "--no-new-privs"],
        [...nobody, ...asManifest]
      ]) {
        const { ours, unverifiable } = await run(true, privileges, "ignored")
        assert.deepStrictEqual(ours, [], privileges.join(" "))
        assert.isAtLeast(unverifiable, 2, `both fakes ignored as unverifiable (${privileges.join(" ")})`)
      }
    } finally {
      for (const child of children) child.kill("SIGKILL")
      deleteTap(hostTap)
      deleteNetns(netns)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
