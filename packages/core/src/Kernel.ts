/**
 * The kernel constants needed to turn raw /proc units into seconds and bytes. Real readers find
 * them out (node: /proc/self/auxv and /proc/stat); 100 Hz and 4096 bytes are only fallbacks.
 *
 * @since 0.1.0
 */

/** @category models */
export interface KernelInfo {
  /** USER_HZ: the unit of the stat time fields. */
  readonly clockTicksPerSecond: number
  /** Bytes per page: the unit of statm. */
  readonly pageSize: number
  /** System boot time in ms since the epoch (`btime` of /proc/stat), if known. */
  readonly bootTimeMs: number | null
}

/** The values the Go original hard-coded; used only when the kernel cannot tell. @category constants */
export const fallbackKernelInfo: KernelInfo = { clockTicksPerSecond: 100, pageSize: 4096, bootTimeMs: null }
