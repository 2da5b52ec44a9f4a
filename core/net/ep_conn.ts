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
 * A worker (HELLO role 2) that REGISTERs is handed to the {@linkcode WorkerHost} of the
 * options as a {@linkcode WorkerSession}; its frames go to the {@linkcode WorkerSessionHandler}
 * the host gives back. The connection knows nothing of what is behind the host (the
 * balancer attaches it in `core/balancer/worker_link.ts`).
 *
 * STATS_REQUEST is answered under the status access rule (`core/net/access.ts`, the same as
 * `/_ep/stats`), with HELLO's `token` as the peer's token; a refused one gets ERROR
 * `unauthorized` with the request's id and the connection goes on. A client's ADMIN (the
 * runtime admin API, SPEC.md §6.12) is answered under the same rule by
 * {@linkcode EpOptions.admin}, with ADMIN_RESULT or ERROR carrying its id. A registered
 * worker's STATS answers go to its handler (its service descriptions, §6.7).
 *
 * Why one file of this size: the connection's state machine (HELLO, jobs, heartbeats, STATS,
 * CANCEL, DRAIN) and the documented interfaces through which it meets workers and clients.
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
  MAX_PROTOCOL_VERSION,
  MIN_MAX_PAYLOAD,
  NOT_APPLICABLE,
} from "../../protocol/ep_frames.ts";
import { ErrorCode, type ProtocolError } from "../../protocol/errors.ts";
import { JobError } from "../errors.ts";
import {
  hedgeOf,
  type Job,
  type JobHandler,
  type JobOrigin,
  type JobResult,
  replyProblem,
} from "../job.ts";
import { unsendableReply, withoutReserved } from "../ep_limits.ts";
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
  /**
   * Accepts workers: whoever they register with (the balancer, through
   * `core/balancer/worker_link.ts`). Without it workers are refused.
   */
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
   * Who may send STATS_REQUEST and ADMIN: the status access rule of `/_ep/stats`, applied
   * to the peer's address and HELLO's `token`. Default `{}`: loopback peers only. A client
   * whose token is not the `clientToken` but is this `token` is admitted for stats and
   * admin only.
   */
  statsAccess?: AccessOptions;
  /**
   * Carries out a client's ADMIN (its JSON text, SPEC.md §6.12): the balancer's monitor
   * (`Monitor.adminJson`). Without it ADMIN is answered ERROR `bad_request`.
   */
  admin?: (json: string) => EpAdminAnswer;
}

/**
 * What an ADMIN got from {@linkcode EpOptions.admin}: its result (sent as ADMIN_RESULT), or a
 * refusal with an EP error code (sent as ERROR).
 *
 * @example
 * ```ts
 * import type { EpAdminAnswer } from "./ep_conn.ts";
 * const a: EpAdminAnswer = { ok: false, code: 100, message: 'No worker "w9" is attached' };
 * console.assert(!a.ok);
 * ```
 */
export type EpAdminAnswer =
  | { ok: true; result: unknown }
  | { ok: false; code: number; message: string };

const NONE = NOT_APPLICABLE;
/**
 * The shortest heartbeat interval the server agrees to: two ticks of the server's sweep
 * (250 ms, `server.ts`), which sends the beats. A shorter one could not be kept, and a peer
 * judging three intervals would take a beat sent a tick late for a dead server.
 */
const MIN_HEARTBEAT_MS = 500;
/** How long a drained client connection with nothing in flight stays open: for requests already on the wire. */
const DRAIN_LINGER_MS = 1_000;
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();
// One encoder per version for every connection: `encode` returns a view valid until the
// next call, and transports copy what they are given, so sharing it is safe on one thread.
const encoders = Array.from(
  { length: MAX_PROTOCOL_VERSION + 1 },
  (_, v) => new EpEncoder({ version: Math.max(1, v) }),
);
/** The versions this server speaks, for messages. */
const SPOKEN = `1-${MAX_PROTOCOL_VERSION}`;

/** A client's request in flight; the job's origin (abandoned once cancelled or gone). */
class InFlight implements JobOrigin {
  cancelled = false;
  /** Told once it is abandoned (`watch`). */
  #watchers: (() => void)[] | null = null;
  constructor(readonly id: number, readonly conn: EpConnection) {}
  get abandoned(): boolean {
    return this.cancelled || this.conn.gone;
  }
  /** Calls `listener` once when the request is cancelled or its client goes away. */
  watch(listener: () => void): void {
    if (this.#watchers === null) this.#watchers = [listener];
    else if (!this.#watchers.includes(listener)) this.#watchers.push(listener);
  }
  /** It was cancelled, or its client went away: tells the watchers. */
  abandon(): void {
    const watchers = this.#watchers;
    this.#watchers = null;
    if (watchers) { for (const w of watchers) w(); }
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
  /** The version agreed in HELLO/WELCOME (1 until then). */
  #version = 1;
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
  #link: WorkerSessionHandler | null = null;
  /** When the peer last sent anything, Unix ms (a worker's "last heard"). */
  #lastHeard = Date.now();
  /** STATS_REQUESTs sent to a registered worker (their ids). */
  #statsAsked = 0;
  /** When the server started going away (DRAIN sent), Unix ms; 0 before. */
  #drainedAt = 0;

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
        `Unsupported protocol version "0" in the preface: this server speaks ${SPOKEN}`,
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
    this.#lastHeard = now;
    this.#decoder.push(chunk);
  }

  /** @internal */
  end(): void {
    this.#peerEnded = true;
    this.#dropLink("connection closed");
    if (this.#inFlight.size === 0) this.#t.close();
    for (const entry of this.#inFlight.values()) entry.abandon();
  }

  /**
   * The server is going away (SPEC.md §9.7). A client's connection is sent DRAIN: what it
   * has in flight is still answered, a REQUEST that crossed the DRAIN is answered
   * `shutting_down`, and once nothing is in flight the connection is closed (after a short
   * linger for requests already on the wire). A worker's connection is left alone: the
   * balancer still needs it to finish its jobs. Returns whether the connection is one the
   * server waits for (a client's, not yet closed).
   */
  drain(graceMs: number): boolean {
    if (this.#t.closed || this.#state === "closing") return false;
    if (this.#role === 2 && this.#state === "open") return false;
    if (this.#drainedAt === 0) {
      this.#drainedAt = Date.now();
      if (this.#state === "open") this.#send({ type: "drain", graceMs });
    }
    return true;
  }

  /**
   * The server's clients are answered and it closes next: a worker's connection is sent
   * DRAIN (SPEC.md §9.7) and closed once that is sent, so that the worker takes the close
   * for a balancer going away, not for one lost. Resolves when it is closed.
   */
  goingAway(): Promise<void> | null {
    if (this.#role !== 2 || this.#state !== "open" || this.#t.closed) return null;
    this.#state = "closing";
    this.#dropLink("the balancer is going away");
    this.#send({ type: "drain", graceMs: 0 });
    this.#t.end();
    return this.#t.whenClosed;
  }

  #dropLink(reason: string): void {
    const link = this.#link;
    if (!link) return;
    this.#link = null;
    link.closed(reason);
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
    if (this.#drainedAt > 0 && this.#role !== 2 && this.#inFlight.size === 0) {
      if (now - this.#drainedAt >= DRAIN_LINGER_MS) {
        this.#state = "closing";
        this.#t.end();
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
      // To a worker, the beat carries the queue depth of its services and (version 2) how
      // long the oldest of those jobs has waited (SPEC.md §6.5).
      const link = this.#link;
      this.#send({
        type: "heartbeat",
        seq: this.#hbSeq,
        freeSlots: NONE,
        queueDepth: link ? link.queueDepth() : NONE,
        oldestWaitMs: link?.oldestWaitMs ? link.oldestWaitMs() : NONE,
      });
    }
  }

  #send(frame: Frame): void {
    this.#t.write(encoders[this.#version].encode(frame));
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
          job.abandon();
          this.#send({ type: "error", id: f.id, code: ErrorCode.CANCELLED, message: "Cancelled" });
          this.#afterAnswer();
        }
        break;
      }
      case "heartbeat":
        this.#link?.heartbeat(f.freeSlots);
        break;
      case "register":
        if (this.#role !== 2) break;
        this.#onRegister(f.slots, f.services, f.hedgeMs);
        return;
      case "ready":
        if (this.#role !== 2 || !this.#link) break;
        this.#link.grant(f.credit);
        return;
      case "reply":
        if (this.#role !== 2 || !this.#link) break;
        this.#link.answered(
          f.id,
          { status: f.status, headers: f.meta, body: f.body.slice() },
          f.freeSlots,
        );
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
      case "stats":
        // A registered worker's answer to the STATS_REQUEST sent after its REGISTER.
        if (this.#role !== 2 || !this.#link) break;
        this.#link.stats?.(f.id, f.json);
        return;
      case "admin":
        if (this.#role !== 1) break;
        this.#onAdmin(f.id, f.json);
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

  /** ADMIN: the status access rule, then the admin API; the connection goes on either way. */
  #onAdmin(id: number, json: string): void {
    const verdict = statusAccess(this.#opts.statsAccess ?? {}, this.#t.remote, this.#peerToken);
    if (!admitted(verdict)) {
      log.debug("Refused ADMIN to {remote}: {verdict}", { remote: this.#t.remote, verdict });
      this.#send({
        type: "error",
        id,
        code: ErrorCode.UNAUTHORIZED,
        message: verdict === "forbidden"
          ? "ep admin is served to loopback peers only"
          : "A token is required for ep admin: present the status token in HELLO",
      });
      return;
    }
    const answer: EpAdminAnswer = this.#opts.admin?.(json) ??
      { ok: false, code: ErrorCode.BAD_REQUEST, message: "This server has no admin API" };
    if (answer.ok) {
      this.#send({ type: "adminResult", id, json: JSON.stringify(answer.result) });
    } else {
      this.#send({ type: "error", id, code: answer.code, message: oneLine(answer.message, 1000) });
    }
  }

  #onRegister(slots: number, services: string[], hedgeMs?: number[]): void {
    const host = this.#opts.workers!;
    if (slots === 0) {
      this.#fatal(ErrorCode.MALFORMED, "REGISTER with zero slots");
      return;
    }
    // Version 2: the services a worker lets balancers hedge, and after how long (§6.3).
    const hedge = new Map<string, number | null>();
    hedgeMs?.forEach((ms, i) => {
      if (ms !== 0) hedge.set(services[i], ms === NONE ? null : ms);
    });
    if (this.#link) {
      this.#link.register(slots, new Set(services), hedge);
    } else {
      const name = this.#peerName ? `${this.#t.remote} (${this.#peerName})` : this.#t.remote;
      this.#link = host.attach(this.#session(name), slots, new Set(services), hedge);
    }
    // Its STATS answer carries its service descriptions (SPEC.md §6.7).
    if (this.#link.stats) this.#send({ type: "statsRequest", id: ++this.#statsAsked >>> 0 });
  }

  /** The registered worker as its host sees it. */
  #session(name: string): WorkerSession {
    // deno-lint-ignore no-this-alias
    const conn = this;
    return {
      name,
      get lastHeard() {
        return conn.#lastHeard;
      },
      get version() {
        return conn.#version;
      },
      send: (frame) => {
        if (this.#state !== "closing") this.#send(frame);
      },
      // ERROR LIMIT_EXCEEDED (id 0), close; the handler is told `closed`.
      evict: (reason) => this.#fatal(ErrorCode.LIMIT_EXCEEDED, reason),
    };
  }

  #onHello(f: Extract<Frame, { type: "hello" }>): void {
    // The highest version both speak (SPEC.md §9.2); the decoder checked min ≤ max.
    const version = Math.min(f.maxVersion, MAX_PROTOCOL_VERSION);
    if (version < f.minVersion) {
      this.#fatal(
        ErrorCode.UNSUPPORTED_VERSION,
        `No common version: peer speaks ${f.minVersion}-${f.maxVersion}, server ${SPOKEN}`,
      );
      return;
    }
    if (this.#drainedAt > 0 && f.role !== 2) {
      // SPEC.md §8: a new client during shutdown is refused with SHUTTING_DOWN.
      this.#fatal(ErrorCode.SHUTTING_DOWN, "The server is going away");
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
    this.#heartbeatMs = wantHb === 0 ? 0 : Math.min(Math.max(wantHb, MIN_HEARTBEAT_MS), maxHb);
    this.#state = "open";
    this.#lastBeat = Date.now();
    this.#send({
      type: "welcome",
      version,
      maxPayload: this.#opts.maxPayload ?? DEFAULT_MAX_PAYLOAD,
      heartbeatMs: this.#heartbeatMs,
      prefetch: f.role === 2 ? this.#opts.prefetch ?? DEFAULT_PREFETCH : 0,
      serverName: this.#opts.serverName ?? "ep",
    });
    // Every frame after WELCOME has the agreed version's layout, both ways (§9.2).
    this.#version = version;
    this.#decoder.version = version;
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
    if (this.#drainedAt > 0) {
      // It crossed the DRAIN (SPEC.md §9.7): the client sends it elsewhere.
      this.#send({
        type: "error",
        id,
        code: ErrorCode.SHUTTING_DOWN,
        message: "The server is going away: send it to another",
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
      // ep's own keys (SPEC.md §10) are ep's to set: a client's are dropped, after ep read
      // what it reads (`ep-hedge`).
      headers: withoutReserved(f.meta),
      hedge: hedgeOf(f.meta),
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

/**
 * Whoever accepts workers on the EP port: the balancer, through
 * `core/balancer/worker_link.ts`. An EP connection hands it each worker that registers and
 * forwards that worker's frames to the {@linkcode WorkerSessionHandler} it gets back.
 *
 * @example
 * ```ts
 * import type { WorkerHost, WorkerSessionHandler } from "./ep_conn.ts";
 * const names: string[] = [];
 * const host: WorkerHost = {
 *   attach(session, slots) {
 *     names.push(`${session.name}: ${slots} slots`);
 *     const handler: WorkerSessionHandler = {
 *       register() {},
 *       grant() {},
 *       answered() {},
 *       heartbeat() {},
 *       drain() {},
 *       queueDepth: () => 0,
 *       closed() {},
 *     };
 *     return handler;
 *   },
 * };
 * console.assert(typeof host.attach === "function" && names.length === 0);
 * ```
 */
export interface WorkerHost {
  /**
   * A worker sent its first REGISTER (`slots` > 0, its `services`): returns what takes its
   * frames from now on, until {@linkcode WorkerSessionHandler.closed}. `hedge` (version 2)
   * names the services whose jobs the worker lets balancers hedge (SPEC.md §9.10): after
   * that many ms, or after the service's recent p95 service time (null).
   */
  attach(
    session: WorkerSession,
    slots: number,
    services: ReadonlySet<string>,
    hedge?: ReadonlyMap<string, number | null>,
  ): WorkerSessionHandler;
}

/** A registered worker's EP connection, as its {@linkcode WorkerHost} sees it. */
export interface WorkerSession {
  /** The peer's address, with the name it gave in HELLO: `10.0.0.5:40412 (w1)`. */
  readonly name: string;
  /** When the worker last sent anything (heartbeats included), Unix ms. */
  readonly lastHeard: number;
  /**
   * The protocol version agreed with the worker (SPEC.md §9.2): version 2 carries the
   * oldest queued job's wait in REQUEST and HEARTBEAT.
   */
  readonly version: number;
  /**
   * Sends a frame to the worker; dropped once the connection is closing. A frame EP cannot
   * carry throws what the encoder throws (`RangeError`, `FrameTooLargeError`), nothing sent.
   */
  send(frame: Frame): void;
  /**
   * Cuts the worker off: ERROR `limit_exceeded` (id 0) with `reason`, then close; the
   * handler's {@linkcode WorkerSessionHandler.closed} follows.
   */
  evict(reason: string): void;
}

/** What the host does with a registered worker's frames. */
export interface WorkerSessionHandler {
  /**
   * A later REGISTER: the worker's slots or services changed (a reload); it takes jobs again.
   * `hedge` as in {@linkcode WorkerHost.attach}.
   */
  register(
    slots: number,
    services: ReadonlySet<string>,
    hedge?: ReadonlyMap<string, number | null>,
  ): void;
  /** READY: the worker granted `credit` more jobs. */
  grant(credit: number): void;
  /**
   * The worker answered job `id`: a REPLY (with the `free_slots` it reported) or an ERROR
   * (a {@linkcode JobError} with its code).
   */
  answered(id: number, result: JobResult | JobError, freeSlots?: number): void;
  /** A HEARTBEAT from the worker, with the `free_slots` it reported. */
  heartbeat(freeSlots: number): void;
  /** DRAIN: the worker takes no more jobs; what it holds counts as lost after `graceMs`. */
  drain(graceMs: number): void;
  /** Jobs waiting for the worker's services: the `queue_depth` of heartbeats to it (SPEC.md §6.5). */
  queueDepth(): number;
  /**
   * The worker's STATS (the answer to the STATS_REQUEST sent after each REGISTER): its JSON
   * text, which may describe its services (SPEC.md §6.7). Without it none is asked for.
   */
  stats?(id: number, json: string): void;
  /**
   * How long the oldest job waiting for the worker's services has waited, ms (0 when none):
   * the `oldest_wait_ms` of version-2 heartbeats to it (SPEC.md §6.5). Absent: not reported.
   */
  oldestWaitMs?(): number;
  /** The connection ended or was closed (`reason`); no frame follows. */
  closed(reason: string): void;
}
