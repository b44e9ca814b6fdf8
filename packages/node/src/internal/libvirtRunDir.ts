/**
 * The synchronous scan of libvirt's run directory behind LibvirtSource: lists the status files,
 * parses each again only when its inode, size or mtime change, and sorts the result by id.
 *
 * @internal
 */
import * as fs from "node:fs"
import { InstanceSourceError } from "@vm-metrics/core/Errors"
import type { InstanceInfo } from "@vm-metrics/core/Instance"
import { kindOfErrno } from "@vm-metrics/core/InstanceSource"
import { Either } from "effect"
import { parseDomainStatus, toInstanceInfo } from "./domainStatus.js"
import { errnoOf } from "./keptFile.js"
import { SmallFileReader } from "./smallFile.js"

/** The largest status file read (they are tens of KiB, mostly `<qemuCaps>`). @category constants */
export const MAX_STATUS_BYTES = 16 * 1024 * 1024

interface Parsed {
  readonly version: string
  readonly info: InstanceInfo | undefined
  seen: number
}

const byId = (a: InstanceInfo, b: InstanceInfo): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** One listing's instances and the files that did not parse (path: reason), to be logged. @category models */
export interface Scan {
  readonly instances: ReadonlyArray<InstanceInfo>
  readonly unparsable: ReadonlyArray<{ readonly path: string; readonly reason: string }>
}

/** The synchronous core of the source, over a run directory without trailing slashes. @category constructors */
export const makeRunDirScanner = (runDir: string) => {
  const reader = new SmallFileReader()
  const files = new Map<string, Parsed>()
  let generation = 0

  /** The file's instance (undefined when not listed), from the cache while the file is unchanged. */
  const readFile = (path: string, unparsable: Array<{ path: string; reason: string }>): InstanceInfo | undefined => {
    let version: string
    try {
      const stat = fs.statSync(path, { bigint: true })
      if (!stat.isFile()) return undefined
      version = `${stat.ino}:${stat.size}:${stat.mtimeNs}`
    } catch {
      return undefined // removed since the listing
    }
    let parsed = files.get(path)
    if (parsed?.version !== version) {
      const bytes = reader.read(path, { limit: MAX_STATUS_BYTES, regularOnly: true })
      if (typeof bytes === "string") return undefined // removed or unreadable: tried again next time
      const status = parseDomainStatus(bytes.toString("utf8"))
      if (Either.isLeft(status)) unparsable.push({ path, reason: status.left })
      parsed = { version, info: Either.isRight(status) ? toInstanceInfo(status.right) : undefined, seen: 0 }
      files.set(path, parsed)
    }
    parsed.seen = generation
    return parsed.info
  }

  const scan = (): Either.Either<Scan, InstanceSourceError> => {
    let entries: Array<string>
    try {
      entries = fs.readdirSync(runDir)
    } catch (error) {
      const code = errnoOf(error)
      if (code === "ENOENT") {
        files.clear()
        return Either.right({ instances: [], unparsable: [] })
      }
      return Either.left(
        new InstanceSourceError({
          kind: kindOfErrno(code),
          reason: `cannot list libvirt run directory ${runDir}: ${code}`
        })
      )
    }
    generation++
    const instances: Array<InstanceInfo> = []
    const unparsable: Array<{ path: string; reason: string }> = []
    for (const entry of entries) {
      if (!entry.endsWith(".xml")) continue
      const info = readFile(`${runDir}/${entry}`, unparsable)
      if (info !== undefined) instances.push(info)
    }
    for (const [path, parsed] of files) if (parsed.seen !== generation) files.delete(path)
    return Either.right({ instances: instances.sort(byId), unparsable })
  }

  return { scan }
}
