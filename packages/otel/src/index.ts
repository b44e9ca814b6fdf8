/** @since 0.1.0 */
export * as Catalog from "./Catalog.js"
/** @since 0.1.0 */
export * as LabelBudget from "./LabelBudget.js"
/** @since 0.1.0 */
export * as MetricOptions from "./MetricOptions.js"
/** @since 0.1.0 */
export * as MetricsExporter from "./MetricsExporter.js"
/** @since 0.1.0 */
export * as OtelData from "./OtelData.js"
/** @since 0.1.0 */
export * as OtelValue from "./OtelValue.js"
/** @since 0.1.0 */
export * as OtlpPush from "./OtlpPush.js"
/** @since 0.1.0 */
export * as PrometheusText from "./PrometheusText.js"
/** @since 0.1.0 */
export * as ResourceAttributes from "./ResourceAttributes.js"
/** @since 0.1.0 */
export * as VmMetrics from "./VmMetrics.js"
