/**
 * A strict, incremental HTTP/1.1 request parser (RFC 9112): a pure state machine over
 * bytes that reports to an injected {@linkcode HttpSink}. It never touches a socket, a timer
 * or the clock; the connection layer owns those and the order of pipelined answers.
 *
 * How it reads: what requests share with responses (reading CRLF lines out of chunks with
 * one `TextDecoder` call per head, field lines and the header section's limits, bodies by
 * length or chunked with extensions and trailers) is the framer's, `_http_framing.ts`,
 * whose module documentation says how and which grammar it holds. This file adds the
 * request line, what the request's fields mean and the choice of framing:
 * - A `Content-Length` body is copied once into a buffer of exactly that size (never a
 *   view of the caller's chunk: the receiver owns it); a chunked body into a buffer that
 *   grows (doubling), bounded by `maxBodyBytes`.
 * - Running out of bytes is a normal return. Malformed input or a crossed limit emits one
 *   `error` (an {@linkcode HttpError}, always with `close: true`: framing is lost) and the
 *   parser ignores every later byte.
 *
 * Choices made where RFC 9112/9110 leave latitude (all refusals close the connection):
 * - Only CRLF ends a line: a bare LF or bare CR anywhere in the head, chunk lines or
 *   trailers is 400 (as the framer reads). Up to `maxEmptyLines` empty lines (CRLF) before
 *   a request line are skipped (RFC 9112 §2.2); more is 400.
 * - Versions: `HTTP/1.0` and `HTTP/1.1` only. Another well-formed `HTTP/<digits>[.<digits>]`
 *   (`HTTP/2.0`, `HTTP/1.2`, `HTTP/2`) is 505; anything else is 400. The name is
 *   case-sensitive (`http/1.1` is 400).
 * - Request targets are visible ASCII without `#`; they are not percent-decoded nor
 *   normalised (`path` is raw). Absolute-form accepts `http` and `https` only, refuses
 *   userinfo, and its authority replaces the `Host` header as `host` (a `Host` header is
 *   still required for HTTP/1.1). Asterisk-form only for `OPTIONS`. `CONNECT` is refused
 *   with 501 (authority-form) or 400 (any other form).
 * - Field lines follow the framer's grammar: values are byte strings (Latin-1, lossless),
 *   names lower-cased, values trimmed of SP/HTAB, order and duplicates kept. Obs-fold,
 *   whitespace before the colon and an empty name are 400; over `maxHeaderCount` fields
 *   or `maxHeaderBytes` bytes is 431.
 * - `Content-Length`: exactly one field with one `1*DIGIT` value; a repeated field or a
 *   list (`5, 5`), even with identical values, is 400. Over `maxBodyBytes` is 413 as soon
 *   as the field line is read.
 * - `Transfer-Encoding` (all field lines form one list, names case-insensitive): exactly
 *   `chunked` is accepted. `chunked` not last, `chunked` twice, empty elements, invalid
 *   tokens, `identity` alone, or any coding without a final `chunked` is 400. Other valid
 *   codings before a final `chunked` (`gzip, chunked`) are 501 (not implemented). With
 *   `Content-Length`, or in an HTTP/1.0 request, it is 400.
 * - Chunked, as the framer reads it: 1–16 hex digits, no sign or whitespace; BWS only
 *   before `;`. Extensions are checked against the grammar (`;name[=token|"quoted"]`) and
 *   their bytes, summed over the message, are bounded by `maxChunkExtBytes` (413).
 *   Trailers follow the header rules and limits (their own count and byte budget); they
 *   are kept apart in `trailers`, never merged into `headers`.
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
 * Why one file of this size: half of it is the request line's grammar and the choices
 * above, written down.
 *
 * @module
 */
import { HttpError } from "./errors.ts";
import { HOST, isHost, TARGET, TOKEN } from "./_http_chars.ts";
import {
  CHUNKED,
  CONNECTION_CLOSE,
  CONNECTION_KEEP_ALIVE,
  connectionOptions,
  EMPTY_BYTES,
  type FramerOwner,
  HttpFramer,
  limitsWith,
  listElements,
} from "./_http_framing.ts";

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

const SP = 0x20;
const COLON = 0x3a;
const SLASH = 0x2f;
const QMARK = 0x3f;

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
  readonly #reader: RequestReader;
  readonly #framer: HttpFramer;

  /**
   * Creates a parser reporting to `sink`. Limits not given take their
   * {@linkcode DEFAULT_HTTP_LIMITS} value; a limit that is not a non-negative safe
   * integer throws a `RangeError`.
   */
  constructor(sink: HttpSink, limits?: Partial<HttpLimits>) {
    this.#reader = new RequestReader(sink, limitsWith(DEFAULT_HTTP_LIMITS, limits, "HTTP limit"));
    this.#framer = this.#reader.framer;
  }

  /**
   * True when no byte of a next request is held: between requests (the keep-alive idle
   * time) rather than inside one (the header/body read time). Also true once the parser
   * has ended or failed.
   */
  get idle(): boolean {
    const f = this.#framer;
    return (f.atBoundary && this.#reader.emptyLines === 0) || f.ended || f.failed;
  }

  /** True after an `error` was emitted; later bytes are ignored. */
  get failed(): boolean {
    return this.#framer.failed;
  }

  /**
   * True after a request that does not keep the connection alive (`keepAlive: false`);
   * later bytes are ignored.
   */
  get ended(): boolean {
    return this.#framer.ended;
  }

  /**
   * Bytes of the unfinished request held in buffers: a partial line plus the body bytes
   * received so far. Bounded by the line limits plus `maxBodyBytes`.
   */
  get buffered(): number {
    return this.#framer.buffered;
  }

  /**
   * Consumes a chunk of bytes. The chunk is not kept: whatever must outlive the call is
   * copied. Emits zero or more events; never throws for malformed or partial input.
   */
  push(chunk: Uint8Array): void {
    const f = this.#framer;
    try {
      let pos = 0;
      while (pos < chunk.length) pos = f.read(chunk, pos);
    } finally {
      f.release(); // never trust a decoded window across pushes (buffers get reused)
    }
  }
}

/**
 * What the framer reads, read as requests: the request line, what the fields mean, the
 * choice of framing, and the events. The machinery behind {@linkcode HttpRequestParser}
 * (which keeps these methods, called by the framer, out of the public API).
 */
class RequestReader implements FramerOwner {
  readonly framer: HttpFramer;
  readonly #sink: HttpSink;
  readonly #limits: HttpLimits;

  // Head of the current request.
  /** Empty lines read before the request line (`idle` is false after one). */
  emptyLines = 0;
  #method = "";
  #target = "";
  #path = "";
  #query = "";
  #version: "1.0" | "1.1" = "1.1";
  #authority: string | null = null; // from an absolute-form target
  #host: string | null = null;
  #hostCount = 0;
  /** The last `Host` value found valid on this connection (a cache for {@linkcode isHost}). */
  #validHost: string | null = null;
  #contentLength: number | null = null;
  #te: string | null = null;
  #connClose = false;
  #connKeepAlive = false;
  #expect: string | null = null;
  #req: HttpRequest | null = null;

  constructor(sink: HttpSink, limits: HttpLimits) {
    this.#sink = sink;
    this.#limits = limits;
    this.framer = new HttpFramer(this, {
      limits: { ...limits, maxStartLine: limits.maxRequestLine },
      startLine: "Request line",
      body: "Request body",
      viewBody: false,
    });
  }

  // --- request line -----------------------------------------------------------------

  /** A start line: an empty line to skip, or `method SP target SP version`. */
  startLine(buf: Uint8Array, start: number, end: number): boolean {
    if (start === end) {
      if (++this.emptyLines > this.#limits.maxEmptyLines) {
        this.#fail(400, "Too many empty lines before the request line");
      }
      return false;
    }
    let i = start;
    while (i < end && TOKEN[buf[i]] !== 0) i++;
    if (i === start || i === end || buf[i] !== SP) {
      this.#fail(400, "Malformed request line: invalid method");
      return false;
    }
    const method = this.framer.str(buf, start, i);
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
    const target = this.framer.str(buf, ts, te);
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

  /** What a header field means to the request (the framer has checked and kept it). */
  field(name: string, value: string): void {
    switch (name) {
      case "host": {
        if (++this.#hostCount > 1) return this.#fail(400, "Multiple Host fields");
        // RFC 9112 §3.2. A client names the same host on every request of a connection:
        // the last valid value is remembered, and an equal one is not checked again.
        if (value !== this.#validHost) {
          if (!isHost(value)) return this.#fail(400, "Invalid Host field");
          this.#validHost = value;
        }
        this.#host = value;
        return;
      }
      case "content-length": {
        const n = this.framer.contentLength(value, this.#contentLength !== null);
        if (n < 0) return;
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
        const o = connectionOptions(value);
        if (o & CONNECTION_CLOSE) this.#connClose = true;
        if (o & CONNECTION_KEEP_ALIVE) this.#connKeepAlive = true;
        return;
      }
      case "expect":
        this.#expect = this.#expect === null ? value : `${this.#expect},${value}`;
    }
  }

  /** The end of the header section: decide the framing, emit `head`. */
  headEnd(): void {
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
      headers: this.framer.headers,
      keepAlive,
      expectContinue,
      contentLength: this.#contentLength,
      chunked,
      host: this.#authority ?? this.#host,
      body: EMPTY_BYTES,
      trailers: [],
    };
    this.#req = req;
    this.framer.frame(chunked ? CHUNKED : this.#contentLength ?? 0, keepAlive);
    this.#sink.head(req);
  }

  // --- end of a request -------------------------------------------------------------

  /** A request is complete. */
  message(body: Uint8Array, trailers: [string, string][] | null): void {
    const req = this.#req as HttpRequest;
    req.body = body;
    if (trailers !== null) req.trailers = trailers;
    this.#reset();
    this.#sink.request(req);
  }

  #reset(): void {
    this.emptyLines = 0;
    this.#authority = null;
    this.#host = null;
    this.#hostCount = 0;
    this.#contentLength = null;
    this.#te = null;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#expect = null;
    this.#req = null;
  }

  #fail(status: number, message: string): void {
    this.framer.fail(status, message); // calls error
  }

  /** The framer failed: framing is lost, the connection must close. */
  error(status: number, message: string): void {
    this.#reset();
    this.#sink.error(new HttpError(status, message, { close: true }));
  }
}
