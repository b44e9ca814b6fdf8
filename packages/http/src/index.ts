/**
 * @vm-metrics/http: the `vm-metrics` application. `AppConfig` is the one table of settings, `Main` the
 * composition root that builds the layer graph from it, `Server` the HTTP server and `Api` the HTTP
 * contract (`VmMetricsApi`: the OpenAPI document and the typed client used by `top --url`). The CLI
 * entry point is `src/bin.ts`; the other modules are imported by path (`@vm-metrics/http/Top`, …).
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Api from "./Api.js"
/** @since 0.1.0 */
export * as AppConfig from "./AppConfig.js"
/** @since 0.1.0 */
export * as Main from "./Main.js"
/** @since 0.1.0 */
export * as Server from "./Server.js"
