/** @since 0.1.0 */
export * as NodeKernel from "./NodeKernel.js"
/** @since 0.1.0 */
export * as NodeProcReader from "./NodeProcReader.js"
/** @since 0.1.0 */
export * as NodeReaders from "./NodeReaders.js"
/** @since 0.1.0 */
export * as NodeTapReader from "./NodeTapReader.js"
