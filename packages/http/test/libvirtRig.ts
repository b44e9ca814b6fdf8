/**
 * A libvirt domain for the end-to-end tests: `<domain type='qemu'>` running the tiny guest of
 * `.ci/qemu-guest.sh` (TCG, 256 MiB, 1 vCPU), attached to a TAP the test made beforehand
 * (`<interface type='ethernet'><target dev=… managed='no'/>`), on the system libvirtd that
 * `.ci/libvirt.sh` starts. Destroyed and undefined with its scope, also when the test fails; a domain of
 * the same name left by a killed run is removed first.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { hasCommand } from "../../node/test/helpers.js"
import {
  GUEST_MAC,
  GUEST_MEMORY_MIB,
  GUEST_VCPUS,
  guest,
  guestCmdline,
  tailOf,
  waitForGuestNetwork
} from "./qemuRig.js"
import { tempDir } from "./rig.js"

export const LIBVIRT_URI = "qemu:///system"

/** Where libvirt's QEMU driver keeps the status XML and pid of each running domain. */
export const LIBVIRT_RUN_DIR = "/run/libvirt/qemu"

const virsh = (...args: ReadonlyArray<string>) =>
  spawnSync("virsh", ["-q", "-c", LIBVIRT_URI, ...args], { encoding: "utf8", timeout: 30_000 })

const virshOk = (...args: ReadonlyArray<string>): string => {
  const result = virsh(...args)
  if (result.status !== 0) {
    throw new Error(
      `virsh ${args.join(" ")} exited ${result.status ?? result.signal}: ${result.stderr}${result.error ?? ""}`
    )
  }
  return result.stdout
}

/** Why libvirtd cannot be used here, or undefined when `virsh -c qemu:///system version` answers. */
export const libvirtMissing = (): string | undefined => {
  if (!hasCommand("virsh")) return "needs virsh and a running libvirtd (run `bash .ci/libvirt.sh`)"
  const version = spawnSync("virsh", ["-c", LIBVIRT_URI, "version"], { encoding: "utf8", timeout: 10_000 })
  if (version.status !== 0) {
    return `libvirtd is not available at ${LIBVIRT_URI} (run \`bash .ci/libvirt.sh\`): ${version.stderr.trim()}`
  }
  return undefined
}

/** The domain XML (the same guest as the plain QEMU test, on an unmanaged pre-made TAP). */
export const domainXml = (options: {
  readonly name: string
  readonly uuid: string
  readonly tap: string
  readonly serial: string
}): string => {
  const { initrd, kernel } = guest()
  return `<domain type='qemu'>
  <name>${options.name}</name>
  <uuid>${options.uuid}</uuid>
  <memory unit='MiB'>${GUEST_MEMORY_MIB}</memory>
  <vcpu>${GUEST_VCPUS}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${kernel}</kernel>
    <initrd>${initrd}</initrd>
    <cmdline>${guestCmdline()}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='ethernet'>
      <target dev='${options.tap}' managed='no'/>
      <model type='virtio'/>
      <mac address='${GUEST_MAC}'/>
    </interface>
    <serial type='file'><source path='${options.serial}'/><target port='0'/></serial>
    <console type='file'><source path='${options.serial}'/><target type='serial' port='0'/></console>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`
}

const removeDomain = (name: string): void => {
  if (virsh("domstate", name).status !== 0) return // not defined
  virsh("destroy", name)
  virsh("undefine", name)
}

/** A running domain. */
export interface LibvirtVm {
  readonly name: string
  readonly uuid: string
  /** QEMU's pid, from libvirt's pidfile. */
  readonly pid: number
  readonly tap: string
  readonly bootMs: number
  readonly serialTail: () => string
  /** libvirt's status XML of the domain. */
  readonly statusXml: () => string
  /** `virsh destroy` (the scope still undefines it). */
  readonly destroy: () => void
}

/** Defines and starts the domain, waits for the guest's network (≤ 30 s); destroy + undefine with the scope. */
export const libvirtVm = (options: {
  readonly name: string
  readonly uuid: string
  readonly tap: string
}): Effect.Effect<LibvirtVm, never, Scope.Scope> =>
  Effect.gen(function* () {
    const dir = yield* tempDir("vm-metrics-libvirt-")
    const serial = path.join(dir, "serial")
    const xml = path.join(dir, "domain.xml")
    fs.writeFileSync(xml, domainXml({ ...options, serial }))
    const pidfile = path.join(LIBVIRT_RUN_DIR, `${options.name}.pid`)
    const pid = yield* Effect.acquireRelease(
      Effect.sync(() => {
        removeDomain(options.name)
        try {
          virshOk("define", xml)
          virshOk("start", options.name)
          return Number(fs.readFileSync(pidfile, "utf8").trim())
        } catch (error) {
          removeDomain(options.name)
          throw error
        }
      }),
      () => Effect.sync(() => removeDomain(options.name))
    )
    const bootMs = yield* waitForGuestNetwork(serial, () => virsh("domstate", options.name).stdout.trim() === "running")
    return {
      ...options,
      pid,
      bootMs,
      serialTail: () =>
        `${tailOf(serial)}\n--- /var/log/libvirt/qemu/${options.name}.log (tail) ---\n` +
        tailOf(`/var/log/libvirt/qemu/${options.name}.log`, 10),
      statusXml: () => fs.readFileSync(path.join(LIBVIRT_RUN_DIR, `${options.name}.xml`), "utf8"),
      destroy: () => {
        virshOk("destroy", options.name)
      }
    }
  })
