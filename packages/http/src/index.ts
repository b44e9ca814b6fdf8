/**
 * @vm-metrics/http: the HttpApi server, OpenAPI and CLI, and the only composition root. Not built yet:
 * `src/bin.ts serve` is a placeholder that exits with a clear message.
 *
 * @since 0.1.0
 */
export {}
