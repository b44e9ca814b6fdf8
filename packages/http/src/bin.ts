#!/usr/bin/env node
/**
 * The `vm-metrics` command. Until the server issue lands, `serve` is a placeholder that says so and
 * exits with status 2; the HTTP API, `/metrics` and discovery come with packages/http and packages/otel.
 *
 * @since 0.1.0
 */
const [command] = process.argv.slice(2)

if (command === "serve") {
  console.error(
    "vm-metrics serve: the HTTP server is not built yet (it arrives with the server issue).\n" +
      "Today the project ships the collector library: see README.md, 'Use it as a library'."
  )
  process.exit(2)
}
console.error("usage: vm-metrics serve")
process.exit(64)
