/**
 * Finds out the kernel constants that turn /proc units into seconds and bytes: page size and USER_HZ
 * from this process's ELF auxiliary vector (`/proc/self/auxv`, AT_PAGESZ / AT_CLKTCK; both are
 * kernel-wide, so our own /proc is right even when the host's is mounted elsewhere) and boot time
 * from `<procRoot>/stat`. Falls back to 4096 / 100 with a logged warning.
 *
 * @since 0.1.0
 */
import * as fs from "node:fs"
import * as os from "node:os"
import { parseAuxv } from "@vm-metrics/core/Auxv"
import { parseBootTimeMs } from "@vm-metrics/core/BootTime"
import { fallbackKernelInfo, type KernelInfo } from "@vm-metrics/core/Kernel"
import { Effect } from "effect"

const WORD_SIZE: 4 | 8 = ["x64", "arm64", "riscv64", "ppc64", "s390x", "loong64", "mips64el"].includes(process.arch)
  ? 8
  : 4

const readOrUndefined = <A>(read: () => A): A | undefined => {
  try {
    return read()
  } catch {
    return undefined
  }
}

/** @category constructors */
export const readKernelInfo = (options: { readonly procRoot?: string; readonly auxvPath?: string } = {}) =>
  Effect.gen(function* () {
    const auxvPath = options.auxvPath ?? "/proc/self/auxv"
    const statPath = `${options.procRoot ?? "/proc"}/stat`
    const auxv = readOrUndefined(() => parseAuxv(fs.readFileSync(auxvPath), WORD_SIZE, os.endianness() === "LE"))
    const bootTimeMs = readOrUndefined(() => parseBootTimeMs(fs.readFileSync(statPath, "latin1")))
    const pageSize = auxv?.pageSize
    const clockTicks = auxv?.clockTicks
    if (pageSize === undefined || pageSize <= 0) {
      yield* Effect.logWarning(`page size not found in ${auxvPath}; assuming ${fallbackKernelInfo.pageSize}`)
    }
    if (clockTicks === undefined || clockTicks <= 0) {
      yield* Effect.logWarning(
        `clock ticks not found in ${auxvPath}; assuming ${fallbackKernelInfo.clockTicksPerSecond}`
      )
    }
    if (bootTimeMs === undefined) {
      yield* Effect.logWarning(`btime not found in ${statPath}; process start times stay unknown`)
    }
    return {
      pageSize: pageSize !== undefined && pageSize > 0 ? pageSize : fallbackKernelInfo.pageSize,
      clockTicksPerSecond:
        clockTicks !== undefined && clockTicks > 0 ? clockTicks : fallbackKernelInfo.clockTicksPerSecond,
      bootTimeMs: bootTimeMs ?? null
    } satisfies KernelInfo
  })
