#!/usr/bin/env node
/**
 * Validates the manifests of a kustomization directory (default deploy/kubernetes) against the Kubernetes
 * API schemas and the Prometheus Operator's CRDs, as the npm packages kubernetes-models and
 * @kubernetes-models/prometheus-operator carry them (generated from Kubernetes' OpenAPI document and from
 * the operator's CRDs; pinned with their integrity in package-lock.json beside this file). Per object:
 *  - the schema: types, required fields, enums, formats (the packages' `validate()`);
 *  - no unknown field: the schemas accept any extra field (a misspelt `readinesProbe` would pass, and the
 *    API server would drop it silently), so the object is also compiled by `tsc --strict` as a literal of
 *    the package's interface, where TypeScript refuses a property the interface does not have.
 * And the kustomization: known fields only, each resource exists, every manifest beside it is listed.
 *
 * The packages are installed (`npm ci`, no install scripts) into
 * $VM_METRICS_CACHE/kubernetes-validator-<hash of the lockfile> (default ~/.cache/vm-metrics), outside the
 * workspace, once. Usage: `node .ci/kubernetes/validate.mjs [--install-only] [--json] [dir]`; --json prints
 * `{ problems, objects: [{ file, object }] }` (the manifests as parsed, for test/Kubernetes.test.ts).
 * Exit status: 0 valid; 1 invalid (one line per problem: file, object, where, what); 2 could not check.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { pathToFileURL } from "node:url"

const HERE = import.meta.dirname
const REPO = path.resolve(HERE, "..", "..")

const cacheRoot = () =>
  process.env.VM_METRICS_CACHE ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache"), "vm-metrics")

/** Installs the pinned packages once (into a new directory, renamed into place when complete); returns it. */
export const install = () => {
  const lock = fs.readFileSync(path.join(HERE, "package-lock.json"))
  const hash = crypto.createHash("sha256").update(lock).digest("hex").slice(0, 12)
  const dir = path.join(cacheRoot(), `kubernetes-validator-${hash}`)
  if (fs.existsSync(path.join(dir, "node_modules", ".package-lock.json"))) return dir
  fs.mkdirSync(cacheRoot(), { recursive: true })
  const partial = fs.mkdtempSync(`${dir}.partial-`)
  try {
    for (const file of ["package.json", "package-lock.json"])
      fs.copyFileSync(path.join(HERE, file), path.join(partial, file))
    // --engine-strict=false: the models declare node >= 22 but are plain ES2022 (checked here on Node 20).
    execFileSync(
      "npm",
      ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error", "--engine-strict=false"],
      { cwd: partial, stdio: ["ignore", "ignore", "inherit"] }
    )
    fs.rmSync(dir, { recursive: true, force: true })
    fs.renameSync(partial, dir)
  } finally {
    fs.rmSync(partial, { recursive: true, force: true })
  }
  return dir
}

/** The module and interface of an apiVersion/kind, or undefined for a kind these packages do not have. */
const modelOf = (dir, apiVersion, kind) => {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return undefined
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion]
  const specifier =
    group === "monitoring.coreos.com"
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
      : `kubernetes-models/${group === "" ? "" : `${group}/`}${version}/${kind}`
  const [scope, name, ...rest] = specifier.startsWith("@") ? specifier.split("/") : ["", ...specifier.split("/")]
  const file = path.join(dir, "node_modules", ...(scope === "" ? [name] : [scope, name]), ...rest)
  return fs.existsSync(`${file}.js`) ? { specifier, file: `${file}.js`, type: `I${kind}` } : undefined
}

/** The fields a Kustomization may have (kustomize's types.Kustomization, the ones a plain base uses). */
const KUSTOMIZATION_FIELDS = new Set([
  "apiVersion",
  "kind",
  "namespace",
  "namePrefix",
  "nameSuffix",
  "labels",
  "commonAnnotations",
  "resources",
  "components",
  "images",
  "patches",
  "replicas",
  "configMapGenerator",
  "secretGenerator",
  "generatorOptions"
])

/** The kustomization's own problems, and the manifest files it lists. */
const readKustomization = (YAML, dir) => {
  const file = path.join(dir, "kustomization.yaml")
  const k = YAML.parse(fs.readFileSync(file, "utf8"))
  const problems = []
  const at = (what) => problems.push(`kustomization.yaml: ${what}`)
  if (k?.apiVersion !== "kustomize.config.k8s.io/v1beta1" || k?.kind !== "Kustomization")
    at("apiVersion/kind must be kustomize.config.k8s.io/v1beta1 Kustomization")
  for (const key of Object.keys(k ?? {})) if (!KUSTOMIZATION_FIELDS.has(key)) at(`unknown field ${key}`)
  const resources = Array.isArray(k?.resources) ? k.resources : []
  for (const r of resources) if (!fs.existsSync(path.join(dir, r))) at(`resource ${r} does not exist`)
  for (const f of fs.readdirSync(dir))
    if (/\.ya?ml$/.test(f) && f !== "kustomization.yaml" && !resources.includes(f)) at(`${f} is not in resources`)
  for (const image of k?.images ?? [])
    for (const key of Object.keys(image))
      if (!["name", "newName", "newTag", "digest"].includes(key)) at(`images: unknown field ${key}`)
  return { problems, resources: resources.filter((r) => fs.existsSync(path.join(dir, r))), namespace: k?.namespace }
}

const main = async () => {
  const args = process.argv.slice(2)
  const modules = install()
  if (args.includes("--install-only")) return 0
  const dir = path.resolve(args.find((a) => !a.startsWith("--")) ?? path.join(REPO, "deploy", "kubernetes"))
  const load = (file) => import(pathToFileURL(file).href)
  const YAML = await load(path.join(modules, "node_modules", "yaml", "dist", "index.js"))
  const { problems, resources } = readKustomization(YAML, dir)
  const objects = []
  for (const file of resources) {
    for (const doc of YAML.parseAllDocuments(fs.readFileSync(path.join(dir, file), "utf8"))) {
      if (doc.errors.length > 0) problems.push(`${file}: ${doc.errors[0].message}`)
      const object = doc.toJS()
      if (object !== null) objects.push({ file, object })
    }
  }
  const checks = []
  for (const [i, { file, object }] of objects.entries()) {
    const name = `${object.kind}/${object.metadata?.name}`
    const model = modelOf(modules, object.apiVersion, object.kind)
    if (model === undefined) {
      problems.push(`${file}: ${name}: no schema for ${object.apiVersion} ${object.kind}`)
      continue
    }
    const Model = (await load(model.file))[object.kind]
    try {
      new Model(object).validate()
    } catch (error) {
      for (const e of error.errors ?? [error]) problems.push(`${file}: ${name}: ${e.instancePath ?? ""} ${e.message}`)
    }
    checks.push({ file, name, source: `check${i}.ts`, model, object })
  }
  // One tsc run for all objects, in a directory inside the install (so the packages resolve).
  const work = fs.mkdtempSync(path.join(modules, "check-"))
  try {
    for (const c of checks)
      fs.writeFileSync(
        path.join(work, c.source),
        `import type { ${c.model.type} } from "${c.model.specifier}"\nexport const object: ${c.model.type} = ${JSON.stringify(c.object, null, 2)}\n`
      )
    if (checks.length > 0) {
      const tsc = path.join(modules, "node_modules", "typescript", "bin", "tsc")
      const flags = ["--strict", "--noEmit", "--skipLibCheck", "--module", "nodenext", "--target", "es2022"]
      try {
        execFileSync(process.execPath, [tsc, ...flags, "--pretty", "false", ...checks.map((c) => c.source)], {
          cwd: work,
          encoding: "utf8"
        })
      } catch (error) {
        const output = String(error.stdout ?? "")
        if (output.trim() === "") throw error
        for (const line of output.trim().split("\n")) {
          const match = /^(check\d+\.ts)\((\d+),\d+\): error TS\d+: (.*)$/.exec(line)
          const check = checks.find((c) => c.source === match?.[1])
          if (match === null || check === undefined) {
            problems.push(line)
            continue
          }
          const where = fs.readFileSync(path.join(work, check.source), "utf8").split("\n")[Number(match[2]) - 1]
          problems.push(`${check.file}: ${check.name}: ${where?.trim()} ${match[3]}`)
        }
      }
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
  if (args.includes("--json")) console.log(JSON.stringify({ problems, objects }))
  else {
    for (const p of problems) console.log(p)
    console.log(`${objects.length} objects in ${path.relative(process.cwd(), dir) || "."}: ${problems.length} problems`)
  }
  return problems.length === 0 ? 0 : 1
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`cannot validate: ${error?.stack ?? error}`)
    process.exit(2)
  }
)
