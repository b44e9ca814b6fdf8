/**
 * A response body encoded once and served to every client until what it shows changes: its UTF-8 bytes
 * and, made on first demand, their gzip. `/metrics` and `/instances` keep them by snapshot (and, for
 * `/metrics`, its rendered text), so a scrape of an unchanged snapshot costs a lookup and a socket write,
 * not a render; a body goes with its snapshot. Node-only (node:zlib), so it lives in http, not core/otel.
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

/** @category constructors */
export const encode = (text: string): Encoded => {
  const plain = Buffer.from(text, "utf8")
  let gzipped: Uint8Array | undefined
  return {
    plain,
    gzip: () => {
      gzipped ??= zlib.gzipSync(plain, { level: 6 })
      return gzipped
    }
  }
}

/**
 * A cache of the body of a key (a snapshot), made (by `toText`) once per key. Kept only as long as the key
 * is (a WeakMap): a cache holding the last snapshot it served kept that snapshot, and its ~1,000 VmStats,
 * alive until the next request, however long that was. @category constructors
 */
export const makeCache = <K extends object>(toText: (key: K) => string): ((key: K) => Encoded) => {
  const bodies = new WeakMap<K, Encoded>()
  return (key) => {
    let body = bodies.get(key)
    if (body === undefined) {
      body = encode(toText(key))
      bodies.set(key, body)
    }
    return body
  }
}

/**
 * Like `makeCache` for a text made elsewhere: the body of a key's text, made again when the key comes
 * with another text (`!==`, e.g. the same snapshot rendered with other export counts). @category constructors
 */
export const makeTextCache = <K extends object>(): ((key: K, text: string) => Encoded) => {
  const bodies = new WeakMap<K, { readonly text: string; readonly body: Encoded }>()
  return (key, text) => {
    const last = bodies.get(key)
    if (last !== undefined && last.text === text) return last.body
    const body = encode(text)
    bodies.set(key, { text, body })
    return body
  }
}

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
