/** Test support shared by the packages' tests (workspace only, never published). */

export * from "./FakeVmm.js"
export * from "./Kernel.js"
export * from "./PidNamespace.js"
export * from "./Process.js"
export * from "./ProcessMetrics.js"
export * from "./Skip.js"
export * from "./Tap.js"
export * from "./Wait.js"
