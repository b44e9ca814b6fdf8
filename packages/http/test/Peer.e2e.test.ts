/**
 * Side by side with a peer: one real QEMU guest under libvirt with a TAP, read by vm-metrics (libvirt
 * source) and by Debian's prometheus-libvirt-exporter at the same time. Both report the VM's point of
 * view, so their numbers must agree:
 * - CPU: our `cpu_seconds` against `libvirt_domain_info_cpu_time_seconds_total`;
 * - network: our `network_rx/tx_bytes` against `libvirt_domain_interface_stats_receive/transmit_bytes_total`.
 * The guest keeps running while the two are read, so each of our readings is bracketed by two exporter
 * scrapes (before and after) and must fall between them, give or take one clock tick (10 ms) per
 * second elapsed for CPU (both round to ticks) and nothing for bytes.
 *
 * Needs root, libvirtd, the tiny guest and prometheus-libvirt-exporter; skips with a message otherwise
 * and fails instead under CI=true.
 */
import { randomUUID } from "node:crypto"
import { assert, describe, layer } from "@effect/vitest"
import { freePort, hasCommand, type Server, sleepMs, startServer, waitFor } from "@vm-metrics/testing"
import { Context, Effect, Layer } from "effect"
import { decodeStats, LIBVIRT_RUN_DIR, libvirtMissing, type VmRigService, vmRig, vmSkipReason } from "./vmRig.js"

const EXPORTER = "/usr/bin/prometheus-libvirt-exporter"
const skip = vmSkipReason("peer comparison with libvirt-exporter", libvirtMissing, () =>
  hasCommand(EXPORTER) ? undefined : "needs prometheus-libvirt-exporter (Debian package)"
)

const TAP = "hv-e2p1"
const DOMAIN = "vmm-e2p-lv1"
const TICK = 0.01

class Rig extends Context.Tag("e2e/PeerRig")<
  Rig,
  VmRigService & { readonly exporter: Server; readonly exporterUrl: string }
>() {}

const rigLayer = Layer.scoped(
  Rig,
  Effect.gen(function* () {
    const rig = yield* vmRig({
      hypervisor: "libvirt",
      tag: "e2p",
      tap: TAP,
      name: DOMAIN,
      uuid: randomUUID(),
      serve: ["--source", "libvirt", "--libvirt-run-dir", LIBVIRT_RUN_DIR]
    })
    const port = yield* freePort
    const exporter = yield* startServer("libvirt-exporter", EXPORTER, [`--web.listen-address=127.0.0.1:${port}`])
    const exporterUrl = `http://127.0.0.1:${port}/metrics`
    yield* waitFor(
      "libvirt-exporter to see the domain",
      async () => {
        const text = await (await fetch(exporterUrl)).text()
        return text.includes(`domain="${DOMAIN}"`) ? text : undefined
      },
      { timeout: "20 seconds", gone: exporter.gone, details: exporter.output }
    )
    return { ...rig, exporter, exporterUrl }
  })
)

/** libvirt-exporter's view of the domain. */
interface PeerReading {
  readonly atMs: number
  readonly cpuSeconds: number
  readonly rxBytes: number
  readonly txBytes: number
}

const sample = (text: string, name: string, labels: ReadonlyArray<string>): number => {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{`) && labels.every((label) => l.includes(label)))
  if (line === undefined) throw new Error(`no ${name}{${labels.join(",")}} in:\n${text.slice(0, 2000)}`)
  return Number(line.slice(line.lastIndexOf(" ") + 1))
}

const peer = (url: string) =>
  Effect.promise(async (): Promise<PeerReading> => {
    const text = await (await fetch(url)).text()
    const domain = `domain="${DOMAIN}"`
    return {
      atMs: Date.now(),
      cpuSeconds: sample(text, "libvirt_domain_info_cpu_time_seconds_total", [domain]),
      rxBytes: sample(text, "libvirt_domain_interface_stats_receive_bytes_total", [domain, `target_device="${TAP}"`]),
      txBytes: sample(text, "libvirt_domain_interface_stats_transmit_bytes_total", [domain, `target_device="${TAP}"`])
    }
  })

const between = (value: number, low: number, high: number, slack: number, what: string) =>
  assert.isTrue(value >= low - slack && value <= high + slack, `${what}: ${value} not in [${low}, ${high}] ± ${slack}`)

describe.skipIf(skip !== undefined)("vm-metrics and prometheus-libvirt-exporter on the same libvirt domain", () => {
  layer(rigLayer, { excludeTestServices: true, timeout: "90 seconds" })((it) => {
    it.effect(
      "agree on CPU seconds and on the VM's rx/tx bytes, reading after reading",
      () =>
        Effect.gen(function* () {
          const { server: ours, exporterUrl } = yield* Rig
          for (let round = 0; round < 3; round++) {
            yield* Effect.promise(() => sleepMs(300)) // longer than our max age: a fresh collection each time
            const before = yield* peer(exporterUrl)
            const response = yield* Effect.promise(() => ours.get(`/instances/${DOMAIN}/stats`))
            const after = yield* peer(exporterUrl)
            assert.strictEqual(response.status, 200, response.body)
            const stats = decodeStats(response.body)
            const elapsed = (after.atMs - before.atMs) / 1000
            between(
              stats.cpu_seconds ?? Number.NaN,
              before.cpuSeconds,
              after.cpuSeconds,
              TICK * Math.max(1, Math.ceil(elapsed)),
              "CPU seconds"
            )
            between(Number(stats.network_rx_bytes), before.rxBytes, after.rxBytes, 0, "VM rx bytes")
            between(Number(stats.network_tx_bytes), before.txBytes, after.txBytes, 0, "VM tx bytes")
            assert.isAbove(after.rxBytes, 0)
            assert.isAbove(after.txBytes, 0)
          }
        }),
      60_000
    )
  })
})
