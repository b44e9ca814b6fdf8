#!/usr/bin/env node
/**
 * `pnpm package:deb`: the Debian package dist/vm-metrics_<version>_amd64.deb, built with dpkg-deb from what
 * `pnpm build` wrote (run it first; package:deb does):
 * - /usr/bin/vm-metrics: the self-contained executable (Node 24 inside, scripts/sea.mjs);
 * - /lib/systemd/system/vm-metrics.service: deploy/vm-metrics.service as it is (ExecStart=/usr/bin/vm-metrics serve);
 * - /etc/default/vm-metrics, a conffile: every setting, commented out (packages/http/src/EnvironmentFile.ts);
 * - vm-metrics(1), from the help texts (dist/help.json); copyright (the MIT licence, Node's licence) and
 *   changelog, as Debian policy and lintian want them;
 * - maintainer scripts that register the unit (deb-systemd-helper, not enabled: set the address in
 *   /etc/default/vm-metrics, then `systemctl enable --now vm-metrics`), stop it on removal and forget it
 *   on purge.
 * Prints the path of the .deb. Needs dpkg-deb (Debian's dpkg).
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import * as zlib from "node:zlib"
import { NODE24_VERSION } from "./node24.mjs"

const root = path.resolve(import.meta.dirname, "..")
const dist = path.join(root, "dist")
const NAME = "vm-metrics"
const MAINTAINER = "vm-metrics authors <vm-metrics@users.noreply.github.com>"
const HOMEPAGE = "https://github.com/vm-metrics/vm-metrics"
/**
 * What the Node 24 inside needs (`objdump -T` of its binary: GLIBC_2.28, GLIBCXX_3.4.21 = GCC 5, GCC_3.4;
 * no other shared library).
 */
const DEPENDS = "libc6 (>= 2.28), libgcc-s1 (>= 3.4), libstdc++6 (>= 5)"

/** What lintian says of the official Node.js binary, which this package ships as built by Node.js. */
const LINTIAN_OVERRIDES = `# The executable is the official Node.js build with vm-metrics injected (a single-executable
# application): Node.js links its own zlib into it and builds it without PIE; rebuilding Node.js is
# not what this package does.
vm-metrics: embedded-library zlib [usr/bin/vm-metrics]
vm-metrics: hardening-no-pie [usr/bin/vm-metrics]
`

const version = JSON.parse(fs.readFileSync(path.join(root, "packages/http/package.json"), "utf8")).version

/** gzip -9n: maximal compression, no name and no time stamp (reproducible, as lintian wants). */
const gzip = (text) => zlib.gzipSync(Buffer.from(text), { level: 9 })

/** A man page (roff) from the CLI's help texts: each block of `--help` as a paragraph, commands as sections. */
const manPage = (help) => {
  const roff = (line) =>
    line
      .replaceAll("\\", "\\e")
      .replaceAll("-", "\\-")
      .replace(/^([.'])/, "\\&$1")
  const paragraphs = (text) =>
    text
      .split(/\n\s*\n/)
      .slice(2) // the name and the version line
      .flatMap((block) => {
        const words = block.trim().replace(/\s+/g, " ")
        if (words === "") return []
        if (/^[A-Z]+$/.test(words)) return [`.SS ${words}`]
        if (block.startsWith("  - ")) return [".IP \\(bu 2", roff(words.slice(2))]
        if (block.startsWith("  ")) return ['.IP "" 4', roff(words)]
        return [".PP", roff(words)]
      })
  const summary = /DESCRIPTION\n\n([^\n]+)/.exec(help.help)?.[1]?.split(". ")[0] ?? "VM resource use exporter"
  const commands = Object.keys(help)
    .filter((key) => key.startsWith("help "))
    .map((key) => key.slice("help ".length))
  return `${[
    `.TH VM\\-METRICS 1 "" "${NAME} ${version}" "User Commands"`,
    ".SH NAME",
    `${NAME} \\- ${roff(summary)}`,
    ".SH SYNOPSIS",
    `.B ${NAME}`,
    '.RI [ command "] [" options ]',
    ".SH DESCRIPTION",
    ...paragraphs(help.help),
    ...commands.flatMap((command) => [
      `.SH "${NAME.toUpperCase()} ${command.toUpperCase()}"`,
      ...paragraphs(help[`help ${command}`])
    ]),
    ".SH FILES",
    ".TP",
    ".I /etc/default/vm\\-metrics",
    "The settings of the service, as environment variables, each commented out with its default.",
    ".TP",
    ".I /lib/systemd/system/vm\\-metrics.service",
    "The systemd unit: `vm\\-metrics serve` as a transient unprivileged user; the file explains its hardening.",
    ".SH SEE ALSO",
    ".BR systemd.exec (5),",
    ".BR systemctl (1)"
  ].join("\n")}\n`
}

/** The machine-readable copyright file: the MIT licence of vm-metrics and the licence of the Node inside. */
const copyright = () => {
  const paragraph = (text) =>
    text
      .trimEnd()
      .split("\n")
      .map((line) => (line.trim() === "" ? " ." : ` ${line}`))
      .join("\n")
  const mit = fs.readFileSync(path.join(root, "LICENSE"), "utf8")
  const listed = path.join(dist, "sea", "packages.json")
  const packages = fs.existsSync(listed) ? JSON.parse(fs.readFileSync(listed, "utf8")) : []
  return [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    `Upstream-Name: ${NAME}`,
    `Source: ${HOMEPAGE}`,
    "Comment: /usr/bin/vm-metrics is a Node.js single-executable application: the Node.js runtime with",
    " vm-metrics and the npm packages it uses (Effect, OpenTelemetry, yaml, ...) bundled into it.",
    "",
    "Files: *",
    "Copyright: 2026 the vm-metrics authors",
    "License: Expat",
    "",
    "Files: usr/bin/vm-metrics",
    "Copyright: 2026 the vm-metrics authors",
    " Node.js contributors; Joyent, Inc. and other Node contributors",
    "License: Expat",
    "Comment: The Node.js runtime inside includes components under their own licences: V8",
    ` (BSD-3-clause), OpenSSL (Apache-2.0, see /usr/share/common-licenses/Apache-2.0), ICU`,
    " (Unicode-3.0), libuv, llhttp, undici (Expat), zlib (Zlib), and more. Each one with its text is",
    ` in Node.js's LICENSE: https://github.com/nodejs/node/blob/v${NODE24_VERSION}/LICENSE`,
    ...(packages.length === 0
      ? []
      : [
          " .",
          " The npm packages whose code is bundled into it, with the licence each declares (Apache-2.0:",
          " see /usr/share/common-licenses/Apache-2.0):",
          ...packages.map((p) => ` ${p.name} ${p.version}: ${p.license}`)
        ]),
    "",
    "License: Expat",
    paragraph(mit.replace(/^MIT License\s*\n/, "")),
    ""
  ].join("\n")
}

const changelog = () => {
  const date = new Date(Number(process.env.SOURCE_DATE_EPOCH ?? 0) * 1000 || Date.now()).toUTCString()
  return [
    `${NAME} (${version}) unstable; urgency=medium`,
    "",
    `  * Release ${version}: the agent as a self-contained executable (Node 24`,
    "    inside), with its systemd unit and /etc/default/vm-metrics.",
    "",
    ` -- ${MAINTAINER}  ${date.replace("GMT", "+0000")}`,
    ""
  ].join("\n")
}

const maintainerScripts = {
  // Registers the unit's symlinks with deb-systemd-helper (so purge removes them) without enabling it.
  postinst: `#!/bin/sh
set -e
if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
  if command -v deb-systemd-helper >/dev/null; then
    deb-systemd-helper update-state vm-metrics.service >/dev/null || true
  fi
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    if [ -n "$2" ] && command -v deb-systemd-invoke >/dev/null; then
      deb-systemd-invoke try-restart vm-metrics.service >/dev/null || true
    fi
  fi
fi
`,
  prerm: `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ] && command -v deb-systemd-invoke >/dev/null; then
  deb-systemd-invoke stop vm-metrics.service >/dev/null || true
fi
`,
  postrm: `#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ] && command -v deb-systemd-helper >/dev/null; then
  deb-systemd-helper purge vm-metrics.service >/dev/null || true
fi
`
}

/** The files of the package, path → [contents, mode]. */
const files = () => {
  const help = JSON.parse(fs.readFileSync(path.join(dist, "help.json"), "utf8"))
  const environmentFile = execFileSync(
    process.execPath,
    [
      "--import",
      "tsx",
      "--input-type=module",
      "-e",
      'import("./packages/http/src/EnvironmentFile.ts").then((m) => process.stdout.write(m.text()))'
    ],
    { cwd: root, encoding: "utf8" }
  )
  return {
    "usr/bin/vm-metrics": [fs.readFileSync(path.join(dist, NAME)), 0o755],
    "lib/systemd/system/vm-metrics.service": [fs.readFileSync(path.join(root, "deploy/vm-metrics.service")), 0o644],
    "etc/default/vm-metrics": [environmentFile, 0o644],
    "usr/share/man/man1/vm-metrics.1.gz": [gzip(manPage(help)), 0o644],
    "usr/share/doc/vm-metrics/copyright": [copyright(), 0o644],
    "usr/share/doc/vm-metrics/changelog.gz": [gzip(changelog()), 0o644],
    "usr/share/lintian/overrides/vm-metrics": [LINTIAN_OVERRIDES, 0o644]
  }
}

/** Builds the .deb; its path. */
export const buildDeb = () => {
  if (!fs.existsSync(path.join(dist, NAME))) throw new Error(`deb: no dist/${NAME}: run pnpm build first`)
  const staging = fs.mkdtempSync(path.join(dist, ".deb-"))
  try {
    const tree = path.join(staging, "root")
    const contents = files()
    let bytes = 0
    const md5sums = []
    for (const [file, [data, mode]] of Object.entries(contents)) {
      const target = path.join(tree, file)
      fs.mkdirSync(path.dirname(target), { recursive: true, mode: 0o755 })
      fs.writeFileSync(target, data, { mode })
      fs.chmodSync(target, mode)
      bytes += Buffer.byteLength(data)
      if (!file.startsWith("etc/")) md5sums.push(`${crypto.createHash("md5").update(data).digest("hex")}  ${file}`)
    }
    const control = path.join(tree, "DEBIAN")
    fs.mkdirSync(control, { mode: 0o755 })
    const controlFile = [
      `Package: ${NAME}`,
      `Version: ${version}`,
      "Architecture: amd64",
      `Maintainer: ${MAINTAINER}`,
      `Installed-Size: ${Math.ceil(bytes / 1024)}`,
      `Depends: ${DEPENDS}`,
      "Section: net",
      "Priority: optional",
      `Homepage: ${HOMEPAGE}`,
      "Description: host-side resource use of the virtual machines on a hypervisor host",
      " vm-metrics reports what each VM costs its host, read from the host's /proc",
      " and /sys: the hypervisor process's CPU time and memory, its TAP device's",
      " network counters, and more metric groups on request. It serves them as",
      " Prometheus text on /metrics and as JSON on /instances, and can push them",
      " over OTLP. Instances are discovered (QEMU, Cloud Hypervisor, Firecracker),",
      " read from libvirt, or listed in a file.",
      " .",
      " The executable carries its own Node.js runtime: the host needs no Node.js.",
      ""
    ].join("\n")
    fs.writeFileSync(path.join(control, "control"), controlFile)
    fs.writeFileSync(path.join(control, "conffiles"), "/etc/default/vm-metrics\n")
    fs.writeFileSync(path.join(control, "md5sums"), `${md5sums.join("\n")}\n`)
    for (const [name, script] of Object.entries(maintainerScripts)) {
      fs.writeFileSync(path.join(control, name), script, { mode: 0o755 })
    }
    for (const dir of walkDirs(tree)) fs.chmodSync(dir, 0o755)
    const deb = path.join(dist, `${NAME}_${version}_amd64.deb`)
    const temporary = path.join(staging, path.basename(deb))
    // xz -1: within 20 % of the default level's size for a tenth of its time (the executable is most of it).
    execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "-z1", "--build", tree, temporary], {
      stdio: ["ignore", "ignore", "inherit"]
    })
    fs.renameSync(temporary, deb)
    return deb
  } finally {
    fs.rmSync(staging, { recursive: true, force: true })
  }
}

/** Every directory under `dir`, itself included. */
function* walkDirs(dir) {
  yield dir
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) yield* walkDirs(path.join(dir, entry.name))
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  process.stdout.write(`${buildDeb()}\n`)
}
