/**
 * Pure parsers that turn a hypervisor process's command line into an `InstanceInfo`, for zero-config
 * discovery (Discovery.ts): QEMU, Cloud Hypervisor and Firecracker (with its JSON config file).
 *
 * A command line is input we do not control, so nothing here throws and nothing is fatal: an unknown
 * flag is skipped, a value that does not parse falls back to the hypervisor's own default, and a TAP
 * that cannot be named (a QEMU/CH `fd=`, a kernel `%d` template) is left out. Every named TAP is kept,
 * in argv order (`tapDevices`; `tapDevice` is the first); the collector validates each name before any
 * path is made of it. Only the flags we read consume the next argument; any other flag is skipped
 * alone, so an unknown flag cannot swallow `-name`. Single and double dashes and `-flag=value` are
 * accepted for every hypervisor.
 *
 * Allocated memory follows the core's definition (size + hotplug size): Cloud Hypervisor's
 * `hotplug_size` counts, QEMU's `maxmem` does not (it is a ceiling for DIMMs, which hypeman never plugs).
 *
 * @since 0.1.0
 */
import { type InstanceInfo, tapFields } from "@vm-metrics/core/Instance"

/** The hypervisors discovery recognises. @category models */
export type Hypervisor = "qemu" | "cloud-hypervisor" | "firecracker"

const KiB = 1024
const MiB = 1024 * KiB

/** @category constants */
export const defaults = {
  qemu: { vcpus: 1, memoryBytes: 128 * MiB },
  "cloud-hypervisor": { vcpus: 1, memoryBytes: 512 * MiB },
  firecracker: { vcpus: 1, memoryBytes: 128 * MiB }
} as const

/**
 * The hypervisor a process's `comm` names, if any. `comm` is the executable's name cut to 15
 * characters: `qemu-system-x86` (any `qemu-system-*`; also RHEL's `qemu-kvm`), `cloud-hyperviso`,
 * `firecracker`.
 *
 * @category parsers
 */
export const hypervisorOfComm = (comm: string): Hypervisor | undefined => {
  if (comm.startsWith("qemu-system-") || comm === "qemu-kvm") return "qemu"
  if (comm === "cloud-hyperviso" || comm === "cloud-hypervisor") return "cloud-hypervisor"
  if (comm === "firecracker") return "firecracker"
  return undefined
}

const decoder = new TextDecoder()

/** `/proc/<pid>/cmdline` → argv: NUL-separated, the last argument NUL-terminated; invalid UTF-8 is replaced. @category parsers */
export const splitCmdline = (bytes: Uint8Array): Array<string> => {
  if (bytes.length === 0) return []
  const parts = decoder.decode(bytes).split("\u0000")
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop()
  return parts
}

/** How many arguments a flag takes: none (skipped alone), one, or every following non-flag argument. */
type Arity = "none" | "one" | "many"

interface Flag {
  readonly name: string
  readonly values: ReadonlyArray<string>
}

const isFlag = (token: string): boolean => token.length > 1 && token.charCodeAt(0) === 0x2d // "-"

/** The flags of an argv (argv[0] is the program), with the values of those `arity` knows. */
const flagsOf = (argv: ReadonlyArray<string>, arity: (name: string) => Arity): Array<Flag> => {
  const flags: Array<Flag> = []
  for (let i = 1; i < argv.length; i++) {
    const token = argv[i]
    if (!isFlag(token)) continue
    const body = token.startsWith("--") ? token.slice(2) : token.slice(1)
    const eq = body.indexOf("=")
    const name = eq === -1 ? body : body.slice(0, eq)
    const kind = arity(name)
    if (kind === "none") continue
    const values: Array<string> = []
    if (eq !== -1) values.push(body.slice(eq + 1))
    else if (kind === "one" && i + 1 < argv.length) values.push(argv[++i])
    if (kind === "many") while (i + 1 < argv.length && !isFlag(argv[i + 1])) values.push(argv[++i])
    flags.push({ name, values })
  }
  return flags
}

/** The value of the last occurrence of a flag (later flags override earlier ones). */
const lastValue = (flags: ReadonlyArray<Flag>, name: string): string | undefined => {
  let value: string | undefined
  for (const flag of flags) if (flag.name === name && flag.values.length > 0) value = flag.values[0]
  return value
}

const nonEmpty = (value: string | undefined): string | undefined =>
  value === undefined || value === "" ? undefined : value

/** A positive decimal integer that is a safe integer, or undefined. @category parsers */
export const parsePositiveInt = (text: string | undefined): number | undefined => {
  if (text === undefined || !/^\d{1,15}$/.test(text)) return undefined
  const n = Number(text)
  return n > 0 ? n : undefined
}

const SIZE_SUFFIXES: Record<string, number> = {
  b: 1,
  k: KiB,
  m: MiB,
  g: 1024 * MiB,
  t: 1024 * 1024 * MiB,
  p: 1024 * 1024 * 1024 * MiB,
  e: 1024 * 1024 * 1024 * 1024 * MiB
}

/**
 * A size as QEMU (`qemu_strtosz`) and Cloud Hypervisor write it: a decimal number, QEMU also a
 * fraction, with an optional suffix B/K/M/G/T/P/E (powers of 1024, any case); without a suffix it is
 * in `defaultUnit` bytes (QEMU's `-m`: MiB; Cloud Hypervisor: bytes). Positive safe integers only.
 *
 * @category parsers
 */
export const parseSize = (text: string | undefined, defaultUnit: number): number | undefined => {
  if (text === undefined) return undefined
  const match = /^(\d{1,20}(?:\.\d{1,20})?)([bkmgtpeBKMGTPE])?$/.exec(text.trim())
  if (match === null) return undefined
  const unit = match[2] === undefined ? defaultUnit : SIZE_SUFFIXES[match[2].toLowerCase()]
  const bytes = Math.round(Number(match[1]) * unit)
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : undefined
}

/**
 * QEMU's option syntax (`QemuOpts`): `key=value,key=value`, where `,,` is a literal comma in a value,
 * a first part without `=` is the value of `impliedKey` (`-name vm1` is `guest=vm1`, `-netdev tap,…`
 * is `type=tap,…`) and a later bare `flag` means `flag=on`. A repeated key keeps its last value.
 *
 * @category parsers
 */
export const parseQemuOpts = (text: string, impliedKey?: string): Map<string, string> => {
  const opts = new Map<string, string>()
  let i = 0
  let first = true
  while (i < text.length || first) {
    let part = ""
    let eq = -1
    while (i < text.length) {
      const c = text[i]
      if (c === ",") {
        if (text[i + 1] !== ",") break
        part += ","
        i += 2
        continue
      }
      if (c === "=" && eq === -1) eq = part.length
      part += c
      i++
    }
    i++ // the separating comma
    if (eq !== -1) opts.set(part.slice(0, eq), part.slice(eq + 1))
    else if (first && impliedKey !== undefined) opts.set(impliedKey, part)
    else if (part !== "") opts.set(part, "on")
    first = false
  }
  return opts
}

/**
 * Cloud Hypervisor's option syntax: `key=value,…`, where commas inside `[…]` or `"…"` do not split
 * (`fd=[3,4]`) and surrounding quotes are removed from a value. A bare first part is `impliedKey`'s
 * value (`--api-socket /run/x.sock`).
 *
 * @category parsers
 */
export const parseChOpts = (text: string, impliedKey?: string): Map<string, string> => {
  const opts = new Map<string, string>()
  const parts: Array<string> = []
  let depth = 0
  let quoted = false
  let start = 0
  for (let i = 0; i < text.length; i++) {
    const c = text[i]
    if (c === '"') quoted = !quoted
    else if (!quoted && c === "[") depth++
    else if (!quoted && c === "]") depth = Math.max(0, depth - 1)
    else if (!quoted && depth === 0 && c === ",") {
      parts.push(text.slice(start, i))
      start = i + 1
    }
  }
  parts.push(text.slice(start))
  parts.forEach((part, index) => {
    const eq = part.indexOf("=")
    const unquote = (value: string) =>
      value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value
    if (eq !== -1) opts.set(part.slice(0, eq), unquote(part.slice(eq + 1)))
    else if (index === 0 && impliedKey !== undefined && part !== "") opts.set(impliedKey, unquote(part))
  })
  return opts
}

/**
 * A TAP name we can use: non-empty and not a kernel template (`tap%d`, Cloud Hypervisor's default
 * `vmtap%d`), whose real name only the kernel knows. Anything else passes as it is: the collector
 * validates names before they reach a path and reports bad ones.
 */
const knownTapName = (name: string | undefined): string | undefined =>
  name === undefined || name === "" || name.includes("%") ? undefined : name

const infoOf = (
  id: string,
  name: string,
  pid: number,
  vcpus: number,
  memoryBytes: number,
  taps: ReadonlyArray<string>
): InstanceInfo => ({
  id,
  name,
  hypervisorPid: pid,
  allocatedVcpus: vcpus,
  allocatedMemoryBytes: memoryBytes,
  ...tapFields(taps)
})

/** Adds a TAP name once: a NIC listed twice is one device. */
const addTap = (taps: Array<string>, tap: string | undefined): void => {
  if (tap !== undefined && !taps.includes(tap)) taps.push(tap)
}

// ---------------------------------------------------------------------------------------------------
// QEMU

const QEMU_VALUE_FLAGS = new Set(["name", "uuid", "smp", "m", "netdev", "nic", "net"])
const QEMU_TOPOLOGY = ["drawers", "books", "sockets", "dies", "clusters", "cores", "threads"]

/** `-smp`: `cpus` (also implied: `-smp 4`), else the product of the topology, else `maxcpus`. @category parsers */
export const parseQemuSmp = (text: string): number | undefined => {
  const opts = parseQemuOpts(text, "cpus")
  const cpus = parsePositiveInt(opts.get("cpus"))
  if (cpus !== undefined) return cpus
  if (QEMU_TOPOLOGY.some((key) => opts.has(key))) {
    let product = 1
    for (const key of QEMU_TOPOLOGY) {
      if (!opts.has(key)) continue
      const n = parsePositiveInt(opts.get(key))
      if (n === undefined) return undefined
      product *= n
    }
    return Number.isSafeInteger(product) ? product : undefined
  }
  return parsePositiveInt(opts.get("maxcpus"))
}

/** `-m`: `256` (MiB), `512M`, `1G`, `1024k`, `size=1G,slots=2,maxmem=4G` → bytes of boot RAM. @category parsers */
export const parseQemuMemory = (text: string): number | undefined =>
  parseSize(parseQemuOpts(text, "size").get("size"), MiB)

/** Type and ifname of a `-netdev`/`-nic`/`-net` value, in QEMU's option syntax or (`-netdev`) JSON. */
const qemuNetOf = (text: string): { readonly type?: string; readonly ifname?: string } => {
  if (text.startsWith("{")) {
    try {
      const json: unknown = JSON.parse(text)
      if (typeof json !== "object" || json === null) return {}
      const { type, ifname } = json as Record<string, unknown>
      return {
        ...(typeof type === "string" ? { type } : {}),
        ...(typeof ifname === "string" ? { ifname } : {})
      }
    } catch {
      return {}
    }
  }
  const opts = parseQemuOpts(text, "type")
  const type = opts.get("type")
  const ifname = opts.get("ifname")
  return { ...(type === undefined ? {} : { type }), ...(ifname === undefined ? {} : { ifname }) }
}

/** Every TAP with an ifname among `-netdev`, `-nic` and `-net`, in argv order (`fd=` taps have none). @category parsers */
export const parseQemuTaps = (argv: ReadonlyArray<string>): Array<string> => {
  const taps: Array<string> = []
  for (const flag of flagsOf(argv, (name) =>
    name === "netdev" || name === "nic" || name === "net" ? "one" : "none"
  )) {
    const net = qemuNetOf(flag.values[0] ?? "")
    if (net.type === "tap") addTap(taps, knownTapName(net.ifname))
  }
  return taps
}

/** The first TAP of `parseQemuTaps`. @category parsers */
export const parseQemuTap = (argv: ReadonlyArray<string>): string | undefined => parseQemuTaps(argv)[0]

/**
 * A QEMU process: `-name` (`vm1`, `guest=vm1,debug-threads=on`), `-uuid`, `-smp`, `-m` and every
 * TAP. id = uuid ?? name ?? `qemu-<pid>`; name = name ?? id. Defaults: 1 vCPU, 128 MiB.
 *
 * @category parsers
 */
export const parseQemuArgv = (argv: ReadonlyArray<string>, pid: number): InstanceInfo => {
  const flags = flagsOf(argv, (name) => (QEMU_VALUE_FLAGS.has(name) ? "one" : "none"))
  const nameArg = lastValue(flags, "name")
  const name = nameArg === undefined ? undefined : nonEmpty(parseQemuOpts(nameArg, "guest").get("guest"))
  const uuid = nonEmpty(lastValue(flags, "uuid")?.trim())
  const smp = lastValue(flags, "smp")
  const memory = lastValue(flags, "m")
  const id = uuid ?? name ?? `qemu-${pid}`
  return infoOf(
    id,
    name ?? id,
    pid,
    (smp === undefined ? undefined : parseQemuSmp(smp)) ?? defaults.qemu.vcpus,
    (memory === undefined ? undefined : parseQemuMemory(memory)) ?? defaults.qemu.memoryBytes,
    parseQemuTaps(argv)
  )
}

// ---------------------------------------------------------------------------------------------------
// Cloud Hypervisor

const CH_ARITY: Record<string, Arity> = {
  cpus: "one",
  memory: "one",
  "memory-zone": "many",
  net: "many",
  "api-socket": "one"
}

/** Socket file names that say nothing about the VM: the parent directory names it instead. */
const GENERIC_SOCKET_STEMS = new Set(["api", "ch", "cloud-hypervisor"])

/**
 * An id from an API socket path: the file name without its extension (`/run/vms/web-1.sock` →
 * `web-1`), or the parent directory's name when the file name is generic (`/var/lib/hypeman/guests/
 * abc/ch.sock` → `abc`).
 *
 * @category parsers
 */
export const idFromApiSocket = (socketPath: string): string | undefined => {
  const parts = socketPath.split("/").filter((part) => part !== "" && part !== ".")
  const base = parts[parts.length - 1]
  if (base === undefined || base === "..") return undefined
  const dot = base.lastIndexOf(".")
  const stem = dot > 0 ? base.slice(0, dot) : base
  if (!GENERIC_SOCKET_STEMS.has(stem)) return stem
  const parent = parts[parts.length - 2]
  return parent === undefined || parent === ".." ? undefined : parent
}

/** `size` (+ `hotplug_size`) of a `--memory` or `--memory-zone` value, in bytes. */
const chMemoryOf = (text: string): number | undefined => {
  const opts = parseChOpts(text, "size")
  const size = opts.get("size") === "0" ? 0 : parseSize(opts.get("size"), 1)
  if (size === undefined) return undefined
  const hotplug = opts.has("hotplug_size") ? (parseSize(opts.get("hotplug_size"), 1) ?? 0) : 0
  const total = size + hotplug
  return Number.isSafeInteger(total) ? total : undefined
}

/**
 * A Cloud Hypervisor process: `--cpus boot=N`, `--memory size=…` (+ `hotplug_size`; `size=0` with
 * `--memory-zone`s sums the zones), every `--net tap=X`, and `--api-socket` for the id/name (else
 * `ch-<pid>`). Defaults: 1 vCPU, 512 MiB.
 *
 * @category parsers
 */
export const parseCloudHypervisorArgv = (argv: ReadonlyArray<string>, pid: number): InstanceInfo => {
  const flags = flagsOf(argv, (name) => CH_ARITY[name] ?? "none")
  const cpus = lastValue(flags, "cpus")
  const vcpus = cpus === undefined ? undefined : parsePositiveInt(parseChOpts(cpus, "boot").get("boot"))
  const memory = lastValue(flags, "memory")
  let memoryBytes = memory === undefined ? undefined : chMemoryOf(memory)
  if (memoryBytes === 0) {
    let zones = 0
    for (const flag of flags) {
      if (flag.name !== "memory-zone") continue
      for (const value of flag.values) zones += chMemoryOf(value) ?? 0
    }
    memoryBytes = zones > 0 && Number.isSafeInteger(zones) ? zones : undefined
  }
  const taps: Array<string> = []
  for (const flag of flags) {
    if (flag.name !== "net") continue
    for (const value of flag.values) addTap(taps, knownTapName(parseChOpts(value).get("tap")))
  }
  const socket = lastValue(flags, "api-socket")
  const socketPath = socket === undefined ? undefined : nonEmpty(parseChOpts(socket, "path").get("path"))
  const id = (socketPath === undefined ? undefined : idFromApiSocket(socketPath)) ?? `ch-${pid}`
  return infoOf(
    id,
    id,
    pid,
    vcpus ?? defaults["cloud-hypervisor"].vcpus,
    memoryBytes ?? defaults["cloud-hypervisor"].memoryBytes,
    taps
  )
}

// ---------------------------------------------------------------------------------------------------
// Firecracker

/** What a Firecracker command line says. @category models */
export interface FirecrackerArgs {
  readonly id?: string
  /** As written on the command line: absolute, or relative to the process's working directory. */
  readonly configFile?: string
}

/** `--id X` / `--id=X` and `--config-file PATH`. @category parsers */
export const parseFirecrackerArgv = (argv: ReadonlyArray<string>): FirecrackerArgs => {
  const flags = flagsOf(argv, (name) => (name === "id" || name === "config-file" ? "one" : "none"))
  const id = nonEmpty(lastValue(flags, "id"))
  const configFile = nonEmpty(lastValue(flags, "config-file"))
  return { ...(id === undefined ? {} : { id }), ...(configFile === undefined ? {} : { configFile }) }
}

/** What a Firecracker config file says, each field independently. @category models */
export interface FirecrackerConfig {
  readonly vcpus?: number
  readonly memoryBytes?: number
  /** `host_dev_name` of every network interface, in order. */
  readonly taps?: ReadonlyArray<string>
}

const objectOf = (value: unknown): Record<string, unknown> | undefined =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined

const positiveIntOf = (value: unknown): number | undefined =>
  typeof value === "number" && Number.isSafeInteger(value) && value > 0 ? value : undefined

/**
 * A Firecracker JSON config: `machine-config.vcpu_count`, `machine-config.mem_size_mib` and
 * every `network-interfaces[].host_dev_name`. Whatever is missing or malformed is simply absent.
 *
 * @category parsers
 */
export const parseFirecrackerConfig = (text: string): FirecrackerConfig => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return {}
  }
  const machine = objectOf(objectOf(json)?.["machine-config"])
  const interfaces = objectOf(json)?.["network-interfaces"]
  const taps: Array<string> = []
  if (Array.isArray(interfaces)) {
    for (const item of interfaces) {
      const devName = objectOf(item)?.host_dev_name
      addTap(taps, knownTapName(typeof devName === "string" ? devName : undefined))
    }
  }
  const vcpus = positiveIntOf(machine?.vcpu_count)
  const mib = positiveIntOf(machine?.mem_size_mib)
  const memoryBytes = mib !== undefined && Number.isSafeInteger(mib * MiB) ? mib * MiB : undefined
  return {
    ...(vcpus === undefined ? {} : { vcpus }),
    ...(memoryBytes === undefined ? {} : { memoryBytes }),
    ...(taps.length === 0 ? {} : { taps })
  }
}

/** A Firecracker process: id = `--id` ?? `firecracker-<pid>`; defaults 1 vCPU, 128 MiB, no TAP. @category parsers */
export const firecrackerInfo = (pid: number, args: FirecrackerArgs, config: FirecrackerConfig = {}): InstanceInfo => {
  const id = args.id ?? `firecracker-${pid}`
  return infoOf(
    id,
    id,
    pid,
    config.vcpus ?? defaults.firecracker.vcpus,
    config.memoryBytes ?? defaults.firecracker.memoryBytes,
    config.taps ?? []
  )
}
