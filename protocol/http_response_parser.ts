/**
 * A strict, incremental HTTP/1.1 *response* parser (RFC 9112), the client-side twin of
 * {@linkcode HttpRequestParser}: a pure state machine over bytes that reports to an
 * injected {@linkcode HttpResponseSink}. It never touches a socket, a timer or the clock.
 * Used by the load generator and `ep call --http`, and by the tests that check what the
 * writer puts on the wire.
 *
 * Responses are matched to requests in order: call {@linkcode HttpResponseParser.sent}
 * for each request written (it needs the method: a response to `HEAD` has no body), then
 * push the bytes that come back. Bytes of a response nobody asked for are an error.
 *
 * How it reads:
 * - The head is read line by line, like the request parser: a line found whole in one
 *   chunk is parsed in place; a line cut by a chunk boundary is copied once into a line
 *   buffer bounded by the limits. The complete head lines of a chunk are decoded with one
 *   `TextDecoder` call and, when they are all ASCII, every string is a slice of it;
 *   otherwise each field is decoded on its own as a byte string (Latin-1).
 * - A body found whole in one chunk is handed over as a view of that chunk (valid until
 *   the next push: copy it to keep it); a body cut by chunk boundaries, a chunked body and
 *   a close-delimited body are copied into a buffer of their own.
 * - Running out of bytes is a normal return. Malformed input or a crossed limit emits one
 *   `error` ({@linkcode HttpResponseError}) and the parser ignores every later byte.
 *
 * What it accepts (everything else is an error):
 * - Status line `HTTP/1.1` or `HTTP/1.0`, SP, three digits from 100 to 599, SP, a reason
 *   phrase of HTAB / SP / VCHAR / obs-text (possibly empty), CRLF. The reason is a byte
 *   string, kept exactly.
 * - Field lines as in requests: a token name (lower-cased), a colon right after it,
 *   field-value bytes trimmed of SP/HTAB (byte strings), no obs-fold, only CRLF line ends.
 * - Framing (RFC 9112 §6.3): no body for a response to HEAD, for 1xx, 204 and 304
 *   (their `Content-Length`, if any, is only reported); else `Transfer-Encoding: chunked`
 *   alone (any other coding, or both `Transfer-Encoding` and `Content-Length`, is an
 *   error); else exactly one `Content-Length` of digits (a repeated field or a list is an
 *   error); else the body runs to the end of the connection ({@linkcode
 *   HttpResponseParser.end}).
 * - Interim responses (1xx other than 101) are reported to `interim` and the final
 *   response is awaited; `101 Switching Protocols` is an error (ep never asks to upgrade).
 * - `Connection: close` (or HTTP/1.0 without `keep-alive`, or a close-delimited body) ends
 *   the connection: bytes after that response are an error.
 *
 * Why one file of this size: head, body and chunked states are one state machine over one
 * line buffer (as in `http_parser.ts`); half of the length is the grammar written down.
 *
 * @module
 */
import { HttpResponseError } from "./errors.ts";
import { chunkExtensions, FIELD_VALUE, HEX, latin1, TOKEN } from "./_http_chars.ts";

/** Limits the response parser enforces, checked before the bytes are buffered. */
export interface HttpResponseLimits {
  /** Bytes of the status line, CRLF included. */
  maxStatusLine: number;
  /** Bytes of the header section (field lines with their CRLFs and the final CRLF). */
  maxHeaderBytes: number;
  /** Header field lines. The trailer section has the same two limits. */
  maxHeaderCount: number;
  /** Body bytes (decoded, for chunked). */
  maxBodyBytes: number;
  /** Chunk extension bytes (after the size digits), summed over one response. */
  maxChunkExtBytes: number;
}

/**
 * The limits used for any field not given to the {@linkcode HttpResponseParser}.
 *
 * @example
 * ```ts
 * import { DEFAULT_HTTP_RESPONSE_LIMITS } from "./http_response_parser.ts";
 * console.assert(DEFAULT_HTTP_RESPONSE_LIMITS.maxBodyBytes === 64 * 1024 * 1024);
 * ```
 */
export const DEFAULT_HTTP_RESPONSE_LIMITS: Readonly<HttpResponseLimits> = Object.freeze({
  maxStatusLine: 8192,
  maxHeaderBytes: 65536,
  maxHeaderCount: 256,
  maxBodyBytes: 64 * 1024 * 1024,
  maxChunkExtBytes: 4096,
});

/** A response head: the status line and the header section, framing decided. */
export interface HttpResponseHead {
  /** The protocol version of the response. */
  version: "1.0" | "1.1";
  /** The status code, 100–599. */
  status: number;
  /** The reason phrase, exactly as sent (a byte string; may be empty). */
  reason: string;
  /** Header fields in order: names lower-cased, values trimmed, byte strings (Latin-1). */
  headers: [string, string][];
  /** The `Content-Length` field's value; `null` when absent (or chunked). */
  contentLength: number | null;
  /** Whether the body is chunked. */
  chunked: boolean;
  /** Whether the connection stays open after this response. */
  keepAlive: boolean;
}

/** A whole response. */
export interface HttpResponse extends HttpResponseHead {
  /**
   * The body (de-chunked). It may be a view of the chunk passed to `push`: valid until
   * the next push; copy it (`body.slice()`) to keep it. Empty for a bodiless response.
   */
  body: Uint8Array;
  /** The trailer fields of a chunked body, same form as `headers`; empty otherwise. */
  trailers: [string, string][];
}

/**
 * Receives what the parser finds. Calls happen synchronously inside `push` or `end`; they
 * must not throw nor call `push` again.
 */
export interface HttpResponseSink {
  /** A final response's head is complete, before any body byte. */
  head?(h: HttpResponseHead): void;
  /** An interim (1xx) response; the final response for the same request follows. */
  interim?(h: HttpResponseHead): void;
  /** A response is complete. Responses arrive in the order of their requests. */
  response(r: HttpResponse): void;
  /** The input is malformed, over a limit or unexpected. Last call: the parser stops. */
  error(err: HttpResponseError): void;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

// States. Line states read up to a CRLF; the others count bytes.
const S_STATUS_LINE = 0;
const S_HEADER = 1;
const S_CHUNK_SIZE = 2;
const S_TRAILER = 3;
const S_BODY = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_CR = 6;
const S_CHUNK_LF = 7;
const S_UNTIL_CLOSE = 8;
const S_ENDED = 9;
const S_FAILED = 10;

/** Hex digits allowed in a chunk size (16 covers any size below 2^64). */
const MAX_CHUNK_DIGITS = 16;

const EMPTY = new Uint8Array(0);
const NO_FIELDS: [string, string][] = [];
const UTF8 = new TextDecoder();

/**
 * The index of the first LF at or after `from`, or -1. Head lines are short: a plain loop
 * beats the native `indexOf` (a call into C++) on them; long lines go native.
 */
function indexOfLF(b: Uint8Array, from: number): number {
  const near = Math.min(b.length, from + 128);
  for (let i = from; i < near; i++) if (b[i] === LF) return i;
  return near === b.length ? -1 : b.indexOf(LF, near);
}

/** Field names every response carries, lower-case, as constants (no string per response). */
const COMMON_NAMES = ["date", "content-length", "content-type", "connection", "transfer-encoding"]
  .map((n) => ({ name: n, bytes: Uint8Array.from(n, (c) => c.charCodeAt(0)) }));

/**
 * The lower-case constant for the field name `buf[start, end)` if it is a common one. The
 * name is a validated token: folding with `| 0x20` only maps A–Z to a–z among its bytes
 * that can match (`^` and `_` would fold to `~` and DEL, in no common name).
 */
function commonName(buf: Uint8Array, start: number, end: number): string | null {
  const n = end - start;
  for (let k = 0; k < COMMON_NAMES.length; k++) {
    const c = COMMON_NAMES[k];
    if (c.bytes.length !== n) continue;
    const b = c.bytes;
    let i = 0;
    while (i < n && (buf[start + i] | 0x20) === b[i]) i++; // ASCII case folding
    if (i === n) return c.name;
  }
  return null;
}

function isWs(b: number): boolean {
  return b === SP || b === HTAB;
}

/** Whether `value` (a field value) is, as a list, exactly the token `token` (any case). */
function listHas(value: string, token: string): boolean {
  const v = value.length === token.length ? value.toLowerCase() : null;
  if (v === token) return true;
  if (value.indexOf(",") === -1) return false;
  for (const part of value.split(",")) {
    let s = 0;
    let e = part.length;
    while (s < e && isWs(part.charCodeAt(s))) s++;
    while (e > s && isWs(part.charCodeAt(e - 1))) e--;
    if (e - s === token.length && part.slice(s, e).toLowerCase() === token) return true;
  }
  return false;
}

/**
 * Parses the HTTP/1.1 responses to the requests announced with {@linkcode sent}, from a
 * byte stream pushed in chunks of any size. See the module documentation for the rules.
 *
 * @example
 * ```ts
 * import { HttpResponseParser, type HttpResponse } from "./http_response_parser.ts";
 * const got: HttpResponse[] = [];
 * const parser = new HttpResponseParser({
 *   response: (r) => got.push({ ...r, body: r.body.slice() }),
 *   error: (e) => { throw e; },
 * });
 * parser.sent("GET");
 * parser.sent("HEAD");
 * const bytes = new TextEncoder().encode(
 *   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" +
 *   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
 * );
 * parser.push(bytes.subarray(0, 10)); // running out of bytes is fine
 * parser.push(bytes.subarray(10));
 * console.assert(got.length === 2 && got[0].body.length === 2 && got[1].body.length === 0);
 * console.assert(parser.idle);
 * ```
 */
export class HttpResponseParser {
  readonly #sink: HttpResponseSink;
  readonly #limits: HttpResponseLimits;
  #state = S_STATUS_LINE;

  // Requests waiting for their response: true for HEAD.
  #heads: boolean[] = [];
  #headsAt = 0;

  // The line being read when a chunk ended inside it.
  #line: Uint8Array = EMPTY;
  #pending = 0;

  // The complete head lines of the current chunk, decoded at once (see the request
  // parser). Valid during one push only.
  #win = "";
  #winAscii = false;
  #winBuf: Uint8Array | null = null;
  #winStart = 0;
  #winEnd = 0;
  // The LFs of the window's lines after the status line, found while looking for its end.
  #lfs = new Int32Array(64);
  #lfCount = 0;
  #lfNext = 0;

  // Head of the current response.
  #version: "1.0" | "1.1" = "1.1";
  #status = 0;
  #reason = "";
  #headers: [string, string][] = [];
  #headerBytes = 0;
  #contentLength: number | null = null;
  #clCount = 0;
  #te: string | null = null;
  #connClose = false;
  #connKeepAlive = false;

  // Body of the current response.
  #res: HttpResponse | null = null;
  #body: Uint8Array = EMPTY;
  #bodyLen = 0;
  #remaining = 0;
  #extBytes = 0;
  #trailers: [string, string][] | null = null;
  #trailerBytes = 0;
  #trailerCount = 0;

  /**
   * Creates a parser reporting to `sink`. Limits not given take their
   * {@linkcode DEFAULT_HTTP_RESPONSE_LIMITS} value; a limit that is not a non-negative
   * safe integer throws a `RangeError`.
   */
  constructor(sink: HttpResponseSink, limits?: Partial<HttpResponseLimits>) {
    this.#sink = sink;
    const l: HttpResponseLimits = { ...DEFAULT_HTTP_RESPONSE_LIMITS };
    if (limits) {
      for (const k of Object.keys(DEFAULT_HTTP_RESPONSE_LIMITS) as (keyof HttpResponseLimits)[]) {
        const v = limits[k];
        if (v !== undefined) {
          if (!Number.isSafeInteger(v) || v < 0) {
            throw new RangeError(`Invalid HTTP response limit ${k}: "${v}"`);
          }
          l[k] = v;
        }
      }
    }
    this.#limits = l;
  }

  /**
   * Announces a request written to the peer, in order; `method` decides whether its
   * response has a body (`HEAD`: never).
   */
  sent(method: string): void {
    if (this.#headsAt > 0 && this.#headsAt === this.#heads.length) {
      this.#heads.length = 0;
      this.#headsAt = 0;
    }
    this.#heads.push(method === "HEAD");
  }

  /** Requests announced with {@linkcode sent} whose response is not complete yet. */
  get waiting(): number {
    return this.#heads.length - this.#headsAt;
  }

  /** True when no byte of a next response is held (between responses), or when stopped. */
  get idle(): boolean {
    const s = this.#state;
    if (s === S_ENDED || s === S_FAILED) return true;
    return s === S_STATUS_LINE && this.#pending === 0;
  }

  /** True after an `error` was emitted; later bytes are ignored. */
  get failed(): boolean {
    return this.#state === S_FAILED;
  }

  /** True after a response that ends the connection; later bytes are an error. */
  get ended(): boolean {
    return this.#state === S_ENDED;
  }

  /**
   * Consumes a chunk of bytes. Emits zero or more events; never throws for malformed or
   * partial input. A body handed to the sink may be a view of `chunk`.
   */
  push(chunk: Uint8Array): void {
    try {
      this.#consume(chunk);
    } finally {
      this.#winBuf = null; // never trust a window across pushes (buffers get reused)
      this.#win = "";
      this.#lfCount = 0;
    }
  }

  /**
   * The peer closed the connection: completes a body delimited by the close, or reports a
   * response cut short or never sent (an announced request still waiting). Later bytes are
   * an error.
   */
  end(): void {
    const s = this.#state;
    if (s === S_FAILED || s === S_ENDED) return;
    if (s === S_UNTIL_CLOSE) {
      this.#finish();
      this.#state = S_ENDED;
      return;
    }
    if (s === S_STATUS_LINE && this.#pending === 0) {
      if (this.waiting > 0) return this.#fail("Connection closed before the response");
      this.#state = S_ENDED;
      return;
    }
    this.#fail("Connection closed inside a response");
  }

  #consume(chunk: Uint8Array): void {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      switch (this.#state) {
        case S_STATUS_LINE:
        case S_HEADER:
        case S_CHUNK_SIZE:
        case S_TRAILER:
          pos = this.#readLine(chunk, pos);
          break;
        case S_BODY: {
          const n = Math.min(this.#remaining, len - pos);
          if (this.#bodyLen === 0 && n === this.#remaining) {
            // The whole body is in this chunk: hand over a view.
            this.#body = chunk.subarray(pos, pos + n);
            this.#bodyLen = n;
          } else {
            if (this.#body.length === 0) this.#body = new Uint8Array(this.#remaining);
            this.#body.set(chunk.subarray(pos, pos + n), this.#bodyLen);
            this.#bodyLen += n;
          }
          this.#remaining -= n;
          pos += n;
          if (this.#remaining === 0) this.#finish();
          break;
        }
        case S_CHUNK_DATA: {
          const n = Math.min(this.#remaining, len - pos);
          this.#body.set(chunk.subarray(pos, pos + n), this.#bodyLen);
          this.#bodyLen += n;
          this.#remaining -= n;
          pos += n;
          if (this.#remaining === 0) this.#state = S_CHUNK_CR;
          break;
        }
        case S_CHUNK_CR:
          if (chunk[pos] !== CR) return this.#fail("Chunk data not followed by CRLF");
          this.#state = S_CHUNK_LF;
          pos++;
          break;
        case S_CHUNK_LF:
          if (chunk[pos] !== LF) return this.#fail("Chunk data not followed by CRLF");
          this.#state = S_CHUNK_SIZE;
          pos++;
          break;
        case S_UNTIL_CLOSE: {
          const n = len - pos;
          const max = this.#limits.maxBodyBytes;
          if (n > max - this.#bodyLen) return this.#fail(`Response body exceeds ${max} bytes`);
          this.#grow(this.#bodyLen + n);
          this.#body.set(chunk.subarray(pos), this.#bodyLen);
          this.#bodyLen += n;
          pos = len;
          break;
        }
        case S_ENDED:
          return this.#fail("Data after the response that ended the connection");
        default: // failed: ignore
          return;
      }
    }
  }

  /** Makes the owned body buffer hold at least `need` bytes (doubling, bounded). */
  #grow(need: number): void {
    if (need <= this.#body.length) return;
    const max = this.#limits.maxBodyBytes;
    const grown = new Uint8Array(Math.min(max, Math.max(need, this.#body.length * 2, 1024)));
    grown.set(this.#body.subarray(0, this.#bodyLen));
    this.#body = grown;
  }

  // --- lines ------------------------------------------------------------------------

  #lineLimit(): number {
    const l = this.#limits;
    switch (this.#state) {
      case S_STATUS_LINE:
        return l.maxStatusLine;
      case S_HEADER:
        return l.maxHeaderBytes - this.#headerBytes;
      case S_CHUNK_SIZE:
        return MAX_CHUNK_DIGITS + 2 + l.maxChunkExtBytes - this.#extBytes;
      default:
        return l.maxHeaderBytes - this.#trailerBytes;
    }
  }

  #lineTooLong(): void {
    const l = this.#limits;
    switch (this.#state) {
      case S_STATUS_LINE:
        return this.#fail(`Status line exceeds ${l.maxStatusLine} bytes`);
      case S_HEADER:
        return this.#fail(`Header section exceeds ${l.maxHeaderBytes} bytes`);
      case S_CHUNK_SIZE:
        return this.#fail(`Chunk extensions exceed ${l.maxChunkExtBytes} bytes`);
      default:
        return this.#fail(`Trailer section exceeds ${l.maxHeaderBytes} bytes`);
    }
  }

  /** Reads (part of) a line from `chunk` at `pos`; returns the position after it. */
  #readLine(chunk: Uint8Array, pos: number): number {
    if (this.#state === S_STATUS_LINE && this.#pending === 0 && this.waiting === 0) {
      this.#fail("Response without a request");
      return chunk.length;
    }
    let lf: number;
    if (chunk === this.#winBuf && this.#lfNext < this.#lfCount && this.#state === S_HEADER) {
      // The window's LFs were recorded in order: the next one at or after `pos`.
      const lfs = this.#lfs;
      let k = this.#lfNext;
      while (k < this.#lfCount && lfs[k] < pos) k++;
      this.#lfNext = k;
      lf = k < this.#lfCount ? lfs[k] : indexOfLF(chunk, pos);
    } else lf = indexOfLF(chunk, pos);
    const end = lf === -1 ? chunk.length : lf;
    const size = this.#pending + (end - pos) + 1; // the line with its LF, at the least
    if (size > this.#lineLimit()) {
      this.#lineTooLong();
      return chunk.length;
    }
    if (lf === -1) {
      this.#keep(chunk, pos, end);
      return chunk.length;
    }
    let buf = chunk;
    let start = pos;
    let stop = end;
    if (this.#pending === 0) {
      if (this.#state === S_STATUS_LINE && lf > pos + 1) this.#decodeHead(chunk, pos, lf);
    } else {
      this.#keep(chunk, pos, end);
      buf = this.#line;
      start = 0;
      stop = this.#pending;
      this.#pending = 0;
    }
    if (stop === start || buf[stop - 1] !== CR) {
      this.#fail("Line ends with a bare LF");
      return chunk.length;
    }
    this.#onLine(buf, start, stop - 1, size);
    return lf + 1;
  }

  /** Appends `chunk[from, to)` to the partial line buffer (grows by doubling, bounded). */
  #keep(chunk: Uint8Array, from: number, to: number): void {
    const need = this.#pending + (to - from);
    if (need > this.#line.length) {
      const l = this.#limits;
      const max = Math.max(
        l.maxStatusLine,
        l.maxHeaderBytes,
        MAX_CHUNK_DIGITS + 2 + l.maxChunkExtBytes,
      );
      const grown = new Uint8Array(Math.min(max, Math.max(need, 256, this.#line.length * 2)));
      grown.set(this.#line.subarray(0, this.#pending));
      this.#line = grown;
    }
    this.#line.set(chunk.subarray(from, to), this.#pending);
    this.#pending = need;
  }

  /**
   * Finds the complete head lines of `chunk` after the status line `[pos, lf]` (up to the
   * empty line, the head limits, 64 lines or the chunk's end), records their LFs, and
   * decodes them all with one `TextDecoder` call.
   */
  #decodeHead(chunk: Uint8Array, pos: number, lf: number): void {
    const l = this.#limits;
    const stop = Math.min(chunk.length, pos + l.maxStatusLine + l.maxHeaderBytes);
    const lfs = this.#lfs;
    let n = 0;
    let end = lf + 1;
    while (end < stop && n < lfs.length) {
      const next = indexOfLF(chunk, end);
      if (next === -1 || next >= stop) break;
      lfs[n++] = next;
      const empty = next === end + 1 && chunk[end] === CR;
      end = next + 1;
      if (empty) break;
    }
    this.#lfCount = n;
    this.#lfNext = 0;
    const text = UTF8.decode(chunk.subarray(pos, end));
    // One char per byte and no replacement char: every byte was ASCII.
    this.#winAscii = text.length === end - pos && text.indexOf("\ufffd") === -1;
    this.#win = text;
    this.#winBuf = chunk;
    this.#winStart = pos;
    this.#winEnd = end;
  }

  /** The string of the validated bytes `buf[start, end)`: a slice of the window if it can. */
  #str(buf: Uint8Array, start: number, end: number): string {
    if (
      buf === this.#winBuf && this.#winAscii && start >= this.#winStart && end <= this.#winEnd
    ) {
      return this.#win.slice(start - this.#winStart, end - this.#winStart);
    }
    return latin1(buf, start, end);
  }

  /** A complete line `buf[start, end)` (CRLF excluded) of `size` bytes (CRLF included). */
  #onLine(buf: Uint8Array, start: number, end: number, size: number): void {
    switch (this.#state) {
      case S_STATUS_LINE:
        if (this.#statusLine(buf, start, end)) this.#state = S_HEADER;
        return;
      case S_HEADER:
        this.#headerBytes += size;
        if (start === end) return this.#endHead();
        if (this.#headers.length >= this.#limits.maxHeaderCount) {
          return this.#fail(`More than ${this.#limits.maxHeaderCount} header fields`);
        }
        return this.#headerLine(buf, start, end);
      case S_CHUNK_SIZE:
        return this.#chunkSize(buf, start, end);
      default: { // S_TRAILER
        this.#trailerBytes += size;
        if (start === end) return this.#finish();
        if (++this.#trailerCount > this.#limits.maxHeaderCount) {
          return this.#fail(`More than ${this.#limits.maxHeaderCount} trailer fields`);
        }
        const f = this.#field(buf, start, end);
        if (f !== null) (this.#trailers ??= []).push(f);
      }
    }
  }

  // --- status line ------------------------------------------------------------------

  /** `HTTP/1.x SP 3DIGIT SP reason` (RFC 9112 §4). */
  #statusLine(buf: Uint8Array, start: number, end: number): boolean {
    const i = start;
    if (
      end - i < 13 || buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 ||
      buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f || buf[i + 5] !== 0x31 ||
      buf[i + 6] !== 0x2e || (buf[i + 7] !== 0x31 && buf[i + 7] !== 0x30) ||
      buf[i + 8] !== SP || buf[i + 12] !== SP
    ) {
      this.#fail("Malformed status line");
      return false;
    }
    const d0 = buf[i + 9] - 0x30;
    const d1 = buf[i + 10] - 0x30;
    const d2 = buf[i + 11] - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) {
      this.#fail("Malformed status line: invalid status code");
      return false;
    }
    for (let j = i + 13; j < end; j++) {
      if (FIELD_VALUE[buf[j]] === 0) {
        this.#fail("Malformed status line: invalid character in the reason phrase");
        return false;
      }
    }
    this.#version = buf[i + 7] === 0x31 ? "1.1" : "1.0";
    this.#status = d0 * 100 + d1 * 10 + d2;
    this.#reason = this.#str(buf, i + 13, end);
    return true;
  }

  // --- fields -----------------------------------------------------------------------

  /** Parses `name: OWS value OWS`; returns the lower-cased name and trimmed value. */
  #field(buf: Uint8Array, start: number, end: number): [string, string] | null {
    if (isWs(buf[start])) {
      this.#fail("Obsolete line folding or leading whitespace in a field line");
      return null;
    }
    let i = start;
    let upper = 0;
    for (let t = 0; i < end && (t = TOKEN[buf[i]]) !== 0; i++) upper |= t;
    if (i === start || i === end || buf[i] !== COLON) {
      this.#fail("Invalid field name");
      return null;
    }
    let vs = i + 1;
    while (vs < end && isWs(buf[vs])) vs++;
    let ve = end;
    while (ve > vs && isWs(buf[ve - 1])) ve--;
    for (let j = vs; j < ve; j++) {
      if (FIELD_VALUE[buf[j]] === 0) {
        this.#fail("Invalid character in a field value");
        return null;
      }
    }
    let name = commonName(buf, start, i);
    if (name === null) {
      name = this.#str(buf, start, i);
      if (upper & 2) name = name.toLowerCase();
    }
    return [name, this.#str(buf, vs, ve)];
  }

  #headerLine(buf: Uint8Array, start: number, end: number): void {
    const f = this.#field(buf, start, end);
    if (f === null) return;
    this.#headers.push(f);
    const [name, value] = f;
    switch (name) {
      case "content-length": {
        if (++this.#clCount > 1) return this.#fail("Multiple Content-Length values");
        let n = 0;
        for (let k = 0; k < value.length; k++) {
          const c = value.charCodeAt(k) - 0x30;
          if (c < 0 || c > 9) return this.#fail("Invalid Content-Length");
          n = n * 10 + c;
        }
        if (value.length === 0) return this.#fail("Invalid Content-Length");
        if (n > Number.MAX_SAFE_INTEGER) return this.#fail("Content-Length too large");
        this.#contentLength = n;
        return;
      }
      case "transfer-encoding":
        this.#te = this.#te === null ? value : `${this.#te},${value}`;
        return;
      case "connection":
        if (listHas(value, "close")) this.#connClose = true;
        if (listHas(value, "keep-alive")) this.#connKeepAlive = true;
    }
  }

  /** The empty line after the header section: decide the framing, emit events. */
  #endHead(): void {
    const status = this.#status;
    if (status < 200) {
      if (status === 101) return this.#fail("Unexpected 101 Switching Protocols");
      const interim: HttpResponseHead = {
        version: this.#version,
        status,
        reason: this.#reason,
        headers: this.#headers,
        contentLength: this.#contentLength,
        chunked: false,
        keepAlive: true,
      };
      this.#reset();
      this.#state = S_STATUS_LINE;
      this.#sink.interim?.(interim);
      return;
    }
    const head = this.#heads[this.#headsAt];
    let chunked = false;
    if (this.#te !== null) {
      if (this.#contentLength !== null) {
        return this.#fail("Both Content-Length and Transfer-Encoding");
      }
      const te = this.#te;
      let s = 0;
      let e = te.length;
      while (s < e && isWs(te.charCodeAt(s))) s++;
      while (e > s && isWs(te.charCodeAt(e - 1))) e--;
      if (e - s !== 7 || te.slice(s, e).toLowerCase() !== "chunked") {
        return this.#fail(`Unsupported Transfer-Encoding "${te}"`);
      }
      chunked = true;
    }
    const bodiless = head || status === 204 || status === 304;
    const cl = this.#contentLength;
    if (!bodiless && cl !== null && cl > this.#limits.maxBodyBytes) {
      return this.#fail(`Response body exceeds ${this.#limits.maxBodyBytes} bytes`);
    }
    const untilClose = !bodiless && !chunked && cl === null;
    const keepAlive = !untilClose && !this.#connClose &&
      (this.#version === "1.1" || this.#connKeepAlive);
    const res: HttpResponse = {
      version: this.#version,
      status,
      reason: this.#reason,
      headers: this.#headers,
      contentLength: this.#contentLength,
      chunked: chunked && !bodiless,
      keepAlive,
      body: EMPTY,
      trailers: NO_FIELDS,
    };
    this.#res = res;
    this.#sink.head?.(res);
    if (this.#state === S_FAILED) return;
    if (bodiless || (cl === 0 && !chunked)) return this.#finish();
    this.#body = EMPTY;
    if (chunked) this.#state = S_CHUNK_SIZE;
    else if (untilClose) this.#state = S_UNTIL_CLOSE;
    else {
      this.#state = S_BODY;
      this.#remaining = cl as number;
    }
  }

  // --- chunked ----------------------------------------------------------------------

  /** `chunk-size [ chunk-ext ]` (RFC 9112 §7.1). */
  #chunkSize(buf: Uint8Array, start: number, end: number): void {
    let i = start;
    let size = 0;
    for (let h = 0; i < end && (h = HEX[buf[i]]) >= 0; i++) size = size * 16 + h;
    const digits = i - start;
    if (digits === 0 || digits > MAX_CHUNK_DIGITS) return this.#fail("Invalid chunk size");
    const max = this.#limits.maxBodyBytes;
    if (size > max - this.#bodyLen) return this.#fail(`Response body exceeds ${max} bytes`);
    if (i < end) {
      if (!chunkExtensions(buf, i, end)) return this.#fail("Invalid chunk extension");
      this.#extBytes += end - i;
      if (this.#extBytes > this.#limits.maxChunkExtBytes) {
        return this.#fail(`Chunk extensions exceed ${this.#limits.maxChunkExtBytes} bytes`);
      }
    }
    if (size === 0) {
      this.#state = S_TRAILER;
      return;
    }
    this.#grow(this.#bodyLen + size);
    this.#remaining = size;
    this.#state = S_CHUNK_DATA;
  }

  // --- end of a response ------------------------------------------------------------

  #finish(): void {
    const res = this.#res as HttpResponse;
    const len = this.#bodyLen;
    if (len > 0) res.body = len === this.#body.length ? this.#body : this.#body.subarray(0, len);
    if (this.#trailers !== null) res.trailers = this.#trailers;
    this.#headsAt++;
    this.#reset();
    this.#state = res.keepAlive ? S_STATUS_LINE : S_ENDED;
    this.#sink.response(res);
  }

  #reset(): void {
    this.#headers = [];
    this.#headerBytes = 0;
    this.#contentLength = null;
    this.#clCount = 0;
    this.#te = null;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#res = null;
    this.#body = EMPTY;
    this.#bodyLen = 0;
    this.#remaining = 0;
    this.#extBytes = 0;
    this.#trailers = null;
    this.#trailerBytes = 0;
    this.#trailerCount = 0;
  }

  #fail(message: string): void {
    this.#reset();
    this.#pending = 0;
    this.#line = EMPTY;
    this.#state = S_FAILED;
    this.#sink.error(new HttpResponseError(message));
  }
}
