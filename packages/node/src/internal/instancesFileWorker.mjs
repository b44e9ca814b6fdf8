/**
 * Parses an instances file (JSON or YAML) off the main thread, for StaticFileSource.ts. Plain JavaScript
 * because a worker thread loads its file without the TypeScript loader of the process (tsx, vitest).
 *
 * Before any parser sees the text, a cheap linear pre-scan bounds its nesting depth: the YAML library
 * recurses once per level (a few thousand `[` overflow its stack, and V8 may abort the whole process
 * while compiling a RegExp near the stack limit), and Schema recurses again when it reports an error.
 * - JSON: a full syntax check (iterative, no recursion), which also gives the line and column of a
 *   syntax error without quoting the text as `JSON.parse`'s messages do.
 * - YAML: the library's lexer and CST parser, which are iterative, run token by token and stop as
 *   soon as the collections open at once are more than the bound; only then is the document composed.
 * After parsing, the value is walked once more (depth and node count) as a backstop.
 *
 * Input (workerData): { job, bytes: Uint8Array, json: boolean, maxDepth, maxNodes, maxEntries }.
 * Output (one message): { ok: true, data } or { ok: false, kind, line?, column?, detail } where `detail`
 * is a fixed phrase or a YAML error code: never a piece of the file.
 *
 * @internal
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads"
import { Lexer, Parser, parseDocument } from "yaml"

export const JOB = "vm-metrics/instances-file"

/** 1-based line and column of a UTF-16 offset. */
export const lineColumnOf = (text, offset) => {
  let line = 1
  let start = 0
  const end = Math.min(offset, text.length)
  for (let i = 0; i < end; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      start = i + 1
    }
  }
  return { line, column: end - start + 1 }
}

const isJsonSpace = (c) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09
const isDigit = (c) => c >= 0x30 && c <= 0x39
const isHex = (c) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)

/** The end of a JSON string starting at `i` (the opening quote), or a negative (-1 - offset) error. */
const skipJsonString = (text, i) => {
  const n = text.length
  for (let j = i + 1; j < n; j++) {
    const c = text.charCodeAt(j)
    if (c === 0x22) return j + 1
    if (c < 0x20) return -1 - j
    if (c === 0x5c) {
      const e = text.charCodeAt(j + 1)
      if (e === 0x75) {
        for (let k = j + 2; k < j + 6; k++) if (!isHex(text.charCodeAt(k))) return -1 - k
        j += 5
      } else if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        j += 1
      } else return -1 - (j + 1)
    }
  }
  return -1 - n
}

/** The end of a JSON number starting at `i`, or a negative (-1 - offset) error. */
const skipJsonNumber = (text, i) => {
  let j = i
  if (text.charCodeAt(j) === 0x2d) j++
  if (text.charCodeAt(j) === 0x30) j++
  else if (isDigit(text.charCodeAt(j))) while (isDigit(text.charCodeAt(j))) j++
  else return -1 - j
  if (text.charCodeAt(j) === 0x2e) {
    j++
    if (!isDigit(text.charCodeAt(j))) return -1 - j
    while (isDigit(text.charCodeAt(j))) j++
  }
  if (text.charCodeAt(j) === 0x65 || text.charCodeAt(j) === 0x45) {
    j++
    if (text.charCodeAt(j) === 0x2b || text.charCodeAt(j) === 0x2d) j++
    if (!isDigit(text.charCodeAt(j))) return -1 - j
    while (isDigit(text.charCodeAt(j))) j++
  }
  return j
}

/**
 * Checks JSON syntax and depth without recursion: undefined when valid, else { kind, offset, detail }.
 * States: what may come next.
 */
export const checkJson = (text, maxDepth) => {
  const VALUE = 0
  const VALUE_OR_CLOSE = 1 // after `[`
  const KEY_OR_CLOSE = 2 // after `{`
  const KEY = 3 // after `,` in an object
  const COLON = 4
  const COMMA_OR_CLOSE = 5
  const stack = [] // 0x5b `[` or 0x7b `{`
  const n = text.length
  let state = VALUE
  let i = 0
  const fail = (offset, detail) => ({ kind: "parse_error", offset, detail: `invalid JSON: ${detail}` })
  for (;;) {
    while (i < n && isJsonSpace(text.charCodeAt(i))) i++
    if (i >= n) {
      if (stack.length === 0 && state === COMMA_OR_CLOSE) return undefined
      return fail(n, "unexpected end of the file")
    }
    const c = text.charCodeAt(i)
    if (state === COMMA_OR_CLOSE) {
      if (stack.length === 0) return fail(i, "unexpected text after the value")
      const open = stack[stack.length - 1]
      if (c === 0x2c) {
        state = open === 0x5b ? VALUE : KEY
        i++
      } else if ((c === 0x5d && open === 0x5b) || (c === 0x7d && open === 0x7b)) {
        stack.pop()
        i++
      } else return fail(i, open === 0x5b ? "expected ',' or ']'" : "expected ',' or '}'")
      continue
    }
    if (state === COLON) {
      if (c !== 0x3a) return fail(i, "expected ':'")
      state = VALUE
      i++
      continue
    }
    if (state === KEY || state === KEY_OR_CLOSE) {
      if (state === KEY_OR_CLOSE && c === 0x7d) {
        stack.pop()
        state = COMMA_OR_CLOSE
        i++
        continue
      }
      if (c !== 0x22) return fail(i, "expected a double-quoted property name")
      const end = skipJsonString(text, i)
      if (end < 0) return fail(-1 - end, "invalid string")
      i = end
      state = COLON
      continue
    }
    // VALUE or VALUE_OR_CLOSE
    if (state === VALUE_OR_CLOSE && c === 0x5d) {
      stack.pop()
      state = COMMA_OR_CLOSE
      i++
      continue
    }
    if (c === 0x5b || c === 0x7b) {
      if (stack.length >= maxDepth) return { kind: "too_deep", offset: i, detail: `nested deeper than ${maxDepth}` }
      stack.push(c)
      state = c === 0x5b ? VALUE_OR_CLOSE : KEY_OR_CLOSE
      i++
      continue
    }
    let end
    if (c === 0x22) end = skipJsonString(text, i)
    else if (c === 0x2d || isDigit(c)) end = skipJsonNumber(text, i)
    else if (text.startsWith("true", i)) end = i + 4
    else if (text.startsWith("false", i)) end = i + 5
    else if (text.startsWith("null", i)) end = i + 4
    else return fail(i, "unexpected character")
    if (end < 0) return fail(-1 - end, c === 0x22 ? "invalid string" : "invalid number")
    i = end
    state = COMMA_OR_CLOSE
  }
}

/**
 * Where a YAML text first nests deeper than `maxDepth`, or -1. The YAML library's own lexer and CST
 * parser are iterative (an explicit stack), unlike the composer that builds the document: they are fed
 * one token at a time and stopped as soon as the stack of open collections (block or flow, under the
 * document) is deeper than the bound, so the depth is the parser's, not a guess.
 */
export const yamlTooDeepAt = (text, maxDepth) => {
  const parser = new Parser()
  for (const token of new Lexer().lex(text)) {
    const before = parser.offset
    for (const _ of parser.next(token)) {
      // complete documents: not needed here
    }
    if (parser.stack.length - 1 > maxDepth) return before // the document is not a level
  }
  return -1
}

/** The depth and node count of a parsed value, walked without recursion; stops past the limits. */
export const measure = (value, maxDepth, maxNodes) => {
  const stack = [[value, 1]]
  let nodes = 0
  while (stack.length > 0) {
    const [node, depth] = stack.pop()
    nodes++
    if (nodes > maxNodes) return "too_large"
    if (typeof node !== "object" || node === null) continue
    if (depth > maxDepth) return "too_deep"
    const children = Array.isArray(node) ? node : Object.values(node)
    for (const child of children) stack.push([child, depth + 1])
  }
  return undefined
}

const entriesOf = (data) =>
  Array.isArray(data) ? data : typeof data === "object" && data !== null ? data.instances : undefined

/** The worker's whole job: text in, plain data or a described failure out. */
export const parseInstancesText = (text, json, limits) => {
  const { maxDepth, maxNodes, maxEntries } = limits
  const failAt = (kind, offset, detail) => ({ ok: false, kind, ...lineColumnOf(text, offset), detail })
  let data
  if (json) {
    const problem = checkJson(text, maxDepth)
    if (problem !== undefined) return failAt(problem.kind, problem.offset, problem.detail)
    try {
      data = JSON.parse(text)
    } catch {
      return { ok: false, kind: "parse_error", detail: "invalid JSON" }
    }
  } else {
    const deep = yamlTooDeepAt(text, maxDepth)
    if (deep >= 0) return failAt("too_deep", deep, `nested deeper than ${maxDepth}`)
    let document
    try {
      document = parseDocument(text)
    } catch {
      return { ok: false, kind: "parse_error", detail: "invalid YAML" }
    }
    const [first] = document.errors
    if (first !== undefined) {
      const position = first.linePos?.[0]
      return {
        ok: false,
        kind: "parse_error",
        ...(position === undefined ? {} : { line: position.line, column: position.col }),
        detail: `invalid YAML: ${first.code}`
      }
    }
    try {
      data = document.toJS({ maxAliasCount: 100 })
    } catch {
      return { ok: false, kind: "parse_error", detail: "invalid YAML (aliases)" }
    }
  }
  const entries = entriesOf(data)
  if (Array.isArray(entries) && entries.length > maxEntries) {
    return { ok: false, kind: "too_large", detail: `more than ${maxEntries} instances` }
  }
  const measured = measure(data, maxDepth, maxNodes)
  if (measured === "too_deep") return { ok: false, kind: "too_deep", detail: `nested deeper than ${maxDepth}` }
  if (measured === "too_large") return { ok: false, kind: "too_large", detail: `more than ${maxNodes} values` }
  return { ok: true, data }
}

if (!isMainThread && parentPort !== null && workerData?.job === JOB) {
  const { bytes, json, ...limits } = workerData
  const text = new TextDecoder().decode(bytes)
  parentPort.postMessage(parseInstancesText(text, json, limits))
}
