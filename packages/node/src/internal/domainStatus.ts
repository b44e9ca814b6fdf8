/**
 * Parses one libvirt status file (`<domstatus>` around the live `<domain>`) with small string code,
 * no XML parser: LibvirtSource.ts says which values are read and why.
 *
 * @internal
 */
import { type InstanceInfo, Pid, tapFields } from "@vm-metrics/core/Instance"
import { Either, Schema } from "effect"

/** What a status file says about its domain. @category models */
export interface DomainStatus {
  /** `<domstatus state=…>`: running, paused, shutoff, … */
  readonly state: string
  readonly pid: number | undefined
  readonly name: string
  readonly uuid: string | undefined
  readonly vcpus: number
  readonly memoryBytes: number
  /** The TAP of every NIC that has one, in document order. */
  readonly taps: ReadonlyArray<string>
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
const parseAttributes = (text: string): Map<string, string> => {
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

/** The `dev` of every `<interface>` (in `devices`) that has a `<target dev=…>` and can be a TAP, once each. */
const tapsOf = (domain: string): Array<string> => {
  const taps: Array<string> = []
  for (const match of domain.matchAll(/<interface(\s[^>]*?)?(\/?)>/g)) {
    if (match[2] === "/") continue
    if (NOT_TAP_TYPES.has(parseAttributes(match[1] ?? "").get("type") ?? "")) continue
    const start = match.index + match[0].length
    const end = domain.indexOf("</interface", start)
    const body = end === -1 ? "" : domain.slice(start, end)
    const target = /<target(\s[^>]*?)\/?>/.exec(body)
    const dev = target === null ? undefined : parseAttributes(target[1] ?? "").get("dev")
    if (dev !== undefined && dev !== "" && !taps.includes(dev)) taps.push(dev)
  }
  return taps
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
    taps: tapsOf(domain)
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
    ...tapFields(status.taps),
    allocatedVcpus: status.vcpus,
    allocatedMemoryBytes: status.memoryBytes
  }
}
