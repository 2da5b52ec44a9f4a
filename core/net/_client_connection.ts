/**
 * Private: one EP session of the client ({@linkcode ClientConnection}) over a transport:
 * preface and HELLO, WELCOME, requests pipelined by id with their own timeouts, heartbeats
 * sent *and judged* (SPEC.md §9.4: a server silent for 3 intervals is dead), a server's
 * DRAIN (§9.7: no new request goes on the connection; the ones in flight are answered, then
 * it closes). The client (`client.ts`) keeps one such connection to one of its servers and
 * replaces it when it ends.
 *
 * @module
 */
import { EpDecoder } from "../../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../../protocol/ep_encoder.ts";
import {
  type Frame,
  PROTOCOL_VERSION as VERSION,
  type WelcomeFrame,
} from "../../protocol/ep_frames.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { ConnectionClosedError, JobError } from "../errors.ts";
import { escapeControls } from "../escape.ts";
import type { Transport } from "./transport.ts";

/** A reply to a request: any status the service chose (a 404 is a reply, not an error). */
export interface Reply {
  /** Status with HTTP meaning (200 = ok). */
  status: number;
  /** Reply metadata. */
  meta: [string, string][];
  /** The reply body (owned). */
  body: Uint8Array;
}

/** What one request is sent with. */
export interface SendOptions {
  /** Metadata (lower-case keys). */
  meta?: [string, string][];
  /** Priority, 0–255. */
  priority?: number;
  /** Aborts the request (CANCEL, and a `cancelled` JobError). */
  signal?: AbortSignal;
}

/** How a connection introduces itself. */
export interface ConnectionOptions {
  /** Token presented in HELLO. */
  token?: string;
  /** Name presented in HELLO. */
  name: string;
  /** Heartbeat interval asked for; 0 for none. */
  heartbeatMs: number;
}

/** What the connection tells its owner. */
export interface ConnectionEvents {
  /** The server sent DRAIN: no new request may go on this connection. */
  drained(conn: ClientConnection): void;
  /** The connection ended (once); requests in flight on it were rejected with `err`. */
  closed(conn: ClientConnection, err: Error): void;
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  deadline: number;
  timeoutMs: number;
}

const enc = new TextEncoder();
/** The longest delay `setTimeout` takes; a later deadline is checked again then. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One EP session of the client; see the module doc. */
export class ClientConnection {
  /** The server's `host:port`. */
  readonly addr: string;
  #t: Transport;
  #events: ConnectionEvents;
  #encoder = new EpEncoder();
  #decoder: EpDecoder;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  // One timer for the earliest deadline of the requests in flight (no periodic poll: each
  // wake-up costs CPU); `#sweepAt` is the deadline it is armed for, Infinity: none.
  #sweeper: ReturnType<typeof setTimeout> | undefined;
  #sweepAt = Infinity;
  #closedError: Error | null = null;
  #welcome: WelcomeFrame | null = null;
  #welcomeWait: { resolve: () => void; reject: (e: Error) => void } | null = null;
  #draining = false;
  #unmatched = 0;
  // Heartbeats: the agreed interval, the next sequence number, when this side last beat
  // (wall clock) and last read (the transport's reading clock, which excludes time this
  // side was not reading: that silence is not the server's).
  #heartbeatMs = 0;
  #beatSeq = 0;
  #lastBeat = 0;
  #lastRead = 0;
  #beater: ReturnType<typeof setInterval> | undefined;

  constructor(
    addr: string,
    transport: Transport,
    options: ConnectionOptions,
    events: ConnectionEvents,
  ) {
    this.addr = addr;
    this.#t = transport;
    this.#events = events;
    this.#decoder = new EpDecoder({
      frame: (f) => this.#onFrame(f),
      error: (e) =>
        this.#shutdown(
          new ConnectionClosedError(`Bad frame from ${addr}: ${escapeControls(e.message)}`, {
            cause: e,
          }),
        ),
    });
    this.#lastRead = transport.readingMs(Date.now());
    transport.start({
      data: (c) => {
        this.#lastRead = transport.readingMs(Date.now());
        this.#decoder.push(c);
      },
      end: (err) => {
        this.#shutdown(
          new ConnectionClosedError(`Connection to ${addr} closed by the server`, { cause: err }),
        );
      },
    });
    transport.write(encodePreface(VERSION));
    transport.write(this.#encoder.encode({
      type: "hello",
      role: 1,
      minVersion: VERSION,
      maxVersion: VERSION,
      heartbeatMs: options.heartbeatMs,
      name: options.name,
      token: options.token ?? "",
    }));
  }

  /**
   * Resolves when the server has answered HELLO; rejects with its refusal (a JobError such
   * as `unauthorized`), a `timeout` JobError after `timeoutMs` (the connection is closed),
   * or the error the connection ended with.
   */
  ready(timeoutMs: number): Promise<void> {
    if (this.#welcome) return Promise.resolve();
    if (this.#closedError) return Promise.reject(this.#closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#welcomeWait = null;
        reject(
          new JobError(ErrorCode.TIMEOUT, `No WELCOME from ${this.addr} within ${timeoutMs} ms`),
        );
        this.close();
      }, Math.max(0, timeoutMs));
      this.#welcomeWait = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** The server's WELCOME, once received. */
  get welcome(): WelcomeFrame | null {
    return this.#welcome;
  }

  /** Whether the server sent DRAIN: no new request may go on this connection. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#closedError !== null;
  }

  /** Answers that matched no request in flight (late answers to timed-out requests). */
  get unmatched(): number {
    return this.#unmatched;
  }

  /** Requests waiting for their answer. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Sends a request for `service`; resolves with its reply. */
  request(
    service: string,
    body: Uint8Array,
    timeoutMs: number,
    options: SendOptions = {},
  ): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
    }
    const id = this.#takeId();
    let frame: Uint8Array;
    try {
      frame = this.#encoder.encode({
        type: "request",
        id,
        deadlineMs: timeoutMs,
        priority: options.priority ?? 0,
        attempt: 0,
        queueDepth: 0,
        service,
        meta: options.meta ?? [],
        body,
      });
    } catch (err) {
      return Promise.reject(
        new JobError(ErrorCode.BAD_REQUEST, (err as Error).message, { cause: err }),
      );
    }
    // Registered before the write: a transport that fails inside `write` ends the
    // connection at once, and that must reject this request too.
    const p = new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
    });
    this.#t.write(frame);
    if (this.#closedError) return p;
    this.#sweepBy(this.#pending.get(id)!.deadline);
    if (!signal) return p;
    const entry = this.#pending.get(id)!;
    const onAbort = () => {
      if (this.#pending.get(id) !== entry) return;
      this.#pending.delete(id);
      if (!this.#t.closed) this.#t.write(this.#encoder.encode({ type: "cancel", id }));
      entry.reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
      this.#settled();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    return p.finally(() => signal.removeEventListener("abort", onAbort));
  }

  /** Asks the server for its statistics; resolves with the JSON text as the body. */
  stats(timeoutMs: number): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#takeId();
    const p = new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
    });
    this.#t.write(this.#encoder.encode({ type: "statsRequest", id }));
    if (!this.#closedError) this.#sweepBy(this.#pending.get(id)!.deadline);
    return p;
  }

  /** Sends an ADMIN (its JSON text, SPEC.md §6.12); resolves with ADMIN_RESULT's JSON. */
  admin(json: string, timeoutMs: number): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#takeId();
    const p = new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
    });
    this.#t.write(this.#encoder.encode({ type: "admin", id, json }));
    if (!this.#closedError) this.#sweepBy(this.#pending.get(id)!.deadline);
    return p;
  }

  /** Closes the connection; requests in flight reject with `err`. */
  close(err: Error = new ConnectionClosedError("Client closed")): void {
    this.#shutdown(err);
  }

  #takeId(): number {
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id % 0xffffffff) + 1;
    this.#nextId = (id % 0xffffffff) + 1;
    return id;
  }

  /** Arms the deadline timer for `deadline` (Date.now ms), unless armed as early already. */
  #sweepBy(deadline: number): void {
    if (deadline >= this.#sweepAt || this.#closedError) return;
    clearTimeout(this.#sweeper);
    this.#sweepAt = deadline;
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(deadline - Date.now())));
    this.#sweeper = setTimeout(() => this.#sweep(), ms);
  }

  /** Rejects (and cancels at the server) the requests past their deadline; arms the next. */
  #sweep(): void {
    this.#sweeper = undefined;
    this.#sweepAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const [id, p] of this.#pending) {
      if (now >= p.deadline) {
        this.#pending.delete(id);
        this.#t.write(this.#encoder.encode({ type: "cancel", id }));
        p.reject(new JobError(ErrorCode.TIMEOUT, `Request timed out after ${p.timeoutMs} ms`));
      } else {
        next = Math.min(next, p.deadline);
      }
    }
    if (next < Infinity) this.#sweepBy(next);
    else this.#settled();
  }

  /** After an answer: a drained connection with nothing left in flight is closed. */
  #settled(): void {
    if (this.#draining && this.#pending.size === 0 && !this.#closedError) {
      this.#shutdown(new ConnectionClosedError(`Connection to ${this.addr} drained`), true);
    }
  }

  #startHeartbeats(): void {
    const h = this.#heartbeatMs;
    if (h <= 0) return;
    this.#lastBeat = Date.now();
    this.#beater = setInterval(() => {
      const now = Date.now();
      const silent = this.#t.readingMs(now) - this.#lastRead;
      if (silent > 3 * h) {
        // SPEC.md §9.4: the server is dead. Tell it (best effort) and close.
        this.#t.write(this.#encoder.encode({
          type: "error",
          id: 0,
          code: ErrorCode.HEARTBEAT_TIMEOUT,
          message: `No frame for ${silent} ms`,
        }));
        this.#shutdown(
          new ConnectionClosedError(
            `${this.addr} sent nothing for ${silent} ms (3 heartbeat intervals of ${h} ms)`,
          ),
          true,
        );
        return;
      }
      if (now - this.#lastBeat >= h) {
        this.#lastBeat = now;
        const seq = this.#beatSeq;
        this.#beatSeq = (seq + 1) >>> 0;
        this.#t.write(
          this.#encoder.encode({ type: "heartbeat", seq, freeSlots: 0, queueDepth: 0 }),
        );
      }
    }, Math.max(10, Math.floor(h / 4)));
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case "welcome":
        if (this.#welcome) return;
        this.#welcome = f;
        this.#heartbeatMs = f.heartbeatMs;
        this.#startHeartbeats();
        this.#welcomeWait?.resolve();
        this.#welcomeWait = null;
        break;
      case "reply": {
        const p = this.#pending.get(f.id);
        if (!p) {
          this.#unmatched++;
          return;
        }
        this.#pending.delete(f.id);
        p.resolve({ status: f.status, meta: f.meta, body: f.body.slice() });
        this.#settled();
        break;
      }
      case "stats":
      case "adminResult": {
        const p = this.#pending.get(f.id);
        if (!p) return;
        this.#pending.delete(f.id);
        p.resolve({ status: 200, meta: [], body: enc.encode(f.json) });
        this.#settled();
        break;
      }
      case "error": {
        if (f.id === 0) {
          // Before WELCOME: a refusal (`unauthorized`, …), which is what connecting failed
          // with. After it: the connection is lost, and requests in flight with it.
          const refusal = new JobError(f.code, escapeControls(f.message));
          this.#shutdown(
            this.#welcome
              ? new ConnectionClosedError(
                `${this.addr} closed the connection: ${refusal.message}`,
                { cause: refusal },
              )
              : refusal,
          );
          return;
        }
        const p = this.#pending.get(f.id);
        if (!p) {
          this.#unmatched++;
          return;
        }
        this.#pending.delete(f.id);
        p.reject(new JobError(f.code, f.message));
        this.#settled();
        break;
      }
      case "drain":
        // SPEC.md §9.7: the server is going away. Nothing new goes on this connection; what
        // is in flight is still answered, and then the connection is closed.
        if (this.#draining) return;
        this.#draining = true;
        this.#events.drained(this);
        this.#settled();
        break;
      default:
        // HEARTBEAT needs nothing but its arrival (it moved #lastRead).
        break;
    }
  }

  /** Ends the connection once: `flush` sends what is buffered first (a last ERROR). */
  #shutdown(err: Error, flush = false): void {
    if (this.#closedError) return;
    this.#closedError = err;
    clearTimeout(this.#sweeper);
    this.#sweeper = undefined;
    this.#sweepAt = Infinity;
    clearInterval(this.#beater);
    this.#beater = undefined;
    this.#welcomeWait?.reject(err);
    this.#welcomeWait = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(err);
    if (flush) this.#t.end();
    else this.#t.close();
    this.#events.closed(this, err);
  }
}
