/**
 * Writes HTTP/1.1 responses as one `Uint8Array` (pure: no socket, no timer).
 *
 * **Field names, field values and reason phrases are byte strings.** A byte string is a JS
 * string whose code units are 0x00–0xFF, one byte each (Latin-1), as the request parser
 * produces them and as the Fetch `Headers` and Node do. The writer puts them on the wire
 * byte for byte, so every length it counts is a byte length: the head's string length *is*
 * its byte length. What it accepts:
 * - a field name is a `token` (RFC 9110 §5.6.2);
 * - a field value holds only field-value bytes (RFC 9110 §5.5): HTAB, SP, VCHAR
 *   (0x21–0x7E) and obs-text (0x80–0xFF). CR, LF, NUL, every other control, DEL and any
 *   code unit above 0xFF are refused (leading or trailing whitespace is written as given;
 *   a reader trims it);
 * - a reason phrase holds the same bytes (RFC 9112 §4: HTAB / SP / VCHAR / obs-text);
 * - a `date` option is checked like a field value.
 * Anything else is a `TypeError`, never written: a value with CR or LF would split the
 * response, and a code unit above 0xFF has no single byte. A caller holding text (not
 * bytes) encodes it first (`String.fromCharCode(...utf8Bytes)` gives its UTF-8 as a byte
 * string).
 *
 * **Bodies**: bytes are sent as they are; a string body is text and is sent as UTF-8, its
 * `Content-Length` being the encoded byte length.
 *
 * Other rules:
 * - The status line always says `HTTP/1.1` (RFC 9110 §2.5: a server sends its own
 *   version); `version` only says what the request spoke, for the `Connection` header.
 *   The status is 200–599 (RFC 9110 §15 defines 100–599; interim 1xx responses are not
 *   written here, use {@linkcode CONTINUE_100}); anything else is a `RangeError`.
 * - Framing is always `Content-Length`, never chunked. `Connection: close` is sent when
 *   the connection will not be kept; `Connection: keep-alive` for a kept HTTP/1.0 one.
 * - The writer owns framing and hop-by-hop fields: caller fields `connection`,
 *   `keep-alive`, `transfer-encoding`, `te`, `trailer`, `upgrade`, `proxy-connection` and
 *   `content-length` are dropped (so a proxied response passes through safely), except a
 *   caller `content-length` on a bodiless HEAD or 304 response, which describes the
 *   representation and is kept.
 * - 204 and 304 have no body and no computed `Content-Length`; a non-empty body for them
 *   is a `TypeError`.
 * - `Date` is added unless the caller gave one: the `date` option, or a cached IMF-fixdate
 *   string recomputed at most once per second from `Date.now()` (no timer).
 * - The status line and the `Connection` field are cached as bytes per status, the `Date`
 *   line per second. Every field is checked and the head measured before a byte is written;
 *   the head is then written byte by byte (no regular expression, no encoder call). A string
 *   body is first written as ASCII into a region of exactly its length; a non-ASCII one is
 *   encoded to UTF-8 and the response written again with its byte length.
 * - Responses up to 4 KiB are views into a shared 64 KiB slab (never reused), since
 *   allocating an `ArrayBuffer` per response costs more than writing it: do not transfer
 *   a response's `buffer`.
 *
 * @module
 */
import type { HttpError } from "./errors.ts";
import { FIELD_VALUE, TOKEN } from "./_http_chars.ts";

/** A response to write. */
export interface HttpResponseInit {
  /** Status code, 200–599. */
  status: number;
  /** Reason phrase (a byte string); the standard one for the status when absent. */
  reason?: string;
  /** Header fields in order, or a record; names and values are byte strings. */
  headers?: [string, string][] | Record<string, string>;
  /** The body; a string is text, sent as UTF-8. */
  body?: Uint8Array | string;
}

/** How to write a response. */
export interface WriteResponseOptions {
  /** Whether the connection stays open after this response. */
  keepAlive: boolean;
  /** The request was HEAD: no body bytes, `Content-Length` still sent. */
  head?: boolean;
  /** The request's version; `"1.0"` with `keepAlive` adds `Connection: keep-alive`. */
  version?: "1.0" | "1.1";
  /** A `Date` value to send instead of the cached current date. */
  date?: string;
  /**
   * The current time (`Date.now()`) when the caller has just read it: the cached `Date`
   * line is then brought up to date without reading the clock again.
   */
  now?: number;
}

/**
 * Reason phrases of the status codes defined by RFC 9110 (and a few common extras).
 *
 * @example
 * ```ts
 * import { STATUS_TEXT } from "./http_writer.ts";
 * console.assert(STATUS_TEXT[431] === "Request Header Fields Too Large");
 * ```
 */
export const STATUS_TEXT: Readonly<Record<number, string>> = Object.freeze({
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
});

/**
 * The interim `100 Continue` response. Shared: do not modify it.
 *
 * @example
 * ```ts
 * import { CONTINUE_100 } from "./http_writer.ts";
 * console.assert(new TextDecoder().decode(CONTINUE_100) === "HTTP/1.1 100 Continue\r\n\r\n");
 * ```
 */
export const CONTINUE_100: Uint8Array = new TextEncoder().encode("HTTP/1.1 100 Continue\r\n\r\n");

const encoder = new TextEncoder();
/** Whether every code unit of `s` is a field-value byte (HTAB, SP, VCHAR, obs-text). */
function isFieldValue(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || FIELD_VALUE[c] === 0) return false;
  }
  return true;
}
const EMPTY = new Uint8Array(0);
const CR = 0x0d;
const LF = 0x0a;

/** A value quoted for an error message, cut to 64 characters. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? s.slice(0, 61) + "..." : s);
}

/** Writes the byte string `s` (validated: code units ≤ 0xFF) into `out` at `at`; returns the end. */
function putLatin1(s: string, out: Uint8Array, at: number): number {
  for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
  return at + s.length;
}

/** Bytes of a string known to be ASCII or Latin-1 (a constant of this module). */
function bytesOf(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  putLatin1(s, out, 0);
  return out;
}

// Cached "status line + Connection field" bytes, index = status * 3 + connection kind.
const CONN_NONE = 0;
const CONN_CLOSE = 1;
const CONN_KEEP = 2;
const CONN_LINES = ["", "Connection: close\r\n", "Connection: keep-alive\r\n"];
const prefixes: (Uint8Array | undefined)[] = [];
const CONTENT_LENGTH = bytesOf("Content-Length: ");

let dateSecond = -1;
let dateLine = "";
let dateBytes: Uint8Array = EMPTY;

/**
 * Formats a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form of the
 * `Date` field. Without an argument: the current second, cached (recomputed at most once
 * per second).
 *
 * @example
 * ```ts
 * import { httpDate } from "./http_writer.ts";
 * console.assert(httpDate(784111777000) === "Sun, 06 Nov 1994 08:49:37 GMT");
 * ```
 */
export function httpDate(ms?: number): string {
  if (ms !== undefined) return new Date(ms).toUTCString();
  currentDate();
  return dateLine.slice(6, -2);
}

/** Brings the cached `Date` line (string and bytes) to the current second. */
function currentDate(now = Date.now()): void {
  const sec = Math.floor(now / 1000);
  if (sec !== dateSecond) {
    dateSecond = sec;
    dateLine = `Date: ${new Date(sec * 1000).toUTCString()}\r\n`;
    dateBytes = bytesOf(dateLine);
  }
}

function prefix(status: number, reason: string | undefined, conn: number): Uint8Array {
  if (reason === undefined) {
    const cached = prefixes[status * 3 + conn];
    if (cached !== undefined) return cached;
  }
  const text = reason ?? STATUS_TEXT[status] ?? "";
  const bytes = bytesOf(`HTTP/1.1 ${status} ${text}\r\n${CONN_LINES[conn]}`);
  if (reason === undefined) prefixes[status * 3 + conn] = bytes;
  return bytes;
}

/** The lower-cased name of a field the writer treats specially, else `null`. */
function special(name: string): string | null {
  switch (name.length) {
    case 2:
    case 4:
    case 7:
    case 10:
    case 14:
    case 16:
    case 17: {
      const n = name.toLowerCase();
      switch (n) {
        case "te":
        case "date":
        case "trailer":
        case "upgrade":
        case "connection":
        case "keep-alive":
        case "content-length":
        case "proxy-connection":
        case "transfer-encoding":
          return n;
      }
    }
  }
  return null;
}

/**
 * Serialises a response: status line, fields, `Date`, `Content-Length`, `Connection`,
 * body. Throws `RangeError` for a status outside 200–599 and `TypeError` for a field name
 * that is not a token, a value, reason or date that is not field-value bytes (see the
 * module documentation), or a body on a 204/304.
 *
 * @example
 * ```ts
 * import { writeResponse } from "./http_writer.ts";
 * const bytes = writeResponse(
 *   { status: 200, headers: [["content-type", "text/plain"]], body: "hello" },
 *   { keepAlive: true, date: "Sun, 06 Nov 1994 08:49:37 GMT" },
 * );
 * console.assert(new TextDecoder().decode(bytes) ===
 *   "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n" +
 *   "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 5\r\n\r\nhello");
 * ```
 */
export function writeResponse(res: HttpResponseInit, opts: WriteResponseOptions): Uint8Array {
  const status = res.status;
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    throw new RangeError(`Invalid response status "${status}"; allowed 200–599`);
  }
  const reason = res.reason;
  if (reason !== undefined && !isFieldValue(reason)) {
    throw new TypeError(`Invalid reason phrase ${quote(reason)}`);
  }
  const date = opts.date;
  if (date !== undefined && !isFieldValue(date)) {
    throw new TypeError(`Invalid date ${quote(date)}`);
  }
  const head = opts.head === true;
  const body = res.body;
  // A string body to send: first assumed ASCII (length = byte count), checked when written.
  let str: string | null = null;
  let bytes: Uint8Array = EMPTY;
  if (typeof body === "string") {
    if (body.length > 0) {
      if (head) bytes = encoder.encode(body); // only its byte length is needed
      else str = body;
    }
  } else if (body !== undefined) bytes = body;
  if ((status === 204 || status === 304) && (str !== null || bytes.length > 0)) {
    throw new TypeError(`A ${status} response cannot have a body`);
  }

  // Every field is read once, checked and kept, and the head measured, before a byte is
  // written (what is written is what was checked, whatever the caller's objects do when read
  // again): names and values are byte strings, so the head's string length is its byte length.
  const state: FieldState = { date: false, length: null };
  const kept: string[] = []; // name, value, name, value, … of the fields to write
  const headers = res.headers;
  let fieldBytes = 0;
  if (Array.isArray(headers)) {
    for (let i = 0; i < headers.length; i++) {
      const f = headers[i];
      fieldBytes += checkField(f[0], f[1], state, kept);
    }
  } else if (headers !== undefined) {
    for (const name of Object.keys(headers)) {
      fieldBytes += checkField(name, headers[name], state, kept);
    }
  }
  if (!state.date && date === undefined) currentDate(opts.now);
  const dateLen = state.date ? 0 : date === undefined ? dateBytes.length : date.length + 8;
  const conn = !opts.keepAlive ? CONN_CLOSE : opts.version === "1.0" ? CONN_KEEP : CONN_NONE;
  const pre = prefix(status, reason, conn);

  for (let attempt = 0;; attempt++) {
    // First (a string body): assumed ASCII; if it is not, its UTF-8 bytes are sent instead.
    const ascii = str !== null && attempt === 0;
    const bodyLen = ascii ? str!.length : head ? 0 : bytes.length;
    const length = ascii ? str!.length : bytes.length;
    const lenKind = lengthKind(status, head, length, state.length);
    const lenBytes = lenKind === LEN_NONE
      ? 0
      : lenKind === LEN_CALLER
      ? CONTENT_LENGTH.length + state.length!.length + 2
      : CONTENT_LENGTH.length + digits(length) + 2;
    const out = alloc(pre.length + fieldBytes + dateLen + lenBytes + 2 + bodyLen);
    out.set(pre);
    let p = pre.length;
    for (let i = 0; i < kept.length; i += 2) {
      p = putLatin1(kept[i], out, p);
      out[p++] = 0x3a; // ":"
      out[p++] = 0x20;
      p = putLatin1(kept[i + 1], out, p);
      out[p++] = CR;
      out[p++] = LF;
    }
    if (!state.date) {
      if (date === undefined) {
        out.set(dateBytes, p);
        p += dateBytes.length;
      } else {
        p = putLatin1("Date: ", out, p);
        p = putLatin1(date, out, p);
        out[p++] = CR;
        out[p++] = LF;
      }
    }
    if (lenKind !== LEN_NONE) {
      out.set(CONTENT_LENGTH, p);
      p += CONTENT_LENGTH.length;
      p = lenKind === LEN_CALLER ? putLatin1(state.length!, out, p) : putDigits(length, out, p);
      out[p++] = CR;
      out[p++] = LF;
    }
    out[p++] = CR;
    out[p++] = LF;
    if (!ascii) {
      if (bodyLen > 0) out.set(bytes, p);
      return out;
    }
    if (putAscii(str!, out, p)) return out;
    // Not ASCII: the body's UTF-8 bytes give its length (the slab space is left unused).
    bytes = encoder.encode(str!);
  }
}

/**
 * Writes the string `s` into `out` at `at`, which has room for exactly `s.length` bytes,
 * if it is ASCII; returns false (having written part of it) if it is not.
 */
function putAscii(s: string, out: Uint8Array, at: number): boolean {
  if (s.length > 64) {
    // A short read means a non-ASCII character (UTF-8 would need more bytes than there are).
    return encoder.encodeInto(s, out.subarray(at, at + s.length)).read === s.length;
  }
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return false;
    out[at + i] = c;
  }
  return true;
}

/** The decimal digits of a non-negative safe integer. */
function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes `n` in decimal at `at`; returns the end. */
function putDigits(n: number, out: Uint8Array, at: number): number {
  const end = at + digits(n);
  let i = end;
  do {
    const q = Math.floor(n / 10);
    out[--i] = 0x30 + (n - q * 10);
    n = q;
  } while (n > 0);
  return end;
}

/**
 * Output memory: responses up to 4 KiB are views into a shared 64 KiB slab, handed out
 * once and never reused (allocating an `ArrayBuffer` per response costs more than writing
 * it). A retained response keeps its slab alive; never transfer a response's buffer.
 */
const SLAB_SIZE = 64 * 1024;
const SLAB_ITEM_MAX = 4096;
let slab = new Uint8Array(SLAB_SIZE);
let slabOff = 0;

function alloc(n: number): Uint8Array {
  if (n > SLAB_ITEM_MAX) return new Uint8Array(n);
  if (slabOff + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabOff = 0;
  }
  const out = slab.subarray(slabOff, slabOff + n);
  slabOff = (slabOff + n + 7) & ~7;
  return out;
}

interface FieldState {
  date: boolean;
  length: string | null;
}

/**
 * Validates one caller field; keeps it in `kept` and returns the bytes its line takes
 * (`name: value` CRLF), or returns 0 when the writer owns it (its `content-length` is noted
 * in `state`).
 */
function checkField(name: string, value: string, state: FieldState, kept: string[]): number {
  if (typeof name !== "string") name = String(name);
  const n = name.length;
  if (n === 0) throw new TypeError(`Invalid header name ${quote(name)}`);
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c > 0xff || TOKEN[c] === 0) throw new TypeError(`Invalid header name ${quote(name)}`);
  }
  if (typeof value !== "string") value = String(value);
  if (!isFieldValue(value)) {
    throw new TypeError(`Invalid value for header "${name}": ${quote(value)}`);
  }
  const s = special(name);
  if (s === "content-length") {
    if (!/^[0-9]+$/.test(value)) {
      throw new TypeError(`Invalid value for header "${name}": ${quote(value)}`);
    }
    state.length = value;
  }
  if (s !== null && s !== "date") return 0;
  if (s === "date") state.date = true;
  kept.push(name, value);
  return n + value.length + 4;
}

const LEN_NONE = 0;
const LEN_CALLER = 1;
const LEN_COMPUTED = 2;

/** Which `Content-Length` line: none for 204, the caller's for a bodiless HEAD/304. */
function lengthKind(status: number, head: boolean, len: number, caller: string | null): number {
  if (status === 204) return LEN_NONE;
  if (len === 0 && caller !== null && (head || status === 304)) return LEN_CALLER;
  if (status === 304) return LEN_NONE;
  return LEN_COMPUTED;
}

/**
 * Serialises the answer to a refused request: the error's status, a `text/plain` body
 * holding its one-line message and a newline, and `Connection: close` when the error
 * closes the connection (or when `keepAlive` is false).
 *
 * @example
 * ```ts
 * import { HttpError } from "./errors.ts";
 * import { errorResponse } from "./http_writer.ts";
 * const bytes = errorResponse(new HttpError(431, "Too many header fields"), { date: "x" });
 * const text = new TextDecoder().decode(bytes);
 * console.assert(text.startsWith("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
 * console.assert(text.includes("Connection: close\r\n") && text.endsWith("\r\n\r\nToo many header fields\n"));
 * ```
 */
export function errorResponse(
  err: HttpError,
  opts: Partial<WriteResponseOptions> = {},
): Uint8Array {
  const status = Number.isInteger(err.status) && err.status >= 200 && err.status <= 599
    ? err.status
    : 500;
  // deno-lint-ignore no-control-regex -- the body must stay one line
  const message = err.message.replace(/[\x00-\x1f\x7f]+/g, " ");
  return writeResponse(
    {
      status,
      headers: [["Content-Type", "text/plain; charset=utf-8"]],
      body: message + "\n",
    },
    {
      keepAlive: !err.close && (opts.keepAlive ?? true),
      head: opts.head,
      version: opts.version,
      date: opts.date,
    },
  );
}
