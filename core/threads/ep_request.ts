/**
 * What a TypeScript handler receives: {@linkcode EpRequest}, the whole request as a typed,
 * `Request`-like object (method, path, query, headers, body, service, the request id, the
 * delivery attempt, the time left and an `AbortSignal`). Lua handlers get the same facts
 * (`lua/API.md`).
 *
 * The object is made per job from the bytes the handler thread received and decodes the
 * metadata only when a field that needs it is first read, so a handler that looks only at
 * its body pays for nothing more. {@linkcode createRequest} makes one by hand, to test a
 * handler without a node.
 *
 * @module
 */
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import { fieldPairs } from "./_reply.ts";
import { EarliestTimer } from "./_timer.ts";
import type { FieldsInit, HandlerRequest } from "./runtime.ts";

const utf8 = new TextDecoder();
const EMPTY = new Uint8Array(0);

/**
 * A request's header fields (HTTP) or metadata entries (EP), read-only, in the order
 * received. Names are lower-case; `get` and `has` take any case. ep's own entries
 * (`ep-…`) are not among them: their facts are fields of {@linkcode EpRequest}.
 *
 * Values of a request that came over HTTP are byte strings: each character is one byte of
 * the field as sent (code units 0x00–0xFF), as in the Fetch API's `Headers`; a UTF-8 value
 * reads as text with
 * `new TextDecoder().decode(Uint8Array.from(value, (c) => c.charCodeAt(0)))`. Values of an
 * EP request are text (EP metadata is UTF-8).
 *
 * @example
 * ```ts
 * import { createRequest } from "./ep_request.ts";
 * const req = createRequest({
 *   service: "user",
 *   headers: [["accept", "text/html"], ["accept", "text/plain"], ["x-tenant", "beta"]],
 * });
 * console.assert(req.headers.get("Accept") === "text/html, text/plain");
 * console.assert(req.headers.getAll("accept").length === 2 && req.headers.has("X-Tenant"));
 * console.assert([...req.headers].length === 3);
 * ```
 */
export interface RequestHeaders extends Iterable<[string, string]> {
  /** The field's value; a repeated field's values joined with `", "`; null when absent. */
  get(name: string): string | null;
  /** Every value of the field, in order (empty when absent). */
  getAll(name: string): string[];
  /** Whether the field is present. */
  has(name: string): boolean;
  /** `[name, value]` pairs, in order, a repeated field once per value. */
  entries(): IterableIterator<[string, string]>;
}

/**
 * The request a TypeScript handler receives, its first argument (the second is a
 * `HandlerContext`). Like the Fetch API's `Request`, with what ep adds: the service, the
 * request id, the delivery attempt, the time left, and a signal that fires when the job's
 * time is up or its client went away.
 *
 * @example A handler that reads the query, a header and the time it has
 * ```ts
 * import { createRequest, type EpRequest } from "./ep_request.ts";
 * function greet(req: EpRequest) {
 *   const name = req.searchParams.get("name") ?? "world";
 *   const lang = req.headers.get("accept-language") ?? "en";
 *   return { headers: { "content-type": "text/plain" }, body: `hello ${name} (${lang})` };
 * }
 * const req = createRequest({
 *   service: "greet", method: "GET", path: "/greet", query: "name=ada",
 *   headers: { "accept-language": "fr" }, id: "r-1", deadlineMs: 1000,
 * });
 * console.assert(greet(req).body === "hello ada (fr)");
 * console.assert(req.protocol === "http" && req.id === "r-1" && req.attempt === 1);
 * console.assert(req.deadlineMs > 0 && req.deadlineMs <= 1000 && !req.signal.aborted);
 * ```
 */
export interface EpRequest {
  /** The service the job is for. */
  readonly service: string;
  /** `"http"` for a request that came over HTTP, `"ep"` for an EP REQUEST. */
  readonly protocol: "http" | "ep";
  /** The HTTP method (`GET`, `POST`, …), or `"EP"` for an EP request. */
  readonly method: string;
  /** The HTTP path without the query (`/user/42`), or `/` + service for an EP request. */
  readonly path: string;
  /** The query string without `?`, as sent (empty for none, and for EP). */
  readonly query: string;
  /** The query, parsed. */
  readonly searchParams: URLSearchParams;
  /** Header fields (HTTP) or metadata (EP); see {@linkcode RequestHeaders}. */
  readonly headers: RequestHeaders;
  /** The body's bytes (this handler's own copy). */
  readonly body: Uint8Array;
  /** The body as UTF-8 text (malformed bytes become U+FFFD). */
  text(): string;
  /**
   * The body parsed as JSON. Synchronous, as the body is here already (`await req.json()`
   * works too).
   *
   * @throws {SyntaxError} when the body is not JSON.
   */
  json<T = unknown>(): T;
  /**
   * The request id: the client's `x-request-id` when it is a short token, else one the
   * balancer made; in logs and error replies too. Empty for a job given straight to a pool.
   */
  readonly id: string;
  /**
   * Which delivery this is: 1 the first time; 2, 3, … when the job was redelivered because
   * the worker that had it was lost (it may have run there, in part or whole). Handlers
   * with effects that must not happen twice check it, or are idempotent.
   */
  readonly attempt: number;
  /**
   * Whether this run is a hedged copy (`ep-hedge: 1`): the balancer sent the job to this
   * worker as well because it ran long where it was first sent; the first answer wins and
   * the other run's signal fires (SPEC.md §9.10). Its `attempt` is one more than the
   * original's. Only jobs of services marked idempotent, or whose request allowed it, are.
   */
  readonly hedge: boolean;
  /**
   * Milliseconds the job has left before it is answered `timeout`, read now (whole ms, 0
   * once past); Infinity for a job without a deadline (one given straight to a pool
   * without one). Pass it on: `ctx.call(s, body, { timeoutMs: req.deadlineMs })`.
   */
  readonly deadlineMs: number;
  /**
   * Fires when the job's time is up (reason: a `DOMException` named `TimeoutError`) or its
   * client went away or cancelled (reason: one named `AbortError`). The client is answered
   * already: stop and return anything (it is dropped). Pass it to `fetch` and the like.
   */
  readonly signal: AbortSignal;
  /**
   * The job's metadata as it travels (`encodeMeta` bytes: ep's `ep-…` entries, then the
   * header fields). What the other fields are read from; kept for handlers written before
   * them.
   */
  readonly meta: Uint8Array;
}

/**
 * What {@linkcode createRequest} makes a request from. Only `service` is required.
 *
 * @example
 * ```ts
 * import type { EpRequestInit } from "./ep_request.ts";
 * const init: EpRequestInit = { service: "echo", method: "POST", body: "hi", attempt: 2 };
 * console.assert(init.attempt === 2);
 * ```
 */
export interface EpRequestInit {
  /** The service. */
  service: string;
  /** An HTTP method: the request is an HTTP one. Absent: an EP request (method `"EP"`). */
  method?: string;
  /** The path (HTTP). Default: `/` + service. */
  path?: string;
  /** The query string without `?` (HTTP). Default: empty. */
  query?: string;
  /** Header fields (HTTP) or metadata (EP). */
  headers?: FieldsInit;
  /** The body: bytes, or a string taken as UTF-8. Default: empty. */
  body?: Uint8Array | string;
  /** The request id. Default: empty. */
  id?: string;
  /** The delivery attempt, from 1 (the default). */
  attempt?: number;
  /** A hedged copy. Default false. */
  hedge?: boolean;
  /** Time the job has, in ms from now. Default: none (`deadlineMs` is Infinity). */
  deadlineMs?: number;
  /** The request's signal follows this one (it aborts with the same reason). */
  signal?: AbortSignal;
}

/**
 * Makes a request by hand: to test a handler without a node.
 *
 * @example
 * ```ts
 * import { createRequest } from "./ep_request.ts";
 * const ac = new AbortController();
 * const req = createRequest({ service: "echo", body: '{"n":1}', signal: ac.signal });
 * console.assert(req.method === "EP" && req.path === "/echo" && req.json<{ n: number }>().n === 1);
 * ac.abort(new DOMException("Gone", "AbortError"));
 * console.assert(req.signal.aborted && req.signal.reason.name === "AbortError");
 * ```
 */
export function createRequest(init: EpRequestInit): EpRequest {
  const meta: [string, string][] = [];
  if (init.method !== undefined) {
    meta.push(
      ["ep-method", init.method],
      ["ep-path", init.path ?? "/" + init.service],
      ["ep-query", init.query ?? ""],
    );
  }
  if (init.id !== undefined && init.id !== "") meta.push(["ep-request-id", init.id]);
  if (init.attempt !== undefined && init.attempt > 1) {
    meta.push(["ep-attempt", String(init.attempt)]);
  }
  if (init.hedge === true) meta.push(["ep-hedge", "1"]);
  if (init.headers !== undefined) meta.push(...fieldPairs(init.headers, "Request header"));
  const body = init.body ?? EMPTY;
  const req = new JobRequest({
    id: 0,
    service: init.service,
    meta: encodeMeta(meta),
    body: typeof body === "string" ? new TextEncoder().encode(body) : body,
    deadline: init.deadlineMs === undefined ? undefined : performance.now() + init.deadlineMs,
  });
  const signal = init.signal;
  if (signal?.aborted) req.cancel(signal.reason);
  else signal?.addEventListener("abort", () => req.cancel(signal.reason), { once: true });
  return req;
}

/** A request's header fields over `[name, value]` pairs (names lower-case). */
class FieldList implements RequestHeaders {
  readonly #pairs: [string, string][];

  constructor(pairs: [string, string][]) {
    this.#pairs = pairs;
  }

  get(name: string): string | null {
    const all = this.getAll(name);
    return all.length === 0 ? null : all.length === 1 ? all[0] : all.join(", ");
  }

  getAll(name: string): string[] {
    const key = name.toLowerCase();
    const out: string[] = [];
    for (const [k, v] of this.#pairs) if (k === key) out.push(v);
    return out;
  }

  has(name: string): boolean {
    const key = name.toLowerCase();
    return this.#pairs.some(([k]) => k === key);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const [k, v] of this.#pairs) yield [k, v];
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }
}

const NO_FIELDS = new FieldList([]);

/**
 * The reason a request's signal fires with when its time is up.
 *
 * @example
 * ```ts
 * import { timeoutReason } from "./ep_request.ts";
 * console.assert(timeoutReason().name === "TimeoutError");
 * ```
 */
export function timeoutReason(): DOMException {
  return new DOMException("The job's time is up", "TimeoutError");
}

/**
 * The reason a request's signal fires with when its client went away or cancelled.
 *
 * @example
 * ```ts
 * import { cancelReason } from "./ep_request.ts";
 * console.assert(cancelReason().name === "AbortError");
 * ```
 */
export function cancelReason(): DOMException {
  return new DOMException("The client went away or cancelled the request", "AbortError");
}

/**
 * The {@linkcode EpRequest} of one job, over the {@linkcode HandlerRequest} its thread
 * received. The metadata is decoded on first need; the signal is made on first read, and
 * then fires at the deadline (one timer, cleared when the job ends) or on
 * {@linkcode JobRequest.cancel}. Internal: runtimes make it, handlers see `EpRequest`.
 *
 * @example
 * ```ts
 * import { JobRequest } from "./ep_request.ts";
 * const r = new JobRequest({ id: 1, service: "echo", meta: new Uint8Array(), body: new Uint8Array([104, 105]) });
 * console.assert(r.text() === "hi" && r.method === "EP" && r.deadlineMs === Infinity);
 * r.cancel();
 * console.assert(r.signal.aborted && r.signal.reason.name === "AbortError");
 * r.end();
 * ```
 */
export class JobRequest implements EpRequest {
  /** The service the job is for. */
  readonly service: string;
  /** The body's bytes. */
  readonly body: Uint8Array;
  /** The job's metadata bytes. */
  readonly meta: Uint8Array;
  readonly #deadline: number | undefined;
  // Made on first need, so that a job whose handler reads only its body allocates one object.
  #fields: Fields | null = null;
  #signal: SignalState | null = null;

  /** Wraps the job as its thread received it. */
  constructor(req: HandlerRequest) {
    this.service = req.service;
    this.body = req.body;
    this.meta = req.meta;
    this.#deadline = req.deadline;
  }

  get protocol(): "http" | "ep" {
    return this.#decoded().http ? "http" : "ep";
  }

  get method(): string {
    return this.#decoded().method;
  }

  get path(): string {
    return this.#decoded().path;
  }

  get query(): string {
    return this.#decoded().query;
  }

  get searchParams(): URLSearchParams {
    const f = this.#decoded();
    return f.params ??= new URLSearchParams(f.query);
  }

  get headers(): RequestHeaders {
    return this.#decoded().headers;
  }

  get id(): string {
    return this.#decoded().id;
  }

  get attempt(): number {
    return this.#decoded().attempt;
  }

  get hedge(): boolean {
    return this.#decoded().hedge;
  }

  get deadlineMs(): number {
    const d = this.#deadline;
    return d === undefined ? Infinity : Math.max(0, Math.floor(d - performance.now()));
  }

  get signal(): AbortSignal {
    let s = this.#signal;
    if (s === null || s.controller === null) {
      if (s === null || s === ENDED) {
        const fresh = new SignalState();
        fresh.ended = s === ENDED;
        s = this.#signal = fresh;
      }
      const c = s.controller = new AbortController();
      const d = this.#deadline;
      if (s.reason !== undefined) {
        c.abort(s.reason);
      } else if (!s.ended && d !== undefined) {
        const left = d - performance.now();
        if (left <= 0) c.abort(timeoutReason());
        else clock.watch(s, d);
      }
    }
    return s.controller!.signal;
  }

  text(): string {
    return utf8.decode(this.body);
  }

  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }

  /**
   * The job was cancelled: its signal fires (now, or when first read) with `reason`, by
   * default a `TimeoutError` when its deadline has passed and an `AbortError` else. Once;
   * not after the job ended.
   */
  cancel(reason?: unknown): void {
    const s = this.#signal ??= new SignalState();
    if (s.ended || s.reason !== undefined) return;
    const d = this.#deadline;
    s.reason = reason ??
      (d !== undefined && performance.now() >= d ? timeoutReason() : cancelReason());
    if (s.controller !== null) {
      clock.unwatch(s);
      s.controller.abort(s.reason);
    }
  }

  /** The job ended: its deadline timer, if any, is cleared; its signal fires no more. */
  end(): void {
    const s = this.#signal;
    if (s === null) {
      this.#signal = ENDED;
      return;
    }
    s.ended = true;
    clock.unwatch(s);
  }

  #decoded(): Fields {
    if (this.#fields !== null) return this.#fields;
    const f = this.#fields = new Fields("/" + this.service);
    if (this.meta.length === 0) return f;
    const pairs: [string, string][] = [];
    for (const pair of decodeMeta(this.meta)) {
      const k = pair[0];
      if (!k.startsWith("ep-")) pairs.push(pair);
      else if (k === "ep-method") {
        f.method = pair[1];
        f.http = true;
      } else if (k === "ep-path") f.path = pair[1];
      else if (k === "ep-query") f.query = pair[1];
      else if (k === "ep-request-id") f.id = pair[1];
      else if (k === "ep-attempt") f.attempt = Math.max(1, Number(pair[1]) || 1);
      else if (k === "ep-hedge") f.hedge = pair[1] === "1";
    }
    if (pairs.length > 0) f.headers = new FieldList(pairs);
    return f;
  }
}

/** What a job's metadata says, decoded once. */
class Fields {
  http = false;
  method = "EP";
  path: string;
  query = "";
  id = "";
  attempt = 1;
  hedge = false;
  headers: RequestHeaders = NO_FIELDS;
  params: URLSearchParams | null = null;

  constructor(path: string) {
    this.path = path;
  }
}

/** A job's signal and why it fires: made when the signal is read or the job cancelled. */
class SignalState {
  controller: AbortController | null = null;
  /** Why the job was cancelled, once it was (before its signal was read, too). */
  reason: unknown = undefined;
  ended = false;
  /** When {@linkcode clock} fires it (`performance.now()` time), while it watches it. */
  deadline = 0;
}

/** The state of a job that ended before its signal was read or it was cancelled. */
const ENDED: SignalState = new SignalState();
ENDED.ended = true;

/**
 * Fires the signals of jobs whose deadline passed, with one timer per thread armed at the
 * earliest deadline (arming and clearing a timer costs about 1.5 µs, more than the rest of
 * a job's request object): while jobs overlap, a later deadline arms nothing and an ended
 * job only leaves the watch list; the timer stops when no signal is left to fire.
 */
class SignalClock {
  readonly #watched = new Set<SignalState>();
  // Kept alive while armed: a handler (or a test) may await nothing but its signal.
  readonly #timer = new EarliestTimer(() => this.#fire(), { keepAlive: true });

  watch(s: SignalState, deadline: number): void {
    s.deadline = deadline;
    this.#watched.add(s);
    this.#timer.armBy(deadline);
  }

  unwatch(s: SignalState): void {
    // The last one gone: no timer left to hold up the end of a process (or a test).
    if (this.#watched.delete(s) && this.#watched.size === 0) this.#timer.stop();
  }

  /** Aborts the signals that are due; returns the earliest deadline left. */
  #fire(): number {
    const now = performance.now();
    let next = Infinity;
    for (const s of this.#watched) {
      if (s.deadline <= now) {
        this.#watched.delete(s);
        s.controller!.abort(timeoutReason());
      } else if (s.deadline < next) {
        next = s.deadline;
      }
    }
    return next;
  }
}

const clock = new SignalClock();
