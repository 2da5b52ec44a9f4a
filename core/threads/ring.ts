/**
 * Lock-free single-producer/single-consumer rings over a `SharedArrayBuffer`, for
 * variable-length messages between the main thread and handler threads.
 *
 * ## Byte layout of a ring buffer
 *
 * ```
 * offset size  field             written by  meaning
 * ------ ----- ----------------- ----------- ---------------------------------------------
 *      0     4 TAIL              producer    bytes ever published (u32, wraps)
 *      4     4 WRITTEN           producer    messages published (u32, wraps)
 *      8     4 FULL_EVENTS       producer    writes refused because the ring was full
 *     12     4 DATA_WAKEUPS      producer    notifies sent to a sleeping consumer
 *     64     4 HEAD              consumer    bytes ever released (u32, wraps)
 *     68     4 READ              consumer    messages released (u32, wraps)
 *     72     4 SPACE_WAKEUPS     consumer    notifies sent to a producer waiting for space
 *    128     8 DATA doorbell     both        consumer sleeps here while the ring is empty
 *    192     8 SPACE doorbell    both        producer sleeps here while the ring is full
 *    256   cap DATA              producer    records, 8-byte aligned
 * ```
 *
 * Each group sits on its own 64-byte line, so the producer's stores to TAIL never share a
 * cache line with the consumer's stores to HEAD. `cap` is a power of two; TAIL and HEAD
 * count bytes and wrap at 2^32, a position in DATA is `index & (cap - 1)`, and the used
 * space is `(TAIL - HEAD) mod 2^32`.
 *
 * Each DATA and SPACE doorbell is a {@linkcode Doorbell} (`doorbell.ts`): the consumer
 * sleeps on DATA while the ring is empty, the producer on SPACE while it is full, and the
 * other end rings only when someone sleeps.
 *
 * ## Record layout (inside DATA)
 *
 * ```
 * +0  u32 SIZE     payload bytes (meta + body); 0xFFFFFFFF = wrap marker, go to offset 0
 * +4  u32 ID       message id (the pool uses its job ticket)
 * +8  u16 KIND     message kind
 * +10 u16 AUX      kind-specific (the pool: service index, reply status)
 * +12 u32 META_LEN length of the first segment; the body is SIZE - META_LEN bytes
 * +16 ...          meta bytes, then body bytes, then padding to 8 bytes
 * ```
 *
 * A record is never split: when it does not fit before the end of DATA, the producer writes
 * a wrap marker and puts the record at offset 0. A record's payload is at most
 * `cap / 2 - 16` bytes, which guarantees that an empty ring always takes the largest
 * message wherever its indices stand; a larger message is refused with
 * {@linkcode RingMessageTooLargeError} before anything is written.
 *
 * Writes and reads are local until published: {@linkcode RingProducer.flush} stores TAIL
 * once per batch (and rings the doorbell only if the consumer sleeps), and
 * {@linkcode RingConsumer.release} stores HEAD once per batch. Nothing is allocated per
 * message; full and empty are return values.
 *
 * Why this file is over 600 lines: the layout above and the two ends that implement it stay
 * together. The producer's reserve and wrap and the consumer's read and wrap must agree
 * byte for byte, and each end's publication is the other's load; they are reviewed side by
 * side. The doorbell both ends sleep on is its own concept, in `doorbell.ts`.
 *
 * @example
 * ```ts
 * import { createRing, RingConsumer, RingProducer, RingRecord } from "./ring.ts";
 * const sab = createRing(4096);
 * const producer = new RingProducer(sab);
 * const consumer = new RingConsumer(sab);
 * producer.tryWrite(7, 1, 0, null, new Uint8Array([1, 2, 3]));
 * producer.flush();
 * const rec = new RingRecord();
 * const out = new Uint8Array(3);
 * if (consumer.read(rec)) consumer.copyBody(rec, out);
 * consumer.release();
 * console.assert(rec.id === 7 && out[2] === 3);
 * ```
 *
 * @module
 */

import { RingMessageTooLargeError } from "../errors.ts";
import { Doorbell, type WaitResult } from "./doorbell.ts";

/** Bytes before DATA: the control lines described at the top of this file. */
export const RING_HEADER_BYTES = 256;
/** Byte offset of TAIL (producer line). */
export const RING_TAIL_OFFSET = 0;
/** Byte offset of the WRITTEN counter (producer line). */
export const RING_WRITTEN_OFFSET = 4;
/** Byte offset of the FULL_EVENTS counter (producer line). */
export const RING_FULL_EVENTS_OFFSET = 8;
/** Byte offset of the DATA_WAKEUPS counter (producer line). */
export const RING_DATA_WAKEUPS_OFFSET = 12;
/** Byte offset of HEAD (consumer line). */
export const RING_HEAD_OFFSET = 64;
/** Byte offset of the READ counter (consumer line). */
export const RING_READ_OFFSET = 68;
/** Byte offset of the SPACE_WAKEUPS counter (consumer line). */
export const RING_SPACE_WAKEUPS_OFFSET = 72;
/** Byte offset of the DATA doorbell (FLAG, then SEQ). */
export const RING_DATA_BELL_OFFSET = 128;
/** Byte offset of the SPACE doorbell (FLAG, then SEQ). */
export const RING_SPACE_BELL_OFFSET = 192;
/** Bytes of a record header inside DATA. */
export const RING_RECORD_HEADER_BYTES = 16;
/** Records start on multiples of this many bytes. */
export const RING_RECORD_ALIGN = 8;
/** SIZE value of a wrap marker: the rest of DATA is padding, the next record is at 0. */
export const RING_WRAP_MARKER = 0xffff_ffff;
/** Smallest DATA capacity accepted by {@linkcode createRing}. */
export const RING_MIN_CAPACITY = 64;
/** Largest DATA capacity accepted by {@linkcode createRing}. */
export const RING_MAX_CAPACITY = 1 << 30;

// Int32 indices of the control words.
const TAIL = RING_TAIL_OFFSET >> 2;
const WRITTEN = RING_WRITTEN_OFFSET >> 2;
const FULL_EVENTS = RING_FULL_EVENTS_OFFSET >> 2;
const DATA_WAKEUPS = RING_DATA_WAKEUPS_OFFSET >> 2;
const HEAD = RING_HEAD_OFFSET >> 2;
// Copies up to these sizes run as JS loops (no view allocated); longer ones call the native
// copy through one temporary view, which is cheaper than a loop by then.
const WORD_COPY_MAX = 512;
const BYTE_COPY_MAX = 64;
const READ = RING_READ_OFFSET >> 2;
const SPACE_WAKEUPS = RING_SPACE_WAKEUPS_OFFSET >> 2;

/**
 * Allocates a ring: a `SharedArrayBuffer` of `RING_HEADER_BYTES + capacity` bytes, zeroed.
 * Pass the buffer to the producer thread and the consumer thread (postMessage shares it).
 *
 * @param capacity DATA bytes, a power of two from {@linkcode RING_MIN_CAPACITY} to
 *   {@linkcode RING_MAX_CAPACITY}.
 * @throws {RangeError} if `capacity` is not such a power of two.
 *
 * @example
 * ```ts
 * import { createRing, ringMaxPayload } from "./ring.ts";
 * const sab = createRing(1 << 16);
 * console.assert(ringMaxPayload(1 << 16) === 32_752 && sab.byteLength === 256 + 65_536);
 * ```
 */
export function createRing(capacity: number): SharedArrayBuffer {
  checkCapacity(capacity);
  return new SharedArrayBuffer(RING_HEADER_BYTES + capacity);
}

/**
 * The largest payload (meta + body bytes) a ring of `capacity` DATA bytes accepts.
 *
 * @example
 * ```ts
 * import { ringMaxPayload } from "./ring.ts";
 * console.assert(ringMaxPayload(4096) === 2032);
 * ```
 */
export function ringMaxPayload(capacity: number): number {
  return capacity / 2 - RING_RECORD_HEADER_BYTES;
}

function checkCapacity(capacity: number): void {
  if (
    !Number.isInteger(capacity) || capacity < RING_MIN_CAPACITY ||
    capacity > RING_MAX_CAPACITY || (capacity & (capacity - 1)) !== 0
  ) {
    throw new RangeError(
      `Ring capacity must be a power of two from ${RING_MIN_CAPACITY} to ${RING_MAX_CAPACITY}: "${capacity}"`,
    );
  }
}

function capacityOf(buffer: SharedArrayBuffer): number {
  const capacity = buffer.byteLength - RING_HEADER_BYTES;
  checkCapacity(capacity);
  return capacity;
}

/**
 * A reusable view of one record, filled by {@linkcode RingConsumer.read}. Its bytes stay
 * valid in the ring until the next {@linkcode RingConsumer.release}.
 *
 * @example
 * ```ts
 * import { RingRecord } from "./ring.ts";
 * const rec = new RingRecord(); // allocate once, reuse for every read
 * console.assert(rec.bodyLength === 0);
 * ```
 */
export class RingRecord {
  /** Message id. */
  id = 0;
  /** Message kind (u16). */
  kind = 0;
  /** Kind-specific value (u16). */
  aux = 0;
  /** Bytes of the first segment. */
  metaLength = 0;
  /** Bytes of the second segment. */
  bodyLength = 0;
  /** Offset of the meta bytes in {@linkcode RingConsumer.bytes}; the body follows. */
  offset = 0;
}

/** Options for {@linkcode RingProducer}. */
export interface RingProducerOptions {
  /**
   * Doorbell to ring on {@linkcode RingProducer.flush} instead of the ring's own DATA
   * doorbell: lets one consumer sleep on many rings (the pool's main thread).
   */
  dataBell?: Doorbell;
  /**
   * Records of this kind do not wake a consumer that sleeps lazily
   * ({@linkcode RingConsumer.armData} with `lazy`): it reads them when its wait ends. Any
   * other kind in a flushed batch does. Default: every kind wakes.
   */
  lazyKind?: number;
}

/**
 * The writing end of a ring. Exactly one thread may own it.
 *
 * @example
 * ```ts
 * import { createRing, RingProducer } from "./ring.ts";
 * const producer = new RingProducer(createRing(256));
 * const msg = new Uint8Array(100);
 * let n = 0;
 * while (producer.tryWrite(n, 1, 0, null, msg)) n++; // until full: false, not a throw
 * producer.flush();
 * console.assert(n === 2 && producer.fullEvents === 1);
 * ```
 */
export class RingProducer {
  /** DATA bytes. */
  readonly capacity: number;
  /** Largest payload (meta + body) accepted, in bytes. */
  readonly maxPayload: number;
  /** DATA as bytes (shared memory). */
  readonly bytes: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #ctl: Int32Array;
  readonly #mask: number;
  readonly #dataBell: Doorbell;
  readonly #spaceBell: Doorbell;
  readonly #encoder = new TextEncoder();
  #tail: number;
  #published: number;
  #head: number;
  #written = 0;
  #fullEvents = 0;
  #wakeups = 0;
  readonly #lazyKind: number;
  /** Whether a record that must wake even a lazy sleeper waits for the flush. */
  #urgent = false;

  /** Opens the producer end of the ring in `buffer` (made by {@linkcode createRing}). */
  constructor(buffer: SharedArrayBuffer, options: RingProducerOptions = {}) {
    this.capacity = capacityOf(buffer);
    this.maxPayload = ringMaxPayload(this.capacity);
    this.#mask = this.capacity - 1;
    this.bytes = new Uint8Array(buffer, RING_HEADER_BYTES, this.capacity);
    this.#u32 = new Uint32Array(buffer, RING_HEADER_BYTES, this.capacity >> 2);
    this.#ctl = new Int32Array(buffer, 0, RING_HEADER_BYTES >> 2);
    this.#dataBell = options.dataBell ?? new Doorbell(buffer, RING_DATA_BELL_OFFSET);
    this.#spaceBell = new Doorbell(buffer, RING_SPACE_BELL_OFFSET);
    this.#lazyKind = options.lazyKind ?? -1;
    this.#tail = this.#published = Atomics.load(this.#ctl, TAIL) >>> 0;
    this.#head = Atomics.load(this.#ctl, HEAD) >>> 0;
    this.#written = this.#ctl[WRITTEN];
    this.#fullEvents = this.#ctl[FULL_EVENTS];
    this.#wakeups = this.#ctl[DATA_WAKEUPS];
  }

  /** Writes refused because the ring was full, since the ring was created. */
  get fullEvents(): number {
    return this.#fullEvents;
  }

  /** Times {@linkcode RingProducer.flush} woke a sleeping consumer. */
  get wakeups(): number {
    return this.#wakeups;
  }

  /** Whether written records wait for {@linkcode RingProducer.flush}. */
  get pending(): boolean {
    return this.#tail !== this.#published;
  }

  /** Bytes in use as last seen (written, not yet released by the consumer). */
  get usedBytes(): number {
    return (this.#tail - (Atomics.load(this.#ctl, HEAD) >>> 0)) >>> 0;
  }

  /**
   * Reserves a record for `size` payload bytes, writes its header and returns the DATA
   * offset of the payload, or -1 when the ring is full. Not published until flush.
   */
  #reserve(id: number, kind: number, aux: number, metaLength: number, size: number): number {
    if (size > this.maxPayload) throw new RingMessageTooLargeError(size, this.maxPayload);
    const span = (RING_RECORD_HEADER_BYTES + size + RING_RECORD_ALIGN - 1) &
      -RING_RECORD_ALIGN;
    let pos = this.#tail & this.#mask;
    const toEnd = this.capacity - pos;
    const need = span <= toEnd ? span : toEnd + span;
    if (need > this.capacity - ((this.#tail - this.#head) >>> 0)) {
      this.#head = Atomics.load(this.#ctl, HEAD) >>> 0;
      if (need > this.capacity - ((this.#tail - this.#head) >>> 0)) {
        this.#ctl[FULL_EVENTS] = ++this.#fullEvents;
        return -1;
      }
    }
    const u32 = this.#u32;
    if (span > toEnd) {
      u32[pos >> 2] = RING_WRAP_MARKER;
      pos = 0;
    }
    const w = pos >> 2;
    u32[w] = size;
    u32[w + 1] = id;
    u32[w + 2] = (kind & 0xffff) | (aux << 16);
    u32[w + 3] = metaLength;
    if (kind !== this.#lazyKind) this.#urgent = true;
    this.#tail = (this.#tail + need) >>> 0;
    this.#written++;
    return pos + RING_RECORD_HEADER_BYTES;
  }

  /**
   * Whether a message with `size` payload bytes fits now (reloads HEAD if needed).
   *
   * @throws {RingMessageTooLargeError} if it can never fit.
   */
  fits(size: number): boolean {
    if (size > this.maxPayload) throw new RingMessageTooLargeError(size, this.maxPayload);
    const span = (RING_RECORD_HEADER_BYTES + size + RING_RECORD_ALIGN - 1) &
      -RING_RECORD_ALIGN;
    const toEnd = this.capacity - (this.#tail & this.#mask);
    const need = span <= toEnd ? span : toEnd + span;
    if (need <= this.capacity - ((this.#tail - this.#head) >>> 0)) return true;
    this.#head = Atomics.load(this.#ctl, HEAD) >>> 0;
    return need <= this.capacity - ((this.#tail - this.#head) >>> 0);
  }

  /**
   * Copies a message into the ring: header fields, then `meta` and `body` bytes straight
   * from the given arrays. Returns false when the ring is full (nothing written; retry
   * after the consumer releases). Call {@linkcode RingProducer.flush} to publish.
   *
   * @param kind u16.
   * @param aux u16.
   * @throws {RingMessageTooLargeError} if the message can never fit in this ring.
   */
  tryWrite(
    id: number,
    kind: number,
    aux: number,
    meta: Uint8Array | null,
    body: Uint8Array | null,
  ): boolean {
    const metaLength = meta === null ? 0 : meta.length;
    const bodyLength = body === null ? 0 : body.length;
    const off = this.#reserve(id, kind, aux, metaLength, metaLength + bodyLength);
    if (off < 0) return false;
    if (metaLength !== 0) this.bytes.set(meta!, off);
    if (bodyLength !== 0) this.bytes.set(body!, off + metaLength);
    return true;
  }

  /**
   * Like {@linkcode RingProducer.tryWrite} with a string body, encoded as UTF-8 straight
   * into shared memory with `TextEncoder.encodeInto` (no intermediate bytes).
   *
   * @throws {RingMessageTooLargeError} if the message can never fit in this ring.
   */
  tryWriteText(
    id: number,
    kind: number,
    aux: number,
    meta: Uint8Array | null,
    text: string,
  ): boolean {
    const metaLength = meta === null ? 0 : meta.length;
    const bodyLength = utf8Length(text);
    const off = this.#reserve(id, kind, aux, metaLength, metaLength + bodyLength);
    if (off < 0) return false;
    if (metaLength !== 0) this.bytes.set(meta!, off);
    if (bodyLength !== 0) {
      const start = off + metaLength;
      this.#encoder.encodeInto(text, this.bytes.subarray(start, start + bodyLength));
    }
    return true;
  }

  /**
   * Publishes everything written since the last flush with one store, and wakes the
   * consumer only if it sleeps (if it sleeps lazily, only if the batch holds a record not of
   * the `lazyKind`). Returns whether it woke the consumer.
   */
  flush(): boolean {
    if (this.#tail === this.#published) return false;
    this.#published = this.#tail;
    const ctl = this.#ctl;
    ctl[WRITTEN] = this.#written;
    Atomics.store(ctl, TAIL, this.#tail);
    const urgent = this.#urgent;
    this.#urgent = false;
    if (!this.#dataBell.ring(urgent)) return false;
    ctl[DATA_WAKEUPS] = ++this.#wakeups;
    return true;
  }

  /**
   * Arms the SPACE doorbell for a message of `size` payload bytes: returns the SEQ to wait
   * on, or -1 when it fits already (disarmed again). Flushes first, so that a consumer can
   * make room.
   */
  armSpace(size: number): number {
    this.flush();
    const seq = this.#spaceBell.arm();
    if (this.fits(size)) {
      this.#spaceBell.disarm();
      return -1;
    }
    return seq;
  }

  /**
   * Blocks until a message of `size` payload bytes fits (off the main thread only). Returns
   * false on timeout.
   */
  waitForSpaceSync(size: number, timeoutMs = Infinity): boolean {
    for (;;) {
      const seq = this.armSpace(size);
      if (seq === -1) return true;
      const r = this.#spaceBell.waitSync(seq, timeoutMs);
      this.#spaceBell.disarm();
      if (r === "timed-out") return this.fits(size);
    }
  }

  /**
   * Resolves once a message of `size` payload bytes may fit, without blocking the event
   * loop; `undefined` when it fits already. Re-check with {@linkcode RingProducer.fits}.
   */
  waitForSpaceAsync(size: number): Promise<unknown> | undefined {
    const seq = this.armSpace(size);
    if (seq === -1) return undefined;
    return this.#spaceBell.waitAsync(seq) ?? Promise.resolve();
  }
}

/**
 * The reading end of a ring. Exactly one thread may own it.
 *
 * @example
 * ```ts
 * import { createRing, RingConsumer, RingProducer, RingRecord } from "./ring.ts";
 * const sab = createRing(1024);
 * const producer = new RingProducer(sab);
 * producer.tryWriteText(1, 2, 0, null, "héllo");
 * producer.flush();
 * const consumer = new RingConsumer(sab);
 * const rec = new RingRecord();
 * let text = "";
 * while (consumer.read(rec)) text = consumer.bodyText(rec);
 * consumer.release();
 * console.assert(text === "héllo" && consumer.read(rec) === false);
 * ```
 */
export class RingConsumer {
  /** DATA bytes. */
  readonly capacity: number;
  /** DATA as bytes (shared memory): records' payloads are at `RingRecord.offset`. */
  readonly bytes: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #ctl: Int32Array;
  readonly #mask: number;
  readonly #dataBell: Doorbell;
  readonly #spaceBell: Doorbell;
  readonly #decoder = new TextDecoder();
  #head: number;
  #released: number;
  #tail: number;
  #read = 0;
  #dstCandidate: ArrayBufferLike | null = null;
  #dstBuffer: ArrayBufferLike | null = null;
  #dstWords: Uint32Array = new Uint32Array(0);
  #wakeups = 0;

  /** Opens the consumer end of the ring in `buffer` (made by {@linkcode createRing}). */
  constructor(buffer: SharedArrayBuffer) {
    this.capacity = capacityOf(buffer);
    this.#mask = this.capacity - 1;
    this.bytes = new Uint8Array(buffer, RING_HEADER_BYTES, this.capacity);
    this.#u32 = new Uint32Array(buffer, RING_HEADER_BYTES, this.capacity >> 2);
    this.#ctl = new Int32Array(buffer, 0, RING_HEADER_BYTES >> 2);
    this.#dataBell = new Doorbell(buffer, RING_DATA_BELL_OFFSET);
    this.#spaceBell = new Doorbell(buffer, RING_SPACE_BELL_OFFSET);
    this.#head = this.#released = Atomics.load(this.#ctl, HEAD) >>> 0;
    this.#tail = Atomics.load(this.#ctl, TAIL) >>> 0;
    this.#read = this.#ctl[READ];
    this.#wakeups = this.#ctl[SPACE_WAKEUPS];
  }

  /** Times {@linkcode RingConsumer.release} woke a producer waiting for space. */
  get wakeups(): number {
    return this.#wakeups;
  }

  /** Whether a published record is waiting to be read (one load when the cache is dry). */
  hasData(): boolean {
    if (this.#head !== this.#tail) return true;
    this.#tail = Atomics.load(this.#ctl, TAIL) >>> 0;
    return this.#head !== this.#tail;
  }

  /**
   * Reads the next published record into `rec` and returns true, or returns false when
   * the ring is empty. The record's bytes stay valid until {@linkcode RingConsumer.release}.
   */
  /** The kind of the next record, without reading it; -1 when none is published. */
  peekKind(): number {
    if (!this.hasData()) return -1;
    const pos = this.#head & this.#mask;
    const w = this.#u32[pos >> 2] === RING_WRAP_MARKER ? 0 : pos >> 2;
    return this.#u32[w + 2] & 0xffff;
  }

  read(rec: RingRecord): boolean {
    if (this.#head === this.#tail) {
      this.#tail = Atomics.load(this.#ctl, TAIL) >>> 0;
      if (this.#head === this.#tail) return false;
    }
    const u32 = this.#u32;
    let pos = this.#head & this.#mask;
    let size = u32[pos >> 2];
    if (size === RING_WRAP_MARKER) {
      this.#head = (this.#head + this.capacity - pos) >>> 0;
      pos = 0;
      size = u32[0];
    }
    const w = pos >> 2;
    rec.id = u32[w + 1];
    const word = u32[w + 2];
    rec.kind = word & 0xffff;
    rec.aux = word >>> 16;
    const metaLength = u32[w + 3];
    rec.metaLength = metaLength;
    rec.bodyLength = size - metaLength;
    rec.offset = pos + RING_RECORD_HEADER_BYTES;
    this.#head = (this.#head + ((RING_RECORD_HEADER_BYTES + size + RING_RECORD_ALIGN - 1) &
      -RING_RECORD_ALIGN)) >>> 0;
    this.#read++;
    return true;
  }

  /**
   * Copies the record's meta bytes into `dst` at `dstOffset`. Short runs are copied by a
   * loop without allocation (by 32-bit words when both ends are 4-aligned and `dst`'s
   * buffer was used before); longer runs by a native copy through one temporary view.
   */
  copyMeta(rec: RingRecord, dst: Uint8Array, dstOffset = 0): void {
    this.#copy(rec.offset, rec.metaLength, dst, dstOffset);
  }

  /** Copies the record's body bytes into `dst` at `dstOffset` (see `copyMeta`). */
  copyBody(rec: RingRecord, dst: Uint8Array, dstOffset = 0): void {
    this.#copy(rec.offset + rec.metaLength, rec.bodyLength, dst, dstOffset);
  }

  #copy(from: number, length: number, dst: Uint8Array, dstOffset: number): void {
    if (dstOffset < 0 || dstOffset + length > dst.length) {
      throw new RangeError(
        `Destination of ${dst.length} bytes cannot take ${length} bytes at offset ${dstOffset}`,
      );
    }
    const at = dst.byteOffset + dstOffset;
    if (length >= 16 && length <= WORD_COPY_MAX && ((from | at) & 3) === 0) {
      // Word copy when both ends are 4-aligned: about 4x faster than bytes. The word view
      // of the destination's buffer is made once that buffer comes back a second time, so
      // a consumer that reuses its buffer allocates nothing, and one that does not never
      // pays for a view.
      const buffer = dst.buffer;
      if (buffer !== this.#dstBuffer) {
        if (buffer === this.#dstCandidate) {
          this.#dstBuffer = buffer;
          this.#dstWords = new Uint32Array(buffer, 0, buffer.byteLength >> 2);
        } else {
          this.#dstCandidate = buffer;
        }
      }
      if (buffer === this.#dstBuffer) {
        const words = length >> 2;
        const d = this.#dstWords, s = this.#u32, dw = at >> 2, sw = from >> 2;
        for (let i = 0; i < words; i++) d[dw + i] = s[sw + i];
        const src = this.bytes;
        for (let i = words << 2; i < length; i++) dst[dstOffset + i] = src[from + i];
        return;
      }
    }
    if (length <= BYTE_COPY_MAX) {
      const src = this.bytes;
      for (let i = 0; i < length; i++) dst[dstOffset + i] = src[from + i];
    } else {
      dst.set(this.bytes.subarray(from, from + length), dstOffset);
    }
  }

  /** The record's meta bytes in a new (non-shared) array. */
  takeMeta(rec: RingRecord): Uint8Array {
    const out = new Uint8Array(rec.metaLength);
    this.#copy(rec.offset, rec.metaLength, out, 0);
    return out;
  }

  /** The record's body bytes in a new (non-shared) array. */
  takeBody(rec: RingRecord): Uint8Array {
    const out = new Uint8Array(rec.bodyLength);
    this.#copy(rec.offset + rec.metaLength, rec.bodyLength, out, 0);
    return out;
  }

  /** The record's body decoded as UTF-8 (straight from shared memory). */
  bodyText(rec: RingRecord): string {
    if (rec.bodyLength === 0) return "";
    const start = rec.offset + rec.metaLength;
    return this.#decoder.decode(this.bytes.subarray(start, start + rec.bodyLength));
  }

  /** The record's meta decoded as UTF-8 (straight from shared memory). */
  metaText(rec: RingRecord): string {
    if (rec.metaLength === 0) return "";
    return this.#decoder.decode(this.bytes.subarray(rec.offset, rec.offset + rec.metaLength));
  }

  /**
   * Gives the space of every record read so far back to the producer with one store, and
   * wakes the producer only if it waits for space.
   */
  release(): void {
    if (this.#head === this.#released) return;
    this.#released = this.#head;
    const ctl = this.#ctl;
    ctl[READ] = this.#read;
    Atomics.store(ctl, HEAD, this.#head);
    if (this.#spaceBell.ring()) ctl[SPACE_WAKEUPS] = ++this.#wakeups;
  }

  /**
   * Arms the DATA doorbell: returns the SEQ to wait on, or -1 if data arrived meanwhile
   * (disarmed again). Releases first, so that a producer waiting for space can go on.
   * `lazy`: only a flush holding a record not of the producer's `lazyKind` wakes the sleep
   * (records of that kind are found when the wait times out).
   */
  armData(lazy = false): number {
    this.release();
    const seq = this.#dataBell.arm(lazy);
    if (this.hasData()) {
      this.#dataBell.disarm();
      return -1;
    }
    return seq;
  }

  /** Withdraws an {@linkcode RingConsumer.armData} without sleeping. */
  disarmData(): void {
    this.#dataBell.disarm();
  }

  /**
   * Sleeps on the DATA doorbell armed by {@linkcode RingConsumer.armData} (off the main
   * thread only), then disarms it.
   */
  sleepSync(seq: number, timeoutMs = Infinity): WaitResult {
    const r = this.#dataBell.waitSync(seq, timeoutMs);
    this.#dataBell.disarm();
    return r;
  }

  /**
   * Blocks until a record is published (off the main thread only). Returns false on timeout.
   */
  waitForDataSync(timeoutMs = Infinity): boolean {
    for (;;) {
      const seq = this.armData();
      if (seq === -1) return true;
      if (this.sleepSync(seq, timeoutMs) === "timed-out") return this.hasData();
    }
  }

  /**
   * Resolves once a record may be there (or after `timeoutMs`), without blocking the event
   * loop; `undefined` when data is there already. Re-check with
   * {@linkcode RingConsumer.hasData}. (A pending timeout alone does not keep Deno alive.)
   * `lazy`: as for {@linkcode RingConsumer.armData}.
   */
  waitForDataAsync(timeoutMs = Infinity, lazy = false): Promise<unknown> | undefined {
    const seq = this.armData(lazy);
    if (seq === -1) return undefined;
    return this.#dataBell.waitAsync(seq, timeoutMs) ?? Promise.resolve();
  }
}

/** Counters and occupancy of a ring, read from its shared control lines. */
export interface RingStats {
  /** DATA bytes. */
  capacity: number;
  /** Bytes published and not yet released. */
  usedBytes: number;
  /** Messages published (wraps at 2^32). */
  written: number;
  /** Messages released (wraps at 2^32). */
  read: number;
  /** Writes refused because the ring was full. */
  fullEvents: number;
  /** Notifies sent to a sleeping consumer (0 when the producer rings another doorbell). */
  dataWakeups: number;
  /** Notifies sent to a producer waiting for space. */
  spaceWakeups: number;
}

/**
 * Reads a ring's counters from any thread (a snapshot; the two ends keep moving).
 *
 * @example
 * ```ts
 * import { createRing, RingProducer, ringStats } from "./ring.ts";
 * const sab = createRing(1024);
 * const p = new RingProducer(sab);
 * p.tryWrite(1, 1, 0, null, new Uint8Array(10));
 * p.flush();
 * const s = ringStats(sab);
 * console.assert(s.written === 1 && s.usedBytes === 32);
 * ```
 */
export function ringStats(buffer: SharedArrayBuffer): RingStats {
  const ctl = new Int32Array(buffer, 0, RING_HEADER_BYTES >> 2);
  const tail = Atomics.load(ctl, TAIL) >>> 0;
  const head = Atomics.load(ctl, HEAD) >>> 0;
  return {
    capacity: buffer.byteLength - RING_HEADER_BYTES,
    usedBytes: (tail - head) >>> 0,
    written: ctl[WRITTEN] >>> 0,
    read: ctl[READ] >>> 0,
    fullEvents: ctl[FULL_EVENTS] >>> 0,
    dataWakeups: ctl[DATA_WAKEUPS] >>> 0,
    spaceWakeups: ctl[SPACE_WAKEUPS] >>> 0,
  };
}

/**
 * Bytes of `text` in UTF-8, as `TextEncoder` writes it (a lone surrogate becomes U+FFFD,
 * 3 bytes).
 *
 * @example
 * ```ts
 * import { utf8Length } from "./ring.ts";
 * console.assert(utf8Length("aé€😀") === 1 + 2 + 3 + 4);
 * ```
 */
export function utf8Length(text: string): number {
  const n = text.length;
  let bytes = n;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 2; // 4 bytes for 2 code units
        i++;
      } else {
        bytes += 2;
      }
    } else {
      bytes += 2;
    }
  }
  return bytes;
}
