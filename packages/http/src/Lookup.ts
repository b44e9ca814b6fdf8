/**
 * Finds the instance a path segment names, in the original's order: an exact id, then an exact name
 * (two VMs with that name are ambiguous), then a unique id prefix (more than one is ambiguous).
 * The segment is only ever compared with listed ids and names: it never becomes a path.
 *
 * @since 0.1.0
 */
import type { VmStats } from "@vm-metrics/core/VmStats"
import { Either } from "effect"

/** @category models */
export type LookupFailure = { readonly _tag: "NotFound" } | { readonly _tag: "Ambiguous"; readonly matches: number }

/** Exact ids and names, each with the instances that carry it: built once per list of instances. */
interface Index<A> {
  readonly byId: Map<string, Array<A>>
  readonly byName: Map<string, Array<A>>
}

const indexOf = <A extends Pick<VmStats, "instanceId" | "instanceName">>(instances: ReadonlyArray<A>): Index<A> => {
  const byId = new Map<string, Array<A>>()
  const byName = new Map<string, Array<A>>()
  for (const vm of instances) {
    const sameId = byId.get(vm.instanceId)
    if (sameId === undefined) byId.set(vm.instanceId, [vm])
    else sameId.push(vm)
    const sameName = byName.get(vm.instanceName)
    if (sameName === undefined) byName.set(vm.instanceName, [vm])
    else sameName.push(vm)
  }
  return { byId, byName }
}

// A snapshot's list is never changed once made, and a server looks up in the same one per request until
// the next snapshot: its index is kept with it (and dropped with it), so a lookup by id or name costs a
// Map get instead of a pass over every VM.
const indexes = new WeakMap<ReadonlyArray<unknown>, Index<unknown>>()

const cachedIndexOf = <A extends Pick<VmStats, "instanceId" | "instanceName">>(
  instances: ReadonlyArray<A>
): Index<A> => {
  const known = indexes.get(instances) as Index<A> | undefined
  if (known !== undefined) return known
  const index = indexOf(instances)
  indexes.set(instances, index)
  return index
}

const oneOf = <A>(matches: ReadonlyArray<A>): Either.Either<A, LookupFailure> =>
  matches.length === 1 ? Either.right(matches[0] as A) : Either.left({ _tag: "Ambiguous", matches: matches.length })

/**
 * Looks `idOrName` up in `instances`, a list that must not change afterwards (a snapshot's): its index
 * is built on the first lookup and reused.
 *
 * @category lookup
 */
export const lookup = <A extends Pick<VmStats, "instanceId" | "instanceName">>(
  instances: ReadonlyArray<A>,
  idOrName: string
): Either.Either<A, LookupFailure> => {
  const { byId, byName } = cachedIndexOf(instances)
  // Sources give unique ids; one that does not is ambiguous rather than silently the first.
  const sameId = byId.get(idOrName)
  if (sameId !== undefined) return oneOf(sameId)
  const sameName = byName.get(idOrName)
  if (sameName !== undefined) return oneOf(sameName)
  const byPrefix = idOrName === "" ? [] : instances.filter((vm) => vm.instanceId.startsWith(idOrName))
  if (byPrefix.length === 0) return Either.left({ _tag: "NotFound" })
  return oneOf(byPrefix)
}
