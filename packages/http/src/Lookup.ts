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

/** @category lookup */
export const lookup = <A extends Pick<VmStats, "instanceId" | "instanceName">>(
  instances: ReadonlyArray<A>,
  idOrName: string
): Either.Either<A, LookupFailure> => {
  const byId = instances.filter((vm) => vm.instanceId === idOrName)
  if (byId.length === 1) return Either.right(byId[0] as A)
  // Sources give unique ids; one that does not is ambiguous rather than silently the first.
  if (byId.length > 1) return Either.left({ _tag: "Ambiguous", matches: byId.length })
  const byName = instances.filter((vm) => vm.instanceName === idOrName)
  if (byName.length === 1) return Either.right(byName[0] as A)
  if (byName.length > 1) return Either.left({ _tag: "Ambiguous", matches: byName.length })
  const byPrefix = idOrName === "" ? [] : instances.filter((vm) => vm.instanceId.startsWith(idOrName))
  if (byPrefix.length === 1) return Either.right(byPrefix[0] as A)
  if (byPrefix.length > 1) return Either.left({ _tag: "Ambiguous", matches: byPrefix.length })
  return Either.left({ _tag: "NotFound" })
}
