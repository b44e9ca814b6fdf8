/** The pure command-line parsers behind discovery: tables per hypervisor, and properties on random argv. */
import { assert, describe, it } from "@effect/vitest"
import { InstanceInfo } from "@vm-metrics/core/Instance"
import { Schema } from "effect"
import * as fc from "effect/FastCheck"
import {
  firecrackerInfo,
  hypervisorOfComm,
  idFromApiSocket,
  parseChOpts,
  parseCloudHypervisorArgv,
  parseFirecrackerArgv,
  parseFirecrackerConfig,
  parseQemuArgv,
  parseQemuMemory,
  parseQemuOpts,
  parseQemuSmp,
  parseSize,
  splitCmdline
} from "../src/HypervisorCmdline.js"

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const UUID = "0b5c8bc2-2d5e-4d7e-9a57-1d6c3f0c9e11"

/** Splits a shell-like command line on spaces (test vectors only; no argument contains a space). */
const argv = (line: string): Array<string> => line.trim().split(/\s+/)

describe("hypervisorOfComm", () => {
  it("recognises the truncated comm of each hypervisor and nothing else", () => {
    const table: Array<[string, string | undefined]> = [
      ["qemu-system-x86", "qemu"],
      ["qemu-system-aar", "qemu"],
      ["qemu-system-ris", "qemu"],
      ["qemu-kvm", "qemu"],
      ["cloud-hyperviso", "cloud-hypervisor"],
      ["firecracker", "firecracker"],
      ["qemu-img", undefined],
      ["qemu-system", undefined],
      ["firecracker2", undefined],
      ["fc_vcpu 0", undefined],
      ["CPU 0/TCG", undefined],
      ["bash", undefined],
      ["", undefined]
    ]
    for (const [comm, expected] of table) assert.strictEqual(hypervisorOfComm(comm), expected, comm)
  })
})

describe("splitCmdline", () => {
  it("splits NUL-separated argv, dropping only the final terminator", () => {
    assert.deepStrictEqual(splitCmdline(Buffer.from("qemu\u0000-name\u0000vm1\u0000")), ["qemu", "-name", "vm1"])
    assert.deepStrictEqual(splitCmdline(Buffer.from("a\u0000\u0000b\u0000")), ["a", "", "b"])
    assert.deepStrictEqual(splitCmdline(Buffer.from("no terminator")), ["no terminator"])
    assert.deepStrictEqual(splitCmdline(Buffer.alloc(0)), [])
    assert.deepStrictEqual(splitCmdline(Buffer.from([0x61, 0xff, 0x00])), ["a\ufffd"])
  })
})

describe("parseQemuOpts", () => {
  it("reads key=value lists with an implied first key, ,, escapes and bare flags", () => {
    assert.deepStrictEqual(
      [...parseQemuOpts("vm1,debug-threads=on", "guest")],
      [
        ["guest", "vm1"],
        ["debug-threads", "on"]
      ]
    )
    assert.deepStrictEqual(
      [...parseQemuOpts("guest=a,,b,,,process=p", "guest")],
      [
        ["guest", "a,b,"],
        ["process", "p"]
      ]
    )
    assert.deepStrictEqual(
      [...parseQemuOpts("tap,id=n0,vhost", "type")],
      [
        ["type", "tap"],
        ["id", "n0"],
        ["vhost", "on"]
      ]
    )
    assert.deepStrictEqual(
      [...parseQemuOpts("a=1,a=2,b=x=y")],
      [
        ["a", "2"],
        ["b", "x=y"]
      ]
    )
    assert.deepStrictEqual([...parseQemuOpts("", "guest")], [["guest", ""]])
  })

  it.prop(
    "gives back any values escaped with ,, (round trip)",
    [fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/), fc.string({ maxLength: 20 }), { maxKeys: 6 })],
    ([opts]) => {
      const text = Object.entries(opts)
        .map(([key, value]) => `${key}=${value.replaceAll(",", ",,")}`)
        .join(",")
      assert.deepStrictEqual(Object.fromEntries(parseQemuOpts(text)), opts)
    }
  )
})

describe("parseChOpts", () => {
  it("splits on commas outside brackets and quotes, and unquotes values", () => {
    assert.deepStrictEqual(
      [...parseChOpts('tap=t0,fd=[3,4],mac="52:54:00:00:00:01",ip=1.2.3.4')],
      [
        ["tap", "t0"],
        ["fd", "[3,4]"],
        ["mac", "52:54:00:00:00:01"],
        ["ip", "1.2.3.4"]
      ]
    )
    assert.deepStrictEqual([...parseChOpts("/run/x.sock", "path")], [["path", "/run/x.sock"]])
    assert.deepStrictEqual(
      [...parseChOpts("a,b=1", "path")],
      [
        ["path", "a"],
        ["b", "1"]
      ]
    )
  })
})

describe("sizes", () => {
  it("reads QEMU -m values (MiB by default)", () => {
    const table: Array<[string, number | undefined]> = [
      ["256", 256 * MiB],
      ["512M", 512 * MiB],
      ["512m", 512 * MiB],
      ["1G", GiB],
      ["1.5G", 1.5 * GiB],
      ["1024k", MiB],
      ["1073741824B", GiB],
      ["size=1G,slots=2,maxmem=4G", GiB],
      ["2G,slots=2,maxmem=4G", 2 * GiB],
      ["size=262144k", 256 * MiB],
      ["0", undefined],
      ["-1", undefined],
      ["1X", undefined],
      ["G", undefined],
      ["slots=2", undefined],
      ["99999999999999999999E", undefined]
    ]
    for (const [text, expected] of table) assert.strictEqual(parseQemuMemory(text), expected, text)
  })

  it("reads Cloud Hypervisor sizes (bytes by default)", () => {
    assert.strictEqual(parseSize("1073741824", 1), GiB)
    assert.strictEqual(parseSize("512M", 1), 512 * MiB)
    assert.strictEqual(parseSize("2T", 1), 2048 * GiB)
    assert.strictEqual(parseSize(" 4K ", 1), 4096)
    assert.strictEqual(parseSize("4 K", 1), undefined)
    assert.strictEqual(parseSize(undefined, 1), undefined)
  })

  it("reads QEMU -smp: cpus, implied cpus, topology product, maxcpus", () => {
    const table: Array<[string, number | undefined]> = [
      ["4", 4],
      ["cpus=4,sockets=2,cores=2", 4],
      ["4,maxcpus=8", 4],
      ["sockets=2,cores=2,threads=2", 8],
      ["sockets=2,dies=2,cores=3", 12],
      ["cores=6", 6],
      ["maxcpus=6", 6],
      ["sockets=2,cores=x", undefined],
      ["0", undefined],
      ["garbage", undefined]
    ]
    for (const [text, expected] of table) assert.strictEqual(parseQemuSmp(text), expected, text)
  })
})

describe("parseQemuArgv", () => {
  it("reads the test rig's QEMU command line (test-rig §2)", () => {
    const line = [
      "qemu-system-x86_64",
      "-name",
      "vm1,debug-threads=on",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-smp",
      "1",
      "-nographic",
      "-nodefaults",
      "-no-reboot",
      "-serial",
      "file:/run/hype-rig/vm1.serial",
      "-monitor",
      "none",
      "-kernel",
      ".rig/guest/vmlinuz",
      "-initrd",
      ".rig/guest/initrd.gz",
      "-append",
      "console=ttyS0 quiet panic=-1 hype.ip=10.77.0.2/24 hype.peer=10.77.0.1 hype.size=1000 hype.interval=0.2",
      "-netdev",
      "tap,id=n0,ifname=hv-vm1,script=no,downscript=no",
      "-device",
      "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02",
      "-pidfile",
      "/run/hype-rig/vm1.pid",
      "-daemonize"
    ]
    assert.deepStrictEqual(parseQemuArgv(line, 4242), {
      id: "vm1",
      name: "vm1",
      hypervisorPid: 4242,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 256 * MiB,
      tapDevice: "hv-vm1"
    })
  })

  it("reads a libvirt 9 style command line: JSON -netdev with fd= has no TAP name", () => {
    const line = [
      "/usr/bin/qemu-system-x86_64",
      "-name",
      "guest=hype-lv,debug-threads=on",
      "-S",
      "-object",
      '{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/var/lib/libvirt/qemu/domain-1-hype-lv/master-key.aes"}',
      "-machine",
      "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
      "-accel",
      "tcg",
      "-cpu",
      "qemu64",
      "-m",
      "size=262144k",
      "-object",
      '{"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456}',
      "-overcommit",
      "mem-lock=off",
      "-smp",
      "2,sockets=2,cores=1,threads=1",
      "-uuid",
      UUID,
      "-no-user-config",
      "-nodefaults",
      "-netdev",
      '{"type":"tap","fd":"33","id":"hostnet0"}',
      "-device",
      '{"driver":"virtio-net-pci","netdev":"hostnet0","id":"net0","mac":"52:54:00:5a:2b:01"}',
      "-msg",
      "timestamp=on"
    ]
    assert.deepStrictEqual(parseQemuArgv(line, 99), {
      id: UUID,
      name: "hype-lv",
      hypervisorPid: 99,
      allocatedVcpus: 2,
      allocatedMemoryBytes: 256 * MiB
    })
  })

  it("derives id and name: uuid ?? name ?? qemu-<pid>", () => {
    const info = (line: string) => {
      const { id, name } = parseQemuArgv(argv(line), 7)
      return { id, name }
    }
    assert.deepStrictEqual(info(`qemu -uuid ${UUID} -name web`), { id: UUID, name: "web" })
    assert.deepStrictEqual(info(`qemu -uuid ${UUID}`), { id: UUID, name: UUID })
    assert.deepStrictEqual(info("qemu -name guest=web,debug-threads=on"), { id: "web", name: "web" })
    assert.deepStrictEqual(info("qemu -name web"), { id: "web", name: "web" })
    assert.deepStrictEqual(info("qemu -name a,,b,debug-threads=on"), { id: "a,b", name: "a,b" })
    assert.deepStrictEqual(info("qemu -name first -name second"), { id: "second", name: "second" })
    assert.deepStrictEqual(info("qemu -name debug-threads=on"), { id: "qemu-7", name: "qemu-7" })
    assert.deepStrictEqual(info("qemu -m 1G"), { id: "qemu-7", name: "qemu-7" })
    assert.deepStrictEqual(info("qemu -name"), { id: "qemu-7", name: "qemu-7" })
  })

  it("accepts --opt and -opt=value, and unknown flags never swallow a known one", () => {
    const info = parseQemuArgv(argv("qemu --name=vm2 -nographic --m=2G -M pc --smp=3 -S -uuid=u-1"), 8)
    assert.deepStrictEqual(info, {
      id: "u-1",
      name: "vm2",
      hypervisorPid: 8,
      allocatedVcpus: 3,
      allocatedMemoryBytes: 2 * GiB
    })
  })

  it("keeps every TAP that has an ifname, from -netdev, -nic and -net, in argv order; the first is tapDevice", () => {
    const taps = (line: string) => parseQemuArgv(argv(line), 1).tapDevices
    assert.deepStrictEqual(
      taps("qemu -netdev tap,id=n0,fd=33 -netdev tap,id=n1,ifname=tap1 -nic tap,ifname=tap2 -net tap,ifname=tap3"),
      ["tap1", "tap2", "tap3"]
    )
    assert.deepStrictEqual(taps("qemu -netdev tap,id=n1,ifname=same -netdev tap,id=n2,ifname=same"), undefined)
    assert.deepStrictEqual(taps("qemu -netdev tap,id=n1,ifname=only"), undefined) // one NIC: the seed's shape
    assert.deepStrictEqual(
      parseQemuArgv(argv("qemu -netdev tap,id=a,ifname=../../x -netdev tap,id=b,ifname=ok0"), 1).tapDevices,
      ["../../x", "ok0"] // kept as written: the collector rejects a hostile name before any path is made of it
    )
    const tap = (line: string) => parseQemuArgv(argv(line), 1).tapDevice
    assert.strictEqual(
      tap("qemu -netdev tap,id=n0,fd=33 -netdev tap,id=n1,ifname=tap1 -netdev tap,ifname=tap2"),
      "tap1"
    )
    assert.strictEqual(tap("qemu -netdev user,id=u0 -nic tap,ifname=nic0,model=virtio"), "nic0")
    assert.strictEqual(tap("qemu -net nic,model=virtio -net tap,ifname=legacy0"), "legacy0")
    assert.strictEqual(tap("qemu -netdev type=tap,id=n0,ifname=typed0"), "typed0")
    assert.strictEqual(tap('qemu -netdev {"type":"tap","id":"n0","ifname":"json0"}'), "json0")
    assert.strictEqual(tap("qemu -netdev tap,id=n0,fd=33"), undefined)
    assert.strictEqual(tap("qemu -netdev tap,id=n0,ifname=tap%d"), undefined)
    assert.strictEqual(tap("qemu -netdev bridge,id=n0,br=br0 -netdev user,id=u0"), undefined)
    assert.strictEqual(tap("qemu -netdev {broken"), undefined)
  })

  it("falls back to 1 vCPU and 128 MiB", () => {
    assert.deepStrictEqual(parseQemuArgv(argv("qemu-system-x86_64 -smp bogus -m lots"), 3), {
      id: "qemu-3",
      name: "qemu-3",
      hypervisorPid: 3,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 128 * MiB
    })
  })
})

describe("parseCloudHypervisorArgv", () => {
  it("reads cpus, memory (+ hotplug), the first TAP and the id from a generic api socket's directory", () => {
    const line = argv(`cloud-hypervisor --api-socket /var/lib/hypeman/guests/qilviffnqzck2jrim1x6s2b1/ch.sock
      --cpus boot=2,max=4 --memory size=1G,hotplug_size=2G,hotplug_method=virtio-mem
      --kernel /boot/vmlinux --cmdline console=hvc0
      --net tap=hype-qilviffn,mac=52:54:00:00:00:01,ip=10.0.0.1,mask=255.255.255.0 --serial tty --console off`)
    assert.deepStrictEqual(parseCloudHypervisorArgv(line, 555), {
      id: "qilviffnqzck2jrim1x6s2b1",
      name: "qilviffnqzck2jrim1x6s2b1",
      hypervisorPid: 555,
      allocatedVcpus: 2,
      allocatedMemoryBytes: 3 * GiB,
      tapDevice: "hype-qilviffn"
    })
  })

  it("names the VM after its api socket", () => {
    const id = (line: string) => parseCloudHypervisorArgv(argv(line), 9).id
    assert.strictEqual(id("cloud-hypervisor --api-socket path=/run/ch/web-1.sock"), "web-1")
    assert.strictEqual(id("cloud-hypervisor --api-socket=/run/ch/db.sock"), "db")
    assert.strictEqual(id("cloud-hypervisor --api-socket /run/vms/vm7/api.sock"), "vm7")
    assert.strictEqual(id("cloud-hypervisor --api-socket /run/vms/vm8/cloud-hypervisor.sock"), "vm8")
    assert.strictEqual(id("cloud-hypervisor --api-socket /run/vms/plain"), "plain")
    assert.strictEqual(id("cloud-hypervisor --api-socket /ch.sock"), "ch-9")
    assert.strictEqual(id("cloud-hypervisor --api-socket fd=3"), "ch-9")
    assert.strictEqual(id("cloud-hypervisor --kernel x"), "ch-9")
  })

  it("reads every --net value up to the next flag and keeps each one with a tap (the first is tapDevice)", () => {
    assert.deepStrictEqual(
      parseCloudHypervisorArgv(
        argv("ch --net tap=a0 fd=[3,4] tap=a1,mac=52:54:00:00:00:02 --cpus boot=2 --net tap=a2"),
        1
      ).tapDevices,
      ["a0", "a1", "a2"]
    )
    const tap = (line: string) => parseCloudHypervisorArgv(argv(line), 1).tapDevice
    assert.strictEqual(tap("ch --net tap=,mac=52:54:00:00:00:01 tap=t2,mac=52:54:00:00:00:02 --serial tty"), "t2")
    assert.strictEqual(tap("ch --net vhost_user=true,socket=/x.sock --net tap=t3"), "t3")
    assert.strictEqual(tap("ch --net fd=[3,4],mac=52:54:00:00:00:01"), undefined)
    assert.strictEqual(tap("ch --net tap=vmtap%d"), undefined)
    assert.strictEqual(tap("ch --net=tap=eq0"), "eq0")
    assert.strictEqual(tap("ch --net --cpus boot=2"), undefined)
  })

  it("reads sizes in bytes by default and sums memory zones when size=0", () => {
    const memory = (line: string) => parseCloudHypervisorArgv(argv(line), 1).allocatedMemoryBytes
    assert.strictEqual(memory("ch --memory size=1073741824"), GiB)
    assert.strictEqual(memory("ch --memory size=512M,shared=on"), 512 * MiB)
    assert.strictEqual(memory("ch --memory size=0 --memory-zone id=z0,size=1G id=z1,size=1G,hotplug_size=1G"), 3 * GiB)
    assert.strictEqual(memory("ch --memory size=0"), 512 * MiB)
    assert.strictEqual(memory("ch --memory size=big"), 512 * MiB)
  })

  it("falls back to 1 vCPU and 512 MiB", () => {
    assert.deepStrictEqual(parseCloudHypervisorArgv(argv("cloud-hypervisor --cpus max=4"), 2), {
      id: "ch-2",
      name: "ch-2",
      hypervisorPid: 2,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 512 * MiB
    })
    assert.strictEqual(parseCloudHypervisorArgv(argv("ch --cpus=boot=3"), 2).allocatedVcpus, 3)
  })

  it("idFromApiSocket handles odd paths", () => {
    assert.strictEqual(idFromApiSocket("/run/x/vm.v2.sock"), "vm.v2")
    assert.strictEqual(idFromApiSocket("relative/dir/ch.sock"), "dir")
    assert.strictEqual(idFromApiSocket("/run/../ch.sock"), undefined)
    assert.strictEqual(idFromApiSocket("/run/.hidden"), ".hidden")
    assert.strictEqual(idFromApiSocket(""), undefined)
  })
})

describe("Firecracker", () => {
  it("reads --id and --config-file in both spellings", () => {
    assert.deepStrictEqual(
      parseFirecrackerArgv(argv("firecracker --api-sock /tmp/fc.sock --id vm-7 --config-file /etc/fc/vm-7.json")),
      { id: "vm-7", configFile: "/etc/fc/vm-7.json" }
    )
    assert.deepStrictEqual(parseFirecrackerArgv(argv("firecracker --id=vm8 --config-file=conf/fc.json --no-api")), {
      id: "vm8",
      configFile: "conf/fc.json"
    })
    assert.deepStrictEqual(parseFirecrackerArgv(argv("firecracker --api-sock /tmp/fc.sock")), {})
    assert.deepStrictEqual(parseFirecrackerArgv(argv("firecracker --id")), {})
  })

  it("reads machine-config and every network interface from a config file", () => {
    const config = JSON.stringify({
      "boot-source": { kernel_image_path: "/vmlinux", boot_args: "console=ttyS0" },
      drives: [],
      "machine-config": { vcpu_count: 2, mem_size_mib: 1024, smt: false },
      "network-interfaces": [
        { iface_id: "eth0", guest_mac: "06:00:AC:10:00:02", host_dev_name: "fc-tap0" },
        { iface_id: "eth1", host_dev_name: "fc-tap1" }
      ]
    })
    assert.deepStrictEqual(parseFirecrackerConfig(config), {
      vcpus: 2,
      memoryBytes: GiB,
      taps: ["fc-tap0", "fc-tap1"]
    })
    assert.deepStrictEqual(parseFirecrackerConfig('{"machine-config":{"vcpu_count":4}}'), { vcpus: 4 })
    assert.deepStrictEqual(
      parseFirecrackerConfig('{"machine-config":{"vcpu_count":"2","mem_size_mib":-1},"network-interfaces":[]}'),
      {}
    )
    assert.deepStrictEqual(parseFirecrackerConfig('{"network-interfaces":{"host_dev_name":"x"}}'), {})
    assert.deepStrictEqual(parseFirecrackerConfig("not json"), {})
    assert.deepStrictEqual(parseFirecrackerConfig("[1,2]"), {})
    assert.deepStrictEqual(parseFirecrackerConfig("null"), {})
  })

  it("builds the instance with defaults of 1 vCPU, 128 MiB and no TAP", () => {
    assert.deepStrictEqual(firecrackerInfo(5, {}), {
      id: "firecracker-5",
      name: "firecracker-5",
      hypervisorPid: 5,
      allocatedVcpus: 1,
      allocatedMemoryBytes: 128 * MiB
    })
    assert.deepStrictEqual(firecrackerInfo(5, { id: "fc1" }, { vcpus: 2, memoryBytes: GiB, taps: ["t"] }), {
      id: "fc1",
      name: "fc1",
      hypervisorPid: 5,
      allocatedVcpus: 2,
      allocatedMemoryBytes: GiB,
      tapDevice: "t"
    })
    assert.deepStrictEqual(firecrackerInfo(5, { id: "fc2" }, { taps: ["t0", "t1"] }).tapDevices, ["t0", "t1"])
  })
})

describe("properties: garbage argv never throws and always gives a valid InstanceInfo", () => {
  const isInstanceInfo = Schema.is(InstanceInfo)
  const flags = [
    "-name",
    "--name",
    "-name=",
    "-uuid",
    "-smp",
    "-m",
    "-netdev",
    "-nic",
    "-net",
    "--cpus",
    "--memory",
    "--memory-zone",
    "--net",
    "--api-socket",
    "--id",
    "--config-file",
    "-",
    "--",
    "="
  ]
  const values = [
    "tap,ifname=x",
    "tap,id=n0,fd=3",
    "{",
    '{"type":"tap","ifname":7}',
    "boot=2,max=4",
    "size=0",
    "size=1G,hotplug_size=99999999999999T",
    "sockets=99999,cores=99999,threads=99999,dies=99999",
    "1.5E",
    ",,,",
    "guest=,,",
    "/",
    "..",
    "path=",
    "fd=[3,4",
    '"'
  ]
  const token = fc.oneof(fc.constantFrom(...flags), fc.constantFrom(...values), fc.string({ maxLength: 24 }))
  const argvArb = fc.array(token, { maxLength: 24 })
  const pid = fc.integer({ min: 1, max: 4_194_304 })

  it.prop("QEMU", [argvArb, pid], ([args, p]) => {
    const info = parseQemuArgv(["qemu-system-x86_64", ...args], p)
    assert.isTrue(isInstanceInfo(info))
    assert.strictEqual(info.hypervisorPid, p)
    assert.isAtLeast(info.allocatedVcpus, 1)
    assert.isAbove(info.allocatedMemoryBytes, 0)
  })

  it.prop("Cloud Hypervisor", [argvArb, pid], ([args, p]) => {
    const info = parseCloudHypervisorArgv(["cloud-hypervisor", ...args], p)
    assert.isTrue(isInstanceInfo(info))
    assert.strictEqual(info.hypervisorPid, p)
    assert.isAtLeast(info.allocatedVcpus, 1)
    assert.isAbove(info.allocatedMemoryBytes, 0)
  })

  it.prop(
    "Firecracker, with random config text",
    [argvArb, fc.oneof(fc.string(), fc.json()), pid],
    ([args, text, p]) => {
      const info = firecrackerInfo(p, parseFirecrackerArgv(["firecracker", ...args]), parseFirecrackerConfig(text))
      assert.isTrue(isInstanceInfo(info))
      assert.strictEqual(info.hypervisorPid, p)
    }
  )

  it.prop("splitCmdline + parsers on random bytes", [fc.uint8Array({ maxLength: 300 }), pid], ([bytes, p]) => {
    const args = splitCmdline(bytes)
    assert.isTrue(isInstanceInfo(parseQemuArgv(args, p)))
    assert.isTrue(isInstanceInfo(parseCloudHypervisorArgv(args, p)))
  })
})
