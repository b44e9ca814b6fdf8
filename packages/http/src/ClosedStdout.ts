/**
 * What the CLI does when the reader of its stdout goes away (`vm-metrics list | head -2`): what is left
 * to print has nowhere to go, so it stops, quietly and with status 0, as a Unix filter's reader expects,
 * instead of Node's unhandled 'error' event (EPIPE) and its stack trace. Any other stdout error is
 * left to Node.
 *
 * @since 0.1.0
 */

let installed = false

/** Installs the handler on `process.stdout`, once; for the CLI's entry points only. @category utils */
export const exitQuietlyWhenStdoutCloses = (): void => {
  if (installed) return
  installed = true
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0)
    throw error
  })
}
