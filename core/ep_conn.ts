/**
 * One EP connection on the server side (see `protocol/SPEC.md`): consumes the preface,
 * expects HELLO, answers WELCOME, then turns each REQUEST into a {@linkcode Job} and
 * answers it with REPLY or ERROR. Heartbeats, CANCEL, DRAIN and STATS are handled here;
 * malformed input gets a connection-level ERROR frame and a close.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import {
  DEFAULT_MAX_PAYLOAD,
  type Frame,
  isServiceName,
  NOT_APPLICABLE,
  PROTOCOL_VERSION as VERSION,
} from "../protocol/ep_frames.ts";
import { ErrorCode, type ProtocolError } from "../protocol/errors.ts";
import { type Job, JobError, type JobHandler, type JobResult } from "./job.ts";
import { oneLine } from "./http_conn.ts";
import type { Transport, TransportHandler } from "./transport.ts";
import { timingSafeEqualString } from "./_timing_safe.ts";

const log = getLogger(["ep", "ep"]);

/** Options for EP connections. */
export interface EpOptions {
  /** When set, every peer must present this token in HELLO (compared in constant time). */
  token?: string;
  /** Largest frame payload accepted. Default 16 MiB. */
  maxPayload?: number;
  /** Largest heartbeat interval the server agrees to; a peer asking for 0 gets none. Default 5 s. */
  maxHeartbeatMs?: number;
  /** Jobs in flight on one connection past which reading pauses. Default 1024. */
  maxInFlight?: number;
  /**
   * A connection with no jobs in flight and nothing received for this long is closed (a
   * peer that heartbeats is never idle). Default 300 s; 0 disables it.
   */
  idleTimeoutMs?: number;
  /** Time allowed between the preface and HELLO. Default 5 s. */
  helloTimeoutMs?: number;
  /** The name the server gives in WELCOME. Default `"ep"`. */
  serverName?: string;
  /** Produces the JSON answered to STATS_REQUEST. */
  stats?: () => unknown;
}

const NONE = NOT_APPLICABLE;
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();
// One encoder for every connection: `encode` returns a view valid until the next call,
// and transports copy what they are given, so sharing it is safe on one thread.
const encoder = new EpEncoder();

interface InFlight {
  id: number;
}

/**
 * Serves EP on a transport.
 *
 * @example
 * ```ts ignore
 * import { EpConnection } from "./ep_conn.ts";
 * new EpConnection(transport, (job) => ({ body: job.body }), {}).start(prefix);
 * ```
 */
export class EpConnection implements TransportHandler {
  #t: Transport;
  #handler: JobHandler;
  #opts: EpOptions;
  #decoder: EpDecoder;
  #state: "hello" | "open" | "closing" = "hello";
  #inFlight = new Map<number, InFlight>();
  #paused = false;
  #maxInFlight: number;
  #heartbeatMs = 0;
  #hbSeq = 0;
  #started = Date.now();
  #lastRead = Date.now();
  #lastBeat = Date.now();
  #peerEnded = false;

  /** Creates the connection; call {@linkcode start} to begin reading. */
  constructor(transport: Transport, handler: JobHandler, options: EpOptions) {
    this.#t = transport;
    this.#handler = handler;
    this.#opts = options;
    this.#maxInFlight = options.maxInFlight ?? 1024;
    this.#decoder = new EpDecoder({
      frame: (f) => this.#onFrame(f),
      error: (e) => this.#onDecodeError(e),
    }, { maxPayload: options.maxPayload ?? DEFAULT_MAX_PAYLOAD });
  }

  /** Whether the connection is finished. */
  get closed(): boolean {
    return this.#t.closed;
  }

  /** Starts reading; `prefix` holds the bytes read by the sniffer, preface included. */
  start(prefix: Uint8Array): void {
    this.#t.start(this);
    // The sniffer only says "ep" once it holds the 4-byte preface; the version byte is the
    // client's highest version and is checked against HELLO's range.
    if (prefix.length > 4) this.data(prefix.subarray(4));
  }

  /** @internal */
  data(chunk: Uint8Array): void {
    this.#lastRead = Date.now();
    this.#decoder.push(chunk);
  }

  /** @internal */
  end(): void {
    this.#peerEnded = true;
    if (this.#inFlight.size === 0) this.#t.close();
  }

  /** Heartbeats and the hello timeout; called periodically by the server. */
  tick(now: number): void {
    if (this.#t.closed) return;
    if (this.#state === "hello") {
      if (now - this.#started > (this.#opts.helloTimeoutMs ?? 5_000)) {
        this.#fatal(ErrorCode.UNEXPECTED_FRAME, "HELLO not received in time");
      }
      return;
    }
    const idle = this.#opts.idleTimeoutMs ?? 300_000;
    if (idle > 0 && this.#inFlight.size === 0 && now - this.#lastRead > idle) {
      this.#state = "closing";
      this.#t.end();
      return;
    }
    const hb = this.#heartbeatMs;
    if (hb === 0) return;
    if (now - this.#lastRead > 3 * hb) {
      this.#fatal(ErrorCode.HEARTBEAT_TIMEOUT, `No frame from the peer for ${3 * hb} ms`);
    } else if (now - this.#lastBeat >= hb) {
      // Heartbeats carry status, so they go out every interval even when traffic flows.
      this.#lastBeat = now;
      this.#hbSeq = (this.#hbSeq + 1) >>> 0;
      this.#send({ type: "heartbeat", seq: this.#hbSeq, freeSlots: NONE, queueDepth: NONE });
    }
  }

  #send(frame: Frame): void {
    this.#t.write(encoder.encode(frame));
  }

  #fatal(code: number, message: string): void {
    if (this.#state === "closing") return;
    this.#state = "closing";
    log.debug("Closing EP connection from {remote}: {message}", {
      remote: this.#t.remote,
      message,
    });
    this.#send({ type: "error", id: 0, code, message: oneLine(message) });
    this.#t.end();
  }

  #onDecodeError(e: ProtocolError): void {
    this.#fatal(e.code, e.message);
  }

  #onFrame(f: Frame): void {
    if (this.#state === "closing") return;
    if (this.#state === "hello") {
      if (f.type !== "hello") {
        this.#fatal(ErrorCode.UNEXPECTED_FRAME, `Expected HELLO, got ${frameName(f)}`);
        return;
      }
      this.#onHello(f);
      return;
    }
    switch (f.type) {
      case "request":
        this.#onRequest(f);
        break;
      case "cancel": {
        const job = this.#inFlight.get(f.id);
        if (job) {
          this.#inFlight.delete(f.id);
          this.#send({ type: "error", id: f.id, code: ErrorCode.CANCELLED, message: "Cancelled" });
          this.#afterAnswer();
        }
        break;
      }
      case "heartbeat":
        break;
      case "drain":
        // A client that is going away: nothing to stop dispatching to it.
        break;
      case "statsRequest": {
        this.#send({ type: "stats", id: f.id, json: JSON.stringify(this.#opts.stats?.() ?? {}) });
        break;
      }
      default:
        this.#fatal(
          ErrorCode.UNEXPECTED_FRAME,
          `Frame ${frameName(f)} is not allowed from a client`,
        );
    }
  }

  #onHello(f: Extract<Frame, { type: "hello" }>): void {
    if (f.minVersion > VERSION || f.maxVersion < VERSION) {
      this.#fatal(
        ErrorCode.UNSUPPORTED_VERSION,
        `No common version: peer speaks ${f.minVersion}-${f.maxVersion}, server ${VERSION}`,
      );
      return;
    }
    const token = this.#opts.token;
    if (token !== undefined && token !== "" && !timingSafeEqualString(f.token, token)) {
      this.#fatal(ErrorCode.UNAUTHORIZED, "Invalid token");
      return;
    }
    if (f.role !== 1) {
      this.#fatal(ErrorCode.UNEXPECTED_FRAME, "This server does not accept workers");
      return;
    }
    const maxHb = this.#opts.maxHeartbeatMs ?? 5_000;
    this.#heartbeatMs = f.heartbeatMs === 0 ? 0 : Math.min(Math.max(f.heartbeatMs, 100), maxHb);
    this.#state = "open";
    this.#lastBeat = Date.now();
    this.#send({
      type: "welcome",
      version: VERSION,
      maxPayload: this.#opts.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      heartbeatMs: this.#heartbeatMs,
      prefetch: 0,
      serverName: this.#opts.serverName ?? "ep",
    });
  }

  #onRequest(f: Extract<Frame, { type: "request" }>): void {
    const id = f.id;
    if (this.#inFlight.has(id)) {
      this.#send({
        type: "error",
        id,
        code: ErrorCode.BAD_REQUEST,
        message: `Job id ${id} is already in flight`,
      });
      return;
    }
    if (!isServiceName(f.service)) {
      this.#send({
        type: "error",
        id,
        code: ErrorCode.BAD_REQUEST,
        message: `Invalid service name "${oneLine(f.service).slice(0, 64)}"`,
      });
      return;
    }
    const entry: InFlight = { id };
    this.#inFlight.set(id, entry);
    if (this.#inFlight.size >= this.#maxInFlight && !this.#paused) {
      this.#paused = true;
      this.#t.pause();
    }
    const job: Job = {
      service: f.service,
      protocol: "ep",
      method: "EP",
      path: "/" + f.service,
      query: "",
      headers: f.meta,
      body: f.body.slice(),
      deadlineMs: f.deadlineMs,
      priority: f.priority,
      remote: this.#t.remote,
    };
    try {
      const res = this.#handler(job);
      if (res instanceof Promise) {
        res.then((v) => this.#reply(entry, v), (e) => this.#error(entry, e));
      } else {
        this.#reply(entry, res);
      }
    } catch (e) {
      this.#error(entry, e);
    }
  }

  #reply(entry: InFlight, res: JobResult): void {
    if (this.#inFlight.get(entry.id) !== entry) return; // cancelled meanwhile
    this.#inFlight.delete(entry.id);
    const body = res.body === undefined
      ? EMPTY
      : typeof res.body === "string"
      ? enc.encode(res.body)
      : res.body;
    try {
      this.#send({
        type: "reply",
        id: entry.id,
        status: res.status ?? 200,
        freeSlots: NONE,
        meta: res.headers ?? [],
        body,
      });
    } catch (err) {
      // The handler produced something EP cannot carry (a bad meta key, a body too large).
      log.error("Cannot encode reply: {error}", { error: err });
      this.#send({
        type: "error",
        id: entry.id,
        code: ErrorCode.INTERNAL,
        message: "Invalid reply",
      });
    }
    this.#afterAnswer();
  }

  #error(entry: InFlight, e: unknown): void {
    if (this.#inFlight.get(entry.id) !== entry) return;
    this.#inFlight.delete(entry.id);
    const code = e instanceof JobError ? e.code : ErrorCode.INTERNAL;
    const message = e instanceof JobError ? oneLine(e.message) : "Internal error";
    if (!(e instanceof JobError)) log.error("Handler failed: {error}", { error: e });
    this.#send({ type: "error", id: entry.id, code, message });
    this.#afterAnswer();
  }

  #afterAnswer(): void {
    if (this.#paused && this.#inFlight.size < this.#maxInFlight / 2) {
      this.#paused = false;
      this.#t.resume();
    }
    if (this.#peerEnded && this.#inFlight.size === 0) this.#t.end();
  }
}

function frameName(f: Frame): string {
  return f.type.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase();
}
