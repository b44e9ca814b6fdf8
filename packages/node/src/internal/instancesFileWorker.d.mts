/** Types of instancesFileWorker.mjs (plain JavaScript: a worker thread loads it without a TypeScript loader). */
import type { InstanceSourceErrorKind } from "@vm-metrics/core/Errors"

export declare const JOB: string

export interface Limits {
  readonly maxDepth: number
  readonly maxNodes: number
  readonly maxEntries: number
}

export type Reply =
  | { readonly ok: true; readonly data: unknown }
  | {
      readonly ok: false
      readonly kind: InstanceSourceErrorKind
      readonly detail: string
      readonly line?: number
      readonly column?: number
    }

export declare const parseInstancesText: (text: string, json: boolean, limits: Limits) => Reply
export declare const checkJson: (
  text: string,
  maxDepth: number
) => { readonly kind: InstanceSourceErrorKind; readonly offset: number; readonly detail: string } | undefined
export declare const yamlTooDeepAt: (text: string, maxDepth: number) => number
export declare const lineColumnOf: (text: string, offset: number) => { readonly line: number; readonly column: number }
