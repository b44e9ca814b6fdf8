/** @since 0.1.0 */
export * as Auxv from "./Auxv.js"
/** @since 0.1.0 */
export * as BootTime from "./BootTime.js"
/** @since 0.1.0 */
export * as Collector from "./Collector.js"
/** @since 0.1.0 */
export * as Errors from "./Errors.js"
/** @since 0.1.0 */
export * as Instance from "./Instance.js"
/** @since 0.1.0 */
export * as InstanceSource from "./InstanceSource.js"
/** @since 0.1.0 */
export * as Kernel from "./Kernel.js"
/** @since 0.1.0 */
export * as MetricGroup from "./MetricGroup.js"
/** @since 0.1.0 */
export * as NetDev from "./NetDev.js"
/** @since 0.1.0 */
export * as ProcIo from "./ProcIo.js"
/** @since 0.1.0 */
export * as ProcReader from "./ProcReader.js"
/** @since 0.1.0 */
export * as ProcStat from "./ProcStat.js"
/** @since 0.1.0 */
export * as ProcStatm from "./ProcStatm.js"
/** @since 0.1.0 */
export * as ProcStatus from "./ProcStatus.js"
/** @since 0.1.0 */
export * as Schedstat from "./Schedstat.js"
/** @since 0.1.0 */
export * as SelfProcess from "./SelfProcess.js"
/** @since 0.1.0 */
export * as SysfsCounter from "./SysfsCounter.js"
/** @since 0.1.0 */
export * as TapName from "./TapName.js"
/** @since 0.1.0 */
export * as TapReader from "./TapReader.js"
/** @since 0.1.0 */
export * as VcpuThread from "./VcpuThread.js"
/** @since 0.1.0 */
export * as VmStats from "./VmStats.js"
