/**
 * UTF-8 text written straight into bytes, for the Prometheus renderer: what it writes is mostly ASCII
 * (names, labels encoded once per VM, decimal digits), so writing bytes spares the renderer a string per
 * line, V8's flattening of the concatenated text and the UTF-8 encoding of it before it is sent (at
 * 1,000 VMs these cost more than the render's own work). Decimals are written as JavaScript writes them
 * (`${value}`), so the bytes are the text the string renderer made.
 *
 * One writer is reused by every render (a scratch buffer that only grows); `take()` copies out exactly
 * the bytes written, so a body cached per snapshot holds no slack.
 *
 * @internal
 */

const encoder = new TextEncoder()

/** 2^53 - 1 as a bigint: below it a bigint's digits are a double's. */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/** @internal */
export class ByteWriter {
  #buffer: Uint8Array
  #length = 0

  constructor(capacity = 64 * 1024) {
    this.#buffer = new Uint8Array(capacity)
  }

  /** Room for `n` more bytes. */
  #reserve(n: number): void {
    const needed = this.#length + n
    if (needed <= this.#buffer.length) return
    const grown = new Uint8Array(Math.max(needed, this.#buffer.length * 2))
    grown.set(this.#buffer.subarray(0, this.#length))
    this.#buffer = grown
  }

  /** Starts a new text (the buffer is kept). */
  reset(): void {
    this.#length = 0
  }

  /** The bytes written since `reset`, copied out. */
  take(): Uint8Array {
    return this.#buffer.slice(0, this.#length)
  }

  bytes(bytes: Uint8Array): void {
    this.#reserve(bytes.length)
    this.#buffer.set(bytes, this.#length)
    this.#length += bytes.length
  }

  byte(code: number): void {
    this.#reserve(1)
    this.#buffer[this.#length++] = code
  }

  /** A string as UTF-8: byte by byte while it is ASCII, the encoder from the first other character on. */
  text(text: string): void {
    this.#reserve(text.length)
    const buffer = this.#buffer
    let at = this.#length
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i)
      if (code >= 0x80) {
        this.#length = at
        this.#encode(text.slice(i))
        return
      }
      buffer[at++] = code
    }
    this.#length = at
  }

  #encode(rest: string): void {
    this.#reserve(rest.length * 3) // a UTF-16 unit is at most 3 bytes of UTF-8
    this.#length += encoder.encodeInto(rest, this.#buffer.subarray(this.#length)).written
  }

  /** A number or bigint as `${value}` writes it. */
  value(value: number | bigint): void {
    if (typeof value === "bigint") {
      if (value >= 0n && value <= MAX_SAFE) this.#digits(Number(value))
      else this.text(value.toString())
    } else if (Number.isSafeInteger(value)) {
      if (value < 0) {
        this.byte(0x2d)
        this.#digits(-value)
      } else this.#digits(value)
    } else this.text(String(value))
  }

  /** A safe non-negative integer's decimal digits. */
  #digits(value: number): void {
    let count = 1
    for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) count++
    this.#reserve(count)
    const buffer = this.#buffer
    let at = this.#length + count
    this.#length = at
    let rest = value
    do {
      const next = Math.floor(rest / 10)
      buffer[--at] = 0x30 + (rest - next * 10)
      rest = next
    } while (rest > 0)
  }
}
