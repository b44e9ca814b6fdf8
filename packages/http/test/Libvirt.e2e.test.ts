/**
 * End to end against a real libvirtd: a `<domain type='qemu'>` running the tiny guest on a pre-made TAP
 * (in the host netns, a port of a bridge to the peer's netns), and the real
 * `vm-metrics serve --source libvirt` CLI, which reads libvirt's status XML in /run/libvirt/qemu. Every
 * number is checked against the test's own readings of the domain's QEMU process and TAP, taken right
 * before and after the request (/proc/<pid>/stat, `ps`, `ip -s -j link`).
 *
 * Needs root, a running libvirtd (`.ci/libvirt.sh`) and the guest of `.ci/qemu-guest.sh`; skips with a
 * message otherwise, and fails instead under CI=true.
 */
import { randomUUID } from "node:crypto"
import { assert, describe, layer } from "@effect/vitest"
import { sleepMs } from "@vm-metrics/testing"
import { Effect } from "effect"
import {
  assertWithin,
  bracketedGet,
  checkGone,
  checkMetrics,
  checkStats,
  decodeStats,
  diagnosed,
  GUEST_MEMORY_BYTES,
  GUEST_VCPUS,
  rigGet as get,
  LIBVIRT_RUN_DIR,
  layerVmRig,
  libvirtMissing,
  VmRig as Rig,
  vmMetricsServer,
  vmSkipReason
} from "./vmRig.js"

const skip = vmSkipReason("libvirt end-to-end tests", libvirtMissing)

/** Names of this file only (the plain QEMU test uses `vmm-e2e-*` and `hv-e2e1`; both files may run at once). */
const TAP = "hv-e2e-lv1"
const DOMAIN = "vmm-e2e-lv1"
const DOMAIN_UUID = randomUUID()

const rigLayer = layerVmRig({
  hypervisor: "libvirt",
  tag: "e2l",
  tap: TAP,
  name: DOMAIN,
  uuid: DOMAIN_UUID,
  serve: ["--source", "libvirt", "--libvirt-run-dir", LIBVIRT_RUN_DIR]
})

describe.skipIf(skip)("vm-metrics serve --source libvirt against a real libvirtd domain", () => {
  layer(rigLayer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("the test's own view: libvirt's status XML names the pid, uuid and TAP the test expects", () =>
      diagnosed(
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const xml = vm.statusXml() ?? "(no status XML)"
          assert.include(xml, `pid='${vm.pid}'`)
          assert.include(xml, `<uuid>${DOMAIN_UUID}</uuid>`)
          assert.include(xml, `<target dev='${TAP}' managed='no'/>`)
        })
      )
    )

    it.effect("GET /instances/<domain name>/stats matches /proc, ps and ip -s link of the domain's QEMU and TAP", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const { before, response, after } = yield* get(`/instances/${DOMAIN}/stats`)
          assert.strictEqual(response.status, 200, response.body)
          assert.match(response.contentType ?? "", /^application\/json/)
          checkStats(decodeStats(response.body), expected, before, after)
        })
      )
    )

    it.effect("GET /instances/<domain uuid>/stats is the same domain; its counters grow while the guest pings", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const first = yield* get(`/instances/${DOMAIN_UUID}/stats`)
          assert.strictEqual(first.response.status, 200, first.response.body)
          const a = decodeStats(first.response.body)
          checkStats(a, expected, first.before, first.after)
          yield* Effect.promise(() => sleepMs(2_500))
          const second = yield* get(`/instances/${DOMAIN}/stats`)
          const b = decodeStats(second.response.body)
          checkStats(b, expected, second.before, second.after)
          assert.isAbove(b.cpu_seconds!, a.cpu_seconds!, "cpu_seconds grew")
          assert.isAbove(b.network_rx_bytes!, a.network_rx_bytes!, "network_rx_bytes grew")
          assert.isAbove(b.network_tx_bytes!, a.network_tx_bytes!, "network_tx_bytes grew")
          assert.strictEqual(b.epoch, a.epoch, "the same process: the same epoch")
        })
      )
    )

    it.effect("GET /metrics has the domain's series, labelled with its uuid and name", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const { before, response, after } = yield* get("/metrics")
          assert.strictEqual(response.status, 200, response.body)
          checkMetrics(response.body, expected, before, after)
        })
      )
    )
    it.scoped("--source discovery finds the same QEMU by its command line (-name guest=…, -uuid, JSON -netdev)", () =>
      diagnosed(
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const discovery = yield* vmMetricsServer(["--source", "discovery"])
          const { before, response, after } = yield* Effect.promise(() =>
            bracketedGet(discovery, `/instances/${DOMAIN_UUID}/stats`, vm)
          )
          assert.strictEqual(response.status, 200, `${response.body}\n${discovery.output()}`)
          const stats = decodeStats(response.body)
          assert.strictEqual(stats.instance_id, DOMAIN_UUID, "-uuid")
          assert.strictEqual(stats.instance_name, DOMAIN, "-name guest=<domain>,debug-threads=on")
          assert.strictEqual(stats.state, "running")
          assert.strictEqual(stats.pid, vm.pid)
          assert.strictEqual(stats.allocated_vcpus, GUEST_VCPUS, "-smp 1,sockets=1,cores=1,threads=1")
          assert.strictEqual(stats.allocated_memory_bytes, GUEST_MEMORY_BYTES, "-m 256")
          assertWithin(stats.cpu_seconds!, before.cpuSeconds, after.cpuSeconds, "cpu_seconds")
          // libvirt hands QEMU the TAP as an fd (-netdev {"type":"tap","fd":…}): no name on the command line.
          // Either the server finds no TAP (no network values, null, not 0) or it names the right one.
          if (stats.tap_device === null) {
            assert.isNull(stats.network_rx_bytes, response.body)
            assert.isNull(stats.network_tx_bytes, response.body)
          } else {
            assert.strictEqual(stats.tap_device, TAP)
            assertWithin(stats.network_rx_bytes!, before.vmRxBytes, after.vmRxBytes, "network_rx_bytes")
            assertWithin(stats.network_tx_bytes!, before.vmTxBytes, after.vmTxBytes, "network_tx_bytes")
          }
          yield* Effect.log(`discovery of the libvirt domain: tap_device ${stats.tap_device}`)
        })
      )
    )

    // Last: it destroys the domain (the scope's release then only undefines it).
    it.effect("after virsh destroy, the domain is no longer reported as running and its series are gone", () =>
      diagnosed(
        Effect.gen(function* () {
          const { server, vm } = yield* Rig
          yield* Effect.promise(() => vm.stop())
          const outcome = yield* Effect.promise(() => checkGone(server, { id: DOMAIN_UUID, name: DOMAIN }))
          yield* Effect.log(`after virsh destroy: ${outcome}`)
        })
      )
    )
  })
})
