/**
 * The label-budget guardrail of the Go original: more instances than the budget is
 * "over budget". Entering that state counts one transition and logs one WARN; leaving it logs one
 * INFO; nothing is logged while the state holds. It only warns and counts; it never drops series.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"

/** @category models */
export interface LabelBudget {
  /** Feeds the number of instances of a new snapshot; logs on transitions. */
  readonly observe: (instances: number) => Effect.Effect<void>
  /** Transitions into the over-budget state since start. */
  readonly transitions: () => number
  readonly budget: () => number
  /** Changes the budget; values ≤ 0 (or not integers) are ignored, as in the original. */
  readonly setBudget: (budget: number) => void
}

/** @category constructors */
export const make = (initialBudget: number): LabelBudget => {
  let budget = initialBudget > 0 ? initialBudget : 1
  let exceeded = false
  let transitions = 0
  return {
    observe: (instances) =>
      Effect.suspend(() => {
        const over = instances > budget
        if (over === exceeded) return Effect.void
        exceeded = over
        const log = Effect.annotateLogs({ observed_instances: instances, budget })
        if (over) {
          transitions++
          return Effect.logWarning("vm metrics label budget exceeded").pipe(log)
        }
        return Effect.logInfo("vm metrics label budget recovered").pipe(log)
      }),
    transitions: () => transitions,
    budget: () => budget,
    setBudget: (next) => {
      if (Number.isSafeInteger(next) && next > 0) budget = next
    }
  }
}
