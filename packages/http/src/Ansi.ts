/**
 * Colour on the terminal, and none anywhere else: a stream gets ANSI escapes only when it is a terminal and
 * `NO_COLOR` (https://no-color.org) is not set. `console` is an Effect Console that removes the escapes
 * from what goes to a stream without colour; the CLI runs under it, so @effect/cli's help and error texts
 * (always rendered with escapes) reach a pipe, a file or the journal as plain text.
 *
 * @since 0.1.0
 */
import { Console as NodeConsole } from "node:console"
import { Writable } from "node:stream"
import { Console, Effect } from "effect"

/** What decides colour: whether the stream is a terminal. @category models */
export interface Stream {
  readonly isTTY?: boolean
}

/** Whether `stream` may get ANSI escapes. @category predicates */
export const colour = (stream: Stream, env: Readonly<Record<string, string | undefined>> = process.env): boolean =>
  stream.isTTY === true && (env.NO_COLOR ?? "") === "" && env.TERM !== "dumb"

// CSI sequences (colours, cursor) and OSC ones (hyperlinks, titles): what a terminal renders and a file keeps.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what is matched
const escapes = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g

/** `text` without ANSI escapes. @category utils */
export const strip = (text: string): string => text.replace(escapes, "")

/** `target`, less the escapes when it has no colour. Writes through at once: nothing is held back at exit. */
const plain = (target: NodeJS.WriteStream): NodeJS.WritableStream =>
  colour(target)
    ? target
    : new Writable({
        write(chunk: Buffer | string, _encoding, done) {
          target.write(strip(String(chunk)))
          done()
        }
      })

/** An Effect Console over a Node one. */
const fromNode = (node: Console.UnsafeConsole): Console.Console => ({
  [Console.TypeId]: Console.TypeId,
  assert: (condition, ...args) => Effect.sync(() => node.assert(condition, ...args)),
  clear: Effect.sync(() => node.clear()),
  count: (label) => Effect.sync(() => node.count(label)),
  countReset: (label) => Effect.sync(() => node.countReset(label)),
  debug: (...args) => Effect.sync(() => node.debug(...args)),
  dir: (item, options) => Effect.sync(() => node.dir(item, options)),
  dirxml: (...args) => Effect.sync(() => node.dirxml(...args)),
  error: (...args) => Effect.sync(() => node.error(...args)),
  group: (options) =>
    Effect.sync(() => (options?.collapsed === true ? node.groupCollapsed(options.label) : node.group(options?.label))),
  groupEnd: Effect.sync(() => node.groupEnd()),
  info: (...args) => Effect.sync(() => node.info(...args)),
  log: (...args) => Effect.sync(() => node.log(...args)),
  table: (data, properties) => Effect.sync(() => node.table(data, properties)),
  time: (label) => Effect.sync(() => node.time(label)),
  timeEnd: (label) => Effect.sync(() => node.timeEnd(label)),
  timeLog: (label, ...args) => Effect.sync(() => node.timeLog(label, ...args)),
  trace: (...args) => Effect.sync(() => node.trace(...args)),
  warn: (...args) => Effect.sync(() => node.warn(...args)),
  unsafe: node
})

/** The process's stdout and stderr, each without escapes unless it is a terminal with colour. @category constructors */
export const console = (): Console.Console =>
  fromNode(
    new NodeConsole({
      stdout: plain(process.stdout),
      stderr: plain(process.stderr),
      // Values printed beside text (the pretty logger's fields): coloured by Node per stream, so never on `plain`.
      colorMode: "auto"
    })
  )
