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
 *   `current` attribute wins), memory from `<memory unit=…>` (KiB by default), a TAP from every
 *   `<interface>` that has a `<target dev=…>`, in document order (`tapDevices`; `tapDevice` is the
 *   first; a user-mode NIC has none; vhost-user, hostdev and vDPA NICs are not TAPs).
 * - Only `running` and `paused` domains are listed.
 * - A file that does not parse is skipped and logged once at DEBUG (again only if it changes); a
 *   missing run directory (libvirt not installed, or no domain started yet) is an empty list. Only a
 *   run directory that exists but cannot be listed fails (`InstanceSourceError`).
 * - Each file is parsed again only when its inode, size or mtime change (status files are rewritten
 *   whole on every state change). The result is sorted by id.
 *
 * @since 0.1.0
 */
import { InstanceSource } from "@vm-metrics/core/InstanceSource"
import { type Context, Effect, Layer } from "effect"
import { makeRunDirScanner } from "./internal/libvirtRunDir.js"

/** @category models */
export interface Options {
  /** libvirt's QEMU run directory. Default `/run/libvirt/qemu`. */
  readonly runDir?: string
}

/** @category constants */
export const DEFAULT_RUN_DIR = "/run/libvirt/qemu"

/** @category constructors */
export const make = (options: Options = {}): Effect.Effect<Context.Tag.Service<InstanceSource>> =>
  Effect.sync(() => {
    const source = makeRunDirScanner((options.runDir ?? DEFAULT_RUN_DIR).replace(/(.)\/+$/, "$1"))
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
