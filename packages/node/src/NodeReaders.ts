/**
 * Both Linux readers in one layer, with their roots from options or from the environment
 * (`VM_METRICS_PROC_ROOT`, `VM_METRICS_SYS_ROOT`), for hosts where /proc and /sys of the host are
 * mounted elsewhere (e.g. a container with `/host/proc`).
 *
 * @since 0.1.0
 */
import type { ProcReader } from "@vm-metrics/core/ProcReader"
import type { TapReader } from "@vm-metrics/core/TapReader"
import { Config, type ConfigError, Effect, Layer } from "effect"
import type { InvalidRoot } from "./internal/keptFile.js"
import * as NodeProcReader from "./NodeProcReader.js"
import * as NodeTapReader from "./NodeTapReader.js"

export type { InvalidRoot } from "./internal/keptFile.js"

/** @category models */
export interface Options {
  readonly procRoot?: string
  readonly sysRoot?: string
  /** See NodeTapReader's option (default true: the agent's own net/dev when it is sysfs's namespace). */
  readonly selfNetDev?: boolean
}

/** @category layers */
export const layer = (options: Options = {}): Layer.Layer<ProcReader | TapReader, InvalidRoot> =>
  Layer.merge(
    NodeProcReader.layer(options.procRoot === undefined ? {} : { procRoot: options.procRoot }),
    NodeTapReader.layer({
      ...(options.sysRoot === undefined ? {} : { sysRoot: options.sysRoot }),
      ...(options.procRoot === undefined ? {} : { procRoot: options.procRoot }),
      ...(options.selfNetDev === undefined ? {} : { selfNetDev: options.selfNetDev })
    })
  )

/** @category config */
export const config: Config.Config<Required<Omit<Options, "selfNetDev">>> = Config.all({
  procRoot: Config.string("VM_METRICS_PROC_ROOT").pipe(Config.withDefault("/proc")),
  sysRoot: Config.string("VM_METRICS_SYS_ROOT").pipe(Config.withDefault("/sys"))
})

/** @category layers */
export const layerConfig: Layer.Layer<ProcReader | TapReader, InvalidRoot | ConfigError.ConfigError> =
  Layer.unwrapEffect(Effect.map(config, layer))
