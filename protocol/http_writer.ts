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
 * - The status line and the `Connection` field are cached as bytes per status; an ASCII
 *   head and a small ASCII string body are encoded with one `encodeInto` call into a buffer
 *   of exactly their length (so that a non-ASCII character shows as a short read, never
 *   as an overflow into the body).
 * - Responses up to 4 KiB are views into a shared 64 KiB slab (never reused), since
 *   allocating an `ArrayBuffer` per response costs more than writing it: do not transfer
 *   a response's `buffer`.
 *
 * @module
 */
import type { HttpError } from "./errors.ts";

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
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Any code unit that is not a field-value byte (HTAB, SP, VCHAR, obs-text). */
const NOT_FIELD_BYTE_RE = /[^\t\x20-\x7e\x80-\xff]/;
const EMPTY = new Uint8Array(0);

/** A value quoted for an error message, cut to 64 characters. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? s.slice(0, 61) + "..." : s);
}

/** Writes the byte string `s` (validated: code units ≤ 0xFF) into `out` at `at`. */
function putLatin1(s: string, out: Uint8Array, at: number): void {
  for (let i = 0; i < s.length; i++) out[at + i] = s.charCodeAt(i);
}

/**
 * Writes the validated byte string `s` into `out` at `at`, which has room for exactly
 * `s.length` bytes: one native call when it is ASCII, else byte by byte.
 */
function putHead(s: string, out: Uint8Array, at: number): void {
  const dst = out.subarray(at, at + s.length);
  // A short read means a non-ASCII character (UTF-8 would need more bytes than there are).
  if (encoder.encodeInto(s, dst).read !== s.length) putLatin1(s, out, at);
}

// Cached "status line + Connection field" bytes, index = status * 3 + connection kind.
const CONN_NONE = 0;
const CONN_CLOSE = 1;
const CONN_KEEP = 2;
const CONN_LINES = ["", "Connection: close\r\n", "Connection: keep-alive\r\n"];
const prefixes: (Uint8Array | undefined)[] = [];

let dateSecond = -1;
let dateLine = "";

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
  return currentDateLine().slice(6, -2);
}

function currentDateLine(): string {
  const sec = Math.floor(Date.now() / 1000);
  if (sec !== dateSecond) {
    dateSecond = sec;
    dateLine = `Date: ${new Date(sec * 1000).toUTCString()}\r\n`;
  }
  return dateLine;
}

function prefix(status: number, reason: string | undefined, conn: number): Uint8Array {
  if (reason === undefined) {
    const cached = prefixes[status * 3 + conn];
    if (cached !== undefined) return cached;
  }
  const text = reason ?? STATUS_TEXT[status] ?? "";
  const line = `HTTP/1.1 ${status} ${text}\r\n${CONN_LINES[conn]}`;
  const bytes = new Uint8Array(line.length);
  putHead(line, bytes, 0);
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
  if (reason !== undefined && NOT_FIELD_BYTE_RE.test(reason)) {
    throw new TypeError(`Invalid reason phrase ${quote(reason)}`);
  }
  if (opts.date !== undefined && NOT_FIELD_BYTE_RE.test(opts.date)) {
    throw new TypeError(`Invalid date ${quote(opts.date)}`);
  }
  const head = opts.head === true;
  const body = res.body;
  // A string body to send: first assumed ASCII (length = byte count), checked when encoded.
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

  const state: FieldState = { date: false, length: null };
  let fields = "";
  const headers = res.headers;
  if (headers !== undefined) {
    if (Array.isArray(headers)) {
      for (let i = 0; i < headers.length; i++) fields += field(headers[i][0], headers[i][1], state);
    } else {
      for (const name of Object.keys(headers)) fields += field(name, headers[name], state);
    }
  }
  if (!state.date) fields += opts.date === undefined ? currentDateLine() : `Date: ${opts.date}\r\n`;
  const conn = !opts.keepAlive ? CONN_CLOSE : opts.version === "1.0" ? CONN_KEEP : CONN_NONE;
  const pre = prefix(status, reason, conn);

  if (str !== null) {
    // Fast path: head and body both ASCII. Each is encoded into a region of exactly its
    // length, so a non-ASCII character shows as a short read (UTF-8 needs more bytes).
    const text = fields + lengthLine(status, false, str.length, state.length) + "\r\n";
    const out = alloc(pre.length + text.length + str.length);
    out.set(pre);
    const rest = out.subarray(pre.length);
    if (str.length <= 1024) { // one encoder call for the head and a small body
      if (encoder.encodeInto(text + str, rest).read === text.length + str.length) return out;
    } else if (
      encoder.encodeInto(text, rest.subarray(0, text.length)).read === text.length &&
      encoder.encodeInto(str, rest.subarray(text.length)).read === str.length
    ) return out;
    // Not ASCII: the body's UTF-8 bytes give its length; the head is written as Latin-1.
    bytes = encoder.encode(str);
  }
  const text = fields + lengthLine(status, head, bytes.length, state.length) + "\r\n";
  const bodyLen = head ? 0 : bytes.length;
  const out = alloc(pre.length + text.length + bodyLen);
  out.set(pre);
  putHead(text, out, pre.length);
  if (bodyLen > 0) out.set(bytes, pre.length + text.length);
  return out;
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

/** Validates one caller field; returns its line, or "" when the writer owns it. */
function field(name: string, value: string, state: FieldState): string {
  if (!TOKEN_RE.test(name)) throw new TypeError(`Invalid header name ${quote(name)}`);
  if (NOT_FIELD_BYTE_RE.test(value)) {
    throw new TypeError(`Invalid value for header "${name}": ${quote(value)}`);
  }
  const s = special(name);
  if (s === null) return `${name}: ${value}\r\n`;
  if (s === "date") {
    state.date = true;
    return `${name}: ${value}\r\n`;
  }
  if (s === "content-length") {
    if (!/^[0-9]+$/.test(value)) {
      throw new TypeError(`Invalid value for header "${name}": ${quote(value)}`);
    }
    state.length = value;
  }
  return "";
}

/** The `Content-Length` line: none for 204, the caller's for a bodiless HEAD/304. */
function lengthLine(status: number, head: boolean, len: number, caller: string | null): string {
  if (status === 204) return "";
  if (len === 0 && caller !== null && (head || status === 304)) {
    return `Content-Length: ${caller}\r\n`;
  }
  if (status === 304) return "";
  return `Content-Length: ${len}\r\n`;
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
