import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "effect/FastCheck"
import { findVcpuThreads, type Hypervisor, threadsUnnamed, vcpuIndex } from "../src/VcpuThread.js"
import { nodeTasks, qemuComm, qemuDebugThreadsTasks, qemuPlainTasks } from "./fixtures/proc.js"

const threads = (...comms: ReadonlyArray<string>) => comms.map((comm, i) => ({ tid: 100 + i, comm }))

describe("vcpuIndex", () => {
  it.each([
    ["CPU 0/KVM", 0],
    ["CPU 1/KVM\n", 1],
    ["CPU 7/TCG", 7],
    ["CPU 123/KVM", 123],
    ["CPU 8191/KVM\n", 8191],
    ["CPU 1234567/KVM", 1234567], // 15 bytes: the longest that fits a comm
    ["vcpu0", 0],
    ["vcpu31\n", 31],
    ["vcpu12345678901", 12345678901],
    ["fc_vcpu 0", 0],
    ["fc_vcpu 31\n", 31]
  ] as const)("%j is vCPU %i", (comm, index) => {
    assert.strictEqual(vcpuIndex(comm), index)
  })

  it.each([
    "qemu-system-x86",
    "qemu-system-x86\n",
    "ALL CPUs/TCG", // single-threaded TCG: one thread for every vCPU
    "CPU 0/HVF",
    "CPU /KVM",
    "CPU -1/KVM",
    "CPU 01/KVM",
    "CPU 1/kvm",
    "cpu 1/KVM",
    "CPU  1/KVM",
    "CPU 1/KVM ",
    "CPU 1/KVM\n\n",
    " CPU 1/KVM",
    "CPU 12345678/KV", // what the kernel would keep of a 16-byte name; glibc refuses such names
    "CPU 12345678/KVM", // 16 bytes: no comm is that long
    "vcpu",
    "vcpu01",
    "vcpu-1",
    "vcpu 1",
    "vcpu1a",
    "vcpu123456789012",
    "fc_vcpu",
    "fc_vcpu 01",
    "fc_vcpu1",
    "fc_api",
    "firecracker",
    "cloud-hyperviso",
    "CPU \uff11/KVM",
    "vcpu\u0661",
    ""
  ])("%j is no vCPU", (comm) => {
    assert.isUndefined(vcpuIndex(comm))
  })

  it.each([
    ["CPU 2/KVM", "qemu", 2],
    ["CPU 2/KVM", "cloud-hypervisor", undefined],
    ["CPU 2/KVM", "firecracker", undefined],
    ["vcpu2", "cloud-hypervisor", 2],
    ["vcpu2", "qemu", undefined],
    ["vcpu2", "firecracker", undefined],
    ["fc_vcpu 2", "firecracker", 2],
    ["fc_vcpu 2", "qemu", undefined],
    ["fc_vcpu 2", "cloud-hypervisor", undefined]
  ] as const)("%j for %s is %s", (comm, hypervisor: Hypervisor, index) => {
    assert.strictEqual(vcpuIndex(comm, hypervisor), index)
  })

  it.prop("never throws on any string", [fc.string({ unit: "binary" })], ([comm]) => {
    const index = vcpuIndex(comm)
    assert.isTrue(index === undefined || (Number.isSafeInteger(index) && index >= 0))
  })

  it.prop(
    "the hypervisors' own formats round-trip up to 15 bytes",
    [fc.integer({ min: 0, max: 9_999_999 }), fc.constantFrom<Hypervisor>("qemu", "cloud-hypervisor", "firecracker")],
    ([n, hypervisor]) => {
      const name = hypervisor === "qemu" ? `CPU ${n}/KVM` : hypervisor === "firecracker" ? `fc_vcpu ${n}` : `vcpu${n}`
      assert.strictEqual(vcpuIndex(`${name}\n`, hypervisor), name.length <= 15 ? n : undefined)
    }
  )
})

describe("findVcpuThreads", () => {
  it("a real QEMU 7.2 with debug-threads=on: its three CPU n/TCG threads", () => {
    assert.deepStrictEqual(
      findVcpuThreads(qemuComm, qemuDebugThreadsTasks, "qemu"),
      Either.right([
        { tid: 18834, vcpu: 0 },
        { tid: 18835, vcpu: 1 },
        { tid: 18836, vcpu: 2 }
      ])
    )
  })

  it("a real QEMU 7.2 without debug-threads: vcpu_threads_unnamed", () => {
    assert.deepStrictEqual(findVcpuThreads(qemuComm, qemuPlainTasks, "qemu"), Either.left("vcpu_threads_unnamed"))
    assert.deepStrictEqual(findVcpuThreads(qemuComm, qemuPlainTasks), Either.left("vcpu_threads_unnamed"))
  })

  it("a real node process (all threads `node`) has unnamed threads", () => {
    assert.isTrue(
      threadsUnnamed(
        "node\n",
        nodeTasks.map((task) => task.comm)
      )
    )
  })

  it("Cloud Hypervisor: vcpu<n> among its named threads, sorted by index", () => {
    const found = findVcpuThreads(
      "cloud-hyperviso",
      threads("cloud-hyperviso", "vmm", "http-server", "vcpu1", "signal_handler", "vcpu0", "virtio-blk")
    )
    assert.deepStrictEqual(
      found,
      Either.right([
        { tid: 105, vcpu: 0 },
        { tid: 103, vcpu: 1 }
      ])
    )
  })

  it("Firecracker: fc_vcpu <n>", () => {
    assert.deepStrictEqual(
      findVcpuThreads("firecracker", threads("firecracker", "fc_api", "fc_vcpu 0", "fc_vcpu 1"), "firecracker"),
      Either.right([
        { tid: 102, vcpu: 0 },
        { tid: 103, vcpu: 1 }
      ])
    )
  })

  it("Firecracker before InstanceStart (no vCPU threads, none unnamed): no_vcpu_threads", () => {
    assert.deepStrictEqual(
      findVcpuThreads("firecracker", threads("firecracker\n", "fc_api\n"), "firecracker"),
      Either.left("no_vcpu_threads")
    )
  })

  it("a single-threaded process: no_vcpu_threads", () => {
    assert.deepStrictEqual(findVcpuThreads("sleep\n", threads("sleep\n")), Either.left("no_vcpu_threads"))
    assert.deepStrictEqual(findVcpuThreads("sleep", []), Either.left("no_vcpu_threads"))
  })

  it("QEMU with -name process=… and no debug-threads: threads named like the renamed process are unnamed", () => {
    assert.deepStrictEqual(
      findVcpuThreads("guest-7", threads("guest-7", "qemu-system-x86", "guest-7", "guest-7", "vhost-4242")),
      Either.left("vcpu_threads_unnamed")
    )
  })

  it("single-threaded TCG (one ALL CPUs/TCG thread) has no per-vCPU thread", () => {
    assert.deepStrictEqual(
      findVcpuThreads("qemu-system-x86", threads("qemu-system-x86", "call_rcu", "ALL CPUs/TCG"), "qemu"),
      Either.left("no_vcpu_threads")
    )
  })

  it("with a hypervisor, only its names count", () => {
    assert.deepStrictEqual(
      findVcpuThreads("qemu-system-x86", threads("qemu-system-x86", "vcpu0", "fc_vcpu 1"), "qemu"),
      Either.left("no_vcpu_threads")
    )
  })

  it("two threads with one index are both kept, by tid", () => {
    assert.deepStrictEqual(
      findVcpuThreads("qemu-system-x86", [
        { tid: 9, comm: "CPU 0/KVM" },
        { tid: 7, comm: "CPU 0/KVM" },
        { tid: 8, comm: "CPU 1/KVM" }
      ]),
      Either.right([
        { tid: 7, vcpu: 0 },
        { tid: 9, vcpu: 0 },
        { tid: 8, vcpu: 1 }
      ])
    )
  })

  it("threadsUnnamed: the main thread alone is not enough; a trailing newline is ignored", () => {
    assert.isFalse(threadsUnnamed("qemu-system-x86", ["qemu-system-x86\n", "CPU 0/KVM\n"]))
    assert.isTrue(threadsUnnamed("qemu-system-x86\n", ["qemu-system-x86", "qemu-system-x86\n"]))
    assert.isFalse(threadsUnnamed("qemu-system-x86", []))
  })
})
