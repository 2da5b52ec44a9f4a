/**
 * A strict, incremental HTTP/1.1 request parser (RFC 9112): a pure state machine over
 * bytes that reports to an injected {@linkcode HttpSink}. It never touches a socket, a timer
 * or the clock; the connection layer owns those and the order of pipelined answers.
 *
 * How it reads:
 * - The head is read line by line. A line found whole in one chunk is parsed in place
 *   (a view, no copy); a line cut by a chunk boundary is copied once into a line buffer
 *   that grows up to the limit, and scanning resumes where it stopped. Each finished line
 *   is checked with byte tables and only then are its fields turned into strings, so
 *   nothing is re-scanned and leftovers are never concatenated.
 * - Strings: the complete head lines found in a chunk are decoded with one `TextDecoder`
 *   call and, when they are all ASCII, every method, target, name and value is a slice
 *   of that string (one native call per head instead of one per field); otherwise, and
 *   for lines that crossed a chunk boundary, each field is decoded on its own.
 * - A `Content-Length` body is copied once into a buffer of exactly that size; a chunked
 *   body into a buffer that grows (doubling), bounded by `maxBodyBytes`.
 * - Running out of bytes is a normal return. Malformed input or a crossed limit emits one
 *   `error` (an {@linkcode HttpError}, always with `close: true`: framing is lost) and the
 *   parser ignores every later byte.
 *
 * Choices made where RFC 9112/9110 leave latitude (all refusals close the connection):
 * - Only CRLF ends a line: a bare LF or bare CR anywhere in the head, chunk lines or
 *   trailers is 400. Up to `maxEmptyLines` empty lines (CRLF) before a request line are
 *   skipped (RFC 9112 §2.2); more is 400.
 * - Versions: `HTTP/1.0` and `HTTP/1.1` only. Another well-formed `HTTP/<digits>[.<digits>]`
 *   (`HTTP/2.0`, `HTTP/1.2`, `HTTP/2`) is 505; anything else is 400. The name is
 *   case-sensitive (`http/1.1` is 400).
 * - Request targets are visible ASCII without `#`; they are not percent-decoded nor
 *   normalised (`path` is raw). Absolute-form accepts `http` and `https` only, refuses
 *   userinfo, and its authority replaces the `Host` header as `host` (a `Host` header is
 *   still required for HTTP/1.1). Asterisk-form only for `OPTIONS`. `CONNECT` is refused
 *   with 501 (authority-form) or 400 (any other form).
 * - Field values are decoded as byte strings (Latin-1, lossless), names lower-cased,
 *   values trimmed of SP/HTAB, order and duplicates kept. Obs-fold is 400.
 * - `Content-Length`: exactly one field with one `1*DIGIT` value; a repeated field or a
 *   list (`5, 5`), even with identical values, is 400. Over `maxBodyBytes` is 413 as soon
 *   as the field line is read.
 * - `Transfer-Encoding` (all field lines form one list, names case-insensitive): exactly
 *   `chunked` is accepted. `chunked` not last, `chunked` twice, empty elements, invalid
 *   tokens, `identity` alone, or any coding without a final `chunked` is 400. Other valid
 *   codings before a final `chunked` (`gzip, chunked`) are 501 (not implemented). With
 *   `Content-Length`, or in an HTTP/1.0 request, it is 400.
 * - Chunked: 1–16 hex digits, no sign or whitespace; BWS is allowed only before `;`.
 *   Extensions are checked against the grammar (`;name[=token|"quoted"]`) and their bytes
 *   (everything after the digits, summed over the message) are bounded by
 *   `maxChunkExtBytes` (413). Trailers follow the header rules and limits (their own
 *   count and byte budget); they are kept apart in `trailers`, never merged into
 *   `headers`.
 * - `Connection` is a case-insensitive token list; `close` wins over `keep-alive`. After a
 *   request that does not keep the connection alive the parser stops (bytes that follow
 *   are ignored, {@linkcode HttpRequestParser.ended} turns true), as RFC 9112 §9.6 asks.
 * - `Expect`: only `100-continue` (case-insensitive) is honoured; any other expectation
 *   is 417. In HTTP/1.0 requests `Expect` is ignored (RFC 9110 §10.1.1).
 * - `Host`: several fields are 400 in any version; the value must be `uri-host [ ":" port ]`
 *   (RFC 3986: a bracketed IPv6 or IPvFuture literal, or a reg-name, which covers IPv4;
 *   the port digits only, possibly empty; no userinfo, zone id, whitespace or non-ASCII)
 *   or empty; anything else is 400 (RFC 9112 §3.2). An absolute-form target's authority
 *   follows the same rule (and may not be empty).
 *
 * Why one file of this size: the request line, fields, body and chunked states are one
 * state machine sharing one line buffer and limit budget; about a third is the grammar and
 * the choices above, written down.
 *
 * @module
 */
import { HttpError } from "./errors.ts";
import {
  chunkExtensions,
  FIELD_VALUE,
  HEX,
  HOST,
  isHost,
  latin1,
  TARGET,
  TOKEN,
} from "./_http_chars.ts";

/** Limits the parser enforces. Every limit is checked before the bytes are buffered. */
export interface HttpLimits {
  /** Bytes of the request line, CRLF included. Over it: 414, detected before the CRLF. */
  maxRequestLine: number;
  /** Bytes of the header section (field lines with their CRLFs and the final CRLF). 431. */
  maxHeaderBytes: number;
  /** Header field lines. Over it: 431. The trailer section has the same two limits. */
  maxHeaderCount: number;
  /** Body bytes (decoded, for chunked). Over it: 413. */
  maxBodyBytes: number;
  /** Chunk extension bytes (after the size digits), summed over one message. Over it: 413. */
  maxChunkExtBytes: number;
  /** Empty lines tolerated before a request line. Over it: 400. */
  maxEmptyLines: number;
}

/**
 * The limits used for any field not given to the {@linkcode HttpRequestParser}.
 *
 * @example
 * ```ts
 * import { DEFAULT_HTTP_LIMITS } from "./http_parser.ts";
 * console.assert(DEFAULT_HTTP_LIMITS.maxBodyBytes === 1024 * 1024);
 * ```
 */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  maxRequestLine: 8192,
  maxHeaderBytes: 16384,
  maxHeaderCount: 100,
  maxBodyBytes: 1024 * 1024,
  maxChunkExtBytes: 4096,
  maxEmptyLines: 8,
});

/** A request head: the request line and the header section, framing decided. */
export interface HttpRequestHead {
  /** The method token, case kept (`GET`). */
  method: string;
  /** The request target as sent (`/p?q`, `http://h/p?q`, `*`). */
  target: string;
  /** The path of the target, raw (not percent-decoded); `*` for asterisk-form. */
  path: string;
  /** The query of the target without `?`; empty when there is none. */
  query: string;
  /** The protocol version. */
  version: "1.0" | "1.1";
  /** Header fields in order: names lower-cased, values trimmed, byte strings (Latin-1). */
  headers: [string, string][];
  /** Whether the connection stays open after this request. */
  keepAlive: boolean;
  /** Whether the client waits for `100 Continue` before sending the body. */
  expectContinue: boolean;
  /** The `Content-Length`; `null` when chunked or when there is no body framing. */
  contentLength: number | null;
  /** Whether the body is chunked. */
  chunked: boolean;
  /** The authority: from an absolute-form target, else the `Host` header; `null` if none. */
  host: string | null;
}

/** A whole request. */
export interface HttpRequest extends HttpRequestHead {
  /**
   * The body (de-chunked), owned by the receiver. An empty body is one shared zero-length
   * array (allocating an `ArrayBuffer` per bodiless request costs more than parsing it).
   */
  body: Uint8Array;
  /** The trailer fields of a chunked body, same form as `headers`; empty otherwise. */
  trailers: [string, string][];
}

/**
 * Receives what the parser finds. Calls happen synchronously inside
 * {@linkcode HttpRequestParser.push}; they must not throw nor call `push` again.
 */
export interface HttpSink {
  /**
   * The head is complete, before any body byte (lets the server send `100 Continue`).
   * Called for every request; the same object is completed and passed to `request`.
   */
  head(h: HttpRequestHead): void;
  /** A request is complete. Pipelined requests arrive in order. */
  request(r: HttpRequest): void;
  /** The input is malformed or over a limit. Last call: the parser stops. */
  error(err: HttpError): void;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;
const SLASH = 0x2f;
const QMARK = 0x3f;

// States. Line states read up to a CRLF; the others count bytes.
const S_REQUEST_LINE = 0;
const S_HEADER = 1;
const S_CHUNK_SIZE = 2;
const S_TRAILER = 3;
const S_BODY = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_CR = 6;
const S_CHUNK_LF = 7;
const S_ENDED = 8;
const S_FAILED = 9;

/** Hex digits allowed in a chunk size (16 covers any size below 2^64). */
const MAX_CHUNK_DIGITS = 16;

const EMPTY_BODY = new Uint8Array(0);
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

function isWs(b: number): boolean {
  return b === SP || b === HTAB;
}

function checkLimit(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`Invalid HTTP limit ${name}: "${v}"`);
  }
}

/**
 * Splits a comma-separated field value into lower-cased elements trimmed of OWS (SP and
 * HTAB only: `String.prototype.trim` would also drop U+00A0 and let `chunked\xa0` pass).
 * Empty elements are kept as `""` so that callers can refuse them.
 */
function listElements(value: string): string[] {
  const parts = value.split(",");
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    let s = 0;
    let e = p.length;
    while (s < e && isWs(p.charCodeAt(s))) s++;
    while (e > s && isWs(p.charCodeAt(e - 1))) e--;
    parts[i] = p.slice(s, e).toLowerCase();
  }
  return parts;
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff || TOKEN[c] === 0) return false;
  }
  return true;
}

/**
 * Parses HTTP/1.1 requests from a byte stream pushed in chunks of any size.
 *
 * Events go to the {@linkcode HttpSink}: `head` then `request` for each request, in
 * order, or one final `error`. See the module documentation for every rule and limit.
 *
 * @example
 * ```ts
 * import { HttpRequestParser, type HttpRequest } from "./http_parser.ts";
 * const got: HttpRequest[] = [];
 * const parser = new HttpRequestParser({
 *   head: () => {},
 *   request: (r) => got.push(r),
 *   error: (e) => { throw e; },
 * });
 * const bytes = new TextEncoder().encode("GET /user/1?x=2 HTTP/1.1\r\nHost: a\r\n\r\n");
 * parser.push(bytes.subarray(0, 10)); // running out of bytes is fine
 * parser.push(bytes.subarray(10));
 * console.assert(got[0].path === "/user/1" && got[0].query === "x=2" && parser.idle);
 * ```
 */
export class HttpRequestParser {
  readonly #sink: HttpSink;
  readonly #limits: HttpLimits;
  #state = S_REQUEST_LINE;

  // The line being read when a chunk ended inside it.
  #line: Uint8Array = EMPTY_BODY;
  #pending = 0;

  // The complete head lines of the current chunk, decoded at once: fields are then
  // slices of it (when it is all ASCII, so that byte offsets are string offsets). The LF
  // positions found on the way are kept so that lines are not searched twice. Valid during
  // one push only (the caller may reuse its buffer).
  #win = "";
  #winAscii = false;
  #winBuf: Uint8Array | null = null;
  #winStart = 0;
  #winEnd = 0;
  #lfs = new Int32Array(128);
  #lfCount = 0;
  #lfNext = 0;

  // Head of the current request.
  #emptyLines = 0;
  #method = "";
  #target = "";
  #path = "";
  #query = "";
  #version: "1.0" | "1.1" = "1.1";
  #authority: string | null = null; // from an absolute-form target
  #headers: [string, string][] = [];
  #headerBytes = 0;
  #host: string | null = null;
  #hostCount = 0;
  #contentLength: number | null = null;
  #te: string | null = null;
  #connClose = false;
  #connKeepAlive = false;
  #expect: string | null = null;

  // Body of the current request.
  #req: HttpRequest | null = null;
  #body: Uint8Array = EMPTY_BODY;
  #bodyLen = 0;
  #remaining = 0;
  #extBytes = 0;
  #trailers: [string, string][] | null = null;
  #trailerBytes = 0;
  #trailerCount = 0;

  /**
   * Creates a parser reporting to `sink`. Limits not given take their
   * {@linkcode DEFAULT_HTTP_LIMITS} value; a limit that is not a non-negative safe
   * integer throws a `RangeError`.
   */
  constructor(sink: HttpSink, limits?: Partial<HttpLimits>) {
    this.#sink = sink;
    const l: HttpLimits = { ...DEFAULT_HTTP_LIMITS };
    if (limits) {
      for (const k of Object.keys(DEFAULT_HTTP_LIMITS) as (keyof HttpLimits)[]) {
        const v = limits[k];
        if (v !== undefined) {
          checkLimit(k, v);
          l[k] = v;
        }
      }
    }
    this.#limits = l;
  }

  /**
   * True when no byte of a next request is held: between requests (the keep-alive idle
   * time) rather than inside one (the header/body read time). Also true once the parser
   * has ended or failed.
   */
  get idle(): boolean {
    const s = this.#state;
    if (s === S_ENDED || s === S_FAILED) return true;
    return s === S_REQUEST_LINE && this.#pending === 0 && this.#emptyLines === 0;
  }

  /** True after an `error` was emitted; later bytes are ignored. */
  get failed(): boolean {
    return this.#state === S_FAILED;
  }

  /**
   * True after a request that does not keep the connection alive (`keepAlive: false`);
   * later bytes are ignored.
   */
  get ended(): boolean {
    return this.#state === S_ENDED;
  }

  /**
   * Bytes of the unfinished request held in buffers: a partial line plus the body bytes
   * received so far. Bounded by the line limits plus `maxBodyBytes`.
   */
  get buffered(): number {
    return this.#pending + this.#bodyLen;
  }

  /**
   * Consumes a chunk of bytes. The chunk is not kept: whatever must outlive the call is
   * copied. Emits zero or more events; never throws for malformed or partial input.
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

  #consume(chunk: Uint8Array): void {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      switch (this.#state) {
        case S_REQUEST_LINE:
        case S_HEADER:
        case S_CHUNK_SIZE:
        case S_TRAILER:
          pos = this.#readLine(chunk, pos);
          break;
        case S_BODY: {
          const n = Math.min(this.#remaining, len - pos);
          this.#body.set(chunk.subarray(pos, pos + n), this.#bodyLen);
          this.#bodyLen += n;
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
          if (chunk[pos] !== CR) return this.#fail(400, "Chunk data not followed by CRLF");
          this.#state = S_CHUNK_LF;
          pos++;
          break;
        case S_CHUNK_LF:
          if (chunk[pos] !== LF) return this.#fail(400, "Chunk data not followed by CRLF");
          this.#state = S_CHUNK_SIZE;
          pos++;
          break;
        default: // ended or failed: ignore
          return;
      }
    }
  }

  // --- lines ------------------------------------------------------------------------

  /** The most bytes (CRLF included) the current line may take, and the status if over. */
  #lineLimit(): number {
    const l = this.#limits;
    switch (this.#state) {
      case S_REQUEST_LINE:
        return l.maxRequestLine;
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
      case S_REQUEST_LINE:
        return this.#fail(414, `Request line exceeds ${l.maxRequestLine} bytes`);
      case S_HEADER:
        return this.#fail(431, `Header section exceeds ${l.maxHeaderBytes} bytes`);
      case S_CHUNK_SIZE:
        return this.#fail(413, `Chunk extensions exceed ${l.maxChunkExtBytes} bytes`);
      default:
        return this.#fail(431, `Trailer section exceeds ${l.maxHeaderBytes} bytes`);
    }
  }

  /** Reads (part of) a line from `chunk` at `pos`; returns the position after it. */
  #readLine(chunk: Uint8Array, pos: number): number {
    let lf: number;
    if (chunk === this.#winBuf && this.#lfNext < this.#lfCount) {
      // Every LF after the window's first line was recorded, in order.
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
      if (
        lf > pos + 1 && this.#state !== S_CHUNK_SIZE &&
        (chunk !== this.#winBuf || lf >= this.#winEnd)
      ) this.#decodeHead(chunk, pos, lf);
    } else {
      this.#keep(chunk, pos, end);
      buf = this.#line;
      start = 0;
      stop = this.#pending;
      this.#pending = 0;
    }
    if (stop === start || buf[stop - 1] !== CR) {
      this.#fail(400, "Line ends with a bare LF");
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
        l.maxRequestLine,
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
   * Finds the complete head lines of `chunk` after the line `[pos, lf]` (up to the empty
   * line, the head limits, 128 lines or the chunk's end), records their LFs, and decodes
   * them all with one `TextDecoder` call.
   */
  #decodeHead(chunk: Uint8Array, pos: number, lf: number): void {
    const l = this.#limits;
    const stop = Math.min(chunk.length, pos + l.maxRequestLine + l.maxHeaderBytes);
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
      case S_REQUEST_LINE:
        if (start === end) {
          if (++this.#emptyLines > this.#limits.maxEmptyLines) {
            this.#fail(400, "Too many empty lines before the request line");
          }
          return;
        }
        if (this.#requestLine(buf, start, end)) this.#state = S_HEADER;
        return;
      case S_HEADER:
        this.#headerBytes += size;
        if (start === end) return this.#endHead();
        if (this.#headers.length >= this.#limits.maxHeaderCount) {
          return this.#fail(431, `More than ${this.#limits.maxHeaderCount} header fields`);
        }
        return this.#headerLine(buf, start, end);
      case S_CHUNK_SIZE:
        return this.#chunkSize(buf, start, end);
      default: { // S_TRAILER
        this.#trailerBytes += size;
        if (start === end) return this.#finish();
        if (++this.#trailerCount > this.#limits.maxHeaderCount) {
          return this.#fail(431, `More than ${this.#limits.maxHeaderCount} trailer fields`);
        }
        const f = this.#field(buf, start, end);
        if (f !== null) (this.#trailers ??= []).push(f);
      }
    }
  }

  // --- request line -----------------------------------------------------------------

  #requestLine(buf: Uint8Array, start: number, end: number): boolean {
    let i = start;
    while (i < end && TOKEN[buf[i]] !== 0) i++;
    if (i === start || i === end || buf[i] !== SP) {
      this.#fail(400, "Malformed request line: invalid method");
      return false;
    }
    const method = this.#str(buf, start, i);
    const ts = ++i;
    while (i < end && TARGET[buf[i]] !== 0) i++;
    const te = i;
    if (te === ts || te === end || buf[te] !== SP) {
      this.#fail(400, "Malformed request line: invalid request target");
      return false;
    }
    if (!this.#httpVersion(buf, te + 1, end)) return false;
    this.#method = method;
    return this.#requestTarget(method, buf, ts, te);
  }

  /** Checks `HTTP/1.1` or `HTTP/1.0` exactly; 505 for other versions, 400 for garbage. */
  #httpVersion(buf: Uint8Array, i: number, end: number): boolean {
    const n = end - i;
    if (
      n === 8 && buf[i] === 0x48 && buf[i + 1] === 0x54 && buf[i + 2] === 0x54 &&
      buf[i + 3] === 0x50 && buf[i + 4] === SLASH && buf[i + 5] === 0x31 &&
      buf[i + 6] === 0x2e && (buf[i + 7] === 0x31 || buf[i + 7] === 0x30)
    ) {
      this.#version = buf[i + 7] === 0x31 ? "1.1" : "1.0";
      return true;
    }
    // "HTTP/" 1*DIGIT [ "." 1*DIGIT ]: a version, just not one we speak.
    let ok = n > 5 && n <= 16 && buf[i] === 0x48 && buf[i + 1] === 0x54 &&
      buf[i + 2] === 0x54 && buf[i + 3] === 0x50 && buf[i + 4] === SLASH;
    let dots = 0;
    let digits = 0;
    for (let j = i + 5; ok && j < end; j++) {
      const b = buf[j];
      if (b >= 0x30 && b <= 0x39) digits++;
      else if (b === 0x2e && digits > 0 && dots === 0) {
        dots++;
        digits = 0;
      } else ok = false;
    }
    if (ok && digits > 0) this.#fail(505, "HTTP version not supported");
    else this.#fail(400, "Malformed request line: invalid HTTP version");
    return false;
  }

  #requestTarget(method: string, buf: Uint8Array, ts: number, te: number): boolean {
    const target = this.#str(buf, ts, te);
    this.#target = target;
    const first = buf[ts];
    if (method === "CONNECT") {
      let authority = first !== SLASH;
      for (let i = ts; i < te && authority; i++) authority = HOST[buf[i]] !== 0;
      if (authority) this.#fail(501, "CONNECT is not supported");
      else this.#fail(400, "CONNECT needs an authority-form target");
      return false;
    }
    if (first === SLASH) {
      const q = target.indexOf("?");
      this.#path = q === -1 ? target : target.slice(0, q);
      this.#query = q === -1 ? "" : target.slice(q + 1);
      return true;
    }
    if (first === 0x2a && te - ts === 1) { // "*"
      if (method !== "OPTIONS") {
        this.#fail(400, "Asterisk-form target is only allowed for OPTIONS");
        return false;
      }
      this.#path = "*";
      this.#query = "";
      return true;
    }
    return this.#absoluteForm(buf, ts, te, target);
  }

  /** `http://authority/path?query` (RFC 9112 §3.2.2). */
  #absoluteForm(buf: Uint8Array, ts: number, te: number, target: string): boolean {
    let i = ts;
    while (i < te && buf[i] !== COLON) i++;
    const scheme = target.slice(0, i - ts).toLowerCase();
    if (
      (scheme !== "http" && scheme !== "https") || te - i < 3 || buf[i + 1] !== SLASH ||
      buf[i + 2] !== SLASH
    ) {
      this.#fail(400, "Malformed request target");
      return false;
    }
    const as = i + 3;
    let j = as;
    while (j < te && buf[j] !== SLASH && buf[j] !== QMARK) {
      if (HOST[buf[j]] === 0) {
        this.#fail(400, "Invalid authority in request target");
        return false;
      }
      j++;
    }
    if (j === as) {
      this.#fail(400, "Empty authority in request target");
      return false;
    }
    const authority = target.slice(as - ts, j - ts);
    if (!isHost(authority)) {
      this.#fail(400, "Invalid authority in request target");
      return false;
    }
    this.#authority = authority;
    const rest = target.slice(j - ts);
    const q = rest.indexOf("?");
    const path = q === -1 ? rest : rest.slice(0, q);
    this.#path = path === "" ? "/" : path;
    this.#query = q === -1 ? "" : rest.slice(q + 1);
    return true;
  }

  // --- fields -----------------------------------------------------------------------

  /** Parses `name: OWS value OWS`; returns the lower-cased name and trimmed value. */
  #field(buf: Uint8Array, start: number, end: number): [string, string] | null {
    const b0 = buf[start];
    if (isWs(b0)) {
      this.#fail(400, "Obsolete line folding or leading whitespace in a field line");
      return null;
    }
    let i = start;
    let upper = 0;
    for (let t = 0; i < end && (t = TOKEN[buf[i]]) !== 0; i++) upper |= t;
    if (i === end || buf[i] !== COLON) {
      if (i > start && i < end && isWs(buf[i])) {
        this.#fail(400, "Whitespace between a field name and the colon");
      } else this.#fail(400, "Invalid field name");
      return null;
    }
    if (i === start) {
      this.#fail(400, "Empty field name");
      return null;
    }
    let vs = i + 1;
    while (vs < end && isWs(buf[vs])) vs++;
    let ve = end;
    while (ve > vs && isWs(buf[ve - 1])) ve--;
    for (let j = vs; j < ve; j++) {
      if (FIELD_VALUE[buf[j]] === 0) {
        this.#fail(400, "Invalid character in a field value");
        return null;
      }
    }
    const raw = this.#str(buf, start, i);
    return [upper & 2 ? raw.toLowerCase() : raw, this.#str(buf, vs, ve)];
  }

  #headerLine(buf: Uint8Array, start: number, end: number): void {
    const f = this.#field(buf, start, end);
    if (f === null) return;
    this.#headers.push(f);
    const [name, value] = f;
    switch (name) {
      case "host": {
        if (++this.#hostCount > 1) return this.#fail(400, "Multiple Host fields");
        if (!isHost(value)) return this.#fail(400, "Invalid Host field"); // RFC 9112 §3.2
        this.#host = value;
        return;
      }
      case "content-length": {
        if (this.#contentLength !== null) {
          return this.#fail(400, "Multiple Content-Length values");
        }
        let n = 0;
        for (let k = 0; k < value.length; k++) {
          const c = value.charCodeAt(k) - 0x30;
          if (c < 0 || c > 9) return this.#fail(400, "Invalid Content-Length");
          n = n * 10 + c;
        }
        if (value.length === 0) return this.#fail(400, "Invalid Content-Length");
        if (n > Number.MAX_SAFE_INTEGER) return this.#fail(400, "Content-Length too large");
        if (n > this.#limits.maxBodyBytes) {
          return this.#fail(413, `Request body exceeds ${this.#limits.maxBodyBytes} bytes`);
        }
        this.#contentLength = n;
        return;
      }
      case "transfer-encoding":
        this.#te = this.#te === null ? value : `${this.#te},${value}`;
        return;
      case "connection": {
        const v = value.length <= 10 ? value.toLowerCase() : ""; // the common single tokens
        if (v === "keep-alive") this.#connKeepAlive = true;
        else if (v === "close") this.#connClose = true;
        else {
          for (const t of listElements(value)) {
            if (t === "close") this.#connClose = true;
            else if (t === "keep-alive") this.#connKeepAlive = true;
          }
        }
        return;
      }
      case "expect":
        this.#expect = this.#expect === null ? value : `${this.#expect},${value}`;
    }
  }

  /** The empty line after the header section: decide the framing, emit `head`. */
  #endHead(): void {
    const v11 = this.#version === "1.1";
    if (v11 && this.#hostCount === 0) return this.#fail(400, "Missing Host field");
    let chunked = false;
    if (this.#te !== null) {
      if (!v11) return this.#fail(400, "Transfer-Encoding in an HTTP/1.0 request");
      if (this.#contentLength !== null) {
        return this.#fail(400, "Both Content-Length and Transfer-Encoding");
      }
      const codings = listElements(this.#te);
      const last = codings.length - 1;
      for (let k = 0; k < codings.length; k++) {
        const c = codings[k];
        if (!isToken(c)) return this.#fail(400, "Invalid Transfer-Encoding");
        if (c === "chunked" && k !== last) {
          return this.#fail(400, "Transfer-Encoding chunked is not the final coding");
        }
      }
      if (codings[last] !== "chunked") {
        return this.#fail(400, "Transfer-Encoding does not end with chunked");
      }
      if (last > 0) {
        return this.#fail(501, `Transfer coding "${codings[0]}" is not supported`);
      }
      chunked = true;
    }
    let expectContinue = false;
    if (v11 && this.#expect !== null) {
      for (const e of listElements(this.#expect)) {
        if (e === "100-continue") expectContinue = true;
        else if (e !== "") return this.#fail(417, "Unsupported expectation");
      }
    }
    const keepAlive = !this.#connClose && (v11 || this.#connKeepAlive);
    const req: HttpRequest = {
      method: this.#method,
      target: this.#target,
      path: this.#path,
      query: this.#query,
      version: this.#version,
      headers: this.#headers,
      keepAlive,
      expectContinue,
      contentLength: this.#contentLength,
      chunked,
      host: this.#authority ?? this.#host,
      body: EMPTY_BODY,
      trailers: [],
    };
    this.#req = req;
    const cl = this.#contentLength;
    if (chunked) {
      this.#state = S_CHUNK_SIZE;
      this.#body = EMPTY_BODY;
    } else if (cl !== null && cl > 0) {
      this.#state = S_BODY;
      this.#body = new Uint8Array(cl);
      this.#remaining = cl;
    }
    this.#sink.head(req);
    if (!chunked && (cl === null || cl === 0)) this.#finish();
  }

  // --- chunked ----------------------------------------------------------------------

  /** `chunk-size [ chunk-ext ]` (RFC 9112 §7.1). */
  #chunkSize(buf: Uint8Array, start: number, end: number): void {
    let i = start;
    let size = 0;
    for (let h = 0; i < end && (h = HEX[buf[i]]) >= 0; i++) size = size * 16 + h;
    const digits = i - start;
    if (digits === 0 || digits > MAX_CHUNK_DIGITS) return this.#fail(400, "Invalid chunk size");
    const max = this.#limits.maxBodyBytes;
    if (size > max - this.#bodyLen) {
      return this.#fail(413, `Request body exceeds ${max} bytes`);
    }
    if (i < end) {
      if (!chunkExtensions(buf, i, end)) return this.#fail(400, "Invalid chunk extension");
      this.#extBytes += end - i;
      if (this.#extBytes > this.#limits.maxChunkExtBytes) {
        return this.#fail(413, `Chunk extensions exceed ${this.#limits.maxChunkExtBytes} bytes`);
      }
    }
    if (size === 0) {
      this.#state = S_TRAILER;
      return;
    }
    const need = this.#bodyLen + size;
    if (need > this.#body.length) {
      const grown = new Uint8Array(Math.min(max, Math.max(need, this.#body.length * 2, 1024)));
      grown.set(this.#body.subarray(0, this.#bodyLen));
      this.#body = grown;
    }
    this.#remaining = size;
    this.#state = S_CHUNK_DATA;
  }

  // --- end of a request -------------------------------------------------------------

  #finish(): void {
    const req = this.#req as HttpRequest;
    const len = this.#bodyLen;
    if (len > 0) {
      req.body = len === this.#body.length ? this.#body : this.#body.subarray(0, len);
    }
    if (this.#trailers !== null) req.trailers = this.#trailers;
    this.#reset();
    this.#state = req.keepAlive ? S_REQUEST_LINE : S_ENDED;
    this.#sink.request(req);
  }

  #reset(): void {
    this.#emptyLines = 0;
    this.#authority = null;
    this.#headers = [];
    this.#headerBytes = 0;
    this.#host = null;
    this.#hostCount = 0;
    this.#contentLength = null;
    this.#te = null;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#expect = null;
    this.#req = null;
    this.#body = EMPTY_BODY;
    this.#bodyLen = 0;
    this.#remaining = 0;
    this.#extBytes = 0;
    this.#trailers = null;
    this.#trailerBytes = 0;
    this.#trailerCount = 0;
  }

  #fail(status: number, message: string): void {
    this.#reset();
    this.#pending = 0;
    this.#line = EMPTY_BODY;
    this.#state = S_FAILED;
    this.#sink.error(new HttpError(status, message, { close: true }));
  }
}
