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
import { Context, Effect, Layer } from "effect"
import { sleepMs } from "../../node/test/helpers.js"
import { LIBVIRT_RUN_DIR, type LibvirtVm, libvirtMissing, libvirtVm } from "./libvirtRig.js"
import {
  assertWithin,
  bracketedGet,
  checkGone,
  checkMetrics,
  checkStats,
  decodeStats,
  type Expected,
  GUEST_MEMORY_MIB,
  GUEST_VCPUS,
  guestNetwork,
  hostTap,
  type NetConfig,
  qemuSkipReason,
  type VmMetricsServer,
  vmMetricsServer,
  withDiagnostics
} from "./qemuRig.js"

const skip = qemuSkipReason("libvirt end-to-end tests", libvirtMissing)

/** Names of this file only (the plain QEMU test uses `vmm-e2e-*` and `hv-e2e1`; both files may run at once). */
const NET: NetConfig = { netns: "vmm-e2l-ns", bridge: "vmm-e2l-br", vethHost: "vmm-e2l-v0", vethPeer: "vmm-e2l-v1" }
const TAP = "hv-e2e-lv1"
const DOMAIN = "vmm-e2e-lv1"
const DOMAIN_UUID = randomUUID()
const MEMORY_BYTES = GUEST_MEMORY_MIB * 1024 * 1024

class Rig extends Context.Tag("e2e/LibvirtRig")<Rig, { readonly vm: LibvirtVm; readonly server: VmMetricsServer }>() {}

const rigLayer = Layer.scoped(
  Rig,
  Effect.gen(function* () {
    const net = yield* guestNetwork(NET)
    const tap = yield* hostTap(TAP, net.bridge)
    const vm = yield* libvirtVm({ name: DOMAIN, uuid: DOMAIN_UUID, tap })
    const started = Date.now()
    const server = yield* vmMetricsServer(["--source", "libvirt", "--libvirt-run-dir", LIBVIRT_RUN_DIR])
    yield* Effect.log(
      `libvirt domain ${DOMAIN} (${DOMAIN_UUID}, QEMU pid ${vm.pid}, TAP ${tap}): network up after ${vm.bootMs} ms; ` +
        `server healthy at ${server.base} after ${Date.now() - started} ms`
    )
    return { vm, server }
  })
)

const diagnosed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Rig, ({ server, vm }) => withDiagnostics(self, vm, server))

const get = (pathname: string) =>
  Effect.flatMap(Rig, ({ server, vm }) => Effect.promise(() => bracketedGet(server, pathname, vm)))

const expected = (vm: LibvirtVm): Expected => ({
  id: DOMAIN_UUID,
  name: DOMAIN,
  pid: vm.pid,
  tap: TAP,
  vcpus: GUEST_VCPUS,
  memoryBytes: MEMORY_BYTES
})

describe.skipIf(skip)("vm-metrics serve --source libvirt against a real libvirtd domain", () => {
  layer(rigLayer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("the test's own view: libvirt's status XML names the pid, uuid and TAP the test expects", () =>
      diagnosed(
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const xml = vm.statusXml()
          assert.include(xml, `pid='${vm.pid}'`)
          assert.include(xml, `<uuid>${DOMAIN_UUID}</uuid>`)
          assert.include(xml, `<target dev='${TAP}' managed='no'/>`)
        })
      )
    )

    it.effect("GET /instances/<domain name>/stats matches /proc, ps and ip -s link of the domain's QEMU and TAP", () =>
      diagnosed(
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const { before, response, after } = yield* get(`/instances/${DOMAIN}/stats`)
          assert.strictEqual(response.status, 200, response.body)
          assert.match(response.contentType ?? "", /^application\/json/)
          checkStats(decodeStats(response.body), expected(vm), before, after)
        })
      )
    )

    it.effect("GET /instances/<domain uuid>/stats is the same domain; its counters grow while the guest pings", () =>
      diagnosed(
        Effect.gen(function* () {
          const { vm } = yield* Rig
          const first = yield* get(`/instances/${DOMAIN_UUID}/stats`)
          assert.strictEqual(first.response.status, 200, first.response.body)
          const a = decodeStats(first.response.body)
          checkStats(a, expected(vm), first.before, first.after)
          yield* Effect.promise(() => sleepMs(2_500))
          const second = yield* get(`/instances/${DOMAIN}/stats`)
          const b = decodeStats(second.response.body)
          checkStats(b, expected(vm), second.before, second.after)
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
          const { vm } = yield* Rig
          const { before, response, after } = yield* get("/metrics")
          assert.strictEqual(response.status, 200, response.body)
          checkMetrics(response.body, expected(vm), before, after)
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
          assert.strictEqual(stats.allocated_memory_bytes, MEMORY_BYTES, "-m 256")
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
          vm.destroy()
          const outcome = yield* Effect.promise(() => checkGone(server, { id: DOMAIN_UUID, name: DOMAIN }))
          yield* Effect.log(`after virsh destroy: ${outcome}`)
        })
      )
    )
  })
})
