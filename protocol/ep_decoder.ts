/**
 * Incremental EP frame decoder. Bytes go in with {@linkcode EpDecoder.push}; frames and at
 * most one error come out through an {@linkcode EpSink}. The wire format is specified in
 * `protocol/SPEC.md`.
 *
 * Why one file of this size: the header checks, the payload reader and the per-type parsers
 * are one state machine over one buffer; cut apart they would share its private state.
 *
 * @module
 */
import {
  asciiString,
  META_KEY_BYTE,
  readU16,
  readU32,
  SERVICE_BYTE,
  utf8Decoder,
} from "./_bytes.ts";
import {
  DEFAULT_MAX_PAYLOAD,
  type Frame,
  FrameType,
  HEADER_SIZE,
  MAX_MESSAGE_BYTES,
  MAX_META_ENTRIES,
  MAX_PROTOCOL_VERSION,
  MAX_SERVICE_NAME_BYTES,
  MAX_SERVICES,
  MAX_TOKEN_BYTES,
  type Meta,
  MIN_MAX_PAYLOAD,
  PREFACE,
  PREFACE_SIZE,
  type RegisterFrame,
  type RoleValue,
} from "./ep_frames.ts";
import { ErrorCode, FrameTooLargeError, ProtocolError } from "./errors.ts";

/**
 * Receives what an {@linkcode EpDecoder} decodes. Calls happen synchronously inside
 * `push`. Byte fields of a frame (`body`) are views into the decoder's input or its
 * reassembly buffer and are valid only during the `frame` call: copy them to keep them.
 * The sink must not call `push` on the same decoder.
 *
 * @example
 * ```ts
 * import type { EpSink } from "./ep_decoder.ts";
 * import type { Frame } from "./ep_frames.ts";
 * const frames: Frame[] = [];
 * const sink: EpSink = {
 *   frame(f) {
 *     frames.push(f.type === "request" || f.type === "reply" ? { ...f, body: f.body.slice() } : f);
 *   },
 *   error(err) { console.error(err.code, err.message); },
 * };
 * console.assert(typeof sink.frame === "function");
 * ```
 */
export interface EpSink {
  /** One decoded frame. */
  frame(f: Frame): void;
  /** The input is malformed or over a limit; no further calls follow. */
  error(err: ProtocolError): void;
}

/**
 * Options of {@linkcode EpDecoder}.
 *
 * @example
 * ```ts
 * import type { EpDecoderOptions } from "./ep_decoder.ts";
 * const options: EpDecoderOptions = { maxPayload: 1 << 20 };
 * console.assert(options.maxPayload === 1048576);
 * ```
 */
export interface EpDecoderOptions {
  /** Largest payload accepted, in bytes; defaults to `DEFAULT_MAX_PAYLOAD` (16 MiB). */
  maxPayload?: number;
  /**
   * The protocol version whose layouts are decoded, 1 to `MAX_PROTOCOL_VERSION`; default 1.
   * Set it once the connection's version is known ({@linkcode EpDecoder.version}).
   */
  version?: number;
}

const enum State {
  Header,
  Payload,
  Failed,
}

/** Header id rule per frame type. */
const enum IdRule {
  Zero,
  NonZero,
  Any,
}

/** A payload cursor; one per decoder, reset for every frame (no allocation per frame). */
class Reader {
  b: Uint8Array = new Uint8Array(0);
  p = 0;
  end = 0;

  reset(b: Uint8Array, start: number, end: number): void {
    this.b = b;
    this.p = start;
    this.end = end;
  }

  #need(n: number, what: string): void {
    if (this.end - this.p < n) {
      throw malformed(`Payload ends inside ${what}`);
    }
  }

  u8(what: string): number {
    this.#need(1, what);
    return this.b[this.p++];
  }

  u16(what: string): number {
    this.#need(2, what);
    const v = readU16(this.b, this.p);
    this.p += 2;
    return v;
  }

  u32(what: string): number {
    this.#need(4, what);
    const v = readU32(this.b, this.p);
    this.p += 4;
    return v;
  }

  /** Reads `n` bytes of UTF-8 text. */
  text(n: number, what: string): string {
    this.#need(n, what);
    const start = this.p;
    const end = start + n;
    this.p = end;
    const ascii = asciiString(this.b, start, end);
    if (ascii !== undefined) return ascii;
    try {
      return utf8Decoder.decode(this.b.subarray(start, end));
    } catch (cause) {
      throw malformed(`Invalid UTF-8 in ${what}`, cause);
    }
  }

  str8(what: string): string {
    return this.text(this.u8(what), what);
  }

  str16(what: string, max = 0xffff): string {
    const n = this.u16(what);
    if (n > max) throw malformed(`${capitalize(what)} of ${n} bytes exceeds ${max}`);
    return this.text(n, what);
  }

  meta(): Meta {
    const count = this.u16("meta count");
    if (count > MAX_META_ENTRIES) {
      throw malformed(`Meta count ${count} exceeds ${MAX_META_ENTRIES}`);
    }
    const meta: Meta = [];
    for (let i = 0; i < count; i++) {
      const n = this.u8("meta key");
      if (n === 0) throw malformed("Empty meta key");
      this.#need(n, "meta key");
      const b = this.b;
      const start = this.p;
      const end = start + n;
      for (let j = start; j < end; j++) {
        if (META_KEY_BYTE[b[j]] === 0) {
          throw malformed(`Invalid byte 0x${hex2(b[j])} in meta key`);
        }
      }
      const key = asciiString(b, start, end) ?? latin1(b, start, end);
      this.p = end;
      meta.push([key, this.text(this.u16("meta value"), "meta value")]);
    }
    return meta;
  }

  serviceName(what: string): string {
    const n = this.u8(what);
    this.#need(n, what);
    const b = this.b;
    const start = this.p;
    if (n === 0 || n > MAX_SERVICE_NAME_BYTES || SERVICE_BYTE[b[start]] !== 1) {
      throw malformed(`Invalid service name in ${what}`);
    }
    for (let j = start + 1; j < start + n; j++) {
      if (SERVICE_BYTE[b[j]] === 0) throw malformed(`Invalid service name in ${what}`);
    }
    this.p = start + n;
    return asciiString(b, start, start + n) ?? latin1(b, start, start + n);
  }

  zero8(what: string): void {
    if (this.u8(what) !== 0) throw malformed(`Nonzero ${what}`);
  }

  zero16(what: string): void {
    if (this.u16(what) !== 0) throw malformed(`Nonzero ${what}`);
  }

  rest(): Uint8Array {
    const v = this.b.subarray(this.p, this.end);
    this.p = this.end;
    return v;
  }

  done(type: string): void {
    if (this.p !== this.end) {
      throw malformed(`Trailing bytes after ${type} payload: ${this.end - this.p}`);
    }
  }
}

function malformed(message: string, cause?: unknown): ProtocolError {
  return new ProtocolError(
    ErrorCode.MALFORMED,
    message,
    cause === undefined ? undefined : { cause },
  );
}

/** Decodes bytes already checked to be ASCII and too long for {@linkcode asciiString}. */
function latin1(b: Uint8Array, start: number, end: number): string {
  let s = "";
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

function capitalize(s: string): string {
  return s[0].toUpperCase() + s.slice(1);
}

type Parser = (r: Reader, id: number) => Frame;

interface TypeRule {
  name: string;
  minSize: number;
  /** The payload size is exactly `minSize`. */
  fixed: boolean;
  id: IdRule;
  parse: Parser;
}

function parseHello(r: Reader): Frame {
  const role = r.u8("role");
  if (role !== 1 && role !== 2) throw malformed(`Unknown role ${role}`);
  const minVersion = r.u8("min_version");
  const maxVersion = r.u8("max_version");
  if (minVersion === 0 || minVersion > maxVersion) {
    throw malformed(`Invalid version range ${minVersion}..${maxVersion}`);
  }
  r.zero8("HELLO reserved byte");
  const heartbeatMs = r.u32("heartbeat_ms");
  const name = r.str8("name");
  const token = r.str16("token", MAX_TOKEN_BYTES);
  r.done("HELLO");
  return {
    type: "hello",
    role: role as RoleValue,
    minVersion,
    maxVersion,
    heartbeatMs,
    name,
    token,
  };
}

function parseWelcome(r: Reader): Frame {
  const version = r.u8("version");
  if (version === 0) throw malformed("WELCOME version 0");
  r.zero8("WELCOME reserved byte");
  r.zero16("WELCOME reserved bytes");
  const maxPayload = r.u32("max_payload");
  if (maxPayload < MIN_MAX_PAYLOAD) {
    throw malformed(`WELCOME max_payload ${maxPayload} is below ${MIN_MAX_PAYLOAD}`);
  }
  const heartbeatMs = r.u32("heartbeat_ms");
  const prefetch = r.u16("prefetch");
  const serverName = r.str8("server_name");
  r.done("WELCOME");
  return { type: "welcome", version, maxPayload, heartbeatMs, prefetch, serverName };
}

function parseRegister(r: Reader): RegisterFrame {
  const slots = r.u32("slots");
  const count = r.u16("service count");
  if (count > MAX_SERVICES) throw malformed(`Service count ${count} exceeds ${MAX_SERVICES}`);
  const services: string[] = [];
  for (let i = 0; i < count; i++) {
    const s = r.serviceName("REGISTER");
    if (services.includes(s)) throw malformed(`Duplicate service "${s}" in REGISTER`);
    services.push(s);
  }
  return { type: "register", slots, services };
}

function parseRegisterV1(r: Reader): Frame {
  const f = parseRegister(r);
  r.done("REGISTER");
  return f;
}

/** Version 2: an optional u32 `hedge_ms` per service after the names (SPEC.md §6.3). */
function parseRegisterV2(r: Reader): Frame {
  const f = parseRegister(r);
  if (r.p === r.end) return f;
  if (r.end - r.p !== 4 * f.services.length) {
    throw malformed(
      `REGISTER hedge section of ${r.end - r.p} bytes, expected ${4 * f.services.length}`,
    );
  }
  const hedgeMs: number[] = [];
  for (let i = 0; i < f.services.length; i++) hedgeMs.push(r.u32("hedge_ms"));
  f.hedgeMs = hedgeMs;
  return f;
}

function parseReady(r: Reader): Frame {
  return { type: "ready", credit: r.u32("credit") };
}

function parseHeartbeat(r: Reader, id: number): Frame {
  const freeSlots = r.u32("free_slots");
  return { type: "heartbeat", seq: id, freeSlots, queueDepth: r.u32("queue_depth") };
}

/** Version 2: `oldest_wait_ms` after `queue_depth` (SPEC.md §6.5). */
function parseHeartbeatV2(r: Reader, id: number): Frame {
  const freeSlots = r.u32("free_slots");
  const queueDepth = r.u32("queue_depth");
  return {
    type: "heartbeat",
    seq: id,
    freeSlots,
    queueDepth,
    oldestWaitMs: r.u32("oldest_wait_ms"),
  };
}

function parseDrain(r: Reader): Frame {
  return { type: "drain", graceMs: r.u32("grace_ms") };
}

function parseStatsRequest(_r: Reader, id: number): Frame {
  return { type: "statsRequest", id };
}

function parseStats(r: Reader, id: number): Frame {
  return { type: "stats", id, json: r.text(r.end - r.p, "STATS JSON") };
}

function parseAdmin(r: Reader, id: number): Frame {
  return { type: "admin", id, json: r.text(r.end - r.p, "ADMIN JSON") };
}

function parseAdminResult(r: Reader, id: number): Frame {
  return { type: "adminResult", id, json: r.text(r.end - r.p, "ADMIN_RESULT JSON") };
}

function parseRequest(r: Reader, id: number): Frame {
  const deadlineMs = r.u32("deadline_ms");
  const priority = r.u8("priority");
  const attempt = r.u8("attempt");
  r.zero16("REQUEST reserved bytes");
  const queueDepth = r.u32("queue_depth");
  const service = r.str8("service");
  const meta = r.meta();
  const body = r.rest();
  return { type: "request", id, deadlineMs, priority, attempt, queueDepth, service, meta, body };
}

/** Version 2: the reserved u16 of version 1 is `oldest_wait_ms` (SPEC.md §6.8). */
function parseRequestV2(r: Reader, id: number): Frame {
  const deadlineMs = r.u32("deadline_ms");
  const priority = r.u8("priority");
  const attempt = r.u8("attempt");
  const oldestWaitMs = r.u16("oldest_wait_ms");
  const queueDepth = r.u32("queue_depth");
  const service = r.str8("service");
  const meta = r.meta();
  const body = r.rest();
  return {
    type: "request",
    id,
    deadlineMs,
    priority,
    attempt,
    queueDepth,
    oldestWaitMs,
    service,
    meta,
    body,
  };
}

function parseReply(r: Reader, id: number): Frame {
  const status = r.u16("status");
  if (status < 200 || status > 599) throw malformed(`Reply status ${status} outside 200..599`);
  r.zero16("REPLY reserved bytes");
  const freeSlots = r.u32("free_slots");
  const meta = r.meta();
  return { type: "reply", id, status, freeSlots, meta, body: r.rest() };
}

function parseError(r: Reader, id: number): Frame {
  const code = r.u16("code");
  const start = r.p + 2;
  const message = r.str16("message", MAX_MESSAGE_BYTES);
  for (let i = start; i < r.p; i++) {
    const c = r.b[i];
    if (c === 0x0a || c === 0x0d) throw malformed("Line break in ERROR message");
  }
  r.done("ERROR");
  return { type: "error", id, code, message };
}

function parseCancel(_r: Reader, id: number): Frame {
  return { type: "cancel", id };
}

function rule(
  name: string,
  minSize: number,
  fixed: boolean,
  id: IdRule,
  parse: Parser,
): TypeRule {
  return { name, minSize, fixed, id, parse };
}

/** Version 1's dispatch table indexed by the type byte; `undefined` = unknown type. */
const RULES_V1: (TypeRule | undefined)[] = (() => {
  const t: (TypeRule | undefined)[] = new Array(256).fill(undefined);
  t[FrameType.HELLO] = rule("HELLO", 11, false, IdRule.Zero, parseHello);
  t[FrameType.WELCOME] = rule("WELCOME", 15, false, IdRule.Zero, parseWelcome);
  t[FrameType.REGISTER] = rule("REGISTER", 6, false, IdRule.Zero, parseRegisterV1);
  t[FrameType.READY] = rule("READY", 4, true, IdRule.Zero, parseReady);
  t[FrameType.HEARTBEAT] = rule("HEARTBEAT", 8, true, IdRule.Any, parseHeartbeat);
  t[FrameType.DRAIN] = rule("DRAIN", 4, true, IdRule.Zero, parseDrain);
  t[FrameType.STATS_REQUEST] = rule("STATS_REQUEST", 0, true, IdRule.Any, parseStatsRequest);
  t[FrameType.STATS] = rule("STATS", 0, false, IdRule.Any, parseStats);
  t[FrameType.ADMIN] = rule("ADMIN", 0, false, IdRule.Any, parseAdmin);
  t[FrameType.ADMIN_RESULT] = rule("ADMIN_RESULT", 0, false, IdRule.Any, parseAdminResult);
  t[FrameType.REQUEST] = rule("REQUEST", 15, false, IdRule.NonZero, parseRequest);
  t[FrameType.REPLY] = rule("REPLY", 10, false, IdRule.NonZero, parseReply);
  t[FrameType.ERROR] = rule("ERROR", 4, false, IdRule.Any, parseError);
  t[FrameType.CANCEL] = rule("CANCEL", 0, true, IdRule.NonZero, parseCancel);
  return t;
})();

/** Version 2's: version 1's with REGISTER, HEARTBEAT and REQUEST extended (SPEC.md §6). */
const RULES_V2: (TypeRule | undefined)[] = (() => {
  const t = RULES_V1.slice();
  t[FrameType.REGISTER] = rule("REGISTER", 6, false, IdRule.Zero, parseRegisterV2);
  t[FrameType.HEARTBEAT] = rule("HEARTBEAT", 12, true, IdRule.Any, parseHeartbeatV2);
  t[FrameType.REQUEST] = rule("REQUEST", 15, false, IdRule.NonZero, parseRequestV2);
  return t;
})();

/** The dispatch tables by version (index 0 unused). */
const RULES: readonly (readonly (TypeRule | undefined)[])[] = [RULES_V1, RULES_V1, RULES_V2];

/** Reassembly buffers up to this size are kept for the next split frame. */
const RETAIN_BYTES = 64 * 1024;

const EMPTY = new Uint8Array(0);
/** First buffer for a frame split across chunks; it doubles as bytes arrive. */
const INITIAL_PAYLOAD = 64 * 1024;

/**
 * Incremental EP decoder: an explicit two-state machine (header, payload) over pushed
 * chunks. A frame that lies wholly inside one chunk is parsed in place (its `body` is a
 * `subarray` of the chunk); a frame split across chunks is collected into one buffer
 * sized from its header. Header checks (length limit, type, flags, reserved bits, size and
 * id rules) run as soon as the 12 header bytes are in, before any payload is buffered.
 *
 * After the first error the decoder is {@linkcode EpDecoder.failed} and ignores further
 * input. Running out of bytes is a normal return. The decoder does not read the
 * connection preface: strip it first (see {@linkcode parsePreface}).
 *
 * @example
 * ```ts
 * import { EpDecoder } from "./ep_decoder.ts";
 * import { EpEncoder } from "./ep_encoder.ts";
 * import type { Frame } from "./ep_frames.ts";
 *
 * const bytes = new EpEncoder().encodeCopy({ type: "cancel", id: 9 });
 * const seen: Frame[] = [];
 * const decoder = new EpDecoder({ frame: (f) => seen.push(f), error: (e) => console.error(e) });
 * decoder.push(bytes.subarray(0, 5)); // half a header: nothing yet
 * decoder.push(bytes.subarray(5));
 * console.assert(seen.length === 1 && seen[0].type === "cancel");
 * ```
 */
export class EpDecoder {
  readonly #sink: EpSink;
  #maxPayload: number;
  readonly #reader = new Reader();
  #state: State = State.Header;
  readonly #header = new Uint8Array(HEADER_SIZE);
  #headerFill = 0;
  #length = 0;
  #id = 0;
  #rule: TypeRule | undefined;
  #buf: Uint8Array = EMPTY;
  #fill = 0;
  #version = 1;
  #rules: readonly (TypeRule | undefined)[] = RULES_V1;

  /**
   * Creates a decoder that reports to `sink`.
   *
   * @throws {RangeError} `options.maxPayload` is not an integer in 0..2^32-1, or
   * `options.version` is not a version this codec implements.
   */
  constructor(sink: EpSink, options?: EpDecoderOptions) {
    const max = options?.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    if (!Number.isInteger(max) || max < 0 || max > 0xffff_ffff) {
      throw new RangeError(`Invalid maxPayload "${max}"`);
    }
    this.#sink = sink;
    this.#maxPayload = max;
    this.version = options?.version ?? 1;
  }

  /**
   * The protocol version whose frame layouts are decoded (SPEC.md §9.2); settable, for a
   * peer that learns the connection's version from WELCOME. Applies from the next header on.
   *
   * @throws {RangeError} on a version this codec does not implement.
   */
  get version(): number {
    return this.#version;
  }

  set version(v: number) {
    if (!Number.isInteger(v) || v < 1 || v > MAX_PROTOCOL_VERSION) {
      throw new RangeError(
        `Unsupported version "${v}": this codec speaks 1-${MAX_PROTOCOL_VERSION}`,
      );
    }
    this.#version = v;
    this.#rules = RULES[v];
  }

  /**
   * Largest payload accepted; settable, for a receiver that allows more once the peer is
   * known (SPEC.md §9.1: ≤ 65536 bytes before WELCOME). Applies from the next header on.
   *
   * @throws {RangeError} on a value that is not an integer in 0..2^32-1.
   */
  get maxPayload(): number {
    return this.#maxPayload;
  }

  set maxPayload(max: number) {
    if (!Number.isInteger(max) || max < 0 || max > 0xffff_ffff) {
      throw new RangeError(`Invalid maxPayload "${max}"`);
    }
    this.#maxPayload = max;
  }

  /** Whether the decoder has reported an error (or a sink call threw) and stopped. */
  get failed(): boolean {
    return this.#state === State.Failed;
  }

  /** Bytes held for an incomplete frame (header and payload); at most 12 + maxPayload. */
  get buffered(): number {
    return this.#state === State.Payload ? HEADER_SIZE + this.#fill : this.#headerFill;
  }

  /**
   * Feeds bytes. Complete frames are passed to the sink before this returns; a partial
   * frame is kept for the next call. The chunk is not retained after the call, except for
   * the bytes of a split frame, which are copied.
   */
  push(chunk: Uint8Array): void {
    const len = chunk.length;
    let pos = 0;
    while (pos < len) {
      const state = this.#state;
      if (state === State.Header) {
        if (this.#headerFill === 0 && len - pos >= HEADER_SIZE) {
          if (!this.#readHeader(chunk, pos)) return;
          pos += HEADER_SIZE;
        } else {
          const n = Math.min(HEADER_SIZE - this.#headerFill, len - pos);
          for (let i = 0; i < n; i++) this.#header[this.#headerFill + i] = chunk[pos + i];
          this.#headerFill += n;
          pos += n;
          if (this.#headerFill < HEADER_SIZE) return;
          this.#headerFill = 0;
          if (!this.#readHeader(this.#header, 0)) return;
        }
        const length = this.#length;
        if (length <= len - pos) {
          // The whole payload is in this chunk: parse it in place.
          if (!this.#emit(chunk, pos, pos + length)) return;
          pos += length;
        } else {
          // Reserve what has arrived, not what the header claims: a peer declaring a large
          // frame and sending it slowly costs only the bytes it sent (grown by doubling).
          if (this.#buf.length < length) {
            this.#buf = new Uint8Array(Math.min(length, Math.max(INITIAL_PAYLOAD, len - pos)));
          }
          this.#fill = 0;
          this.#state = State.Payload;
        }
      } else if (state === State.Payload) {
        const n = Math.min(this.#length - this.#fill, len - pos);
        if (this.#fill + n > this.#buf.length) {
          const grown = new Uint8Array(
            Math.min(this.#length, Math.max(this.#buf.length * 2, this.#fill + n)),
          );
          grown.set(this.#buf.subarray(0, this.#fill));
          this.#buf = grown;
        }
        this.#buf.set(pos === 0 && n === len ? chunk : chunk.subarray(pos, pos + n), this.#fill);
        this.#fill += n;
        pos += n;
        if (this.#fill === this.#length) {
          this.#state = State.Header;
          const buf = this.#buf;
          if (buf.length > RETAIN_BYTES) this.#buf = EMPTY; // do not hold a large buffer
          if (!this.#emit(buf, 0, this.#length)) return;
        }
      } else {
        return;
      }
    }
  }

  /** Reads and checks a header; returns false after reporting an error. */
  #readHeader(b: Uint8Array, o: number): boolean {
    const length = readU32(b, o);
    const type = b[o + 4];
    const id = readU32(b, o + 8);
    if (length > this.#maxPayload) {
      return this.#fail(new FrameTooLargeError(length, this.#maxPayload));
    }
    const rule = this.#rules[type];
    if (rule === undefined) {
      return this.#fail(
        new ProtocolError(ErrorCode.UNEXPECTED_FRAME, `Unknown frame type 0x${hex2(type)}`),
      );
    }
    if (b[o + 5] !== 0) {
      return this.#fail(malformed(`Nonzero flags 0x${hex2(b[o + 5])} on ${rule.name}`));
    }
    if (b[o + 6] !== 0 || b[o + 7] !== 0) {
      return this.#fail(malformed(`Nonzero reserved header bytes on ${rule.name}`));
    }
    if (rule.fixed ? length !== rule.minSize : length < rule.minSize) {
      return this.#fail(
        malformed(
          `${rule.name} payload of ${length} bytes, expected ${
            rule.fixed ? "" : "at least "
          }${rule.minSize}`,
        ),
      );
    }
    if (rule.id === IdRule.Zero ? id !== 0 : rule.id === IdRule.NonZero && id === 0) {
      return this.#fail(
        malformed(`${rule.name} with id ${id}, expected ${id === 0 ? "nonzero" : "0"}`),
      );
    }
    this.#length = length;
    this.#id = id;
    this.#rule = rule;
    return true;
  }

  /** Parses the payload `b[start, end)` and hands the frame to the sink. */
  #emit(b: Uint8Array, start: number, end: number): boolean {
    const r = this.#reader;
    r.reset(b, start, end);
    let frame: Frame;
    try {
      frame = this.#rule!.parse(r, this.#id);
    } catch (err) {
      r.reset(EMPTY, 0, 0);
      if (err instanceof ProtocolError) return this.#fail(err);
      throw err;
    }
    r.reset(EMPTY, 0, 0); // drop the reference to the caller's chunk
    try {
      this.#sink.frame(frame);
    } catch (err) {
      // The rest of the chunk is lost: the stream can no longer be followed.
      this.#state = State.Failed;
      throw err;
    }
    return true;
  }

  #fail(err: ProtocolError): false {
    this.#state = State.Failed;
    this.#buf = EMPTY;
    this.#sink.error(err);
    return false;
  }
}

/**
 * Reads a connection preface: returns the client's highest protocol version (the 4th
 * byte, 0–255) when `bytes` starts with `0xEB 'E' 'P' <version>`, else `null` (too short or
 * not EP). A version of 0 is returned as 0; the server answers it with
 * UNSUPPORTED_VERSION.
 *
 * @example
 * ```ts
 * import { parsePreface } from "./ep_decoder.ts";
 * console.assert(parsePreface(new Uint8Array([0xeb, 0x45, 0x50, 0x01])) === 1);
 * console.assert(parsePreface(new TextEncoder().encode("GET ")) === null);
 * ```
 */
export function parsePreface(bytes: Uint8Array): number | null {
  if (bytes.length < PREFACE_SIZE) return null;
  if (bytes[0] !== PREFACE[0] || bytes[1] !== PREFACE[1] || bytes[2] !== PREFACE[2]) return null;
  return bytes[3];
}
