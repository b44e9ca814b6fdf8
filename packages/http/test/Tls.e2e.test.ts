/**
 * HTTPS end to end, with a self-signed certificate made by the `openssl` CLI and the real bundle:
 *
 * - the two files go together, and a missing, unreadable, malformed or mismatched one is one line on
 *   stderr and exit status 2 (the usage status), before anything is served;
 * - `vm-metrics serve --tls-cert-file … ` (the key through VM_METRICS_TLS_KEY_FILE) with a token serves
 *   HTTPS: a client trusting the certificate gets /healthz and, with the token, /metrics; one that does not
 *   trust it fails the handshake; a plain-HTTP client gets a plain 400 saying to use https:// and the
 *   connection closes (not a hang), and HTTPS still works afterwards; SIGHUP serves a certificate renewed in
 *   place, and keeps the current one when the file is broken; a kept-alive HTTPS connection is not taken for
 *   a silent one (the connection bounds see its requests on the TLS socket);
 * - a real Prometheus scrapes it over HTTPS with the token, as docs/prometheus.md's "Over HTTPS" says
 *   (`scheme: https`, `tls_config.ca_file`): the target is up and the stored samples are the VM's (a real
 *   process's CPU time and RSS). A job without the CA, and one over plain HTTP, are down with the reasons the
 *   doc names.
 */
import { spawnSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as path from "node:path"
import type * as tls from "node:tls"
import { assert, describe, it, layer } from "@effect/vitest"
import {
  freePort,
  type Server,
  skipReason,
  spawnChild,
  startServer,
  statCpuSeconds,
  statmRssBytes,
  stopChild,
  TICK_SECONDS,
  tempDir,
  waitFor,
  which
} from "@vm-metrics/testing"
import { Context, Effect, Layer } from "effect"
import { cli } from "./cliRig.js"
import {
  findPrometheus,
  instantQuery,
  nodeArgs,
  REPO_ROOT,
  request,
  serverBin,
  serverEnv,
  startPrometheus
} from "./rig.js"

const openssl = which("openssl")
const skipTls = skipReason(
  openssl === undefined ? "openssl not found on PATH (apt-get install openssl)" : undefined,
  "TLS tests"
)
const { prometheus } = findPrometheus()
const skipPrometheus = skipReason(
  prometheus === undefined ? "prometheus not found on PATH (apt-get install prometheus)" : undefined,
  "Prometheus over HTTPS test"
)

/** `yaml` is a dependency of @vm-metrics/node (pnpm does not hoist it): load it as packages/node does. */
const YAML = createRequire(path.join(REPO_ROOT, "packages", "node", "package.json"))("yaml") as {
  readonly parse: (text: string) => unknown
  readonly stringify: (value: unknown) => string
}

const TOKEN = "tls-e2e-token-51c2"
const DOC_FILE = path.join(REPO_ROOT, "docs", "prometheus.md")

/** A self-signed certificate for 127.0.0.1 and localhost and its key, made by `openssl req -x509`. */
const selfSigned = (dir: string, name: string) => {
  const cert = path.join(dir, `${name}.crt`)
  const key = path.join(dir, `${name}.key`)
  const made = spawnSync(
    openssl!,
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"],
      ...["-subj", `/CN=vm-metrics ${name}`, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
      ...["-keyout", key, "-out", cert]
    ],
    { encoding: "utf8", timeout: 30_000 }
  )
  assert.strictEqual(made.status, 0, `openssl req: ${made.stderr}`)
  fs.chmodSync(key, 0o600)
  return { cert, key }
}

/** GET over HTTPS on a new connection: status, body, the SHA-256 fingerprint of the server's certificate; or the error. */
const httpsGet = (url: string, options: { readonly ca?: string; readonly headers?: Record<string, string> } = {}) =>
  new Promise<{ status: number; body: string; fingerprint: string } | { error: NodeJS.ErrnoException }>((resolve) => {
    const req = https.get(
      url,
      {
        agent: false,
        timeout: 10_000,
        headers: options.headers ?? {},
        ...(options.ca === undefined ? {} : { ca: fs.readFileSync(options.ca) })
      },
      (res) => {
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk) => (body += chunk))
        const fingerprint = (res.socket as tls.TLSSocket).getPeerCertificate().fingerprint256
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, fingerprint }))
      }
    )
    req.on("timeout", () => req.destroy(Object.assign(new Error("no answer in 10 s"), { code: "TIMEOUT" })))
    req.on("error", (error) => resolve({ error }))
  })

const ok = (result: Awaited<ReturnType<typeof httpsGet>>) => {
  if ("error" in result) throw new Error(`HTTPS request failed: ${result.error.code} ${result.error.message}`)
  return result
}

// ---------------------------------------------------------------------------------------------------
// Refused at start

describe.skipIf(skipTls)("--tls-cert-file / --tls-key-file refused at start", () => {
  it.scoped("one without the other, unreadable, malformed or mismatched: one line on stderr, exit status 2", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir("tls-refused-")
      const a = selfSigned(dir, "a")
      const b = selfSigned(dir, "b")
      const garbage = path.join(dir, "garbage.pem")
      fs.writeFileSync(garbage, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
      const instances = path.join(dir, "instances.json")
      fs.writeFileSync(instances, "[]")
      const port = yield* freePort
      const serve = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
        Effect.promise(() =>
          cli(["serve", "--port", String(port), "--source", "file", "--instances-file", instances, ...args], env)
        )
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Record<string, string>, RegExp]> = [
        [["--tls-cert-file", a.cert], {}, /--tls-cert-file was given without the other/],
        [[], { VM_METRICS_TLS_KEY_FILE: a.key }, /--tls-key-file was given without the other/],
        [
          ["--tls-cert-file", path.join(dir, "missing.crt"), "--tls-key-file", a.key],
          {},
          /cannot read the TLS certificate file .*missing\.crt: no such file/
        ],
        [["--tls-cert-file", a.cert, "--tls-key-file", dir], {}, /cannot read the TLS key file /],
        [["--tls-cert-file", garbage, "--tls-key-file", a.key], {}, /garbage\.pem holds no PEM certificate/],
        [["--tls-cert-file", a.cert, "--tls-key-file", a.cert], {}, /a\.crt holds no PEM private key/],
        [
          ["--tls-cert-file", a.cert, "--tls-key-file", b.key],
          {},
          /the key in .*b\.key is not the key of the certificate in .*a\.crt/
        ]
      ]
      for (const [args, env, expected] of cases) {
        const result = yield* serve(args, env)
        const what = `${args.join(" ")} ${JSON.stringify(env)}`
        assert.strictEqual(result.code, 2, `${what}: ${result.stderr}`)
        const lines = result.stderr.trimEnd().split("\n")
        assert.lengthOf(lines, 1, `${what}: ${result.stderr}`)
        assert.match(lines[0]!, /^vm-metrics: /, what)
        assert.match(lines[0]!, expected, what)
        assert.strictEqual(result.stdout, "", what)
      }
    })
  )
})

// ---------------------------------------------------------------------------------------------------
// Served over HTTPS, scraped by a real Prometheus

class Agent extends Context.Tag("tls/Agent")<
  Agent,
  {
    readonly base: string
    readonly port: number
    readonly ca: string
    readonly key: string
    readonly dir: string
    readonly vmPid: number
    readonly server: Server
  }
>() {}

/** `vm-metrics serve` over HTTPS with a token, over a file listing one VM (a `sleep` child). */
const agentLayer = Layer.scoped(
  Agent,
  Effect.gen(function* () {
    const dir = yield* tempDir("tls-e2e-")
    const { cert, key } = selfSigned(dir, "agent")
    const vm = yield* Effect.acquireRelease(
      Effect.sync(() => spawnChild("exec sleep 300")),
      (child) => Effect.promise(() => stopChild(child))
    )
    const instances = path.join(dir, "instances.json")
    fs.writeFileSync(
      instances,
      JSON.stringify([{ id: "tls-vm-1", name: "tls-web", pid: vm.pid, vcpus: 1, memory: "1G" }])
    )
    const tokenFile = path.join(dir, "agent.token")
    fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
    const port = yield* freePort
    const args = [
      ...nodeArgs(serverBin()),
      ...["serve", "--host", "127.0.0.1", "--port", String(port), "--source", "file", "--instances-file", instances],
      ...["--auth-token-file", tokenFile, "--tls-cert-file", cert, "--log-format", "logfmt"],
      // A short silent-connection bound and a long keep-alive: see the keep-alive test.
      ...["--headers-timeout", "2s", "--keep-alive-timeout", "60s"]
    ]
    // The key through its variable: the environment path of the setting.
    const server = yield* startServer("agent (HTTPS)", process.execPath, args, {
      cwd: REPO_ROOT,
      env: serverEnv({ VM_METRICS_TLS_KEY_FILE: key }),
      group: true
    })
    const base = `https://127.0.0.1:${port}`
    yield* waitFor(
      "the HTTPS agent's /healthz",
      async () => {
        const health = await httpsGet(`${base}/healthz`, { ca: cert })
        if ("status" in health && health.status === 200) return true
        throw new Error(JSON.stringify(health))
      },
      { timeout: "60 seconds", interval: "200 millis", gone: server.gone, details: server.output }
    )
    return { base, port, ca: cert, key, dir, vmPid: vm.pid, server }
  })
)

const withToken = { authorization: `Bearer ${TOKEN}` }

/** Sends `bytes` on a new TCP connection; what comes back until the server closes it (bounded: 10 s). */
const rawExchange = (port: number, bytes: string) =>
  new Promise<{ reply: string; closedByServer: boolean }>((resolve) => {
    const socket = net.connect(port, "127.0.0.1")
    let reply = ""
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ reply, closedByServer: false })
    }, 10_000)
    socket.setEncoding("utf8")
    socket.on("data", (chunk) => (reply += chunk))
    socket.on("end", () => {
      clearTimeout(timer)
      socket.destroy()
      resolve({ reply, closedByServer: true })
    })
    socket.on("error", () => undefined)
    socket.write(bytes)
  })

describe.skipIf(skipTls)("vm-metrics serve over HTTPS", () => {
  layer(agentLayer, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
    it.effect("serves HTTPS: /healthz open, /metrics only with the token; the start-up line names https://", () =>
      Effect.gen(function* () {
        const { base, ca, vmPid, server } = yield* Agent
        const health = ok(yield* Effect.promise(() => httpsGet(`${base}/healthz`, { ca })))
        assert.deepStrictEqual(JSON.parse(health.body), { status: "ok" })
        const refused = ok(yield* Effect.promise(() => httpsGet(`${base}/metrics`, { ca })))
        assert.strictEqual(refused.status, 401)
        const metrics = ok(yield* Effect.promise(() => httpsGet(`${base}/metrics`, { ca, headers: withToken })))
        assert.strictEqual(metrics.status, 200)
        const cpu = /^hypeman_vm_cpu_seconds_total\{instance_id="tls-vm-1",instance_name="tls-web"\} (\S+)$/m.exec(
          metrics.body
        )
        assert.isNotNull(cpu, metrics.body.slice(0, 2000))
        assert.closeTo(Number(cpu![1]), statCpuSeconds(vmPid), TICK_SECONDS + 1e-9)
        const line = yield* waitFor(
          "the start-up line",
          async () => /^.*listening on .*$/m.exec(server.output())?.[0],
          { timeout: "30 seconds" }
        )
        assert.include(line, `docs=${base}/docs`, line)
      })
    )

    it.effect("a client that does not trust the certificate fails the handshake", () =>
      Effect.gen(function* () {
        const { base } = yield* Agent
        const untrusted = yield* Effect.promise(() => httpsGet(`${base}/healthz`))
        assert.isTrue("error" in untrusted, JSON.stringify(untrusted))
        if ("error" in untrusted) assert.strictEqual(untrusted.error.code, "DEPTH_ZERO_SELF_SIGNED_CERT")
      })
    )

    it.effect("a plain-HTTP client gets a plain 400 naming https:// and the connection closes; HTTPS still works", () =>
      Effect.gen(function* () {
        const { base, port, ca } = yield* Agent
        const plain = yield* Effect.promise(
          () =>
            new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
              const req = http.get(`http://127.0.0.1:${port}/healthz`, { agent: false, timeout: 10_000 }, (res) => {
                let body = ""
                res.setEncoding("utf8")
                res.on("data", (chunk) => (body += chunk))
                res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
              })
              req.on("timeout", () => req.destroy(new Error("no answer in 10 s")))
              req.on("error", reject)
            })
        )
        assert.strictEqual(plain.status, 400)
        assert.strictEqual(plain.headers.connection, "close")
        const body = JSON.parse(plain.body)
        assert.strictEqual(body.code, "bad_request")
        assert.include(body.message, "https://")
        // Any other first bytes alike, and the server closes the connection itself.
        const garbage = yield* Effect.promise(() => rawExchange(port, "hello\r\n"))
        assert.isTrue(garbage.closedByServer, garbage.reply)
        assert.match(garbage.reply, /^HTTP\/1\.1 400 Bad Request\r\n/)
        const health = ok(yield* Effect.promise(() => httpsGet(`${base}/healthz`, { ca })))
        assert.strictEqual(health.status, 200)
      })
    )

    it.effect(
      "a kept-alive HTTPS connection outlives --headers-timeout: its requests count on the TCP connection",
      () =>
        Effect.gen(function* () {
          const { base, ca } = yield* Agent
          const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fs.readFileSync(ca) })
          const get = () =>
            new Promise<{ status: number; reused: boolean; localPort: number }>((resolve, reject) => {
              const req = https.get(`${base}/healthz`, { agent, timeout: 10_000 }, (res) => {
                // Read now: once the response has ended, the socket goes back to the agent's pool.
                const localPort = res.socket.localPort ?? 0
                res.resume()
                res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket, localPort }))
              })
              req.on("timeout", () => req.destroy(new Error("no answer in 10 s")))
              req.on("error", reject)
            })
          try {
            const first = yield* Effect.promise(get)
            assert.strictEqual(first.status, 200)
            // Longer than the 2 s a connection has for its first request; far shorter than the 60 s keep-alive.
            yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 3_000)))
            const second = yield* Effect.promise(get)
            assert.strictEqual(second.status, 200)
            assert.isTrue(second.reused, "the second request went over the first connection")
            assert.strictEqual(second.localPort, first.localPort)
          } finally {
            agent.destroy()
          }
        })
    )

    // Last of this agent's tests: it replaces the agent's certificate.
    it.effect("SIGHUP reads a renewed certificate; a bad one is logged and the current one kept", () =>
      Effect.gen(function* () {
        const { base, ca, key, dir, server } = yield* Agent
        const fingerprintOf = (file: string) => new crypto.X509Certificate(fs.readFileSync(file)).fingerprint256
        const before = ok(yield* Effect.promise(() => httpsGet(`${base}/healthz`, { ca })))
        assert.strictEqual(before.fingerprint, fingerprintOf(ca))
        // Renewed in place, as a certificate manager does.
        const renewedDir = path.join(dir, "renewed")
        fs.mkdirSync(renewedDir)
        const renewed = selfSigned(renewedDir, "renewed")
        fs.copyFileSync(renewed.cert, ca)
        fs.copyFileSync(renewed.key, key)
        process.kill(server.process.pid!, "SIGHUP")
        const after = yield* waitFor(
          "the renewed certificate served",
          async () => {
            const res = await httpsGet(`${base}/healthz`, { ca: renewed.cert })
            return "status" in res && res.fingerprint === fingerprintOf(renewed.cert) ? res : undefined
          },
          { timeout: "30 seconds", gone: server.gone, details: server.output }
        )
        assert.strictEqual(after.status, 200)
        assert.notStrictEqual(after.fingerprint, before.fingerprint)
        // A broken file: logged, and the renewed pair still served.
        fs.writeFileSync(ca, "not a certificate\n")
        process.kill(server.process.pid!, "SIGHUP")
        const warned = yield* waitFor(
          "the warning about the bad certificate",
          async () => /^.*SIGHUP: keeping the current TLS certificate.*$/m.exec(server.output())?.[0],
          { timeout: "30 seconds", gone: server.gone }
        )
        assert.include(warned, "holds no PEM certificate")
        const still = ok(yield* Effect.promise(() => httpsGet(`${base}/healthz`, { ca: renewed.cert })))
        assert.strictEqual(still.status, 200)
        assert.strictEqual(still.fingerprint, fingerprintOf(renewed.cert))
        fs.copyFileSync(renewed.cert, ca)
      })
    )
  })
})

/** The job fragment of docs/prometheus.md's "Over HTTPS" section. */
const docHttpsJob = (): Record<string, any> => {
  const doc = fs.readFileSync(DOC_FILE, "utf8")
  const section = doc.slice(doc.indexOf("### Over HTTPS"))
  const block = /^```yaml\n([\s\S]*?)^```$/m.exec(section)
  assert.isNotNull(block, "a yaml block in docs/prometheus.md's Over HTTPS section")
  return YAML.parse(block![1]!) as Record<string, any>
}

describe.skipIf(skipTls ?? skipPrometheus)("a real Prometheus scraping over HTTPS with the token", () => {
  layer(agentLayer, { excludeTestServices: true, timeout: "180 seconds" })((it) => {
    it.scoped("as docs/prometheus.md says: up, with the VM's samples; without the CA or over HTTP: down", () =>
      Effect.gen(function* () {
        const { port, ca, dir, vmPid } = yield* Agent
        const fragment = docHttpsJob()
        assert.strictEqual(fragment.scheme, "https")
        assert.deepStrictEqual(Object.keys(fragment.tls_config), ["ca_file"])
        const tokenFile = path.join(dir, "prometheus.token")
        fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 })
        const target = `127.0.0.1:${port}`
        const job = (name: string, extra: Record<string, unknown>) => ({
          job_name: name,
          scrape_interval: "1s",
          scrape_timeout: "1s",
          authorization: { type: "Bearer", credentials_file: tokenFile },
          static_configs: [{ targets: [target] }],
          ...extra
        })
        const config = path.join(dir, "prom.yml")
        fs.writeFileSync(
          config,
          YAML.stringify({
            global: { scrape_interval: "1s", scrape_timeout: "1s" },
            scrape_configs: [
              job("https", { ...fragment, tls_config: { ...fragment.tls_config, ca_file: ca } }),
              job("https-untrusted", { scheme: "https" }),
              job("plain-http", {})
            ]
          })
        )
        const { base } = yield* startPrometheus(prometheus!, config, path.join(dir, "data"))
        const query = (q: string) =>
          waitFor(`Prometheus to have ${q}`, () => instantQuery(base, q), { timeout: "30 seconds" })
        const up = yield* query(`up{job="https"} == 1`)
        assert.lengthOf(up, 1)
        const cpu = yield* query(`hypeman_vm_cpu_seconds_total{job="https",instance_id="tls-vm-1"}`)
        assert.lengthOf(cpu, 1)
        assert.strictEqual(cpu[0]!.metric.instance, target)
        assert.closeTo(Number(cpu[0]!.value[1]), statCpuSeconds(vmPid), TICK_SECONDS + 1e-9)
        const rss = yield* query(`hypeman_vm_memory_rss_bytes{job="https",instance_id="tls-vm-1"}`)
        assert.strictEqual(Number(rss[0]!.value[1]), statmRssBytes(vmPid))
        // The two jobs that cannot scrape, with the reasons docs/prometheus.md gives.
        const targets = yield* waitFor(
          "both failing jobs scraped with an error",
          async () => {
            const active = JSON.parse((await request(`${base}/api/v1/targets`)).body).data.activeTargets as Array<any>
            const failing = active.filter((t) => t.labels.job !== "https" && t.lastError !== "")
            return failing.length === 2 ? active : undefined
          },
          { timeout: "30 seconds" }
        )
        const byJob = (name: string) => targets.find((t) => t.labels.job === name)
        assert.strictEqual(byJob("https-untrusted").health, "down")
        assert.include(byJob("https-untrusted").lastError, "x509: certificate signed by unknown authority")
        assert.strictEqual(byJob("plain-http").health, "down")
        assert.include(byJob("plain-http").lastError, "server returned HTTP status 400 Bad Request")
        assert.strictEqual(byJob("https").health, "up")
      })
    )
  })
})
