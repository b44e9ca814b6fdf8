/**
 * A response body encoded once and served to every client until what it shows changes: its UTF-8 bytes
 * and, made on first demand, their gzip. `/metrics` and `/instances` keep one each, keyed by what the
 * text is made from (the rendered text, the snapshot), so a scrape of an unchanged snapshot costs a
 * lookup and a socket write, not a render. Node-only (node:zlib), so it lives in http, not core/otel.
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
 * A one-entry cache: the body of the last key, made again (by `toText`) only when the key is a
 * different value (`!==`). @category constructors
 */
export const makeCache = <K>(toText: (key: K) => string): ((key: K) => Encoded) => {
  let last: { readonly key: K; readonly body: Encoded } | undefined
  return (key) => {
    if (last !== undefined && last.key === key) return last.body
    const body = encode(toText(key))
    last = { key, body }
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
