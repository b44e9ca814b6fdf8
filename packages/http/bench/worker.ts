/**
 * One approach (collection.ts) or one HTTP server (scrape.ts) in its own process, driven over IPC by
 * bench.ts. Why a process each: at 3,000 VMs one collector keeps 12,000 fds and discovery up to 4,000 more,
 * and the open-files limit here (20,000, which a container cannot raise) does not hold them all in one
 * process. bench.ts asks one worker at a time, so the approaches are still interleaved round by round.
 */
import { allGroups, defaultGroups } from "@vm-metrics/core/MetricGroup"
import type { FakeVm } from "@vm-metrics/testing/FakeHypervisors"
import { type Approach, bare, collector, directRender, discoveryScan, measure, naive, sdkRender } from "./collection.js"
import { inProcessServer } from "./scrape.js"

export type What =
  | "bare"
  | "naive"
  | "static"
  | "discovery"
  | "static, default groups"
  | "static, sysfs TAPs"
  | "static, default groups, sysfs TAPs"
  | "vcpus: seed, sysfs TAPs"
  | "vcpus: default groups, sysfs TAPs"
  | "vcpus: seed"
  | "vcpus: default groups"
  | "vcpus: all groups"
  | "rescan"
  | "full scan"
  | "render"
  | "sdk render"
  | "server on-demand"
  | "server background"

export type Request =
  | { readonly id: number; readonly op: "open"; readonly what: What; readonly vms: ReadonlyArray<FakeVm> }
  | { readonly id: number; readonly op: "measure" | "checksum" | "refresh" | "close" }

export interface Reply {
  readonly id: number
  readonly value?: string | number
  readonly error?: string
}

const pageSize = Number(process.env.BENCH_PAGE_SIZE ?? 4096)
const vcpuThreads = Number(process.env.BENCH_VCPU_THREADS ?? 4)

let approach: Approach | undefined
let server: Awaited<ReturnType<typeof inProcessServer>> | undefined

const open = async (what: What, vms: ReadonlyArray<FakeVm>): Promise<string | number> => {
  switch (what) {
    case "bare":
      approach = bare(vms)
      break
    case "naive":
      approach = naive(vms)
      break
    case "static":
    case "discovery":
      approach = collector(vms, pageSize, what)
      break
    case "static, default groups":
      approach = collector(vms, pageSize, "static", defaultGroups)
      break
    case "static, sysfs TAPs":
      approach = collector(vms, pageSize, "static", new Set(), undefined, true)
      break
    case "static, default groups, sysfs TAPs":
      approach = collector(vms, pageSize, "static", defaultGroups, undefined, true)
      break
    case "vcpus: seed, sysfs TAPs":
    case "vcpus: default groups, sysfs TAPs": {
      const groups = what === "vcpus: seed, sysfs TAPs" ? new Set<never>() : defaultGroups
      approach = { ...collector(vms, pageSize, "static", groups, vcpuThreads, true), name: what }
      break
    }
    case "vcpus: seed":
    case "vcpus: default groups":
    case "vcpus: all groups": {
      // Issue #11's cost rows, over the fakes with named vCPU threads (bench.ts VCPU_THREADS of them).
      const groups =
        what === "vcpus: seed"
          ? new Set<never>()
          : what === "vcpus: default groups"
            ? defaultGroups
            : new Set(allGroups)
      approach = { ...collector(vms, pageSize, "static", groups, vcpuThreads), name: what }
      break
    }
    case "rescan":
    case "full scan":
      approach = discoveryScan(what)
      break
    case "render":
    case "sdk render": {
      const source = collector(vms, pageSize, "static")
      const render = what === "render" ? await directRender(source.runtime) : await sdkRender(source.runtime)
      approach = {
        ...render,
        close: async () => {
          await render.close()
          await source.close()
        }
      }
      break
    }
    case "server on-demand":
      server = await inProcessServer({ collection: "on-demand", maxAge: "0 millis", groups: new Set() })
      return server.port
    case "server background":
      server = await inProcessServer({ collection: "background", interval: "1 hour", groups: new Set() })
      return server.port
  }
  return approach.name
}

const handle = async (request: Request): Promise<string | number> => {
  switch (request.op) {
    case "open":
      return open(request.what, request.vms)
    case "measure":
      return measure(approach!)
    case "checksum":
      return String(await approach!.checksum())
    case "refresh":
      await server!.refresh()
      return 0
    case "close":
      await approach?.close()
      await server?.close()
      setImmediate(() => process.exit(0))
      return 0
  }
}

process.on("disconnect", () => process.exit(0))
process.on("message", (request: Request) => {
  handle(request).then(
    (value) => process.send!({ id: request.id, value } satisfies Reply),
    (error: unknown) => process.send!({ id: request.id, error: String(error) } satisfies Reply)
  )
})
