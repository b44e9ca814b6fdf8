/**
 * A response body encoded once and served to every client until what it shows changes: its UTF-8 bytes
 * and, made on first demand, their gzip. `/instances` keeps them by snapshot, `/metrics` by the bytes
 * rendered from a snapshot, so a scrape of an unchanged snapshot costs a lookup and a socket write, not a
 * render; a body goes with what it was made from. Node-only (node:zlib), so it lives in http, not
 * core/otel.
 *
 * @since 0.1.0
 */
import * as zlib from "node:zlib"

/** One body, plain and gzip. @category models */
export interface Encoded {
  readonly plain: Uint8Array
  /** The gzip of `plain`, compressed on the first call and kept. */
  readonly gzip: () => Uint8Array
}

/** A body of bytes already encoded (a render's), sent as they are. @category constructors */
export const fromBytes = (plain: Uint8Array): Encoded => {
  let gzipped: Uint8Array | undefined
  return {
    plain,
    gzip: () => {
      gzipped ??= zlib.gzipSync(plain, { level: 6 })
      return gzipped
    }
  }
}

/** @category constructors */
export const encode = (text: string): Encoded => fromBytes(Buffer.from(text, "utf8"))

/** Bodies made once per key and kept only as long as the key is (a WeakMap). */
const weakBodies = <K extends object>(made: (key: K) => Encoded): ((key: K) => Encoded) => {
  const bodies = new WeakMap<K, Encoded>()
  return (key) => {
    let body = bodies.get(key)
    if (body === undefined) {
      body = made(key)
      bodies.set(key, body)
    }
    return body
  }
}

/**
 * A cache of the body of a key (a snapshot), made (by `toText`) once per key. Kept only as long as the key
 * is: a cache holding the last snapshot it served kept that snapshot, and its ~1,000 VmStats, alive until
 * the next request, however long that was. @category constructors
 */
export const makeCache = <K extends object>(toText: (key: K) => string): ((key: K) => Encoded) =>
  weakBodies((key: K) => encode(toText(key)))

/**
 * The body of bytes made elsewhere (VmMetrics.renderBytes, which gives back the same array for the same
 * snapshot and counts), with its gzip made once; kept as long as the bytes are. @category constructors
 */
export const makeBytesCache = (): ((bytes: Uint8Array) => Encoded) => weakBodies(fromBytes)

/**
 * Whether to answer gzip to an `Accept-Encoding` header (RFC 9110 §12.5.3): `gzip` (or `x-gzip`) with a
 * q-value above 0, else `*` above 0, unless `identity` is listed with a higher q-value (the client prefers
 * plain). `gzip;q=0` refuses it whatever `*` says; no header: no gzip.
 * @category predicates
 */
export const acceptsGzip = (header: string | undefined): boolean => {
  if (header === undefined) return false
  let gzip: number | undefined
  let any: number | undefined
  let identity: number | undefined
  for (const part of header.split(",")) {
    const [coding, ...params] = part.split(";").map((s) => s.trim().toLowerCase())
    let q = 1
    for (const param of params) {
      const match = /^q\s*=(.*)$/.exec(param)
      // An unreadable q-value counts as 0: plain text is always a safe answer.
      if (match !== null) q = Number(match[1].trim() || Number.NaN)
    }
    if (Number.isNaN(q)) q = 0
    if (coding === "gzip" || coding === "x-gzip") gzip = Math.max(gzip ?? 0, q)
    else if (coding === "*") any = q
    else if (coding === "identity") identity = q
  }
  const weight = gzip ?? any ?? 0
  return weight > 0 && (identity === undefined || weight >= identity)
}
