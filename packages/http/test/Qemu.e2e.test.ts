/**
 * End to end against a real hypervisor: a QEMU guest (TCG, 256 MiB, 1 vCPU, pinging a peer in its own
 * netns every 0.2 s through a TAP in the host netns) and the real `vm-metrics serve --source discovery`
 * CLI on a random loopback port. Every number the server returns is checked against the test's own
 * readings of the same VM, taken right before and right after the request with other tools: utime+stime
 * from /proc/<pid>/stat ÷ `getconf CLK_TCK`, `ps -o rss=,vsz=`, and `ip -s -j link show dev <tap>`.
 *
 * Needs root, qemu-system-x86_64 and the tiny guest of `.ci/qemu-guest.sh`; skips with a message
 * otherwise, and fails instead under CI=true.
 */
import { randomUUID } from "node:crypto"
import { assert, describe, layer } from "@effect/vitest"
import { sleepMs } from "@vm-metrics/testing"
import { Effect } from "effect"
import {
  checkGone,
  checkMetrics,
  checkStats,
  decodeStats,
  diagnosed,
  rigGet as get,
  layerVmRig,
  VmRig as Rig,
  vmSkipReason
} from "./vmRig.js"

const skip = vmSkipReason("QEMU end-to-end tests")

/** Names of this file only (node tests use TAPs `vmmt*`, benches `vmb*`, the libvirt test `*-e2l-*`). */
const VM_NAME = "vmm-e2e-qemu1"
const VM_UUID = randomUUID()

const rigLayer = layerVmRig({
  hypervisor: "qemu",
  tag: "e2e",
  tap: "hv-e2e1",
  name: VM_NAME,
  uuid: VM_UUID,
  serve: ["--source", "discovery"]
})

describe.skipIf(skip)("vm-metrics serve --source discovery against a real QEMU guest", () => {
  layer(rigLayer, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
    it.effect("GET /healthz answers 200 {status: ok}", () =>
      diagnosed(
        Effect.gen(function* () {
          const { server } = yield* Rig
          const health = yield* Effect.promise(() => server.get("/healthz"))
          assert.strictEqual(health.status, 200)
          assert.deepStrictEqual(JSON.parse(health.body), { status: "ok" })
        })
      )
    )

    it.effect("GET /instances/<name>/stats matches /proc, ps and ip -s link of the QEMU process and its TAP", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const { before, response, after } = yield* get(`/instances/${VM_NAME}/stats`)
          assert.strictEqual(response.status, 200, response.body)
          assert.match(response.contentType ?? "", /^application\/json/)
          checkStats(decodeStats(response.body), expected, before, after)
        })
      )
    )

    it.effect("GET /instances/<uuid>/stats is the same VM, read as exactly", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const byName = yield* get(`/instances/${VM_NAME}/stats`)
          const { before, response, after } = yield* get(`/instances/${VM_UUID}/stats`)
          assert.strictEqual(response.status, 200, response.body)
          const stats = decodeStats(response.body)
          checkStats(stats, expected, before, after)
          const first = decodeStats(byName.response.body)
          assert.strictEqual(stats.epoch, first.epoch, "the same process: the same epoch")
          assert.strictEqual(stats.process_start_time, first.process_start_time)
        })
      )
    )

    it.effect("cpu_seconds and both network counters grow while the guest pings (2.5 s later)", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const first = yield* get(`/instances/${VM_UUID}/stats`)
          yield* Effect.promise(() => sleepMs(2_500))
          const second = yield* get(`/instances/${VM_UUID}/stats`)
          const a = decodeStats(first.response.body)
          const b = decodeStats(second.response.body)
          checkStats(b, expected, second.before, second.after)
          // The kernel's own counters moved (the guest is alive and pinging), and so did the server's.
          assert.isAbove(second.before.vmTxBytes, first.after.vmTxBytes, "the guest kept sending (ip -s link)")
          assert.isAbove(b.cpu_seconds!, a.cpu_seconds!, "cpu_seconds grew")
          assert.isAbove(b.network_rx_bytes!, a.network_rx_bytes!, "network_rx_bytes grew")
          assert.isAbove(b.network_tx_bytes!, a.network_tx_bytes!, "network_tx_bytes grew")
          assert.strictEqual(b.epoch, a.epoch, "no restart in between: the same epoch")
          const seconds = (second.after.atMs - first.before.atMs) / 1000
          yield* Effect.log(
            `over ~${seconds.toFixed(1)} s: +${(b.cpu_seconds! - a.cpu_seconds!).toFixed(2)} CPU s, ` +
              `+${b.network_rx_bytes! - a.network_rx_bytes!} B rx, +${b.network_tx_bytes! - a.network_tx_bytes!} B tx`
          )
        })
      )
    )

    it.effect("GET /instances lists the VM with its stats", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const { before, response, after } = yield* get("/instances")
          assert.strictEqual(response.status, 200, response.body)
          const list = JSON.parse(response.body) as { instances: Array<unknown> }
          assert.isArray(list.instances, response.body)
          const ours = list.instances
            .map((instance) => decodeStats(JSON.stringify(instance)))
            .filter((stats) => stats.instance_id === VM_UUID)
          assert.lengthOf(ours, 1, response.body)
          checkStats(ours[0]!, expected, before, after)
        })
      )
    )

    it.effect("GET /metrics has the VM's series, labelled with its uuid and name", () =>
      diagnosed(
        Effect.gen(function* () {
          const { expected } = yield* Rig
          const { before, response, after } = yield* get("/metrics")
          assert.strictEqual(response.status, 200, response.body)
          assert.match(response.contentType ?? "", /^text\/plain/)
          checkMetrics(response.body, expected, before, after)
        })
      )
    )
    it.effect("GET /instances/<unknown>/stats is 404 not_found", () =>
      diagnosed(
        Effect.gen(function* () {
          const { server } = yield* Rig
          const response = yield* Effect.promise(() => server.get("/instances/no-such-vm-e2e/stats"))
          assert.strictEqual(response.status, 404, response.body)
          assert.strictEqual((JSON.parse(response.body) as { code?: unknown }).code, "not_found", response.body)
        })
      )
    )

    // Last: it stops the VM (the scope's release then finds QEMU gone).
    it.effect("once QEMU has exited, the VM is no longer reported as running and its series are gone", () =>
      diagnosed(
        Effect.gen(function* () {
          const { server, vm } = yield* Rig
          yield* Effect.promise(() => vm.stop())
          const outcome = yield* Effect.promise(() => checkGone(server, { id: VM_UUID, name: VM_NAME }))
          yield* Effect.log(`after QEMU exited: ${outcome}`)
        })
      )
    )
  })
})
