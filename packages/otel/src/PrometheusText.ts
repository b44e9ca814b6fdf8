/**
 * Renders the Prometheus text exposition format (0.0.4) straight from a collector snapshot.
 *
 * Why not the OTel SDK's PrometheusExporter: measured at 1000 VMs, `collect()` + its serializer cost
 * ~27 µs per VM, more than twice the whole /proc + sysfs collection, while this costs ~2 µs per VM.
 * Label strings are cached per instance. Values are written as exact decimals (bigint), also those
 * that OTel cannot carry and leaves out (see OtelValue).
 * A test proves both paths agree on every name, label and value.
 *
 * @since 0.1.0
 */
import type { Snapshot } from "@vm-metrics/core/Collector"
import type { MetricGroup } from "@vm-metrics/core/MetricGroup"
import {
  type ExportCounts,
  type Family,
  type LabeledVmFamily,
  labeledFamilies,
  serviceFamilies,
  VM_LABELS,
  type VmFamily,
  vmFamilies
} from "./Catalog.js"
import type { MetricOptions } from "./MetricOptions.js"
import type { ResourceAttributes } from "./ResourceAttributes.js"

/** The content type of this format. @category constants */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const escapeLabel = (text: string) => escapeHelp(text).replace(/"/g, '\\"')
/** OTel attribute names as Prometheus label names (`service.name` → `service_name`). */
const labelName = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/_+/g, "_")

const header = (family: Family) =>
  `# HELP ${family.name} ${escapeHelp(family.help)}\n# TYPE ${family.name} ${family.kind}\n`

const [ID_LABEL, NAME_LABEL] = VM_LABELS

const labelSet = (labels: ReadonlyArray<readonly [string, string]>) =>
  labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${labelName(k)}="${escapeLabel(v)}"`).join(",")}}`

/**
 * A renderer keeps the per-instance label strings between renders. `groups`: the metric groups to
 * render (the label budget's kept ones); default the options' groups. @category models
 */
export type Renderer = (snapshot: Snapshot, counts: ExportCounts, groups?: ReadonlySet<MetricGroup>) => string

interface Families {
  readonly plain: ReadonlyArray<VmFamily>
  readonly plainHeaders: ReadonlyArray<string>
  readonly labeled: ReadonlyArray<LabeledVmFamily>
}

/** @category constructors */
export const makeRenderer = (options: MetricOptions, resource: ResourceAttributes): Renderer => {
  // With the agent's families: they have samples only when the counts carry an agent sample.
  const service = serviceFamilies(options, true)
  const targetInfo = `# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info${labelSet(Object.entries(resource))} 1\n`
  const labels = new Map<string, { readonly name: string; readonly inner: string; readonly text: string }>()
  // The families of a set of groups, built once per set (the budget changes it rarely).
  const bySet = new Map<string, Families>()
  const familiesOf = (groups: ReadonlySet<MetricGroup>): Families => {
    const key = [...groups].sort().join(",")
    let found = bySet.get(key)
    if (found === undefined) {
      const plain = vmFamilies(options, groups)
      found = { plain, plainHeaders: plain.map(header), labeled: labeledFamilies(options, groups) }
      bySet.set(key, found)
    }
    return found
  }

  const labelsOf = (id: string, name: string) => {
    const cached = labels.get(id)
    if (cached !== undefined && cached.name === name) return cached
    const inner = `${ID_LABEL}="${escapeLabel(id)}",${NAME_LABEL}="${escapeLabel(name)}"`
    const entry = { name, inner, text: `{${inner}} ` }
    labels.set(id, entry)
    return entry
  }

  return (snapshot, counts, groups = options.groups) => {
    if (labels.size > 2 * snapshot.stats.length + 64) labels.clear() // forget instances that are gone
    // Plain loops, no arrows per render: V8 compiles a callback made per call again after a major GC.
    const stats = snapshot.stats
    const texts = new Array<string>(stats.length)
    const inners = new Array<string>(stats.length)
    for (let i = 0; i < stats.length; i++) {
      const vmLabels = labelsOf(stats[i].instanceId, stats[i].instanceName)
      texts[i] = vmLabels.text
      inners[i] = vmLabels.inner
    }
    const { plain, plainHeaders, labeled } = familiesOf(groups)
    let out = targetInfo
    // A family without samples is left out entirely, as the OTel SDK leaves it out.
    for (let f = 0; f < plain.length; f++) {
      const family = plain[f]
      let body = ""
      for (let i = 0; i < stats.length; i++) {
        const value = family.value(stats[i])
        if (value !== null) body += `${family.name}${texts[i]}${value}\n`
      }
      if (body !== "") out += plainHeaders[f] + body
    }
    for (const family of labeled) {
      const names = family.labels.map(labelName)
      let body = ""
      for (let i = 0; i < stats.length; i++) {
        const vm = stats[i]
        for (const sample of family.samples(vm)) {
          if (sample.value === null) continue
          const own = sample.labels.map((v, l) => `,${names[l]}="${escapeLabel(v)}"`).join("")
          body += `${family.name}{${inners[i]}${own}} ${sample.value}\n`
        }
      }
      if (body !== "") out += header(family) + body
    }
    for (const family of service) {
      const samples = family.samples(snapshot, counts)
      if (samples.length === 0) continue
      out += header(family)
      for (const sample of samples) out += `${family.name}${labelSet(sample.labels)} ${sample.value}\n`
    }
    return out
  }
}
