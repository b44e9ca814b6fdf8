/**
 * Whole small files (comm, cmdline, pidfiles, config and status files) read synchronously into one
 * reused buffer with a size cap. Errors come back as errno codes, never as throws, so callers in
 * Effect code stay total.
 *
 * @internal
 */
import * as fs from "node:fs"
import { closeQuietly, errnoOf } from "./keptFile.js"

/** Returned when a file is longer than the cap. @internal */
export const TOO_LARGE = "EFBIG"

/** Returned when `regularOnly` is set and the path is not a regular file (a FIFO, a device, a dir). @internal */
export const NOT_REGULAR = "ENOTREG"

/** Returned when `owners` is set and the file belongs to another uid. @internal */
export const NOT_OWNED = "ENOTOWNED"

/** @internal */
export interface ReadOptions {
  /** The most bytes accepted; a longer file reads `TOO_LARGE`. */
  readonly limit: number
  /** Refuse anything but a regular file. Opening is then non-blocking, so a FIFO cannot hang the caller. */
  readonly regularOnly?: boolean
  /** Refuse a symlink as the last path component (`O_NOFOLLOW`: ELOOP). */
  readonly noFollow?: boolean
  /**
   * One `read` call is the whole file: for tiny procfs files such as `comm` (at most 16 bytes), whose
   * content always arrives in one read. Saves the `read` that would return 0.
   */
  readonly oneRead?: boolean
  /** With `regularOnly`: the uids the file may belong to; another owner reads `NOT_OWNED`. */
  readonly owners?: ReadonlySet<number>
}

const flagsOf = (options: ReadOptions): number =>
  fs.constants.O_RDONLY |
  (options.regularOnly === true ? fs.constants.O_NONBLOCK : 0) |
  (options.noFollow === true ? fs.constants.O_NOFOLLOW : 0)

/** One reader, one buffer: the bytes returned are valid until its next read. @internal */
export class SmallFileReader {
  private bytes: Buffer = Buffer.allocUnsafe(4096)

  /** The file's bytes (a view into the shared buffer), or an errno code. */
  read(path: string, options: ReadOptions): Buffer | string {
    let fd: number
    try {
      fd = fs.openSync(path, flagsOf(options))
    } catch (error) {
      return errnoOf(error)
    }
    try {
      if (options.regularOnly === true) {
        const stat = fs.fstatSync(fd)
        if (!stat.isFile()) return NOT_REGULAR
        if (options.owners !== undefined && !options.owners.has(stat.uid)) return NOT_OWNED
        if (stat.size > options.limit) return TOO_LARGE
      }
      let length = 0
      for (;;) {
        if (length === this.bytes.length) {
          if (length > options.limit) return TOO_LARGE
          const grown = Buffer.allocUnsafe(this.bytes.length * 2)
          this.bytes.copy(grown, 0, 0, length)
          this.bytes = grown
        }
        const n = fs.readSync(fd, this.bytes, length, this.bytes.length - length, null)
        if (n === 0) break
        length += n
        if (length > options.limit) return TOO_LARGE
        if (options.oneRead === true && length < this.bytes.length) break
      }
      return this.bytes.subarray(0, length)
    } catch (error) {
      return errnoOf(error)
    } finally {
      closeQuietly(fd)
    }
  }
}
