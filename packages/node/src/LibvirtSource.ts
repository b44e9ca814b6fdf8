/**
 * `InstanceSource` for libvirt's QEMU driver that never talks to libvirtd: it reads the status files
 * libvirt keeps for each active domain in its run directory (`/run/libvirt/qemu/<name>.xml`), a
 * `<domstatus state='running' pid='…'>` around the live `<domain>` definition.
 *
 * Why not the libvirt API: no socket, no client library, no native code, and a hung libvirtd cannot
 * stall a scrape. Why not an XML parser: the few values needed sit in fixed places of a file libvirt
 * itself formats, so small careful string code (attributes in either quote, entities decoded,
 * comments stripped, only the `<domain>` element searched, its `<metadata>` cut out) reads them without a dependency.
 *
 * - id = `<uuid>` (else the name), name = `<name>`, pid from `<domstatus>`, vCPUs from `<vcpu>` (its
 *   `current` attribute wins), memory from `<memory unit=…>` (KiB by default), the TAP from the
 *   first `<interface>` that has a `<target dev=…>` (a user-mode NIC has none; vhost-user, hostdev
 *   and vDPA NICs are not TAPs).
 * - Only `running` and `paused` domains are listed.
 * - A file that does not parse is skipped and logged once at DEBUG (again only if it changes); a
 *   missing run directory (libvirt not installed, or no domain started yet) is an empty list. Only a
 *   run directory that exists but cannot be listed fails (`InstanceSourceError`).
 * - Each file is parsed again only when its inode, size or mtime change (status files are rewritten
 *   whole on every state change). The result is sorted by id.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import { type InstanceInfo, Pid } from "@vm-metrics/core/Instance"
import { InstanceSource, kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { type Context, Effect, Either, Layer, Schema } from "effect"
import { errnoOf } from "./internal/keptFile.js"
import { SmallFileReader } from "./internal/smallFile.js"

/** @category models */
export interface Options {
  /** libvirt's QEMU run directory. Default `/run/libvirt/qemu`. */
  readonly runDir?: string
}

/** @category constants */
export const DEFAULT_RUN_DIR = "/run/libvirt/qemu"

/** The largest status file read (they are tens of KiB, mostly `<qemuCaps>`). @category constants */
export const MAX_STATUS_BYTES = 16 * 1024 * 1024

/** What a status file says about its domain. @category models */
export interface DomainStatus {
  /** `<domstatus state=…>`: running, paused, shutoff, … */
  readonly state: string
  readonly pid: number | undefined
  readonly name: string
  readonly uuid: string | undefined
  readonly vcpus: number
  readonly memoryBytes: number
  readonly tapDevice: string | undefined
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" }

/** XML character and predefined entity references decoded; an unknown one is left as it is. @category parsers */
export const decodeEntities = (text: string): string =>
  text.includes("&")
    ? text.replace(/&(#x[0-9a-fA-F]{1,6}|#\d{1,7}|[a-z]{2,4});/g, (whole, ref: string) => {
        if (ref.startsWith("#")) {
          const code = ref[1] === "x" ? Number.parseInt(ref.slice(2), 16) : Number(ref.slice(1))
          return code <= 0x10ffff ? String.fromCodePoint(code) : whole
        }
        return ENTITIES[ref] ?? whole
      })
    : text

/** The attributes of a start tag's attribute text (`type='qemu' id="1"`), values decoded. @category parsers */
export const parseAttributes = (text: string): Map<string, string> => {
  const attributes = new Map<string, string>()
  for (const match of text.matchAll(/([A-Za-z_][\w.:-]*)\s*=\s*(?:'([^']*)'|"([^"]*)")/g)) {
    attributes.set(match[1], decodeEntities(match[2] ?? match[3] ?? ""))
  }
  return attributes
}

/** The first `<tag …>text</tag>` in `xml` (not `<tagfoo>`, not a self-closing `<tag/>`). */
const elementOf = (
  xml: string,
  tag: string
): { readonly attributes: Map<string, string>; readonly text: string } | undefined => {
  const match = new RegExp(`<${tag}(\\s[^>]*)?>([^<]*)</${tag}\\s*>`).exec(xml)
  if (match === null || match[1]?.trimEnd().endsWith("/")) return undefined
  return { attributes: parseAttributes(match[1] ?? ""), text: decodeEntities(match[2]).trim() }
}

const MEMORY_UNITS: Record<string, number> = {
  b: 1,
  byte: 1,
  bytes: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  kb: 1e3,
  m: 2 ** 20,
  mib: 2 ** 20,
  mb: 1e6,
  g: 2 ** 30,
  gib: 2 ** 30,
  gb: 1e9,
  t: 2 ** 40,
  tib: 2 ** 40,
  tb: 1e12
}

/** libvirt's scaled integer: `<memory unit='KiB'>262144</memory>` → bytes; units as libvirt spells them. @category parsers */
export const memoryBytesOf = (value: string, unit: string | undefined): number | undefined => {
  const scale = MEMORY_UNITS[(unit ?? "KiB").toLowerCase()]
  if (scale === undefined || !/^\d{1,20}$/.test(value)) return undefined
  const bytes = Number(value) * scale
  return Number.isSafeInteger(bytes) ? bytes : undefined
}

const NOT_TAP_TYPES = new Set(["vhostuser", "hostdev", "vdpa"])

/** The `dev` of the first `<interface>` (in `devices`) that has a `<target dev=…>` and can be a TAP. */
const tapOf = (domain: string): string | undefined => {
  for (const match of domain.matchAll(/<interface(\s[^>]*?)?(\/?)>/g)) {
    if (match[2] === "/") continue
    if (NOT_TAP_TYPES.has(parseAttributes(match[1] ?? "").get("type") ?? "")) continue
    const start = match.index + match[0].length
    const end = domain.indexOf("</interface", start)
    const body = end === -1 ? "" : domain.slice(start, end)
    const target = /<target(\s[^>]*?)\/?>/.exec(body)
    const dev = target === null ? undefined : parseAttributes(target[1] ?? "").get("dev")
    if (dev !== undefined && dev !== "") return dev
  }
  return undefined
}

/**
 * The domain without its `<metadata>`: the one place where applications put arbitrary XML, which may
 * hold its own `<name>`, `<memory>` or `<interface>` elements. Cut from the first `<metadata` to the
 * last `</metadata>`, so nested ones go too.
 */
const withoutMetadata = (domain: string): string => {
  const start = domain.search(/<metadata[\s>]/)
  const end = domain.lastIndexOf("</metadata>")
  return start !== -1 && end > start ? domain.slice(0, start) + domain.slice(end + "</metadata>".length) : domain
}

const positiveInt = (text: string | undefined): number | undefined =>
  text !== undefined && /^\d{1,9}$/.test(text.trim()) && Number(text) > 0 ? Number(text) : undefined

/**
 * A libvirt status file, or why it cannot be read. Needs `<domstatus state=…>`, a `<domain>` inside
 * it with a `<name>` and a `<memory>`; a missing `<vcpu>` is libvirt's default of 1.
 *
 * @category parsers
 */
export const parseDomainStatus = (xml: string): Either.Either<DomainStatus, string> => {
  const text = xml.replace(/<!--[\s\S]*?-->/g, "")
  const domstatus = /<domstatus(\s[^>]*)?>/.exec(text)
  if (domstatus === null) return Either.left("no <domstatus> element")
  const statusAttributes = parseAttributes(domstatus[1] ?? "")
  const state = statusAttributes.get("state")
  if (state === undefined) return Either.left("<domstatus> has no state")
  const domainStart = text.slice(domstatus.index).search(/<domain[\s>]/)
  const domainEnd = text.lastIndexOf("</domain>")
  if (domainStart === -1 || domainEnd === -1 || domainEnd < domstatus.index + domainStart) {
    return Either.left("no <domain> element inside <domstatus>")
  }
  const domain = withoutMetadata(text.slice(domstatus.index + domainStart, domainEnd))
  const name = elementOf(domain, "name")?.text
  if (name === undefined || name === "") return Either.left("the domain has no <name>")
  const uuid = elementOf(domain, "uuid")?.text
  const memory = elementOf(domain, "memory")
  if (memory === undefined) return Either.left("the domain has no <memory>")
  const memoryBytes = memoryBytesOf(memory.text, memory.attributes.get("unit"))
  if (memoryBytes === undefined) {
    return Either.left(`cannot read <memory unit='${memory.attributes.get("unit") ?? "KiB"}'>${memory.text}</memory>`)
  }
  const vcpu = elementOf(domain, "vcpu")
  const vcpus = positiveInt(vcpu?.attributes.get("current")) ?? positiveInt(vcpu?.text) ?? 1
  const pidText = statusAttributes.get("pid")
  const pid =
    pidText !== undefined && /^\d{1,7}$/.test(pidText) && Schema.is(Pid)(Number(pidText)) ? Number(pidText) : undefined
  return Either.right({
    state,
    pid,
    name,
    uuid: uuid === "" ? undefined : uuid,
    vcpus,
    memoryBytes,
    tapDevice: tapOf(domain)
  })
}

const LISTED_STATES = new Set(["running", "paused"])

/** The instance of a running or paused domain; undefined for any other state. @category constructors */
export const toInstanceInfo = (status: DomainStatus): InstanceInfo | undefined => {
  if (!LISTED_STATES.has(status.state)) return undefined
  return {
    id: status.uuid ?? status.name,
    name: status.name,
    ...(status.pid === undefined ? {} : { hypervisorPid: status.pid }),
    ...(status.tapDevice === undefined ? {} : { tapDevice: status.tapDevice }),
    allocatedVcpus: status.vcpus,
    allocatedMemoryBytes: status.memoryBytes
  }
}

interface Parsed {
  readonly version: string
  readonly info: InstanceInfo | undefined
  seen: number
}

const byId = (a: InstanceInfo, b: InstanceInfo): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** One listing's instances and the files that did not parse (path: reason), to be logged. @category models */
export interface Scan {
  readonly instances: ReadonlyArray<InstanceInfo>
  readonly unparsable: ReadonlyArray<{ readonly path: string; readonly reason: string }>
}

/** The synchronous core of the source. @category constructors */
export const makeSync = (options: Options = {}) => {
  const runDir = (options.runDir ?? DEFAULT_RUN_DIR).replace(/(.)\/+$/, "$1")
  const reader = new SmallFileReader()
  const files = new Map<string, Parsed>()
  let generation = 0

  /** The file's instance (undefined when not listed), from the cache while the file is unchanged. */
  const readFile = (path: string, unparsable: Array<{ path: string; reason: string }>): InstanceInfo | undefined => {
    let version: string
    try {
      const stat = fs.statSync(path, { bigint: true })
      if (!stat.isFile()) return undefined
      version = `${stat.ino}:${stat.size}:${stat.mtimeNs}`
    } catch {
      return undefined // removed since the listing
    }
    let parsed = files.get(path)
    if (parsed?.version !== version) {
      const bytes = reader.read(path, { limit: MAX_STATUS_BYTES, regularOnly: true })
      if (typeof bytes === "string") return undefined // removed or unreadable: tried again next time
      const status = parseDomainStatus(bytes.toString("utf8"))
      if (Either.isLeft(status)) unparsable.push({ path, reason: status.left })
      parsed = { version, info: Either.isRight(status) ? toInstanceInfo(status.right) : undefined, seen: 0 }
      files.set(path, parsed)
    }
    parsed.seen = generation
    return parsed.info
  }

  const scan = (): Either.Either<Scan, InstanceSourceError> => {
    let entries: Array<string>
    try {
      entries = fs.readdirSync(runDir)
    } catch (error) {
      const code = errnoOf(error)
      if (code === "ENOENT") {
        files.clear()
        return Either.right({ instances: [], unparsable: [] })
      }
      return Either.left(
        new InstanceSourceError({
          kind: kindOfErrno(code),
          reason: `cannot list libvirt run directory ${runDir}: ${code}`
        })
      )
    }
    generation++
    const instances: Array<InstanceInfo> = []
    const unparsable: Array<{ path: string; reason: string }> = []
    for (const entry of entries) {
      if (!entry.endsWith(".xml")) continue
      const info = readFile(`${runDir}/${entry}`, unparsable)
      if (info !== undefined) instances.push(info)
    }
    for (const [path, parsed] of files) if (parsed.seen !== generation) files.delete(path)
    return Either.right({ instances: instances.sort(byId), unparsable })
  }

  return { scan }
}

/** @category constructors */
export const make = (options: Options = {}): Effect.Effect<Context.Tag.Service<InstanceSource>> =>
  Effect.sync(() => {
    const source = makeSync(options)
    return InstanceSource.of({
      list: Effect.suspend(source.scan).pipe(
        Effect.tap(({ unparsable }) =>
          Effect.forEach(unparsable, ({ path, reason }) =>
            Effect.logDebug(`skipping libvirt status file ${path}: ${reason}`)
          )
        ),
        Effect.map(({ instances }) => instances)
      )
    })
  })

/** Lists libvirt's running and paused QEMU domains from `runDir` (default `/run/libvirt/qemu`). @category layers */
export const layer = (options: Options = {}): Layer.Layer<InstanceSource> => Layer.effect(InstanceSource, make(options))
