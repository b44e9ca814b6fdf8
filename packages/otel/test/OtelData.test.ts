import { AggregationTemporality, DataPointType } from "@opentelemetry/sdk-metrics"
import { describe, expect, it } from "vitest"
import { CUMULATIVE, GAUGE, SUM } from "../src/OtelData.js"

describe("OtelData", () => {
  it("inlines the SDK's enum values (no value import of the SDK)", () => {
    expect(CUMULATIVE).toBe(AggregationTemporality.CUMULATIVE)
    expect(SUM).toBe(DataPointType.SUM)
    expect(GAUGE).toBe(DataPointType.GAUGE)
  })
})
