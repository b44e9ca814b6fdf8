/**
 * HTTPS: the certificate and key of `--tls-cert-file` / `--tls-key-file` (a bearer token sent over plain
 * HTTP can be read by anyone on the network path). Both files or neither; each is read and checked when the
 * server starts (a PEM certificate, a PEM private key without a passphrase, the key of that certificate),
 * so a bad one is one line and exit status 2, not a server that fails every handshake.
 *
 * SIGHUP reads the two files again (a renewed certificate): the server presents the new pair to new
 * connections; a pair that fails the checks is logged and the current one kept.
 *
 * On the TLS port, a client speaking plain HTTP gets a plain-HTTP 400 saying to use https:// rather than
 * a connection that hangs until a timeout (a TLS server reads "GET /" as the header of a long record).
 *
 * @since 0.1.0
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import type * as net from "node:net"
import * as tls from "node:tls"
import { Data, Effect, Option, Runtime, type Scope } from "effect"

/** A missing, unreadable or unusable certificate or key, said in one line. @category errors */
export class TlsError extends Data.TaggedError("TlsError")<{ readonly message: string }> {}

/** The certificate chain and key the server presents, as read (PEM). @category models */
export interface Credentials {
  readonly certFile: string
  readonly keyFile: string
  readonly cert: Buffer
  readonly key: Buffer
}

/** What Node or OpenSSL says, on one line and without its error-code prefix. */
const reason = (error: unknown): string => {
  const text = error instanceof Error ? error.message : String(error)
  return text
    .replace(/^error:[0-9A-F]+:/, "")
    .replace(/\s+/g, " ")
    .trim()
}

const readFile = (file: string, what: string) =>
  Effect.try({
    try: () => fs.readFileSync(file),
    catch: (error) => {
      const code = (error as NodeJS.ErrnoException).code
      const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : reason(error)
      return new TlsError({ message: `cannot read the TLS ${what} file ${file}: ${why}` })
    }
  })

/**
 * The credentials of the two files, checked: None when neither is given; a TlsError when only one is, when
 * one cannot be read, or when they are not a certificate and its key.
 * @category constructors
 */
export const load = (
  certFile: Option.Option<string>,
  keyFile: Option.Option<string>
): Effect.Effect<Option.Option<Credentials>, TlsError> =>
  Effect.gen(function* () {
    if (Option.isNone(certFile) && Option.isNone(keyFile)) return Option.none()
    if (Option.isNone(certFile) || Option.isNone(keyFile))
      return yield* new TlsError({
        message: `--tls-cert-file and --tls-key-file go together: ${Option.isNone(certFile) ? "--tls-key-file" : "--tls-cert-file"} was given without the other`
      })
    const credentials: Credentials = {
      certFile: certFile.value,
      keyFile: keyFile.value,
      cert: yield* readFile(certFile.value, "certificate"),
      key: yield* readFile(keyFile.value, "key")
    }
    yield* check(credentials)
    return Option.some(credentials)
  })

/** The first certificate is one, the key is a private key, and the key is the certificate's. @category constructors */
export const check = (credentials: Credentials): Effect.Effect<void, TlsError> =>
  Effect.gen(function* () {
    const { certFile, keyFile } = credentials
    const certificate = yield* Effect.try({
      try: () => new crypto.X509Certificate(credentials.cert),
      catch: (error) =>
        new TlsError({ message: `the TLS certificate file ${certFile} holds no PEM certificate (${reason(error)})` })
    })
    const key = yield* Effect.try({
      try: () => crypto.createPrivateKey(credentials.key),
      catch: (error) =>
        new TlsError({
          message: `the TLS key file ${keyFile} holds no PEM private key without a passphrase (${reason(error)})`
        })
    })
    if (!certificate.checkPrivateKey(key))
      return yield* new TlsError({
        message: `the key in ${keyFile} is not the key of the certificate in ${certFile}`
      })
    // What the server will do with them (a chain Node refuses is caught here too).
    yield* Effect.try({
      try: () => tls.createSecureContext({ cert: credentials.cert, key: credentials.key }),
      catch: (error) =>
        new TlsError({ message: `the TLS certificate ${certFile} and key ${keyFile} are not usable: ${reason(error)}` })
    })
  })

/** The files read again and checked, then presented to new connections; else the current pair stays (logged). */
const reload = (server: tls.Server, current: Credentials) =>
  Effect.matchEffect(load(Option.some(current.certFile), Option.some(current.keyFile)), {
    onFailure: (error) => Effect.logWarning(`SIGHUP: keeping the current TLS certificate: ${error.message}`),
    onSuccess: (loaded) =>
      Effect.gen(function* () {
        if (Option.isNone(loaded)) return
        server.setSecureContext({ cert: loaded.value.cert, key: loaded.value.key })
        const serial = new crypto.X509Certificate(loaded.value.cert).serialNumber
        yield* Effect.logInfo(`SIGHUP: TLS certificate read again from ${current.certFile} (serial ${serial})`)
      })
  })

/** While the scope is open, SIGHUP reloads the server's certificate and key from their files. @category layers */
export const reloadOnHangup = (server: tls.Server, current: Credentials): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const runFork = Runtime.runFork(yield* Effect.runtime<never>())
    const onHangup = () => {
      runFork(reload(server, current))
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("SIGHUP", onHangup)),
      () => Effect.sync(() => process.off("SIGHUP", onHangup))
    )
  })

/** A TLS connection starts with a handshake record (content type 22). */
const TLS_HANDSHAKE = 0x16

const PLAIN_HTTP_BODY = JSON.stringify({
  code: "bad_request",
  message: "this port speaks HTTPS: use https:// (the server runs with --tls-cert-file)"
})

/** The answer to a client that sent plain HTTP to the TLS port. @category constants */
export const PLAIN_HTTP_ANSWER = [
  "HTTP/1.1 400 Bad Request",
  "content-type: application/json",
  `content-length: ${Buffer.byteLength(PLAIN_HTTP_BODY)}`,
  "connection: close",
  "",
  PLAIN_HTTP_BODY
].join("\r\n")

/**
 * Makes a TLS server look at each connection's first bytes before its TLS handling sees them: a TLS
 * handshake goes on to TLS, anything else (plain HTTP) gets `PLAIN_HTTP_ANSWER` and is closed. Call before
 * adding other `connection` listeners (they then see every connection as they did).
 * @category constructors
 */
export const refusePlainHttp = (server: net.Server): void => {
  const tlsHandlers = server.listeners("connection") as Array<(socket: net.Socket) => void>
  server.removeAllListeners("connection")
  server.on("connection", (socket: net.Socket) => {
    // Until TLS takes the socket, nothing else listens for its errors (a reset would be uncaught).
    const onError = () => socket.destroy()
    socket.on("error", onError)
    socket.once("data", (chunk: Buffer) => {
      socket.pause()
      // Handed back to the stream: the TLS socket reads what is buffered first.
      socket.unshift(chunk)
      if (chunk[0] !== TLS_HANDSHAKE) return void socket.end(PLAIN_HTTP_ANSWER)
      socket.off("error", onError)
      for (const handler of tlsHandlers) handler.call(server, socket)
    })
  })
}
