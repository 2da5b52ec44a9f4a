/**
 * EP frame encoder: {@linkcode Frame} values to bytes, into one reusable growable buffer.
 * The wire format is specified in `protocol/SPEC.md`.
 *
 * @module
 */
import { META_KEY_BYTE, utf8Encoder } from "./_bytes.ts";
import {
  DEFAULT_MAX_PAYLOAD,
  type Frame,
  FrameType,
  HEADER_SIZE,
  isServiceName,
  MAX_MESSAGE_BYTES,
  MAX_META_ENTRIES,
  MAX_NAME_BYTES,
  MAX_PROTOCOL_VERSION,
  MAX_SERVICES,
  MAX_TOKEN_BYTES,
  type Meta,
  MIN_MAX_PAYLOAD,
  NOT_APPLICABLE,
  PREFACE,
} from "./ep_frames.ts";
import { FrameTooLargeError } from "./errors.ts";

/**
 * Options of {@linkcode EpEncoder}.
 *
 * @example
 * ```ts
 * import type { EpEncoderOptions } from "./ep_encoder.ts";
 * const options: EpEncoderOptions = { maxPayload: 1 << 20 };
 * console.assert(options.maxPayload === 1048576);
 * ```
 */
export interface EpEncoderOptions {
  /**
   * Largest payload the peer accepts, in bytes; defaults to `DEFAULT_MAX_PAYLOAD` (16 MiB).
   * A client sets it from WELCOME's `max_payload` (see {@linkcode EpEncoder.maxPayload}).
   */
  maxPayload?: number;
  /**
   * The protocol version whose layouts are written, 1 to `MAX_PROTOCOL_VERSION`; default 1
   * (see {@linkcode EpEncoder.version}).
   */
  version?: number;
}

const INITIAL_BYTES = 1024;
/** A buffer grown past this size is dropped at the next call instead of being kept. */
const RETAIN_BYTES = 256 * 1024;

/**
 * Encodes frames. {@linkcode EpEncoder.encode} writes into one buffer that is reused by
 * the next call, so encoding allocates nothing per frame once the buffer has grown to the
 * usual frame size; {@linkcode EpEncoder.encodeCopy} returns bytes the caller owns.
 *
 * Invalid frames are caller bugs and throw `RangeError` (a string over its limit, an
 * integer out of range, a bad service name or meta key, a zero job id, ...) or `TypeError`
 * (unknown `type`); a payload over {@linkcode EpEncoder.maxPayload} throws
 * `FrameTooLargeError`. Strings must be well-formed UTF-16 (no lone surrogates).
 *
 * @example
 * ```ts
 * import { EpEncoder } from "./ep_encoder.ts";
 * const enc = new EpEncoder();
 * const bytes = enc.encode({ type: "ready", credit: 3 });
 * console.assert(bytes.length === 16 && bytes[4] === 0x04 && bytes[15] === 3);
 * ```
 */
export class EpEncoder {
  #buf: Uint8Array = new Uint8Array(INITIAL_BYTES);
  #pos = 0;
  #maxPayload: number;
  #version = 1;

  /** Creates an encoder. */
  constructor(options?: EpEncoderOptions) {
    this.#maxPayload = checkMaxPayload(options?.maxPayload ?? DEFAULT_MAX_PAYLOAD);
    this.version = options?.version ?? 1;
  }

  /**
   * The protocol version whose frame layouts are written (SPEC.md §9.2); settable, once a
   * connection's version is agreed. Fields a version does not have are left out: a
   * version-2 field (`oldestWaitMs`, `hedgeMs`) is not written in version 1.
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
  }

  /** Largest payload encoded before `FrameTooLargeError` is thrown; settable (after WELCOME). */
  get maxPayload(): number {
    return this.#maxPayload;
  }

  set maxPayload(value: number) {
    this.#maxPayload = checkMaxPayload(value);
  }

  /**
   * Encodes one frame (header and payload). The result is a view into the encoder's
   * buffer, valid until the next call to `encode` or `encodeCopy`: write it out or copy it
   * before encoding again.
   */
  encode(frame: Frame): Uint8Array {
    if (this.#buf.length > RETAIN_BYTES) this.#buf = new Uint8Array(INITIAL_BYTES);
    this.#pos = HEADER_SIZE;
    let type: number;
    let id = 0;
    switch (frame.type) {
      case "hello": {
        type = FrameType.HELLO;
        const { role, minVersion, maxVersion } = frame;
        if (role !== 1 && role !== 2) throw new RangeError(`Invalid role "${role}"`);
        u8(minVersion, "minVersion");
        u8(maxVersion, "maxVersion");
        if (minVersion === 0 || minVersion > maxVersion) {
          throw new RangeError(`Invalid version range "${minVersion}..${maxVersion}"`);
        }
        this.#ensure(8);
        this.#u8(role);
        this.#u8(minVersion);
        this.#u8(maxVersion);
        this.#u8(0);
        this.#u32(u32(frame.heartbeatMs, "heartbeatMs"));
        this.#str(frame.name, 1, MAX_NAME_BYTES, "name");
        this.#str(frame.token, 2, MAX_TOKEN_BYTES, "token");
        break;
      }
      case "welcome": {
        type = FrameType.WELCOME;
        const version = u8(frame.version, "version");
        if (version === 0) throw new RangeError(`Invalid version "0"`);
        this.#ensure(14);
        this.#u8(version);
        this.#u8(0);
        this.#u16(0);
        const maxPayload = u32(frame.maxPayload, "maxPayload");
        if (maxPayload < MIN_MAX_PAYLOAD) {
          throw new RangeError(`maxPayload "${maxPayload}" is below ${MIN_MAX_PAYLOAD}`);
        }
        this.#u32(maxPayload);
        this.#u32(u32(frame.heartbeatMs, "heartbeatMs"));
        this.#u16(u16(frame.prefetch, "prefetch"));
        this.#str(frame.serverName, 1, MAX_NAME_BYTES, "serverName");
        break;
      }
      case "register": {
        type = FrameType.REGISTER;
        const services = frame.services;
        if (services.length > MAX_SERVICES) {
          throw new RangeError(`Service count "${services.length}" exceeds ${MAX_SERVICES}`);
        }
        if (new Set(services).size !== services.length) {
          throw new RangeError("Duplicate service names in REGISTER");
        }
        const hedge = this.#version >= 2 ? frame.hedgeMs : undefined;
        if (hedge !== undefined && hedge.length !== services.length) {
          throw new RangeError(
            `REGISTER hedgeMs has ${hedge.length} entries for ${services.length} services`,
          );
        }
        this.#ensure(6);
        this.#u32(u32(frame.slots, "slots"));
        this.#u16(services.length);
        for (const s of services) this.#service(s);
        if (hedge !== undefined) {
          this.#ensure(4 * hedge.length);
          for (const ms of hedge) this.#u32(u32(ms, "hedgeMs"));
        }
        break;
      }
      case "ready":
        type = FrameType.READY;
        this.#ensure(4);
        this.#u32(u32(frame.credit, "credit"));
        break;
      case "heartbeat":
        type = FrameType.HEARTBEAT;
        id = u32(frame.seq, "seq");
        this.#ensure(12);
        this.#u32(u32(frame.freeSlots, "freeSlots"));
        this.#u32(u32(frame.queueDepth, "queueDepth"));
        if (this.#version >= 2) {
          this.#u32(u32(frame.oldestWaitMs ?? NOT_APPLICABLE, "oldestWaitMs"));
        }
        break;
      case "drain":
        type = FrameType.DRAIN;
        this.#ensure(4);
        this.#u32(u32(frame.graceMs, "graceMs"));
        break;
      case "statsRequest":
        type = FrameType.STATS_REQUEST;
        id = u32(frame.id, "id");
        break;
      case "stats":
        type = FrameType.STATS;
        id = u32(frame.id, "id");
        this.#text(frame.json, this.#maxPayload, "json");
        break;
      case "admin":
        type = FrameType.ADMIN;
        id = u32(frame.id, "id");
        this.#text(frame.json, this.#maxPayload, "json");
        break;
      case "adminResult":
        type = FrameType.ADMIN_RESULT;
        id = u32(frame.id, "id");
        this.#text(frame.json, this.#maxPayload, "json");
        break;
      case "request": {
        type = FrameType.REQUEST;
        id = jobId(frame.id);
        this.#ensure(12);
        this.#u32(u32(frame.deadlineMs, "deadlineMs"));
        this.#u8(u8(frame.priority, "priority"));
        this.#u8(u8(frame.attempt, "attempt"));
        this.#u16(this.#version >= 2 ? u16(frame.oldestWaitMs ?? 0, "oldestWaitMs") : 0);
        this.#u32(u32(frame.queueDepth, "queueDepth"));
        this.#service(frame.service);
        this.#meta(frame.meta);
        this.#body(frame.body);
        break;
      }
      case "reply": {
        type = FrameType.REPLY;
        id = jobId(frame.id);
        const status = frame.status;
        if (!Number.isInteger(status) || status < 200 || status > 599) {
          throw new RangeError(`Invalid reply status "${status}"`);
        }
        this.#ensure(8);
        this.#u16(status);
        this.#u16(0);
        this.#u32(u32(frame.freeSlots, "freeSlots"));
        this.#meta(frame.meta);
        this.#body(frame.body);
        break;
      }
      case "error": {
        type = FrameType.ERROR;
        id = u32(frame.id, "id");
        const message = frame.message;
        if (message.includes("\n") || message.includes("\r")) {
          throw new RangeError("Line break in error message");
        }
        this.#ensure(2);
        this.#u16(u16(frame.code, "code"));
        this.#str(message, 2, MAX_MESSAGE_BYTES, "message");
        break;
      }
      case "cancel":
        type = FrameType.CANCEL;
        id = jobId(frame.id);
        break;
      default:
        throw new TypeError(`Unknown frame type "${(frame as { type: unknown }).type}"`);
    }
    const length = this.#pos - HEADER_SIZE;
    if (length > this.#maxPayload) throw new FrameTooLargeError(length, this.#maxPayload);
    const b = this.#buf;
    b[0] = length >>> 24;
    b[1] = length >>> 16;
    b[2] = length >>> 8;
    b[3] = length;
    b[4] = type;
    b[5] = 0;
    b[6] = 0;
    b[7] = 0;
    b[8] = id >>> 24;
    b[9] = id >>> 16;
    b[10] = id >>> 8;
    b[11] = id;
    return b.subarray(0, this.#pos);
  }

  /** Encodes one frame into a new `Uint8Array` the caller owns. */
  encodeCopy(frame: Frame): Uint8Array {
    return this.encode(frame).slice();
  }

  /** Makes room for `n` more bytes at the write position. */
  #ensure(n: number): void {
    const need = this.#pos + n;
    if (need <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(need, this.#buf.length * 2));
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
  }

  #u8(v: number): void {
    this.#buf[this.#pos++] = v;
  }

  #u16(v: number): void {
    const b = this.#buf;
    const p = this.#pos;
    b[p] = v >>> 8;
    b[p + 1] = v;
    this.#pos = p + 2;
  }

  #u32(v: number): void {
    const b = this.#buf;
    const p = this.#pos;
    b[p] = v >>> 24;
    b[p + 1] = v >>> 16;
    b[p + 2] = v >>> 8;
    b[p + 3] = v;
    this.#pos = p + 4;
  }

  /** Writes a str8 (`prefix` 1) or str16 (`prefix` 2) of at most `max` bytes. */
  #str(s: string, prefix: 1 | 2, max: number, what: string): void {
    const n = s.length;
    if (n > max) throw new RangeError(`${what} of ${n} characters exceeds ${max} bytes`);
    this.#ensure(prefix + n);
    const b = this.#buf;
    const start = this.#pos + prefix;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      b[start + i] = c;
    }
    let written = i;
    if (i < n) {
      if (!s.isWellFormed()) throw new RangeError(`Lone surrogate in ${what}`);
      this.#ensure(prefix + 3 * n);
      written = utf8Encoder.encodeInto(s, this.#buf.subarray(start, start + 3 * n)).written;
      if (written > max) throw new RangeError(`${what} of ${written} bytes exceeds ${max}`);
    }
    const out = this.#buf;
    if (prefix === 1) {
      out[this.#pos] = written;
    } else {
      out[this.#pos] = written >>> 8;
      out[this.#pos + 1] = written;
    }
    this.#pos = start + written;
  }

  /** Writes `s` as UTF-8 with no length prefix (the STATS, ADMIN and ADMIN_RESULT payloads). */
  #text(s: string, max: number, what: string): void {
    if (!s.isWellFormed()) throw new RangeError(`Lone surrogate in ${what}`);
    const n = s.length;
    if (n > max) throw new FrameTooLargeError(n, max);
    this.#ensure(3 * n);
    const start = this.#pos;
    this.#pos += utf8Encoder.encodeInto(s, this.#buf.subarray(start, start + 3 * n)).written;
  }

  #service(s: string): void {
    if (!isServiceName(s)) throw new RangeError(`Invalid service name "${s}"`);
    this.#str(s, 1, 64, "service");
  }

  #meta(meta: Meta): void {
    const count = meta.length;
    if (count > MAX_META_ENTRIES) {
      throw new RangeError(`Meta count "${count}" exceeds ${MAX_META_ENTRIES}`);
    }
    this.#ensure(2);
    this.#u16(count);
    for (let i = 0; i < count; i++) {
      const entry = meta[i];
      const key = entry[0];
      const n = key.length;
      if (n === 0 || n > 255) throw new RangeError(`Invalid meta key "${key}"`);
      this.#ensure(1 + n);
      const b = this.#buf;
      let p = this.#pos;
      b[p++] = n;
      for (let j = 0; j < n; j++) {
        const c = key.charCodeAt(j);
        if (c >= 0x80 || META_KEY_BYTE[c] === 0) {
          throw new RangeError(`Invalid meta key "${key}"`);
        }
        b[p++] = c;
      }
      this.#pos = p;
      this.#str(entry[1], 2, 0xffff, "meta value");
    }
  }

  #body(body: Uint8Array): void {
    if (body.length > this.#maxPayload) {
      throw new FrameTooLargeError(this.#pos - HEADER_SIZE + body.length, this.#maxPayload);
    }
    this.#ensure(body.length);
    this.#buf.set(body, this.#pos);
    this.#pos += body.length;
  }
}

/**
 * Returns the connection preface for a client whose highest protocol version is
 * `version`: `0xEB 'E' 'P' <version>`.
 *
 * @example
 * ```ts
 * import { encodePreface } from "./ep_encoder.ts";
 * const p = encodePreface(1);
 * console.assert(p.length === 4 && p[0] === 0xeb && p[3] === 1);
 * ```
 *
 * @throws {RangeError} `version` is not an integer in 1..255.
 */
export function encodePreface(version: number): Uint8Array {
  if (u8(version, "version") === 0) throw new RangeError(`Invalid version "0"`);
  return new Uint8Array([PREFACE[0], PREFACE[1], PREFACE[2], version]);
}

function u8(v: number, what: string): number {
  if ((v & 0xff) !== v) throw new RangeError(`Invalid ${what} "${v}": not a u8`);
  return v;
}

function u16(v: number, what: string): number {
  if ((v & 0xffff) !== v) throw new RangeError(`Invalid ${what} "${v}": not a u16`);
  return v;
}

function u32(v: number, what: string): number {
  if (v >>> 0 !== v) throw new RangeError(`Invalid ${what} "${v}": not a u32`);
  return v;
}

function jobId(v: number): number {
  if (v >>> 0 !== v || v === 0) throw new RangeError(`Invalid job id "${v}"`);
  return v;
}

function checkMaxPayload(v: number): number {
  if (v >>> 0 !== v) throw new RangeError(`Invalid maxPayload "${v}"`);
  return v;
}
