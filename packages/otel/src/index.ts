/**
 * @vm-metrics/otel: OpenTelemetry instruments, Prometheus exposition and OTLP push over the
 * collector's snapshot. Not built yet (its issue builds on the core collector).
 *
 * @since 0.1.0
 */
export {}
