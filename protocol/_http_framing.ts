/**
 * HTTP/1.1 message framing (RFC 9112), the part that requests and responses share: reading
 * CRLF lines out of chunks, field lines and the header section's limits, bodies framed by
 * a length, by chunked coding (chunk-size lines, extensions, trailers) or by the end of
 * the connection. The request parser (`http_parser.ts`) and the response parser
 * (`http_response_parser.ts`) each own an {@linkcode HttpFramer} and add what differs: the
 * start line, what the fields mean, which framing a message has. Private: not part of the
 * public API.
 *
 * An {@linkcode HttpFramer} is a state machine over bytes. It reports to its owner through
 * a {@linkcode FramerOwner}: the start line, each header field, the end of the head (where
 * the owner picks the framing with {@linkcode HttpFramer.frame}), the complete message and
 * errors. It stops after each complete message so that the owner can check what may come
 * next.
 *
 * How it reads:
 * - Head lines are read line by line. A line found whole in one chunk is parsed in place
 *   (a view, no copy); a line cut by a chunk boundary is copied once into a line buffer
 *   that grows up to the limit, and scanning resumes where it stopped. Each finished line
 *   is checked with byte tables and only then are its fields turned into strings, so
 *   nothing is re-scanned and leftovers are never concatenated.
 * - Strings: the complete head lines found in a chunk are decoded with one `TextDecoder`
 *   call and, when they are all ASCII, every string of the head is a slice of that string
 *   (one native call per head instead of one per field); otherwise, and for lines that
 *   crossed a chunk boundary, each string is decoded on its own as a byte string (Latin-1,
 *   lossless).
 * - A length-framed body is copied once into a buffer of exactly that size, or handed over
 *   as a view of the chunk when the owner asks for views and the body is whole in one
 *   chunk. A chunked or close-delimited body is copied into a buffer that grows (doubling),
 *   bounded by `maxBodyBytes`.
 * - Running out of bytes is a normal return. Malformed input or a crossed limit fails the
 *   framer once (the owner's `error`, with the status a server answers it with) and every
 *   later byte is ignored.
 *
 * The grammar (the same for requests and responses; all refusals are 400 unless said):
 * - Only CRLF ends a line: a bare LF anywhere in the head, chunk lines or trailers is an
 *   error (a bare CR is refused by the byte tables).
 * - Field lines: a token name, the colon right after it (whitespace before the colon is an
 *   error), a value of HTAB / SP / VCHAR / obs-text trimmed of SP and HTAB. Names are
 *   lower-cased, values are byte strings, order and duplicates are kept. Obs-fold (a line
 *   starting with whitespace) is an error.
 * - Header section: at most `maxHeaderCount` field lines and `maxHeaderBytes` bytes, lines
 *   and the final CRLF included (431). The trailer section has the same two limits of its
 *   own; trailers are kept apart, never merged into the headers.
 * - Chunked: 1–16 hex digits, no sign or whitespace; BWS is allowed only before `;`.
 *   Extensions are checked against the grammar (`;name[=token|"quoted"]`) and their bytes
 *   (everything after the digits, summed over the message) are bounded by
 *   `maxChunkExtBytes` (413). Chunk data must be followed by CRLF. The body is bounded by
 *   `maxBodyBytes` as soon as a chunk size is read (413).
 * - `Content-Length` ({@linkcode HttpFramer.contentLength}): one field of `1*DIGIT`; a
 *   repeated field or a list (`5, 5`), even with identical values, is an error.
 *
 * @module
 */
import { FIELD_VALUE, HEX, latin1, QDTEXT, TOKEN } from "./_http_chars.ts";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

// States. Line states read up to a CRLF; the others count bytes.
const S_START = 0;
const S_HEADER = 1;
const S_CHUNK_SIZE = 2;
const S_TRAILER = 3;
const S_BODY = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_CR = 6;
const S_CHUNK_LF = 7;
const S_UNTIL_CLOSE = 8;
const S_COMPLETE = 9; // the head ended a message without a body: finished when it returns
const S_ENDED = 10;
const S_FAILED = 11;

/** Hex digits allowed in a chunk size (16 covers any size below 2^64). */
const MAX_CHUNK_DIGITS = 16;

/** Head lines whose LFs one decoded window records. */
const WINDOW_LINES = 128;

const UTF8 = new TextDecoder();

/**
 * The one zero-length array every bodiless message shares (allocating an `ArrayBuffer`
 * per bodiless request costs more than parsing it).
 */
export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/** {@linkcode HttpFramer.frame}: a chunked body. */
export const CHUNKED: number = -1;
/** {@linkcode HttpFramer.frame}: a body that runs to the end of the connection. */
export const UNTIL_CLOSE: number = -2;

/** The limits a framer enforces, each checked before the bytes are buffered. */
export interface FramingLimits {
  /** Bytes of the start line, CRLF included. */
  maxStartLine: number;
  /** Bytes of the header section (field lines with their CRLFs and the final CRLF). */
  maxHeaderBytes: number;
  /** Header field lines. The trailer section has the same two limits. */
  maxHeaderCount: number;
  /** Body bytes (decoded, for chunked). */
  maxBodyBytes: number;
  /** Chunk extension bytes (after the size digits), summed over one message. */
  maxChunkExtBytes: number;
}

/** How a framer reads for its owner. */
export interface FramerOptions {
  /** The limits. */
  limits: FramingLimits;
  /** The start line's name in errors: `"Request line"`, `"Status line"`. */
  startLine: string;
  /** The body's name in errors: `"Request body"`, `"Response body"`. */
  body: string;
  /**
   * Hand a length-framed body found whole in one chunk over as a view of that chunk
   * (valid until the next push) rather than a copy.
   */
  viewBody: boolean;
  /** Field names returned as these constants rather than as new strings. */
  names?: FieldNames;
}

/**
 * What a framer reports to. Calls happen synchronously inside {@linkcode HttpFramer.read};
 * the owner may call the framer's methods named in each.
 */
export interface FramerOwner {
  /**
   * A start line `buf[start, end)` (CRLF excluded, possibly empty). Returns true to read
   * the header section next; false stays on the start line (an empty line skipped) or
   * follows {@linkcode HttpFramer.fail}. Strings come from {@linkcode HttpFramer.str}.
   */
  startLine(buf: Uint8Array, start: number, end: number): boolean;
  /** A header field, already in {@linkcode HttpFramer.headers}. May fail the framer. */
  field(name: string, value: string): void;
  /**
   * The header section ended. Must call {@linkcode HttpFramer.frame},
   * {@linkcode HttpFramer.restart} or {@linkcode HttpFramer.fail}.
   */
  headEnd(): void;
  /**
   * The message is complete; the framer is ready for the next one (or ended). `body` is
   * {@linkcode EMPTY_BYTES} when there is none; `trailers` is null when there were none.
   */
  message(body: Uint8Array, trailers: [string, string][] | null): void;
  /** The framer failed (the owner's or the framer's own error); later bytes are ignored. */
  error(status: number, message: string): void;
}

/** Field names a framer returns as constants: see {@linkcode fieldNames}. */
export type FieldNames = readonly { name: string; bytes: Uint8Array }[];

/**
 * Prepares lower-case field names for {@linkcode FramerOptions.names}: names every message
 * carries, returned as these constants (no new string per message).
 *
 * @example
 * ```ts
 * import { fieldNames } from "./_http_framing.ts";
 * console.assert(fieldNames(["date"])[0].bytes.length === 4);
 * ```
 */
export function fieldNames(names: readonly string[]): FieldNames {
  return names.map((name) => ({ name, bytes: Uint8Array.from(name, (c) => c.charCodeAt(0)) }));
}

/**
 * The lower-case constant for the field name `buf[start, end)` if it is one of `names`.
 * The name is a validated token: folding with `| 0x20` only maps A–Z to a–z among its
 * bytes that can match (`^` and `_` would fold to `~` and DEL, in no field name).
 */
function knownName(names: FieldNames, buf: Uint8Array, start: number, end: number): string | null {
  const n = end - start;
  for (let k = 0; k < names.length; k++) {
    const b = names[k].bytes;
    if (b.length !== n) continue;
    let i = 0;
    while (i < n && (buf[start + i] | 0x20) === b[i]) i++; // ASCII case folding
    if (i === n) return names[k].name;
  }
  return null;
}

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

/**
 * Merges `given` limits over `defaults`; a limit that is not a non-negative safe integer
 * throws a `RangeError` naming it (`Invalid ${what} maxBodyBytes: "-1"`).
 *
 * @example
 * ```ts
 * import { limitsWith } from "./_http_framing.ts";
 * const defaults: { a: number; b: number } = { a: 1, b: 2 };
 * const l = limitsWith(defaults, { b: 3 }, "limit");
 * console.assert(l.a === 1 && l.b === 3);
 * ```
 */
export function limitsWith<T extends { [K in keyof T]: number }>(
  defaults: Readonly<T>,
  given: Partial<T> | undefined,
  what: string,
): T {
  const l: T = { ...defaults };
  if (given) {
    for (const k of Object.keys(defaults) as (keyof T & string)[]) {
      const v = given[k];
      if (v !== undefined) {
        if (!Number.isSafeInteger(v) || v < 0) {
          throw new RangeError(`Invalid ${what} ${k}: "${v}"`);
        }
        l[k] = v;
      }
    }
  }
  return l;
}

/**
 * Splits a comma-separated field value (RFC 9110 §5.6.1) into lower-cased elements trimmed
 * of OWS (SP and HTAB only: `String.prototype.trim` would also drop U+00A0 and let
 * `chunked\xa0` pass). Empty elements are kept as `""` so that callers can refuse them.
 *
 * @example
 * ```ts
 * import { listElements } from "./_http_framing.ts";
 * console.assert(listElements("gzip ,\tChunked,").join("|") === "gzip|chunked|");
 * ```
 */
export function listElements(value: string): string[] {
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

/** {@linkcode connectionOptions}: the `close` option. */
export const CONNECTION_CLOSE = 1;
/** {@linkcode connectionOptions}: the `keep-alive` option. */
export const CONNECTION_KEEP_ALIVE = 2;

/**
 * The `close` and `keep-alive` options (case-insensitive) named in a `Connection` field
 * value (RFC 9112 §9.6), as the bits {@linkcode CONNECTION_CLOSE} and
 * {@linkcode CONNECTION_KEEP_ALIVE}; other options are ignored.
 *
 * @example
 * ```ts
 * import { CONNECTION_CLOSE, connectionOptions } from "./_http_framing.ts";
 * console.assert(connectionOptions("Upgrade, Close") === CONNECTION_CLOSE);
 * ```
 */
export function connectionOptions(value: string): number {
  const v = value.length <= 10 ? value.toLowerCase() : ""; // the common single options
  if (v === "keep-alive") return CONNECTION_KEEP_ALIVE;
  if (v === "close") return CONNECTION_CLOSE;
  let o = 0;
  if (value.indexOf(",") === -1) return o;
  for (const t of listElements(value)) {
    if (t === "close") o |= CONNECTION_CLOSE;
    else if (t === "keep-alive") o |= CONNECTION_KEEP_ALIVE;
  }
  return o;
}

/**
 * Checks `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )` over
 * `buf[i, end)` (RFC 9112 §7.1.1).
 *
 * @example
 * ```ts
 * import { chunkExtensions } from "./_http_framing.ts";
 * const ext = new TextEncoder().encode(';a=b;c="d e"');
 * console.assert(chunkExtensions(ext, 0, ext.length));
 * ```
 */
export function chunkExtensions(buf: Uint8Array, i: number, end: number): boolean {
  while (i < end) {
    while (i < end && isWs(buf[i])) i++;
    if (i === end || buf[i] !== 0x3b /* ; */) return false;
    i++;
    while (i < end && isWs(buf[i])) i++;
    const ns = i;
    while (i < end && TOKEN[buf[i]] !== 0) i++;
    if (i === ns) return false;
    let j = i;
    while (j < end && isWs(buf[j])) j++;
    if (j === end || buf[j] !== 0x3d /* = */) continue;
    i = j + 1;
    while (i < end && isWs(buf[i])) i++;
    if (i < end && buf[i] === 0x22 /* " */) {
      i++;
      for (;;) {
        if (i >= end) return false;
        const b = buf[i];
        if (b === 0x22) {
          i++;
          break;
        }
        if (b === 0x5c /* \\ */) {
          if (i + 1 >= end || FIELD_VALUE[buf[i + 1]] === 0) return false;
          i += 2;
        } else if (QDTEXT[b] !== 0) i++;
        else return false;
      }
    } else {
      const vs = i;
      while (i < end && TOKEN[buf[i]] !== 0) i++;
      if (i === vs) return false;
    }
  }
  return true;
}

/**
 * Reads HTTP/1.1 messages (head and body) from a byte stream pushed in chunks of any size,
 * leaving the start line, the meaning of fields and the choice of framing to its
 * {@linkcode FramerOwner}. See the module documentation for the rules.
 *
 * @example
 * ```ts
 * import { EMPTY_BYTES, HttpFramer } from "./_http_framing.ts";
 * const got: string[] = [];
 * const framer: HttpFramer = new HttpFramer({
 *   startLine: (buf, start, end) => start < end,
 *   field: (name, value) => got.push(`${name}=${value}`),
 *   headEnd: () => framer.frame(2, true),
 *   message: (body) => got.push(`${body.length} bytes`),
 *   error: (status, message) => { throw new Error(`${status} ${message}`); },
 * }, {
 *   limits: {
 *     maxStartLine: 100, maxHeaderBytes: 100, maxHeaderCount: 10, maxBodyBytes: 10,
 *     maxChunkExtBytes: 10,
 *   },
 *   startLine: "Start line",
 *   body: "Body",
 *   viewBody: false,
 * });
 * const bytes = new TextEncoder().encode("START\r\nA-Field: 1\r\n\r\nhi");
 * let pos = 0;
 * while (pos < bytes.length) pos = framer.read(bytes, pos); // stops after each message
 * framer.release();
 * console.assert(got.join() === "a-field=1,2 bytes" && framer.atBoundary);
 * console.assert(EMPTY_BYTES.length === 0);
 * ```
 */
export class HttpFramer {
  readonly #owner: FramerOwner;
  readonly #limits: FramingLimits;
  readonly #startLineName: string;
  readonly #bodyName: string;
  readonly #viewBody: boolean;
  readonly #names: FieldNames | null;
  #state = S_START;
  #done = false; // a message completed during this read

  // The line being read when a chunk ended inside it.
  #line: Uint8Array = EMPTY_BYTES;
  #pending = 0;

  // The complete head lines of the current chunk, decoded at once: strings are then
  // slices of it (when it is all ASCII, so that byte offsets are string offsets). The LF
  // positions found on the way are kept so that lines are not searched twice. Valid during
  // one push only (the caller may reuse its buffer): see `release`.
  #win = "";
  #winAscii = false;
  #winBuf: Uint8Array | null = null;
  #winStart = 0;
  #winEnd = 0;
  #lfs = new Int32Array(WINDOW_LINES);
  #lfCount = 0;
  #lfNext = 0;

  // The current message.
  #headers: [string, string][] = [];
  #headerBytes = 0;
  #keepAlive = true;
  #body: Uint8Array = EMPTY_BYTES;
  #bodyLen = 0;
  #remaining = 0;
  #extBytes = 0;
  #trailers: [string, string][] | null = null;
  #trailerBytes = 0;
  #trailerCount = 0;

  /** Creates a framer reporting to `owner`. The limits are taken as given (checked). */
  constructor(owner: FramerOwner, options: FramerOptions) {
    this.#owner = owner;
    this.#limits = options.limits;
    this.#startLineName = options.startLine;
    this.#bodyName = options.body;
    this.#viewBody = options.viewBody;
    this.#names = options.names ?? null;
  }

  /** True when no byte of a next message is held: waiting for a start line, none begun. */
  get atBoundary(): boolean {
    return this.#state === S_START && this.#pending === 0;
  }

  /** True after {@linkcode fail}; later bytes are ignored. */
  get failed(): boolean {
    return this.#state === S_FAILED;
  }

  /** True after a message that does not keep the connection, or {@linkcode end}. */
  get ended(): boolean {
    return this.#state === S_ENDED;
  }

  /** True while reading a body that runs to the end of the connection. */
  get untilClose(): boolean {
    return this.#state === S_UNTIL_CLOSE;
  }

  /** Bytes of the unfinished message held: a partial line plus the body bytes so far. */
  get buffered(): number {
    return this.#pending + this.#bodyLen;
  }

  /** The header fields of the current message, in order (the array handed over). */
  get headers(): [string, string][] {
    return this.#headers;
  }

  /**
   * Reads `chunk` from `pos`: up to its end, or up to the end of a message (the owner's
   * `message` was called). Returns the position it stopped at; the end of the chunk once
   * the framer has failed or ended (those bytes are ignored).
   */
  read(chunk: Uint8Array, pos: number): number {
    const len = chunk.length;
    this.#done = false;
    while (pos < len && !this.#done) {
      switch (this.#state) {
        case S_START:
        case S_HEADER:
        case S_CHUNK_SIZE:
        case S_TRAILER:
          pos = this.#readLine(chunk, pos);
          break;
        case S_BODY: {
          const n = Math.min(this.#remaining, len - pos);
          if (this.#bodyLen === 0 && n === this.#remaining && this.#viewBody) {
            this.#body = chunk.subarray(pos, pos + n); // whole in this chunk: a view
          } else {
            if (this.#bodyLen === 0) this.#body = new Uint8Array(this.#remaining);
            this.#body.set(chunk.subarray(pos, pos + n), this.#bodyLen);
          }
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
          if (chunk[pos] !== CR) {
            this.fail(400, "Chunk data not followed by CRLF");
            return len;
          }
          this.#state = S_CHUNK_LF;
          pos++;
          break;
        case S_CHUNK_LF:
          if (chunk[pos] !== LF) {
            this.fail(400, "Chunk data not followed by CRLF");
            return len;
          }
          this.#state = S_CHUNK_SIZE;
          pos++;
          break;
        case S_UNTIL_CLOSE: {
          const n = len - pos;
          const max = this.#limits.maxBodyBytes;
          if (n > max - this.#bodyLen) {
            this.fail(413, `${this.#bodyName} exceeds ${max} bytes`);
            return len;
          }
          this.#grow(this.#bodyLen + n);
          this.#body.set(chunk.subarray(pos), this.#bodyLen);
          this.#bodyLen += n;
          pos = len;
          break;
        }
        default: // ended or failed: ignore
          return len;
      }
    }
    return pos;
  }

  /** Forgets the decoded window: call at the end of each push (buffers get reused). */
  release(): void {
    this.#winBuf = null;
    this.#win = "";
    this.#lfCount = 0;
  }

  /**
   * From the owner's `headEnd`: the body's framing. `length` is the `Content-Length` (0:
   * no body, the message completes when `headEnd` returns), {@linkcode CHUNKED} or
   * {@linkcode UNTIL_CLOSE}; `keepAlive` says whether another message may follow.
   */
  frame(length: number, keepAlive: boolean): void {
    this.#keepAlive = keepAlive;
    if (length === CHUNKED) this.#state = S_CHUNK_SIZE;
    else if (length === UNTIL_CLOSE) this.#state = S_UNTIL_CLOSE;
    else if (length > 0) {
      this.#state = S_BODY;
      this.#remaining = length;
    } else this.#state = S_COMPLETE;
  }

  /** From the owner's `headEnd`: drops the head just read (an interim response). */
  restart(): void {
    this.#reset();
    this.#state = S_START;
  }

  /** The body ends with the connection: completes it. */
  completeAtClose(): void {
    this.#finish();
  }

  /** No message may follow: later bytes are ignored. */
  end(): void {
    this.#reset();
    this.#state = S_ENDED;
  }

  /** Stops for good and reports `message` (with the status a server answers it with). */
  fail(status: number, message: string): void {
    this.#reset();
    this.#pending = 0;
    this.#line = EMPTY_BYTES;
    this.#state = S_FAILED;
    this.#owner.error(status, message);
  }

  /**
   * Checks a `Content-Length` value: `1*DIGIT`, the first of its message (`seen` says
   * whether one came before). Returns it, or -1 after failing.
   */
  contentLength(value: string, seen: boolean): number {
    if (seen) return this.#refuse("Multiple Content-Length values");
    let n = 0;
    for (let k = 0; k < value.length; k++) {
      const c = value.charCodeAt(k) - 0x30;
      if (c < 0 || c > 9) return this.#refuse("Invalid Content-Length");
      n = n * 10 + c;
    }
    if (value.length === 0) return this.#refuse("Invalid Content-Length");
    if (n > Number.MAX_SAFE_INTEGER) return this.#refuse("Content-Length too large");
    return n;
  }

  #refuse(message: string): number {
    this.fail(400, message);
    return -1;
  }

  /**
   * The string of the validated bytes `buf[start, end)` of a line the owner was handed: a
   * slice of the decoded window if it can, else a byte string.
   */
  str(buf: Uint8Array, start: number, end: number): string {
    if (
      buf === this.#winBuf && this.#winAscii && start >= this.#winStart && end <= this.#winEnd
    ) {
      return this.#win.slice(start - this.#winStart, end - this.#winStart);
    }
    return latin1(buf, start, end);
  }

  /** Makes the body buffer hold at least `need` bytes (doubling, bounded). */
  #grow(need: number): void {
    if (need <= this.#body.length) return;
    const max = this.#limits.maxBodyBytes;
    const grown = new Uint8Array(Math.min(max, Math.max(need, this.#body.length * 2, 1024)));
    grown.set(this.#body.subarray(0, this.#bodyLen));
    this.#body = grown;
  }

  // --- lines ------------------------------------------------------------------------

  /** The most bytes (CRLF included) the current line may take. */
  #lineLimit(): number {
    const l = this.#limits;
    switch (this.#state) {
      case S_START:
        return l.maxStartLine;
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
      case S_START:
        return this.fail(414, `${this.#startLineName} exceeds ${l.maxStartLine} bytes`);
      case S_HEADER:
        return this.fail(431, `Header section exceeds ${l.maxHeaderBytes} bytes`);
      case S_CHUNK_SIZE:
        return this.fail(413, `Chunk extensions exceed ${l.maxChunkExtBytes} bytes`);
      default:
        return this.fail(431, `Trailer section exceeds ${l.maxHeaderBytes} bytes`);
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
      this.fail(400, "Line ends with a bare LF");
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
        l.maxStartLine,
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
    const stop = Math.min(chunk.length, pos + l.maxStartLine + l.maxHeaderBytes);
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

  /** A complete line `buf[start, end)` (CRLF excluded) of `size` bytes (CRLF included). */
  #onLine(buf: Uint8Array, start: number, end: number, size: number): void {
    switch (this.#state) {
      case S_START:
        if (this.#owner.startLine(buf, start, end)) this.#state = S_HEADER;
        return;
      case S_HEADER: {
        this.#headerBytes += size;
        if (start === end) return this.#endHead();
        if (this.#headers.length >= this.#limits.maxHeaderCount) {
          return this.fail(431, `More than ${this.#limits.maxHeaderCount} header fields`);
        }
        const f = this.#field(buf, start, end);
        if (f === null) return;
        this.#headers.push(f);
        return this.#owner.field(f[0], f[1]);
      }
      case S_CHUNK_SIZE:
        return this.#chunkSize(buf, start, end);
      default: { // S_TRAILER
        this.#trailerBytes += size;
        if (start === end) return this.#finish();
        if (++this.#trailerCount > this.#limits.maxHeaderCount) {
          return this.fail(431, `More than ${this.#limits.maxHeaderCount} trailer fields`);
        }
        const f = this.#field(buf, start, end);
        if (f !== null) (this.#trailers ??= []).push(f);
      }
    }
  }

  /** The empty line after the header section: the owner decides the framing. */
  #endHead(): void {
    this.#owner.headEnd();
    if (this.#state === S_COMPLETE) this.#finish();
  }

  // --- fields -----------------------------------------------------------------------

  /** Parses `name: OWS value OWS`; returns the lower-cased name and trimmed value. */
  #field(buf: Uint8Array, start: number, end: number): [string, string] | null {
    if (isWs(buf[start])) {
      this.fail(400, "Obsolete line folding or leading whitespace in a field line");
      return null;
    }
    let i = start;
    let upper = 0;
    for (let t = 0; i < end && (t = TOKEN[buf[i]]) !== 0; i++) upper |= t;
    if (i === end || buf[i] !== COLON) {
      if (i > start && i < end && isWs(buf[i])) {
        this.fail(400, "Whitespace between a field name and the colon");
      } else this.fail(400, "Invalid field name");
      return null;
    }
    if (i === start) {
      this.fail(400, "Empty field name");
      return null;
    }
    let vs = i + 1;
    while (vs < end && isWs(buf[vs])) vs++;
    let ve = end;
    while (ve > vs && isWs(buf[ve - 1])) ve--;
    for (let j = vs; j < ve; j++) {
      if (FIELD_VALUE[buf[j]] === 0) {
        this.fail(400, "Invalid character in a field value");
        return null;
      }
    }
    let name = this.#names === null ? null : knownName(this.#names, buf, start, i);
    if (name === null) {
      name = this.str(buf, start, i);
      if (upper & 2) name = name.toLowerCase();
    }
    return [name, this.str(buf, vs, ve)];
  }

  // --- chunked ----------------------------------------------------------------------

  /** `chunk-size [ chunk-ext ]` (RFC 9112 §7.1). */
  #chunkSize(buf: Uint8Array, start: number, end: number): void {
    let i = start;
    let size = 0;
    for (let h = 0; i < end && (h = HEX[buf[i]]) >= 0; i++) size = size * 16 + h;
    const digits = i - start;
    if (digits === 0 || digits > MAX_CHUNK_DIGITS) return this.fail(400, "Invalid chunk size");
    const max = this.#limits.maxBodyBytes;
    if (size > max - this.#bodyLen) return this.fail(413, `${this.#bodyName} exceeds ${max} bytes`);
    if (i < end) {
      if (!chunkExtensions(buf, i, end)) return this.fail(400, "Invalid chunk extension");
      this.#extBytes += end - i;
      if (this.#extBytes > this.#limits.maxChunkExtBytes) {
        return this.fail(413, `Chunk extensions exceed ${this.#limits.maxChunkExtBytes} bytes`);
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

  // --- end of a message -------------------------------------------------------------

  #finish(): void {
    const len = this.#bodyLen;
    const body = len === 0
      ? EMPTY_BYTES
      : len === this.#body.length
      ? this.#body
      : this.#body.subarray(0, len);
    const trailers = this.#trailers;
    const keepAlive = this.#keepAlive;
    this.#reset();
    this.#state = keepAlive ? S_START : S_ENDED;
    this.#done = true;
    this.#owner.message(body, trailers);
  }

  #reset(): void {
    this.#headers = [];
    this.#headerBytes = 0;
    this.#keepAlive = true;
    this.#body = EMPTY_BYTES;
    this.#bodyLen = 0;
    this.#remaining = 0;
    this.#extBytes = 0;
    this.#trailers = null;
    this.#trailerBytes = 0;
    this.#trailerCount = 0;
  }
}
