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
 * How it reads: what responses share with requests (reading CRLF lines out of chunks with
 * one `TextDecoder` call per head, field lines and the header section's limits, bodies by
 * length, chunked or to the close) is the framer's, `_http_framing.ts`, as for the request
 * parser; its module documentation says how and which grammar it holds. This file adds
 * the status line, the matching of responses to requests and the choice of framing:
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
 * - Field lines as in requests (the framer's grammar): a token name (lower-cased), a colon
 *   right after it, field-value bytes trimmed of SP/HTAB (byte strings), no obs-fold, only
 *   CRLF line ends. Chunked bodies too: size, extensions and trailers as in requests.
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
 * Why one file of this size: half of it is the rules above and the types, written down.
 *
 * @module
 */
import { HttpResponseError } from "./errors.ts";
import { FIELD_VALUE } from "./_http_chars.ts";
import {
  CHUNKED,
  CONNECTION_CLOSE,
  CONNECTION_KEEP_ALIVE,
  connectionOptions,
  EMPTY_BYTES,
  fieldNames,
  type FramerOwner,
  HttpFramer,
  limitsWith,
  listElements,
  UNTIL_CLOSE,
} from "./_http_framing.ts";

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

const SP = 0x20;

const NO_FIELDS: [string, string][] = [];

/** Field names every response carries, returned as constants (no string per response). */
const COMMON_NAMES = fieldNames([
  "date",
  "content-length",
  "content-type",
  "connection",
  "transfer-encoding",
]);

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
  readonly #reader: ResponseReader;
  readonly #framer: HttpFramer;

  /**
   * Creates a parser reporting to `sink`. Limits not given take their
   * {@linkcode DEFAULT_HTTP_RESPONSE_LIMITS} value; a limit that is not a non-negative
   * safe integer throws a `RangeError`.
   */
  constructor(sink: HttpResponseSink, limits?: Partial<HttpResponseLimits>) {
    const l = limitsWith(DEFAULT_HTTP_RESPONSE_LIMITS, limits, "HTTP response limit");
    this.#reader = new ResponseReader(sink, l);
    this.#framer = this.#reader.framer;
  }

  /**
   * Announces a request written to the peer, in order; `method` decides whether its
   * response has a body (`HEAD`: never).
   */
  sent(method: string): void {
    this.#reader.sent(method);
  }

  /** Requests announced with {@linkcode sent} whose response is not complete yet. */
  get waiting(): number {
    return this.#reader.waiting;
  }

  /** True when no byte of a next response is held (between responses), or when stopped. */
  get idle(): boolean {
    const f = this.#framer;
    return f.atBoundary || f.ended || f.failed;
  }

  /** True after an `error` was emitted; later bytes are ignored. */
  get failed(): boolean {
    return this.#framer.failed;
  }

  /** True after a response that ends the connection; later bytes are an error. */
  get ended(): boolean {
    return this.#framer.ended;
  }

  /**
   * Consumes a chunk of bytes. Emits zero or more events; never throws for malformed or
   * partial input. A body handed to the sink may be a view of `chunk`.
   */
  push(chunk: Uint8Array): void {
    const f = this.#framer;
    const r = this.#reader;
    try {
      let pos = 0;
      while (pos < chunk.length && !f.failed) {
        // Where a response would begin (the framer stops after each one): is one due?
        if (f.ended) return r.fail("Data after the response that ended the connection");
        if (f.atBoundary && r.waiting === 0) return r.fail("Response without a request");
        pos = f.read(chunk, pos);
      }
    } finally {
      f.release(); // never trust a decoded window across pushes (buffers get reused)
    }
  }

  /**
   * The peer closed the connection: completes a body delimited by the close, or reports a
   * response cut short or never sent (an announced request still waiting). Later bytes are
   * an error.
   */
  end(): void {
    const f = this.#framer;
    if (f.failed || f.ended) return;
    if (f.untilClose) return f.completeAtClose(); // it ends the connection
    if (f.atBoundary) {
      if (this.#reader.waiting > 0) {
        return this.#reader.fail("Connection closed before the response");
      }
      return f.end();
    }
    this.#reader.fail("Connection closed inside a response");
  }
}

/**
 * What the framer reads, read as responses to the requests announced: the status line,
 * what the fields mean, the choice of framing, and the events. The machinery behind
 * {@linkcode HttpResponseParser} (which keeps these methods, called by the framer, out of
 * the public API).
 */
class ResponseReader implements FramerOwner {
  readonly framer: HttpFramer;
  readonly #sink: HttpResponseSink;
  readonly #limits: HttpResponseLimits;

  // Requests waiting for their response: true for HEAD.
  #heads: boolean[] = [];
  #headsAt = 0;

  // Head of the current response.
  #version: "1.0" | "1.1" = "1.1";
  #status = 0;
  #reason = "";
  #contentLength: number | null = null;
  #te: string | null = null;
  #connClose = false;
  #connKeepAlive = false;
  #res: HttpResponse | null = null;

  constructor(sink: HttpResponseSink, limits: HttpResponseLimits) {
    this.#sink = sink;
    this.#limits = limits;
    this.framer = new HttpFramer(this, {
      limits: { ...limits, maxStartLine: limits.maxStatusLine },
      startLine: "Status line",
      body: "Response body",
      viewBody: true,
      names: COMMON_NAMES,
    });
  }

  sent(method: string): void {
    if (this.#headsAt > 0 && this.#headsAt === this.#heads.length) {
      this.#heads.length = 0;
      this.#headsAt = 0;
    }
    this.#heads.push(method === "HEAD");
  }

  get waiting(): number {
    return this.#heads.length - this.#headsAt;
  }

  // --- status line ------------------------------------------------------------------

  /** `HTTP/1.x SP 3DIGIT SP reason` (RFC 9112 §4). */
  startLine(buf: Uint8Array, start: number, end: number): boolean {
    const i = start;
    if (
      end - i < 13 || buf[i] !== 0x48 || buf[i + 1] !== 0x54 || buf[i + 2] !== 0x54 ||
      buf[i + 3] !== 0x50 || buf[i + 4] !== 0x2f || buf[i + 5] !== 0x31 ||
      buf[i + 6] !== 0x2e || (buf[i + 7] !== 0x31 && buf[i + 7] !== 0x30) ||
      buf[i + 8] !== SP || buf[i + 12] !== SP
    ) {
      this.fail("Malformed status line");
      return false;
    }
    const d0 = buf[i + 9] - 0x30;
    const d1 = buf[i + 10] - 0x30;
    const d2 = buf[i + 11] - 0x30;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) {
      this.fail("Malformed status line: invalid status code");
      return false;
    }
    for (let j = i + 13; j < end; j++) {
      if (FIELD_VALUE[buf[j]] === 0) {
        this.fail("Malformed status line: invalid character in the reason phrase");
        return false;
      }
    }
    this.#version = buf[i + 7] === 0x31 ? "1.1" : "1.0";
    this.#status = d0 * 100 + d1 * 10 + d2;
    this.#reason = this.framer.str(buf, i + 13, end);
    return true;
  }

  // --- fields -----------------------------------------------------------------------

  /** What a header field means to the response (the framer has checked and kept it). */
  field(name: string, value: string): void {
    switch (name) {
      case "content-length": {
        const n = this.framer.contentLength(value, this.#contentLength !== null);
        if (n >= 0) this.#contentLength = n;
        return;
      }
      case "transfer-encoding":
        this.#te = this.#te === null ? value : `${this.#te},${value}`;
        return;
      case "connection": {
        const o = connectionOptions(value);
        if (o & CONNECTION_CLOSE) this.#connClose = true;
        if (o & CONNECTION_KEEP_ALIVE) this.#connKeepAlive = true;
      }
    }
  }

  /** The end of the header section: decide the framing, emit events. */
  headEnd(): void {
    const status = this.#status;
    if (status < 200) {
      if (status === 101) return this.fail("Unexpected 101 Switching Protocols");
      const interim: HttpResponseHead = {
        version: this.#version,
        status,
        reason: this.#reason,
        headers: this.framer.headers,
        contentLength: this.#contentLength,
        chunked: false,
        keepAlive: true,
      };
      this.#reset();
      this.framer.restart();
      this.#sink.interim?.(interim);
      return;
    }
    const head = this.#heads[this.#headsAt];
    let chunked = false;
    if (this.#te !== null) {
      if (this.#contentLength !== null) {
        return this.fail("Both Content-Length and Transfer-Encoding");
      }
      const codings = listElements(this.#te);
      if (codings.length !== 1 || codings[0] !== "chunked") {
        return this.fail(`Unsupported Transfer-Encoding "${this.#te}"`);
      }
      chunked = true;
    }
    const bodiless = head || status === 204 || status === 304;
    const cl = this.#contentLength;
    if (!bodiless && cl !== null && cl > this.#limits.maxBodyBytes) {
      return this.fail(`Response body exceeds ${this.#limits.maxBodyBytes} bytes`);
    }
    const untilClose = !bodiless && !chunked && cl === null;
    const keepAlive = !untilClose && !this.#connClose &&
      (this.#version === "1.1" || this.#connKeepAlive);
    const res: HttpResponse = {
      version: this.#version,
      status,
      reason: this.#reason,
      headers: this.framer.headers,
      contentLength: this.#contentLength,
      chunked: chunked && !bodiless,
      keepAlive,
      body: EMPTY_BYTES,
      trailers: NO_FIELDS,
    };
    this.#res = res;
    this.#sink.head?.(res);
    if (this.framer.failed) return;
    const length = bodiless ? 0 : chunked ? CHUNKED : untilClose ? UNTIL_CLOSE : cl as number;
    this.framer.frame(length, keepAlive);
  }

  // --- end of a response ------------------------------------------------------------

  /** A response is complete. */
  message(body: Uint8Array, trailers: [string, string][] | null): void {
    const res = this.#res as HttpResponse;
    res.body = body;
    if (trailers !== null) res.trailers = trailers;
    this.#headsAt++;
    this.#reset();
    this.#sink.response(res);
  }

  #reset(): void {
    this.#contentLength = null;
    this.#te = null;
    this.#connClose = false;
    this.#connKeepAlive = false;
    this.#res = null;
  }

  /** Fails the framer, which calls `error`. */
  fail(message: string): void {
    this.framer.fail(0, message); // no status: nobody answers a response
  }

  /** The framer failed: the connection is unusable. */
  error(_status: number, message: string): void {
    this.#reset();
    this.#sink.error(new HttpResponseError(message));
  }
}
