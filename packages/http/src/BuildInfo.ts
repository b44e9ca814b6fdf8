/**
 * What this build of the agent is: the package version, the source revision it was built from and the Node
 * that runs it (`--version`, the landing page, `hypeman_vm_metrics_build_info`, OpenAPI `info.version`).
 * The revision is written into the bundle by `pnpm build` (scripts/build.mjs, esbuild `define`); run from
 * the sources (tsx, vitest) it is `unknown`.
 */
declare const __VM_METRICS_REVISION__: string | undefined

/** The version of @vm-metrics/http (BuildInfo.test checks it against package.json). */
export const version = "0.1.0"

/** The git revision the bundle was built from (short hash, `-dirty` when the tree had changes). */
export const revision: string = typeof __VM_METRICS_REVISION__ === "string" ? __VM_METRICS_REVISION__ : "unknown"

/** The Node that runs the agent (the executable carries its own). */
export const nodeVersion: string = process.versions.node

/** What `--version` and `vm-metrics version` print: version, revision and Node, on one line. */
export const summary = `vm-metrics ${version} (revision ${revision}, node ${nodeVersion})`
