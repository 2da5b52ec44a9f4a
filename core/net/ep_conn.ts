/**
 * One EP connection on the server side (see `protocol/SPEC.md`): consumes the preface,
 * expects HELLO, answers WELCOME, then turns each REQUEST into a {@linkcode Job} and
 * answers it with REPLY or ERROR. Heartbeats, CANCEL, DRAIN and STATS are handled here;
 * malformed input gets a connection-level ERROR frame and a close.
 *
 * The hello, idle and heartbeat timeouts judge the peer, so they are measured on the
 * transport's reading clock ({@linkcode Transport.readingMs}): while ep itself is not
 * reading (`maxInFlight` jobs in flight, output backpressure) the peer is not on the clock.
 *
 * STATS_REQUEST is answered under the status access rule (`core/net/access.ts`, the same as
 * `/_ep/stats`), with HELLO's `token` as the peer's token; a refused one gets ERROR
 * `unauthorized` with the request's id and the connection goes on.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { EpDecoder } from "../../protocol/ep_decoder.ts";
import { EpEncoder } from "../../protocol/ep_encoder.ts";
import {
  DEFAULT_MAX_PAYLOAD,
  DEFAULT_PREFETCH,
  type Frame,
  isServiceName,
  MIN_MAX_PAYLOAD,
  NOT_APPLICABLE,
  PROTOCOL_VERSION as VERSION,
} from "../../protocol/ep_frames.ts";
import { ErrorCode, FrameTooLargeError, type ProtocolError } from "../../protocol/errors.ts";
import {
  type Job,
  JobError,
  type JobHandler,
  jobMeta,
  type JobOrigin,
  type JobResult,
  replyProblem,
} from "../job.ts";
import { unsendableReply, withoutReserved } from "../ep_limits.ts";
import type { Provider, QueuedJob } from "../balancer/provider.ts";
import type { Transport, TransportHandler } from "./transport.ts";
import { type AccessOptions, admitted, isLoopback, statusAccess } from "./access.ts";
import { oneLine } from "../escape.ts";
import { timingSafeEqualString } from "./_timing_safe.ts";

const log = getLogger(["ep", "ep"]);

/** Options for EP connections. */
export interface EpOptions {
  /**
   * Token workers must present in HELLO (compared in constant time). Without one, workers
   * are accepted only from loopback addresses, so nobody registers by accident.
   */
  token?: string;
  /** Token clients must present in HELLO; default: none required. */
  clientToken?: string;
  /** Accepts workers: the balancer they register with. Without it workers are refused. */
  workers?: WorkerHost;
  /** Jobs beyond its slots a worker may be handed (WELCOME `prefetch`). Default 4. */
  prefetch?: number;
  /** Heartbeat interval imposed on workers that ask for none. Default 1 000 ms. */
  workerHeartbeatMs?: number;
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
  /**
   * Who may send STATS_REQUEST: the status access rule of `/_ep/stats`, applied to the
   * peer's address and HELLO's `token`. Default `{}`: loopback peers only. A client whose
   * token is not the `clientToken` but is this `token` is admitted to read stats only.
   */
  statsAccess?: AccessOptions;
}

const NONE = NOT_APPLICABLE;
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();
// One encoder for every connection: `encode` returns a view valid until the next call,
// and transports copy what they are given, so sharing it is safe on one thread.
const encoder = new EpEncoder();

/** A client's request in flight; the job's origin (abandoned once cancelled or gone). */
class InFlight implements JobOrigin {
  cancelled = false;
  constructor(readonly id: number, readonly conn: EpConnection) {}
  get abandoned(): boolean {
    return this.cancelled || this.conn.gone;
  }
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
  // Reading-clock times (Transport.readingMs) of the start and of the last bytes read.
  #started: number;
  #lastRead: number;
  #lastBeat = Date.now();
  #peerEnded = false;
  #role = 1;
  #peerName = "";
  #peerToken = "";
  #statsOnly = false;
  #link: WorkerLink | null = null;

  /** Creates the connection; call {@linkcode start} to begin reading. */
  constructor(transport: Transport, handler: JobHandler, options: EpOptions) {
    this.#t = transport;
    this.#handler = handler;
    this.#opts = options;
    this.#maxInFlight = options.maxInFlight ?? 1024;
    this.#started = this.#lastRead = transport.readingMs(Date.now());
    this.#decoder = new EpDecoder({
      frame: (f) => this.#onFrame(f),
      error: (e) => this.#onDecodeError(e),
    }, {
      // Until HELLO is accepted the peer is unknown: SPEC.md §9.1 holds it to 64 KiB, so a
      // stranger cannot make the decoder reserve a 16 MiB payload buffer from a 12-byte header.
      maxPayload: Math.min(MIN_MAX_PAYLOAD, options.maxPayload ?? DEFAULT_MAX_PAYLOAD),
    });
  }

  /** Whether the connection is finished. */
  get closed(): boolean {
    return this.#t.closed;
  }

  /** Whether the peer went away (it ended its side, or the connection closed). */
  get gone(): boolean {
    return this.#peerEnded || this.#t.closed;
  }

  /** Starts reading; `prefix` holds the bytes read by the sniffer, preface included. */
  start(prefix: Uint8Array): void {
    this.#t.start(this);
    // The sniffer only says "ep" once it holds the 4-byte preface; the version byte is the
    // client's highest version and is checked against HELLO's range. Version 0 does not
    // exist (SPEC.md §3).
    if (prefix[3] === 0) {
      this.#fatal(
        ErrorCode.UNSUPPORTED_VERSION,
        `Unsupported protocol version "0" in the preface: this server speaks ${VERSION}`,
      );
      return;
    }
    if (prefix.length > 4) this.data(prefix.subarray(4));
  }

  /** @internal */
  data(chunk: Uint8Array): void {
    if (this.#state === "closing") return;
    const now = Date.now();
    this.#lastRead = this.#t.readingMs(now);
    if (this.#link) this.#link.lastHeard = now;
    this.#decoder.push(chunk);
  }

  /** @internal */
  end(): void {
    this.#peerEnded = true;
    this.#dropLink("connection closed");
    if (this.#inFlight.size === 0) this.#t.close();
  }

  #dropLink(reason: string): void {
    const link = this.#link;
    if (!link) return;
    this.#link = null;
    this.#opts.workers?.removeProvider(link, reason);
  }

  /** Heartbeats and the hello timeout; called periodically by the server. */
  tick(now: number): void {
    if (this.#t.closed) return;
    const clock = this.#t.readingMs(now);
    if (this.#state === "hello") {
      if (clock - this.#started > (this.#opts.helloTimeoutMs ?? 5_000)) {
        this.#fatal(ErrorCode.UNEXPECTED_FRAME, "HELLO not received in time");
      }
      return;
    }
    const idle = this.#opts.idleTimeoutMs ?? 300_000;
    if (idle > 0 && this.#inFlight.size === 0 && !this.#link && clock - this.#lastRead > idle) {
      this.#state = "closing";
      this.#t.end();
      return;
    }
    const hb = this.#heartbeatMs;
    if (hb === 0) return;
    if (clock - this.#lastRead > 3 * hb) {
      this.#fatal(ErrorCode.HEARTBEAT_TIMEOUT, `No frame from the peer for ${3 * hb} ms`);
    } else if (now - this.#lastBeat >= hb) {
      // Heartbeats carry status, so they go out every interval even when traffic flows.
      this.#lastBeat = now;
      this.#hbSeq = (this.#hbSeq + 1) >>> 0;
      // To a worker, the beat carries the queue depth of its services (SPEC.md §6.5).
      let depth = NONE;
      if (this.#link) {
        depth = 0;
        for (const s of this.#link.services) depth += this.#opts.workers!.queueDepth(s);
      }
      this.#send({ type: "heartbeat", seq: this.#hbSeq, freeSlots: NONE, queueDepth: depth });
    }
  }

  #send(frame: Frame): void {
    this.#t.write(encoder.encode(frame));
  }

  #fatal(code: number, message: string): void {
    if (this.#state === "closing") return;
    this.#state = "closing";
    this.#dropLink(message);
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
          job.cancelled = true;
          this.#inFlight.delete(f.id);
          this.#send({ type: "error", id: f.id, code: ErrorCode.CANCELLED, message: "Cancelled" });
          this.#afterAnswer();
        }
        break;
      }
      case "heartbeat":
        if (this.#link) this.#link.reportedFree = f.freeSlots;
        break;
      case "register":
        if (this.#role !== 2) break;
        this.#onRegister(f.slots, f.services);
        return;
      case "ready":
        if (this.#role !== 2 || !this.#link) break;
        this.#link.grant(f.credit);
        return;
      case "reply":
        if (this.#role !== 2 || !this.#link) break;
        this.#link.answered(f.id, { status: f.status, headers: f.meta, body: f.body.slice() });
        this.#link.reportedFree = f.freeSlots;
        return;
      case "error":
        if (f.id === 0) {
          log.debug("Peer {remote} closed with error {code}: {message}", {
            remote: this.#t.remote,
            code: f.code,
            message: f.message,
          });
          this.#t.close();
          return;
        }
        if (this.#role !== 2 || !this.#link) break;
        this.#link.answered(f.id, new JobError(f.code, f.message));
        return;
      case "drain":
        // A worker that stops taking jobs; from a client it needs no action.
        this.#link?.drain(f.graceMs);
        return;
      case "statsRequest": {
        const verdict = statusAccess(this.#opts.statsAccess ?? {}, this.#t.remote, this.#peerToken);
        if (admitted(verdict)) {
          this.#send({ type: "stats", id: f.id, json: JSON.stringify(this.#opts.stats?.() ?? {}) });
        } else {
          log.debug("Refused STATS_REQUEST to {remote}: {verdict}", {
            remote: this.#t.remote,
            verdict,
          });
          this.#send({
            type: "error",
            id: f.id,
            code: ErrorCode.UNAUTHORIZED,
            message: verdict === "forbidden"
              ? "ep stats are served to loopback peers only"
              : "A token is required for ep stats: present it in HELLO",
          });
        }
        break;
      }
      default:
        break;
    }
    if (f.type === "request" || f.type === "cancel" || f.type === "statsRequest") return;
    if (f.type === "heartbeat") return;
    this.#fatal(
      ErrorCode.UNEXPECTED_FRAME,
      `Frame ${frameName(f)} is not allowed from a ${this.#role === 2 ? "worker" : "client"}${
        this.#role === 2 && !this.#link ? " before REGISTER" : ""
      }`,
    );
  }

  #onRegister(slots: number, services: string[]): void {
    const host = this.#opts.workers!;
    if (slots === 0) {
      this.#fatal(ErrorCode.MALFORMED, "REGISTER with zero slots");
      return;
    }
    if (this.#link) {
      host.updateProvider(this.#link, new Set(services), slots);
      this.#link.undrain();
      return;
    }
    const name = this.#peerName ? `${this.#t.remote} (${this.#peerName})` : this.#t.remote;
    this.#link = new WorkerLink(this, host, name, slots, new Set(services));
    host.addProvider(this.#link);
  }

  /** @internal Sends a frame for the worker link. */
  sendFrame(frame: Frame): void {
    if (this.#state !== "closing") this.#send(frame);
  }

  /** @internal Cuts off the worker: ERROR LIMIT_EXCEEDED (id 0), close; its link is dropped. */
  evictWorker(reason: string): void {
    this.#fatal(ErrorCode.LIMIT_EXCEEDED, reason);
  }

  #onHello(f: Extract<Frame, { type: "hello" }>): void {
    if (f.minVersion > VERSION || f.maxVersion < VERSION) {
      this.#fatal(
        ErrorCode.UNSUPPORTED_VERSION,
        `No common version: peer speaks ${f.minVersion}-${f.maxVersion}, server ${VERSION}`,
      );
      return;
    }
    if (f.role === 2) {
      if (!this.#opts.workers) {
        this.#fatal(ErrorCode.UNEXPECTED_FRAME, "This server does not accept workers");
        return;
      }
      const token = this.#opts.token;
      if (token ? !timingSafeEqualString(f.token, token) : !isLoopback(this.#t.remote)) {
        this.#fatal(
          ErrorCode.UNAUTHORIZED,
          token ? "Invalid token" : "Workers need a token unless they connect over loopback",
        );
        return;
      }
    } else {
      const token = this.#opts.clientToken;
      if (token && !timingSafeEqualString(f.token, token)) {
        // The status token opens this connection for STATS_REQUEST only.
        if (statusAccess(this.#opts.statsAccess ?? {}, this.#t.remote, f.token) !== "token") {
          this.#fatal(ErrorCode.UNAUTHORIZED, "Invalid token");
          return;
        }
        this.#statsOnly = true;
      }
    }
    this.#role = f.role;
    this.#peerName = f.name;
    this.#peerToken = f.token;
    this.#decoder.maxPayload = this.#opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    const maxHb = this.#opts.maxHeartbeatMs ?? 5_000;
    const wantHb = f.heartbeatMs === 0 && f.role === 2
      ? this.#opts.workerHeartbeatMs ?? 1_000
      : f.heartbeatMs;
    this.#heartbeatMs = wantHb === 0 ? 0 : Math.min(Math.max(wantHb, 100), maxHb);
    this.#state = "open";
    this.#lastBeat = Date.now();
    this.#send({
      type: "welcome",
      version: VERSION,
      maxPayload: this.#opts.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      heartbeatMs: this.#heartbeatMs,
      prefetch: f.role === 2 ? this.#opts.prefetch ?? DEFAULT_PREFETCH : 0,
      serverName: this.#opts.serverName ?? "ep",
    });
  }

  #onRequest(f: Extract<Frame, { type: "request" }>): void {
    const id = f.id;
    if (this.#inFlight.has(id)) {
      // SPEC.md §9.3: reusing an outstanding id is a framing error of the peer.
      this.#fatal(ErrorCode.MALFORMED, `Job id ${id} is already in flight`);
      return;
    }
    if (this.#statsOnly) {
      this.#send({
        type: "error",
        id,
        code: ErrorCode.UNAUTHORIZED,
        message: "This connection was admitted with the status token: stats only",
      });
      return;
    }
    if (!isServiceName(f.service)) {
      this.#send({
        type: "error",
        id,
        code: ErrorCode.BAD_REQUEST,
        message: `Invalid service name "${oneLine(f.service, 64)}"`,
      });
      return;
    }
    const entry = new InFlight(id, this);
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
      // ep's own keys (SPEC.md §10) are ep's to set: a client's are dropped.
      headers: withoutReserved(f.meta),
      body: f.body.slice(),
      deadlineMs: f.deadlineMs,
      priority: f.priority,
      remote: this.#t.remote,
      origin: entry,
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
    try {
      const body = res.body === undefined
        ? EMPTY
        : typeof res.body === "string"
        ? enc.encode(res.body)
        : res.body;
      const problem = replyProblem(res.status ?? 200, body.length); // the rule every handler follows
      if (problem !== null) throw new JobError(ErrorCode.HANDLER_ERROR, problem);
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
      log.warn("Cannot send a reply over EP: {error}", { error: err });
      const e = unsendableReply(err);
      this.#send({ type: "error", id: entry.id, code: e.code, message: oneLine(e.message) });
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

/** What EP connections need from the balancer to attach workers. */
export interface WorkerHost {
  /** Attaches a registered worker. */
  addProvider(p: Provider): void;
  /** Changes a worker's services or slots (a new REGISTER). */
  updateProvider(p: Provider, services: ReadonlySet<string>, slots: number): void;
  /** Detaches a worker; its jobs are redelivered or failed. */
  removeProvider(p: Provider, reason: string): void;
  /** The worker gained credit. */
  pull(p: Provider): void;
  /** The worker answered a job. */
  finish(p: Provider, job: QueuedJob, result: JobResult | JobError): void;
  /** Jobs queued for a service. */
  queueDepth(service: string): number;
}

/**
 * The balancer's view of a worker on an EP connection: credit from READY frames, jobs
 * dispatched as REQUESTs (the HTTP method, path and query travel as `ep-method`, `ep-path`,
 * `ep-query` meta, SPEC.md §10), answers matched by id.
 */
class WorkerLink implements Provider {
  readonly name: string;
  services: ReadonlySet<string>;
  slots: number;
  credit = 0;
  draining = false;
  /** After a DRAIN: when the jobs it still holds count as lost (`performance.now()` ms). */
  drainDeadline: number | undefined = undefined;
  reportedFree = NOT_APPLICABLE;
  /** When the worker last sent anything (heartbeats included), Unix ms; for the status page. */
  lastHeard = Date.now();
  #conn: EpConnection;
  #host: WorkerHost;
  #held = new Map<number, QueuedJob>();
  #ids = new Map<QueuedJob, number>();
  #nextId = 1;
  #demandSent = false;
  #beat = 0;

  constructor(
    conn: EpConnection,
    host: WorkerHost,
    remote: string,
    slots: number,
    services: ReadonlySet<string>,
  ) {
    this.#conn = conn;
    this.#host = host;
    this.name = `worker ${remote}`;
    this.slots = slots;
    this.services = services;
  }

  grant(n: number): void {
    this.credit += n;
    this.#demandSent = false;
    this.#host.pull(this);
  }

  /**
   * Sends the job as a REQUEST. The frame is encoded before anything is taken: a job EP
   * cannot carry (a metadata key or value out of §7's limits, a payload over
   * `max_payload`) throws a `bad_request` JobError with the credit, id and held entry
   * untouched.
   */
  dispatch(qj: QueuedJob): void {
    let id = this.#nextId;
    while (this.#held.has(id)) id = (id % 0xffffffff) + 1;
    const job = qj.job;
    try {
      this.#conn.sendFrame({
        type: "request",
        id,
        deadlineMs: Math.max(1, Math.round(qj.deadline - performance.now())),
        priority: qj.priority,
        attempt: Math.min(255, qj.attempt - 1),
        queueDepth: this.#host.queueDepth(qj.service),
        service: qj.service,
        meta: jobMeta(job),
        body: job.body,
      });
    } catch (err) {
      // The encoder refuses with RangeError (a field out of range) or FrameTooLargeError.
      if (!(err instanceof RangeError || err instanceof FrameTooLargeError)) throw err;
      throw new JobError(
        ErrorCode.BAD_REQUEST,
        `Request cannot be sent to a worker: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.#nextId = (id % 0xffffffff) + 1;
    this.credit--;
    this.#held.set(id, qj);
    this.#ids.set(qj, id);
  }

  drain(graceMs: number): void {
    this.draining = true;
    this.drainDeadline = performance.now() + graceMs;
  }

  undrain(): void {
    this.draining = false;
    this.drainDeadline = undefined;
  }

  evict(reason: string): void {
    this.#conn.evictWorker(reason);
  }

  cancel(qj: QueuedJob): void {
    const id = this.#ids.get(qj);
    if (id !== undefined) this.#conn.sendFrame({ type: "cancel", id });
  }

  demand(_service: string, depth: number): void {
    if (this.#demandSent) return;
    this.#demandSent = true;
    this.#beat = (this.#beat + 1) >>> 0;
    this.#conn.sendFrame({
      type: "heartbeat",
      seq: this.#beat,
      freeSlots: NOT_APPLICABLE,
      queueDepth: depth,
    });
  }

  answered(id: number, result: JobResult | JobError): void {
    const qj = this.#held.get(id);
    if (!qj) return; // crossed a CANCEL or a timeout
    this.#held.delete(id);
    this.#ids.delete(qj);
    this.#host.finish(this, qj, result);
  }
}
