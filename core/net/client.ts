/**
 * The TypeScript EP client: one connection, many requests in flight (pipelined), each with
 * its own timeout. A request resolves with the reply or rejects with a {@linkcode JobError}
 * carrying the EP error code (`overloaded`, `timeout`, `no_service`, ...).
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

// What a request rejects with besides a JobError: part of the client's API, so importable
// from here too.
export { ConnectionClosedError } from "../errors.ts";
import { connect as tcpConnect, type Transport } from "./transport.ts";

/**
 * Options for {@linkcode connect}.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * const server = serve({ port: 0, handler: () => ({ body: "ok" }), ep: { clientToken: "t" } });
 * const client = await connect(`127.0.0.1:${server.addr.port}`, { token: "t", timeoutMs: 2000 });
 * console.assert((await client.request("any")).status === 200);
 * client.close();
 * await server.close();
 * ```
 */
export interface ClientOptions {
  /** Token presented in HELLO. Default: none. */
  token?: string;
  /** This client's name, for the server's logs. Default `"ep-client"`. */
  name?: string;
  /** Default per-request timeout in milliseconds. Default 30 000. */
  timeoutMs?: number;
  /** Time allowed to connect and be welcomed. Default 5 000. */
  connectTimeoutMs?: number;
  /** Heartbeat interval to ask for; 0 for none. Default 0. */
  heartbeatMs?: number;
}

/**
 * Options for one request.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * const server = serve({ port: 0, handler: (job) => ({ body: job.headers[0][1] }) });
 * const client = await connect(`127.0.0.1:${server.addr.port}`);
 * const reply = await client.request("svc", "", { meta: [["x-who", "me"]], timeoutMs: 1000 });
 * console.assert(new TextDecoder().decode(reply.body) === "me");
 * client.close();
 * await server.close();
 * ```
 */
export interface RequestOptions {
  /** Timeout in milliseconds; also sent to the server as the job's deadline. */
  timeoutMs?: number;
  /** Metadata sent with the request (lower-case keys). */
  meta?: [string, string][];
  /** Priority, 0–255, higher served first. */
  priority?: number;
  /**
   * Aborts the request: the server is sent CANCEL (a queued job is dropped, a dispatched
   * one is cancelled onward) and the promise rejects with a `cancelled` {@linkcode JobError}.
   */
  signal?: AbortSignal;
}

/**
 * A reply to a request: any status the service chose (a 404 is a reply, not an error).
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * const server = serve({
 *   port: 0,
 *   handler: () => ({ status: 404, headers: [["x-why", "gone"]], body: "no" }),
 * });
 * const client = await connect(`127.0.0.1:${server.addr.port}`);
 * const reply = await client.request("svc");
 * console.assert(reply.status === 404 && reply.meta[0][1] === "gone" && reply.body.length === 2);
 * client.close();
 * await server.close();
 * ```
 */
export interface Reply {
  /** Status with HTTP meaning (200 = ok). */
  status: number;
  /** Reply metadata. */
  meta: [string, string][];
  /** The reply body (owned). */
  body: Uint8Array;
}

interface Pending {
  resolve: (r: Reply) => void;
  reject: (e: Error) => void;
  deadline: number;
  timeoutMs: number;
}

const enc = new TextEncoder();

/**
 * An EP client connection. Create with {@linkcode connect}.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * import { JobError } from "../errors.ts";
 * const server = serve({ port: 0, handler: (job) => ({ body: job.body }) });
 * const client = await connect(`127.0.0.1:${server.addr.port}`);
 * const replies = await Promise.all(["a", "b"].map((s) => client.request("echo", s)));
 * console.assert(replies.map((r) => new TextDecoder().decode(r.body)).join() === "a,b");
 * // A request aborted by its caller rejects with a `cancelled` JobError.
 * const ac = new AbortController();
 * ac.abort();
 * const err = await client.request("echo", "x", { signal: ac.signal }).then(() => null, (e) => e);
 * console.assert(err instanceof JobError && err.kind === "cancelled");
 * client.close();
 * await server.close();
 * ```
 */
export class Client {
  #t: Transport;
  #encoder = new EpEncoder();
  #decoder: EpDecoder;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #timeoutMs: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closedError: Error | null = null;
  #welcome: WelcomeFrame | null = null;
  #welcomeWait: { resolve: () => void; reject: (e: Error) => void } | null = null;
  #hbSeq = 0;
  #heartbeatMs = 0;
  #unmatched = 0;

  /** Wraps a transport; prefer {@linkcode connect}. */
  constructor(transport: Transport, options: ClientOptions = {}) {
    this.#t = transport;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#decoder = new EpDecoder({
      frame: (f) => this.#onFrame(f),
      error: (e) =>
        this.#shutdown(new ConnectionClosedError(`Bad frame from server: ${e.message}`)),
    });
    transport.start({
      data: (c) => this.#decoder.push(c),
      end: (err) => {
        this.#shutdown(
          new ConnectionClosedError("Connection closed by the server", { cause: err }),
        );
      },
    });
    transport.write(encodePreface(VERSION));
    transport.write(this.#encoder.encode({
      type: "hello",
      role: 1,
      minVersion: VERSION,
      maxVersion: VERSION,
      heartbeatMs: options.heartbeatMs ?? 0,
      name: options.name ?? "ep-client",
      token: options.token ?? "",
    }));
  }

  /** Resolves when the server has answered HELLO. */
  ready(timeoutMs = 5_000): Promise<void> {
    if (this.#welcome) return Promise.resolve();
    if (this.#closedError) return Promise.reject(this.#closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new JobError(ErrorCode.TIMEOUT, `No WELCOME within ${timeoutMs} ms`));
        this.close();
      }, timeoutMs);
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

  /**
   * Answers that matched no request in flight: late answers to requests that timed out or
   * were cancelled, or a server answering twice (never, with ep).
   */
  get unmatched(): number {
    return this.#unmatched;
  }

  /** Requests waiting for their answer. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Sends a request for `service` and resolves with its reply. */
  request(
    service: string,
    body: Uint8Array | string = new Uint8Array(0),
    options: RequestOptions = {},
  ): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const signal = options.signal;
    if (signal?.aborted) {
      return Promise.reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
    }
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id % 0xffffffff) + 1;
    this.#nextId = (id % 0xffffffff) + 1;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const bytes = typeof body === "string" ? enc.encode(body) : body;
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
        body: bytes,
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
    this.#ensureTimer();
    if (!signal) return p;
    const entry = this.#pending.get(id)!;
    const onAbort = () => {
      if (this.#pending.get(id) !== entry) return;
      this.#pending.delete(id);
      if (!this.#t.closed) this.#t.write(this.#encoder.encode({ type: "cancel", id }));
      entry.reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    return p.finally(() => signal.removeEventListener("abort", onAbort));
  }

  /** Asks the server for its statistics (JSON). */
  async stats(timeoutMs = 5_000): Promise<unknown> {
    const reply = await this.#control({ type: "statsRequest", id: 0 }, timeoutMs);
    return JSON.parse(new TextDecoder().decode(reply.body));
  }

  /**
   * Sends a runtime admin request (EP ADMIN, SPEC.md §6.12), such as `{ op: "drain",
   * worker: "w1" }`, and resolves with the server's result object. A refusal rejects with a
   * {@linkcode JobError} (`bad_request` with the reason, `unauthorized`).
   */
  async admin(request: Record<string, unknown>, timeoutMs = 5_000): Promise<unknown> {
    const json = JSON.stringify(request);
    const reply = await this.#control({ type: "admin", id: 0, json }, timeoutMs);
    return JSON.parse(new TextDecoder().decode(reply.body));
  }

  /** Closes the connection; requests in flight reject with ConnectionClosedError. */
  close(): void {
    this.#shutdown(new ConnectionClosedError("Client closed"));
  }

  #control(frame: Frame, timeoutMs: number): Promise<Reply> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id % 0xffffffff) + 1;
    this.#nextId = (id % 0xffffffff) + 1;
    const p = new Promise<Reply>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
    });
    this.#t.write(this.#encoder.encode({ ...frame, id } as Frame));
    if (!this.#closedError) this.#ensureTimer();
    return p;
  }

  #ensureTimer(): void {
    if (this.#timer !== undefined) return;
    const period = 20;
    this.#timer = setInterval(() => {
      const now = Date.now();
      for (const [id, p] of this.#pending) {
        if (now >= p.deadline) {
          this.#pending.delete(id);
          this.#t.write(this.#encoder.encode({ type: "cancel", id }));
          p.reject(new JobError(ErrorCode.TIMEOUT, `Request timed out after ${p.timeoutMs} ms`));
        }
      }
      if (this.#heartbeatMs > 0 && this.#hbSeq++ % Math.ceil(this.#heartbeatMs / period) === 0) {
        this.#t.write(
          this.#encoder.encode({
            type: "heartbeat",
            seq: this.#hbSeq,
            freeSlots: 0,
            queueDepth: 0,
          }),
        );
      }
      if (this.#pending.size === 0 && this.#heartbeatMs === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    }, period);
  }

  #onFrame(f: Frame): void {
    switch (f.type) {
      case "welcome":
        this.#welcome = f;
        this.#heartbeatMs = f.heartbeatMs;
        if (f.heartbeatMs > 0) this.#ensureTimer();
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
        break;
      }
      case "stats":
      case "adminResult": {
        const p = this.#pending.get(f.id);
        if (!p) return;
        this.#pending.delete(f.id);
        p.resolve({ status: 200, meta: [], body: enc.encode(f.json) });
        break;
      }
      case "error": {
        if (f.id === 0) {
          this.#shutdown(new JobError(f.code, f.message));
          return;
        }
        const p = this.#pending.get(f.id);
        if (!p) {
          this.#unmatched++;
          return;
        }
        this.#pending.delete(f.id);
        p.reject(new JobError(f.code, f.message));
        break;
      }
      default:
        // HEARTBEAT and DRAIN need no action from a client that only sends requests.
        break;
    }
  }

  #shutdown(err: Error): void {
    if (this.#closedError) return;
    this.#closedError = err;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#welcomeWait?.reject(err);
    this.#welcomeWait = null;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    this.#t.close();
  }
}

/**
 * Connects to an ep server at `addr` (`host:port`) over EP and waits for its WELCOME.
 *
 * @example
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * import { JobError } from "../errors.ts";
 * const server = serve({ port: 0, handler: (job) => ({ body: job.body }) });
 * const client = await connect(`127.0.0.1:${server.addr.port}`, { timeoutMs: 1000 });
 * console.assert(client.welcome?.version === 1);
 * console.assert((await client.request("echo", "hi")).status === 200);
 * // A service name EP refuses is a job error; the connection goes on.
 * const err = await client.request("Not A Name").then(() => null, (e) => e);
 * console.assert(err instanceof JobError && err.kind === "bad_request");
 * client.close();
 * await server.close();
 * ```
 */
export async function connect(addr: string, options: ClientOptions = {}): Promise<Client> {
  const t = await tcpConnect(addr);
  const client = new Client(t, options);
  await client.ready(options.connectTimeoutMs ?? 5_000);
  return client;
}
