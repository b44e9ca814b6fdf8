import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // A ceiling for a hang, not a speed limit: above the 60 s bounded waits for spawned processes, so
    // a loaded 2-core CI machine fails a test with the wait's own message, never with a bare timeout.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
