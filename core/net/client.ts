/**
 * The TypeScript EP client: one connection to one of its servers (balancers) at a time,
 * many requests in flight on it (pipelined), each with its own deadline. A request resolves
 * with the reply or rejects with a {@linkcode JobError} carrying the EP error code
 * (`overloaded`, `timeout`, `no_service`, ...), or a {@linkcode ConnectionClosedError} when
 * the connection was lost with the request in flight.
 *
 * It survives what happens to servers (nats.js's reconnect options and HAProxy's `retries`
 * and `redispatch` are the models):
 *
 * - **Failover and reconnect.** When its connection is lost (closed, refused, a server silent
 *   for three heartbeat intervals) or the server sends DRAIN (it is going away), the client
 *   connects to the next server of its list that answers, at once; after a whole round of the
 *   list without success it waits a capped, jittered back-off and tries again, for ever by
 *   default. While it has no connection, requests wait for the round in progress; when the
 *   last round failed they fail at once with a {@linkcode ServerUnreachableError}.
 * - **Retry** (opt-in, `retry`): a request that failed with one of the kinds in `retry.on`
 *   is sent again after a back-off, on whatever connection the client then has, up to
 *   `retry.attempts` times and never past the request's deadline. A request that was sent may
 *   then run twice (at-least-once, SPEC.md §9.9): only `overloaded`, `shutting_down` and
 *   `unreachable` guarantee that the failed try did not run.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "../../protocol/errors.ts";
import type { WelcomeFrame } from "../../protocol/ep_frames.ts";
import { ConnectionClosedError, JobError, ServerUnreachableError } from "../errors.ts";
import { ClientConnection, type Reply } from "./_client_connection.ts";
import { backoffMs } from "./backoff.ts";
import { connect as tcpConnect, parseAddr, type Transport } from "./transport.ts";

// What a request rejects with besides a JobError: part of the client's API, so importable
// from here too.
export { ConnectionClosedError, ServerUnreachableError } from "../errors.ts";
export type { Reply } from "./_client_connection.ts";

const log = getLogger(["ep", "client"]);

/**
 * Reconnection: the back-off between rounds of the server list, and how many rounds to try
 * before giving up (the client then closes: every request fails).
 *
 * @example
 * ```ts
 * import type { ReconnectOptions } from "./client.ts";
 * const patient: ReconnectOptions = { minMs: 250, maxMs: 10_000 };
 * console.assert(patient.attempts === undefined); // for ever
 * ```
 */
export interface ReconnectOptions {
  /** Back-off after the first failed round, in ms (doubled per round, jittered). Default 100. */
  minMs?: number;
  /** Largest back-off, in ms. Default 5 000. */
  maxMs?: number;
  /** Failed rounds after which the client gives up and closes. Default: never. */
  attempts?: number;
}

/**
 * What a retry may follow: an EP error kind, `"unreachable"` (no server could be reached:
 * the request was never sent) or `"closed"` (the connection was lost with the request in
 * flight: it may have run).
 *
 * @example
 * ```ts
 * import type { RetryKind } from "./client.ts";
 * const safe: RetryKind[] = ["overloaded", "shutting_down", "unreachable"];
 * console.assert(safe.length === 3);
 * ```
 */
export type RetryKind =
  | "overloaded"
  | "worker_lost"
  | "shutting_down"
  | "no_service"
  | "timeout"
  | "limit_exceeded"
  | "internal"
  | "unreachable"
  | "closed";

/** The kinds {@linkcode RetryOptions.on} takes by default. */
export const DEFAULT_RETRY_ON: readonly RetryKind[] = Object.freeze(
  [
    "overloaded",
    "shutting_down",
    "worker_lost",
    "unreachable",
    "closed",
  ] as const,
);

const RETRY_KINDS: ReadonlySet<string> = new Set<RetryKind>([
  "overloaded",
  "worker_lost",
  "shutting_down",
  "no_service",
  "timeout",
  "limit_exceeded",
  "internal",
  "unreachable",
  "closed",
]);

/**
 * Opt-in retries of a failed request. A retry is sent after `backoffMs` (doubled per retry,
 * jittered, capped at `maxBackoffMs`), with the time the request has left as its deadline; a
 * retry whose back-off would end past the deadline is not made (the request fails with its
 * last error). Every try carries the same `x-request-id` (the client makes one when the
 * request has none), so a handler can recognise a repeat.
 *
 * A retried request may run more than once (at-least-once, SPEC.md §9.9): after
 * `worker_lost` or `closed` the failed try may have run. `overloaded`, `shutting_down` and
 * `unreachable` mean it did not.
 *
 * @example
 * ```ts
 * import type { RetryOptions } from "./client.ts";
 * const retry: RetryOptions = { attempts: 3, backoffMs: 50, on: ["overloaded", "worker_lost"] };
 * console.assert(retry.on!.length === 2);
 * ```
 */
export interface RetryOptions {
  /** Retries after the first try (so `attempts + 1` tries at most). Default 2. */
  attempts?: number;
  /** Back-off before the first retry, in ms. Default 100. */
  backoffMs?: number;
  /** Largest back-off, in ms. Default 2 000. */
  maxBackoffMs?: number;
  /** What to retry. Default {@linkcode DEFAULT_RETRY_ON}. */
  on?: readonly RetryKind[];
}

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
  /** Time allowed to connect to one server and be welcomed. Default 5 000. */
  connectTimeoutMs?: number;
  /**
   * Heartbeat interval to ask for (the server clamps it, ep's to 500–5 000 ms); 0 for none.
   * A server silent for three intervals is taken for dead. Default 5 000.
   */
  heartbeatMs?: number;
  /** Reconnect after a lost connection (`false`: the client closes instead). Default on. */
  reconnect?: boolean | ReconnectOptions;
  /** Retries of failed requests. Default: none. */
  retry?: RetryOptions;
  /** Opens a connection to `host:port`. Default TCP; tests pass in-memory transports. */
  dial?: (addr: string) => Promise<Transport>;
}

/**
 * Options for {@linkcode connect} with several servers.
 *
 * @example
 * ```ts
 * import type { ConnectOptions } from "./client.ts";
 * const options: ConnectOptions = {
 *   servers: ["10.0.0.1:7070", "10.0.0.2:7070"],
 *   retry: { attempts: 2 },
 * };
 * console.assert(options.servers.length === 2);
 * ```
 */
export interface ConnectOptions extends ClientOptions {
  /**
   * The servers (`host:port`), in the order they are tried: the client connects to the first
   * that answers, and on losing it to the next one after it.
   */
  servers: readonly string[];
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
  /**
   * Timeout in milliseconds, retries included; each try is sent to the server with the time
   * left as the job's deadline.
   */
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

interface Retry {
  attempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  on: ReadonlySet<string>;
}

const enc = new TextEncoder();
const MAX_TIMER_MS = 2 ** 31 - 1;
const EMPTY = new Uint8Array(0);

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value >= 0)) throw new RangeError(`Invalid ${name} ${JSON.stringify(value)}`);
  return value;
}

/** The kind a failed try is retried under, or null. */
function retryKindOf(err: unknown): string | null {
  if (err instanceof ServerUnreachableError) return "unreachable";
  if (err instanceof ConnectionClosedError) return "closed";
  if (err instanceof JobError) return err.kind;
  return null;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * An EP client: one connection at a time to one of its servers, replaced when it is lost or
 * the server drains (see the module doc). Create with {@linkcode connect}; close with
 * {@linkcode Client.close} (it keeps timers while open).
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
  readonly #servers: readonly string[];
  readonly #token: string | undefined;
  readonly #name: string;
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #heartbeatMs: number;
  readonly #reconnect: Required<ReconnectOptions> | null;
  readonly #retry: Retry | null;
  readonly #dial: (addr: string) => Promise<Transport>;
  /** The connection new requests go on (open, not draining), if any. */
  #conn: ClientConnection | null = null;
  /** Connections whose server drained, still answering what was sent on them. */
  #drained = new Set<ClientConnection>();
  /** Connections waiting for their WELCOME. */
  #opening = new Set<ClientConnection>();
  /** The round of the server list in progress, if any. */
  #round: Promise<ClientConnection> | null = null;
  /** Why the last round failed, while no new one runs. */
  #down: ServerUnreachableError | null = null;
  #roundTimer: ReturnType<typeof setTimeout> | undefined;
  #failedRounds = 0;
  /** Index of the next server to try. */
  #next = 0;
  #closedError: Error | null = null;
  #unmatchedGone = 0;
  #retries = 0;
  #connects = 0;

  /**
   * Starts connecting to `options.servers` (the first that answers). Prefer
   * {@linkcode connect}, which waits for the connection and fails when none answers.
   *
   * @throws {TypeError} on an address that is not `host:port`; {RangeError} on a bad option.
   */
  constructor(options: ConnectOptions) {
    const servers = [...options.servers];
    if (servers.length === 0) throw new RangeError("No server to connect to");
    for (const s of servers) parseAddr(s);
    this.#servers = servers;
    this.#token = options.token;
    this.#name = options.name ?? "ep-client";
    this.#timeoutMs = nonNegative("timeoutMs", options.timeoutMs, 30_000);
    this.#connectTimeoutMs = nonNegative("connectTimeoutMs", options.connectTimeoutMs, 5_000);
    this.#heartbeatMs = nonNegative("heartbeatMs", options.heartbeatMs, 5_000);
    const rc = options.reconnect ?? true;
    this.#reconnect = rc === false ? null : {
      minMs: nonNegative("reconnect.minMs", rc === true ? undefined : rc.minMs, 100),
      maxMs: nonNegative("reconnect.maxMs", rc === true ? undefined : rc.maxMs, 5_000),
      attempts: nonNegative(
        "reconnect.attempts",
        rc === true ? undefined : rc.attempts,
        Infinity,
      ),
    };
    const r = options.retry;
    if (r) {
      const on = r.on ?? DEFAULT_RETRY_ON;
      for (const k of on) {
        if (!RETRY_KINDS.has(k)) {
          throw new RangeError(
            `Invalid retry kind ${JSON.stringify(k)}: expected one of ${
              [...RETRY_KINDS].join(", ")
            }`,
          );
        }
      }
      this.#retry = {
        attempts: nonNegative("retry.attempts", r.attempts, 2),
        backoffMs: nonNegative("retry.backoffMs", r.backoffMs, 100),
        maxBackoffMs: nonNegative("retry.maxBackoffMs", r.maxBackoffMs, 2_000),
        on: new Set(on),
      };
    } else {
      this.#retry = null;
    }
    this.#dial = options.dial ?? tcpConnect;
    this.#startRound().catch(() => {});
  }

  /**
   * Resolves once the client has a connection; rejects when the round of the server list in
   * progress fails (a {@linkcode ServerUnreachableError}, its cause the last server's error)
   * or after `timeoutMs` (default: no limit but the round's, `connectTimeoutMs` per server).
   */
  async ready(timeoutMs = Infinity): Promise<void> {
    await this.#connection(Date.now() + timeoutMs, undefined, timeoutMs);
  }

  /** The current server's WELCOME, or null while the client has no connection. */
  get welcome(): WelcomeFrame | null {
    return this.#conn?.welcome ?? null;
  }

  /** The address of the server new requests go to, or null while there is none. */
  get server(): string | null {
    return this.#conn?.addr ?? null;
  }

  /** Connections made so far (the first one and every reconnection). */
  get connects(): number {
    return this.#connects;
  }

  /** Retries sent so far (see {@linkcode RetryOptions}); one whose back-off outlasted the deadline is not. */
  get retries(): number {
    return this.#retries;
  }

  /**
   * Answers that matched no request in flight: late answers to requests that timed out or
   * were cancelled, or a server answering twice (never, with ep).
   */
  get unmatched(): number {
    let n = this.#unmatchedGone + (this.#conn?.unmatched ?? 0);
    for (const c of this.#drained) n += c.unmatched;
    return n;
  }

  /** Requests sent and waiting for their answer. */
  get inFlight(): number {
    let n = this.#conn?.inFlight ?? 0;
    for (const c of this.#drained) n += c.inFlight;
    return n;
  }

  /** Sends a request for `service` and resolves with its reply. */
  request(
    service: string,
    body: Uint8Array | string = EMPTY,
    options: RequestOptions = {},
  ): Promise<Reply> {
    const bytes = typeof body === "string" ? enc.encode(body) : body;
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    if (this.#retry) return this.#withRetries(this.#retry, service, bytes, options, timeoutMs);
    const c = this.#conn;
    // The common case, without an async hop: connected, no retries.
    if (c !== null && !c.draining && !c.closed) {
      return c.request(service, bytes, timeoutMs, options);
    }
    return this.#once(service, bytes, options, Date.now() + timeoutMs, timeoutMs);
  }

  /** Asks the server for its statistics (JSON). */
  async stats(timeoutMs = 5_000): Promise<unknown> {
    const conn = await this.#connection(Date.now() + timeoutMs, undefined, timeoutMs);
    const reply = await conn.stats(timeoutMs);
    return JSON.parse(new TextDecoder().decode(reply.body));
  }

  /**
   * Sends a runtime admin request (EP ADMIN, SPEC.md §6.12), such as `{ op: "drain",
   * worker: "w1" }`, and resolves with the server's result object. A refusal rejects with a
   * {@linkcode JobError} (`bad_request` with the reason, `unauthorized`).
   */
  async admin(request: Record<string, unknown>, timeoutMs = 5_000): Promise<unknown> {
    const conn = await this.#connection(Date.now() + timeoutMs, undefined, timeoutMs);
    const reply = await conn.admin(JSON.stringify(request), timeoutMs);
    return JSON.parse(new TextDecoder().decode(reply.body));
  }

  /** Closes the client: requests in flight reject with ConnectionClosedError, and new ones. */
  close(): void {
    if (this.#closedError) return;
    const err = new ConnectionClosedError("Client closed");
    this.#closedError = err;
    clearTimeout(this.#roundTimer);
    this.#roundTimer = undefined;
    const conns = [...this.#opening, ...this.#drained, ...(this.#conn ? [this.#conn] : [])];
    this.#conn = null;
    for (const c of conns) c.close(err);
  }

  async #withRetries(
    r: Retry,
    service: string,
    body: Uint8Array,
    options: RequestOptions,
    timeoutMs: number,
  ): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    // Every try carries the same request id, so that a handler can tell a repeat.
    let meta = options.meta ?? [];
    if (!meta.some(([k]) => k === "x-request-id")) {
      meta = [...meta, ["x-request-id", crypto.randomUUID()]];
    }
    const opts = { ...options, meta };
    for (let attempt = 0;; attempt++) {
      try {
        return await this.#once(service, body, opts, deadline, timeoutMs, attempt > 0);
      } catch (err) {
        const kind = retryKindOf(err);
        if (
          attempt >= r.attempts || kind === null || !r.on.has(kind) || this.#closedError ||
          options.signal?.aborted
        ) throw err;
        const delay = backoffMs(attempt, r.backoffMs, r.maxBackoffMs);
        if (Date.now() + delay >= deadline) throw err;
        log.debug("Retrying a request for {service} after {kind} in {delay} ms ({n} of {max})", {
          service,
          kind,
          delay: Math.round(delay),
          n: attempt + 1,
          max: r.attempts,
        });
        await sleep(delay, options.signal);
      }
    }
  }

  /**
   * One try: on the current connection, or the next one (waiting for it until `deadline`).
   * A retry is counted when it is sent, not when it is decided: a back-off or a reconnection
   * may outlast the deadline.
   */
  async #once(
    service: string,
    body: Uint8Array,
    options: RequestOptions,
    deadline: number,
    timeoutMs: number,
    retry = false,
  ): Promise<Reply> {
    const conn = await this.#connection(deadline, options.signal, timeoutMs);
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new JobError(ErrorCode.TIMEOUT, `Request timed out after ${timeoutMs} ms`);
    }
    if (retry) this.#retries++;
    return await conn.request(service, body, left, options);
  }

  /**
   * The connection to send on: the current one; else the one the round in progress makes
   * (waiting for it until `deadline`); else, when the last round failed, a
   * {@linkcode ServerUnreachableError} at once.
   */
  async #connection(
    deadline: number,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<ClientConnection> {
    for (;;) {
      if (this.#closedError) throw this.#closedError;
      const c = this.#conn;
      if (c !== null && !c.draining && !c.closed) return c;
      if (this.#down) {
        throw new ServerUnreachableError(this.#down.message, { cause: this.#down.cause });
      }
      const round = this.#round ?? this.#startRound();
      await this.#waitFor(round, deadline, signal, timeoutMs);
    }
  }

  /** Waits for `round` to settle (either way), the deadline, or the signal. */
  #waitFor(
    round: Promise<unknown>,
    deadline: number,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<void> {
    if (signal?.aborted) {
      return Promise.reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
    }
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        done();
        reject(new JobError(ErrorCode.CANCELLED, "Request aborted"));
      };
      const left = Math.max(0, deadline - Date.now());
      // No timer for a deadline too far to matter (setTimeout takes at most 2^31 - 1 ms).
      const timer = left > MAX_TIMER_MS ? undefined : setTimeout(() => {
        done();
        reject(
          new JobError(
            ErrorCode.TIMEOUT,
            `Request timed out after ${timeoutMs} ms waiting for a connection`,
          ),
        );
      }, left);
      signal?.addEventListener("abort", onAbort, { once: true });
      round.then(() => {
        done();
        resolve();
      }, () => {
        done();
        resolve();
      });
    });
  }

  /** Starts a round of the server list (from the one after the last tried). */
  #startRound(): Promise<ClientConnection> {
    if (this.#round) return this.#round;
    clearTimeout(this.#roundTimer);
    this.#roundTimer = undefined;
    this.#down = null;
    const round = this.#runRound();
    this.#round = round;
    round.then(() => {
      this.#round = null;
      this.#failedRounds = 0;
    }, (err: ServerUnreachableError) => {
      this.#round = null;
      if (this.#closedError) return;
      this.#down = err;
      this.#scheduleRound(err);
    });
    return round;
  }

  async #runRound(): Promise<ClientConnection> {
    const n = this.#servers.length;
    const failures: string[] = [];
    let last: unknown = null;
    for (let i = 0; i < n; i++) {
      if (this.#closedError) throw this.#closedError;
      const addr = this.#servers[this.#next];
      this.#next = (this.#next + 1) % n;
      try {
        const conn = await this.#open(addr);
        if (this.#closedError) {
          conn.close(this.#closedError);
          throw this.#closedError;
        }
        // Welcomed and lost (or drained) in the same breath: the next server.
        if (conn.closed || conn.draining) throw new ConnectionClosedError(`${addr} went away`);
        this.#conn = conn;
        this.#connects++;
        if (this.#connects > 1) log.info("Connected to {addr}", { addr });
        return conn;
      } catch (err) {
        if (err === this.#closedError) throw err;
        last = err;
        failures.push(`${addr}: ${(err as Error).message}`);
      }
    }
    throw new ServerUnreachableError(
      n === 1 ? `Cannot reach ${failures[0]}` : `No server reachable (${failures.join("; ")})`,
      { cause: last },
    );
  }

  /** Dials `addr` and waits for WELCOME, within the connect timeout for both. */
  async #open(addr: string): Promise<ClientConnection> {
    const started = Date.now();
    const limit = this.#connectTimeoutMs;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const dialing = this.#dial(addr);
    const t = await Promise.race([
      dialing,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          // A dial that completes after all is closed at once.
          dialing.then((late) => late.close(), () => {});
          reject(new JobError(ErrorCode.TIMEOUT, `No connection to ${addr} within ${limit} ms`));
        }, limit);
      }),
    ]).finally(() => clearTimeout(timer));
    if (this.#closedError) {
      t.close();
      throw this.#closedError;
    }
    const conn = new ClientConnection(addr, t, {
      token: this.#token,
      name: this.#name,
      heartbeatMs: this.#heartbeatMs,
    }, {
      drained: (c) => this.#onDrained(c),
      closed: (c, err) => this.#onClosed(c, err),
    });
    this.#opening.add(conn);
    try {
      await conn.ready(limit - (Date.now() - started));
    } finally {
      this.#opening.delete(conn);
    }
    return conn;
  }

  #onDrained(c: ClientConnection): void {
    if (c !== this.#conn) return;
    this.#conn = null;
    this.#drained.add(c);
    log.info("Server {addr} is draining: moving to the next one", { addr: c.addr });
    this.#startRound().catch(() => {});
  }

  #onClosed(c: ClientConnection, err: Error): void {
    if (c.welcome) this.#unmatchedGone += c.unmatched;
    this.#drained.delete(c);
    if (c !== this.#conn) return;
    this.#conn = null;
    if (this.#closedError) return;
    if (!this.#reconnect) {
      this.#closedError = err;
      return;
    }
    log.warn("Lost the connection to {addr} ({reason}): reconnecting", {
      addr: c.addr,
      reason: err.message,
    });
    this.#startRound().catch(() => {});
  }

  /** After a failed round: the next one after a back-off, or give up. */
  #scheduleRound(err: ServerUnreachableError): void {
    const rc = this.#reconnect;
    if (!rc || this.#failedRounds >= rc.attempts) {
      this.#closedError = rc
        ? new ServerUnreachableError(
          `Gave up reconnecting after ${this.#failedRounds + 1} rounds: ${err.message}`,
          { cause: err.cause },
        )
        : err;
      return;
    }
    const delay = backoffMs(this.#failedRounds++, rc.minMs, rc.maxMs);
    // Before the first connection, `connect` reports the failure itself.
    const fields = { error: err.message, delay: Math.round(delay) };
    if (this.#connects > 0) log.warn("{error}; trying again in {delay} ms", fields);
    else log.debug("{error}; trying again in {delay} ms", fields);
    this.#roundTimer = setTimeout(() => {
      this.#roundTimer = undefined;
      this.#startRound().catch(() => {});
    }, delay);
  }
}

/**
 * Connects to ep servers over EP and waits for the first connection: `connect(addr,
 * options)` for one server, `connect({ servers: [...], ...options })` for several (failover
 * in that order). Rejects when no server answers: with one server, with its error (a refused
 * connection, a refusal such as `unauthorized`); with several, with a
 * {@linkcode ServerUnreachableError} naming each.
 *
 * @example One server
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
 *
 * @example Several servers, with retries
 * ```ts
 * import { connect } from "./client.ts";
 * import { serve } from "./server.ts";
 * const a = serve({ port: 0, handler: () => ({ body: "a" }) });
 * const b = serve({ port: 0, handler: () => ({ body: "b" }) });
 * const client = await connect({
 *   servers: [`127.0.0.1:${a.addr.port}`, `127.0.0.1:${b.addr.port}`],
 *   retry: { attempts: 3, on: ["overloaded", "shutting_down", "unreachable", "closed"] },
 * });
 * console.assert(new TextDecoder().decode((await client.request("x")).body) === "a");
 * await a.close(); // the client moves to b; a request lost with a is sent again there
 * console.assert(new TextDecoder().decode((await client.request("x")).body) === "b");
 * client.close();
 * await b.close();
 * ```
 */
export function connect(addr: string, options?: ClientOptions): Promise<Client>;
/**
 * Connects to the first of `options.servers` that answers (see the other overload).
 *
 * @example
 * ```ts ignore
 * import { connect } from "./client.ts";
 * const client = await connect({ servers: ["10.0.0.1:7070", "10.0.0.2:7070"] });
 * ```
 */
export function connect(options: ConnectOptions): Promise<Client>;
export async function connect(
  target: string | ConnectOptions,
  options: ClientOptions = {},
): Promise<Client> {
  const opts: ConnectOptions = typeof target === "string"
    ? { ...options, servers: [target] }
    : target;
  const client = new Client(opts);
  try {
    await client.ready();
  } catch (err) {
    client.close();
    // One server: its own error, as a direct connection would report it.
    throw opts.servers.length === 1 && err instanceof ServerUnreachableError && err.cause
      ? err.cause
      : err;
  }
  return client;
}
