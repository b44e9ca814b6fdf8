/**
 * Which InstanceSource the server reads: `discovery` (the default: hypervisor processes found in
 * /proc), `file` (a JSON or YAML list) or `libvirt` (libvirt's run directory). The sources themselves
 * live in packages/node; this only chooses one.
 *
 * @since 0.1.0
 */
import type { InstanceSource } from "@vm-metrics/core/InstanceSource"
import * as Discovery from "@vm-metrics/node/Discovery"
import * as LibvirtSource from "@vm-metrics/node/LibvirtSource"
import * as ProcessTrust from "@vm-metrics/node/ProcessTrust"
import * as StaticFileSource from "@vm-metrics/node/StaticFileSource"
import { Data, Either, Layer, Option } from "effect"

/** @category models */
export const kinds = ["discovery", "file", "libvirt"] as const
/** @category models */
export type Kind = (typeof kinds)[number]

/** @category models */
export interface Options {
  readonly kind: Kind
  readonly procRoot: string
  readonly instancesFile: Option.Option<string>
  readonly libvirtRunDir: string
  /** `--discovery-uid`: uids or user names whose hypervisor processes discovery trusts besides root's. */
  readonly discoveryUids?: ReadonlyArray<string>
}

/** @category errors */
export class SourceOptionError extends Data.TaggedError("SourceOptionError")<{ readonly message: string }> {}

/** @category layers */
export const layer = (options: Options): Layer.Layer<InstanceSource, SourceOptionError> => {
  switch (options.kind) {
    case "discovery": {
      const uids = Either.all((options.discoveryUids ?? []).map((spec) => ProcessTrust.resolveUid(spec)))
      return Either.isLeft(uids)
        ? Layer.fail(new SourceOptionError({ message: `--discovery-uid: ${uids.left}` }))
        : Discovery.layer({ procRoot: options.procRoot, trustedUids: uids.right })
    }
    case "libvirt":
      return LibvirtSource.layer({ runDir: options.libvirtRunDir })
    case "file":
      return Option.match(options.instancesFile, {
        onNone: () =>
          Layer.fail(
            new SourceOptionError({ message: "--source file needs --instances-file (or VM_METRICS_INSTANCES_FILE)" })
          ),
        onSome: (path) => StaticFileSource.layer({ path })
      })
  }
}
