/**
 * One HTTP/1.1 connection on the server side: feeds bytes to the strict parser, turns each
 * request into a {@linkcode Job}, and writes the answers back in request order (pipelining).
 *
 * Timeouts are checked by {@linkcode HttpConnection.tick}, called by the server's sweeper
 * (one timer for all connections, not one per connection):
 * - a request head not complete within `headersTimeoutMs` of its first byte → 408 and close
 *   (slowloris);
 * - a request not complete within `requestTimeoutMs` of its first byte → 408 and close;
 * - an idle keep-alive connection is closed after `idleTimeoutMs`.
 *
 * More than `maxPipelined` requests waiting for their answers pause reading from the peer.
 * The timeouts are measured on the transport's reading clock
 * ({@linkcode Transport.readingMs}): while ep itself is not reading (pipelining limit,
 * output backpressure) the peer is not on the clock.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode, HttpError } from "../../protocol/errors.ts";
import {
  type HttpLimits,
  type HttpRequest,
  type HttpRequestHead,
  HttpRequestParser,
} from "../../protocol/http_parser.ts";
import { CONTINUE_100, errorResponse, writeResponse } from "../../protocol/http_writer.ts";
import {
  hedgeOf,
  type Job,
  JobError,
  type JobHandler,
  type JobResult,
  replyProblem,
  serviceFromPath,
} from "../job.ts";
import type { Transport, TransportHandler } from "./transport.ts";
import { httpMetaProblem, withoutReserved } from "../ep_limits.ts";
import { oneLine } from "../escape.ts";

export { oneLine };

/** Options for HTTP connections. */
export interface HttpOptions {
  /** Parser limits (request line, headers, body). */
  limits?: Partial<HttpLimits>;
  /** Time allowed for a request head from its first byte. Default 10 s. */
  headersTimeoutMs?: number;
  /** Time allowed for a whole request from its first byte. Default 60 s. */
  requestTimeoutMs?: number;
  /** Idle keep-alive time before the connection is closed. Default 30 s. */
  idleTimeoutMs?: number;
  /** Requests answered out of order that may wait before reading pauses. Default 32. */
  maxPipelined?: number;
  /** Maps a request path to a service name. Default: the first path segment. */
  route?: (path: string) => string;
}

interface Slot {
  bytes: Uint8Array | null;
  close: boolean;
}

const log = getLogger(["ep", "http"]);
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();

/** Counts what HTTP connections did, for metrics. */
export interface HttpCounters {
  /** Requests parsed. */
  requests: number;
  /** Requests refused by the parser or timeouts (4xx/5xx before any handler ran). */
  rejected: number;
}

/**
 * Serves HTTP/1.1 on a transport.
 *
 * @example
 * ```ts ignore
 * import { HttpConnection } from "./http_conn.ts";
 * new HttpConnection(transport, () => ({ body: "hello" }), {}).start();
 * ```
 */
export class HttpConnection implements TransportHandler {
  #t: Transport;
  #handler: JobHandler;
  #parser: HttpRequestParser;
  #slots: Slot[] = [];
  #head = 0; // index of the first unanswered slot
  #closing = false;
  #peerEnded = false;
  #readPaused = false;
  #requestStart = 0;
  #headDone = false;
  #lastActive: number;
  #headersTimeout: number;
  #requestTimeout: number;
  #idleTimeout: number;
  #maxPipelined: number;
  #draining = false;
  #inData = false;
  #wall = 0;
  #route: (path: string) => string;
  #counters: HttpCounters;
  /** Told once the client goes away (`watch`). */
  #watchers: (() => void)[] = [];

  /** Creates the connection; call {@linkcode start} to begin reading. */
  constructor(
    transport: Transport,
    handler: JobHandler,
    options: HttpOptions,
    counters: HttpCounters = { requests: 0, rejected: 0 },
  ) {
    this.#t = transport;
    this.#handler = handler;
    this.#counters = counters;
    this.#headersTimeout = options.headersTimeoutMs ?? 10_000;
    this.#requestTimeout = options.requestTimeoutMs ?? 60_000;
    this.#idleTimeout = options.idleTimeoutMs ?? 30_000;
    this.#maxPipelined = options.maxPipelined ?? 32;
    this.#route = options.route ?? serviceFromPath;
    this.#lastActive = transport.readingMs(Date.now());
    this.#parser = new HttpRequestParser({
      head: (h) => this.#onHead(h),
      request: (r) => this.#onRequest(r),
      error: (e) => this.#onError(e),
    }, options.limits);
  }

  /** Starts reading; `prefix` holds bytes already read by the sniffer. */
  start(prefix?: Uint8Array): void {
    this.#t.start(this);
    if (prefix && prefix.length > 0) this.data(prefix);
  }

  /** Whether the connection is finished. */
  get closed(): boolean {
    return this.#t.closed;
  }

  /** @internal */
  data(chunk: Uint8Array): void {
    if (this.#closing) return;
    const wall = Date.now();
    const now = this.#t.readingMs(wall);
    this.#lastActive = now;
    if (this.#parser.idle) {
      this.#requestStart = now;
      this.#headDone = false;
    }
    // Answers given during the push read this time instead of the clock (one read per chunk).
    this.#wall = wall;
    this.#inData = true;
    try {
      this.#parser.push(chunk);
    } finally {
      this.#inData = false;
    }
  }

  /** The time now: the chunk's while one is being read, else the clock. */
  #now(): number {
    return this.#inData ? this.#wall : Date.now();
  }

  /**
   * Whether the client went away (it sent FIN, or the connection failed or was closed).
   * Jobs it left queued are not dispatched ({@linkcode Job.origin}); like nginx, a FIN
   * counts as leaving, although what was already answered is still written.
   */
  get abandoned(): boolean {
    return this.#peerEnded || this.#t.closed;
  }

  /**
   * Calls `listener` once when the client goes away leaving a request unanswered
   * (`JobOrigin.watch`), so that a balancer holding its jobs need not poll
   * {@linkcode abandoned}. A listener given twice is kept once.
   */
  watch(listener: () => void): void {
    if (this.#watchers.includes(listener)) return;
    this.#watchers.push(listener);
  }

  /** @internal */
  end(): void {
    // The peer sent FIN (or the connection failed): answer what was asked, then close.
    this.#peerEnded = true;
    this.#closing = true;
    const waiting = this.#head < this.#slots.length;
    if (!waiting) this.#t.close();
    else this.#slots[this.#slots.length - 1].close = true;
    // Only a request still unanswered has a job someone may hold: with none, nobody is told
    // (a connection closing after its last answer wakes no sweep).
    const watchers = this.#watchers;
    this.#watchers = [];
    if (waiting) { for (const w of watchers) w(); }
  }

  /**
   * The server is going away: an idle connection is closed now; one with requests in
   * flight (or one arriving) answers them, the last with `connection: close`, then closes.
   * Returns whether the connection is one the server waits for (not yet closed).
   */
  drain(): boolean {
    if (this.#t.closed) return false;
    if (this.#closing) return true;
    this.#draining = true;
    if (this.#head < this.#slots.length) {
      this.#slots[this.#slots.length - 1].close = true;
      this.#closing = true;
    } else if (this.#parser.idle) {
      this.#closing = true;
      this.#t.end();
    }
    return true;
  }

  /** Applies timeouts; called periodically by the server with the current time. */
  tick(wallNow: number): void {
    if (this.#closing || this.#t.closed) return;
    const now = this.#t.readingMs(wallNow);
    if (!this.#parser.idle) {
      const age = now - this.#requestStart;
      if (!this.#headDone && age > this.#headersTimeout) {
        this.#fail(new HttpError(408, "Request header not received in time"));
      } else if (age > this.#requestTimeout) {
        this.#fail(new HttpError(408, "Request body not received in time"));
      }
    } else if (this.#head === this.#slots.length && now - this.#lastActive > this.#idleTimeout) {
      this.#closing = true;
      this.#t.close();
    }
  }

  #fail(err: HttpError): void {
    this.#counters.rejected++;
    this.#slots.push({ bytes: errorResponse(err, { keepAlive: false }), close: true });
    this.#closing = true;
    this.#flush();
  }

  #onHead(h: HttpRequestHead): void {
    this.#headDone = true;
    // Ask for the body only when nothing is waiting ahead of it (interim responses must
    // not overtake earlier answers).
    if (h.expectContinue && this.#head === this.#slots.length) this.#t.write(CONTINUE_100);
  }

  #onError(err: HttpError): void {
    this.#fail(err);
  }

  #onRequest(r: HttpRequest): void {
    this.#counters.requests++;
    this.#headDone = false;
    const slot: Slot = { bytes: null, close: !r.keepAlive || this.#draining };
    this.#slots.push(slot);
    if (slot.close) this.#closing = true;
    const head = r.method === "HEAD";
    const version = r.version;
    // A request EP cannot carry as a job is refused here, before it is queued (SPEC.md §7).
    const problem = httpMetaProblem(r.path, r.query, r.headers);
    if (problem) {
      this.#counters.rejected++;
      this.#answerError(slot, new HttpError(problem.status, problem.message), version);
      return;
    }
    const job: Job = {
      service: this.#route(r.path),
      protocol: "http",
      method: r.method,
      path: r.path,
      query: r.query,
      // ep reads ep-timeout, ep-priority and ep-hedge; no ep- field reaches a handler
      // (SPEC.md §10).
      headers: withoutReserved(r.headers),
      body: r.body,
      deadlineMs: deadlineOf(r.headers),
      priority: priorityOf(r.headers),
      hedge: hedgeOf(r.headers),
      remote: this.#t.remote,
      origin: this,
    };
    try {
      const res = this.#handler(job);
      if (res instanceof Promise) {
        res.then(
          (v) => this.#answer(slot, v, head, version, job),
          (e) => this.#answerError(slot, e, version, job.requestId),
        );
      } else {
        this.#answer(slot, res, head, version, job);
      }
    } catch (e) {
      this.#answerError(slot, e, version, job.requestId);
    }
    if (this.#slots.length - this.#head > this.#maxPipelined && !this.#readPaused) {
      this.#readPaused = true;
      this.#t.pause();
    }
  }

  #answer(slot: Slot, res: JobResult, head: boolean, version: "1.0" | "1.1", job: Job): void {
    const status = res.status ?? 200;
    const body = res.body ?? EMPTY;
    const problem = replyProblem(status, body.length); // the rule every handler follows
    if (problem !== null) {
      log.error("Cannot write the handler's response: {problem}", { problem });
      const e = new JobError(ErrorCode.HANDLER_ERROR, problem);
      this.#answerError(slot, e, version, job.requestId);
      return;
    }
    const now = this.#now();
    try {
      slot.bytes = writeResponse(
        { status, headers: res.headers, body },
        { keepAlive: !slot.close, head, version, now },
      );
    } catch (err) {
      // The handler produced what HTTP cannot carry (a status outside 200–599, a header
      // value that is not field-value bytes, a body on a 204): the client gets a 500 that
      // says which, the log the whole error. Nothing of the refused response is written.
      log.error("Cannot write the handler's response: {error}", { error: err });
      const message = `Invalid response from the handler: ${(err as Error).message}`;
      const e = new JobError(ErrorCode.HANDLER_ERROR, message);
      this.#answerError(slot, e, version, job.requestId);
      return;
    }
    this.#flush(now);
  }

  /** Writes an error response: the one-line reason, and the job's request id when it has one. */
  #answerError(slot: Slot, e: unknown, version: "1.0" | "1.1", requestId?: string): void {
    const known = e instanceof JobError || e instanceof HttpError;
    const status = known ? e.status : 500;
    const reason = known ? e.message : "Internal error";
    const headers: [string, string][] = [["content-type", "text/plain; charset=utf-8"]];
    // A request id is a short token (job.ts requestIdOf): safe in a header as it is.
    if (requestId !== undefined) headers.push(["x-request-id", requestId]);
    slot.bytes = writeResponse({
      status,
      headers,
      body: enc.encode(oneLine(reason) + "\n"),
    }, { keepAlive: !slot.close, version });
    this.#flush();
  }

  #flush(now = this.#now()): void {
    const slots = this.#slots;
    while (this.#head < slots.length) {
      const slot = slots[this.#head];
      if (slot.bytes === null) break;
      this.#head++;
      this.#t.write(slot.bytes);
      if (slot.close) {
        this.#closing = true;
        this.#t.end();
        slots.length = 0;
        this.#head = 0;
        return;
      }
    }
    if (this.#head === slots.length) {
      slots.length = 0;
      this.#head = 0;
      this.#lastActive = this.#t.readingMs(now);
    }
    if (this.#readPaused && slots.length - this.#head <= this.#maxPipelined / 2) {
      this.#readPaused = false;
      this.#t.resume();
    }
  }
}

function headerValue(headers: [string, string][], name: string): string | undefined {
  for (let i = 0; i < headers.length; i++) {
    if (headers[i][0] === name) return headers[i][1];
  }
  return undefined;
}

/** The client's deadline from `ep-timeout` (milliseconds), or 0 for the server default. */
function deadlineOf(headers: [string, string][]): number {
  const v = headerValue(headers, "ep-timeout");
  if (v === undefined) return 0;
  const n = Number(v);
  return Number.isInteger(n) && n > 0 && n <= 0xffffffff ? n : 0;
}

/** The job priority from `ep-priority` (0–255), or 0. */
function priorityOf(headers: [string, string][]): number {
  const v = headerValue(headers, "ep-priority");
  if (v === undefined) return 0;
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 255 ? n : 0;
}
