/** @since 0.1.0 */
export * as Discovery from "./Discovery.js"
/** @since 0.1.0 */
export * as EventLoop from "./EventLoop.js"
/** @since 0.1.0 */
export * as HypervisorCmdline from "./HypervisorCmdline.js"
/** @since 0.1.0 */
export * as LibvirtSource from "./LibvirtSource.js"
/** @since 0.1.0 */
export * as NodeKernel from "./NodeKernel.js"
/** @since 0.1.0 */
export * as NodeProcReader from "./NodeProcReader.js"
/** @since 0.1.0 */
export * as NodeReaders from "./NodeReaders.js"
/** @since 0.1.0 */
export * as NodeTapReader from "./NodeTapReader.js"
/** @since 0.1.0 */
export * as SelfProcess from "./SelfProcess.js"
/** @since 0.1.0 */
export * as StaticFileSource from "./StaticFileSource.js"
