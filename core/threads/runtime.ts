/**
 * The handler-runtime contract: what a module passed as the pool's `module` option exports,
 * and what it sees on its handler thread. This is all a runtime author needs; the pool
 * itself (`pool.ts`) is the main thread's side.
 *
 * - The module exports `createHandlerRuntime` ({@linkcode HandlerRuntimeModule}). Each
 *   handler thread imports the module and calls it once with a
 *   {@linkcode HandlerRuntimeContext}; a throw fails the pool's start (or that restart).
 * - The returned {@linkcode HandlerRuntime} lists its services, then runs one job per
 *   `handle` call: a {@linkcode HandlerRequest} in, a {@linkcode HandlerResult} (or a promise
 *   of one) out. A throw or a rejection becomes an error reply (`HandlerError` on the main
 *   thread) and the thread goes on.
 * - A result is bytes, a string (UTF-8, status 200) or a {@linkcode HandlerReply} with a
 *   status from 200 to 599; anything else fails the job with a reason the client sees.
 * - A runtime that can stop a running handler polls the interrupt flag of its context.
 * - `close` is called once when the pool stops the thread on request.
 * - Waiting: a runtime whose jobs wait only on its own timers (the Lua runtime's `ep.sleep`,
 *   `ep.timer`) implements `start` and `tick` ({@linkcode HandlerRuntime.tick}): the thread
 *   then never turns its event loop for it and sleeps in one futex wait until the next job
 *   or the runtime's next deadline, so a waiting job costs no CPU. Other runtimes (promises
 *   that need the event loop, such as TypeScript handlers calling `fetch`) are waited for
 *   with `Atomics.waitAsync`, which lets the event loop run.
 *
 * Two runtimes ship with ep: `ts_runtime.ts` (TypeScript handlers, by exported function) and
 * `lua/thread.ts` (Lua handlers).
 *
 * @example
 * ```ts
 * import type { HandlerRuntimeModule } from "./runtime.ts";
 * // A runtime module exports this function; each handler thread calls it once.
 * const { createHandlerRuntime }: HandlerRuntimeModule = {
 *   createHandlerRuntime: () => ({
 *     services: ["reverse"],
 *     handle: (req) => req.body.slice().reverse(),
 *   }),
 * };
 * const runtime = await createHandlerRuntime({
 *   thread: 0,
 *   options: undefined,
 *   interrupt: new Int32Array(new SharedArrayBuffer(4)),
 * });
 * const body = new Uint8Array([1, 2]);
 * const reply = await runtime.handle({ id: 1, service: "reverse", meta: new Uint8Array(), body }, 0);
 * console.assert((reply as Uint8Array)[0] === 2);
 * ```
 *
 * @module
 */

/**
 * What a handler runtime receives for each job, on its thread.
 *
 * @example
 * ```ts
 * import type { HandlerRequest } from "./runtime.ts";
 * const req: HandlerRequest = { id: 65536, service: "echo", meta: new Uint8Array(), body: new Uint8Array([1]) };
 * console.assert(req.service === "echo");
 * ```
 */
export interface HandlerRequest {
  /**
   * The pool's ticket for the job: unique among the jobs in flight on this thread, a
   * positive integer. Its low 16 bits (`id & 0xffff`) are the job's slot on the thread,
   * below the thread's number of slots and unique among its jobs in flight, so a runtime
   * may keep per-job state in an array indexed by them.
   */
  id: number;
  /** Service name. */
  service: string;
  /** Job metadata bytes (empty when none). */
  meta: Uint8Array;
  /** Job body bytes (the thread's own copy). */
  body: Uint8Array;
  /**
   * When the job's time is up, as `performance.now()` on this thread; absent when it has no
   * deadline. A runtime that stops handlers uses it for jobs that wait (the main thread's
   * interrupt flag stops running ones).
   */
  deadline?: number;
}

/**
 * A reply with a status and optional metadata. Status defaults to 200; the body to empty.
 *
 * @example
 * ```ts
 * import type { HandlerReply } from "./runtime.ts";
 * const notFound: HandlerReply = { status: 404, body: "no such user" };
 * console.assert(notFound.status === 404);
 * ```
 */
export interface HandlerReply {
  /**
   * Status, an integer from 200 to 599 (default 200): what an EP REPLY and an HTTP
   * response carry. A 204 or 304 reply has no body. Anything else fails the job with a
   * `HandlerError` that says what was wrong (`Handler returned status 99; allowed
   * 200–599`), which the client gets as its one-line reason (HTTP 500, EP handler_error).
   */
  status?: number;
  /**
   * Reply header fields (EP: reply metadata), encoded for you: a record (a list of strings
   * for a repeated field) or `[name, value]` pairs (an array, a `Map`, a `Headers`). Names
   * are sent lower-case. For an HTTP job, names and values are byte strings (code units
   * 0x00–0xFF, one byte each), as the request's are. Not with `meta`.
   */
  headers?: FieldsInit;
  /**
   * Reply metadata bytes (`encodeMeta`), the encoded form of `headers`; for an HTTP job,
   * the response header fields, whose names and values are byte strings (code units
   * 0x00–0xFF) as the request's are.
   */
  meta?: Uint8Array;
  /** Reply body: bytes, or a string sent as UTF-8. */
  body?: Uint8Array | string;
}

/**
 * Header fields (of a reply) or metadata entries (of a call): a record by name (a list of
 * strings for a repeated field), or `[name, value]` pairs in order (an array, a `Map`, a
 * `Headers`). Names are sent lower-case.
 *
 * @example
 * ```ts
 * import type { FieldsInit } from "./runtime.ts";
 * const record: FieldsInit = { "content-type": "text/plain", "set-cookie": ["a=1", "b=2"] };
 * const pairs: FieldsInit = [["content-type", "text/plain"], ["set-cookie", "a=1"]];
 * console.assert(!Array.isArray(record) && Array.isArray(pairs));
 * ```
 */
export type FieldsInit =
  | Readonly<Record<string, string | readonly string[]>>
  | Iterable<readonly [string, string]>;

/**
 * What a handler returns: bytes, a string (UTF-8, status 200) or a {@linkcode HandlerReply}.
 *
 * @example
 * ```ts
 * import type { HandlerResult } from "./runtime.ts";
 * const results: HandlerResult[] = ["ok", new Uint8Array([1]), { status: 201, body: "made" }];
 * console.assert(results.length === 3);
 * ```
 */
export type HandlerResult = Uint8Array | string | HandlerReply;

/**
 * What a runtime's factory receives on its thread.
 *
 * @example
 * ```ts
 * import type { HandlerRuntimeContext } from "./runtime.ts";
 * function interrupted(ctx: HandlerRuntimeContext, ticket: number): boolean {
 *   const v = Atomics.load(ctx.interrupt, 0);
 *   return v === -1 || v === ticket;
 * }
 * console.assert(typeof interrupted === "function");
 * ```
 */
export interface HandlerRuntimeContext {
  /** Index of the thread (0-based, stable across restarts). */
  thread: number;
  /** The pool's `moduleOptions`, structured-cloned. */
  options: unknown;
  /**
   * The thread's interrupt flag in shared memory, `Int32Array` of length 1: 0 = none,
   * -1 = interrupt whatever runs, otherwise the ticket (`HandlerRequest.id`) of the job to
   * interrupt. A runtime that can stop a running handler (the Lua runtime's hook) polls it
   * with `Atomics.load(interrupt, 0)`; the thread clears it when that job finishes.
   */
  interrupt: Int32Array;
  /**
   * Calls a service from a handler (`ep.call`): the pool's main thread carries it out and
   * the answer comes back through the thread's ring; `done` is called once, from the
   * thread's wait loop (a runtime with `tick` needs no event loop for it). Absent when the
   * pool was given no way to call (`HandlerPoolOptions.onCall`).
   */
  call?: (request: ThreadCall, done: (result: ThreadCallResult) => void) => void;
  /**
   * Blocks the thread until `until` (`performance.now()` time) in one futex wait on its job
   * ring, for a handler whose wait is the only thing the thread has to do (the Lua runtime's
   * `ep.sleep` with one job in flight): no yield, no event-loop turn, one wake-up. Returns
   * true once `until` is reached; false at once when the thread has other work (promises in
   * flight, replies held, stopping), or early when a record arrives that needs the thread
   * (a job it could start now, a cancel, a stop): the handler then waits the usual way for
   * the rest. A job that could not start anyway (the thread runs all it may) is queued on
   * the thread meanwhile, and the wait goes on. Precision is the thread's own
   * wait's (aimed early by `wake_lead.ts`, the last microseconds spun).
   */
  block?: (until: number) => boolean;
}

/**
 * A handler's call of a service, as the handler thread hands it to the main thread.
 *
 * @example
 * ```ts
 * import type { ThreadCall } from "./runtime.ts";
 * const call: ThreadCall = { service: "user", body: new TextEncoder().encode("7"), timeoutMs: 500 };
 * console.assert(call.service === "user");
 * ```
 */
export interface ThreadCall {
  /** The service to call. */
  service: string;
  /** The request body. */
  body: Uint8Array;
  /** Time allowed, ms; 0 or absent: the balancer's default. */
  timeoutMs?: number;
  /** A named upstream (another cluster's balancers) instead of this node's own. */
  upstream?: string;
  /** Request metadata (lower-case keys; `ep-` keys are reserved and dropped). */
  meta?: [string, string][];
}

/**
 * The answer to a {@linkcode ThreadCall}: a reply (any status), or an error with its EP
 * code and name (`no_service`, `timeout`, …).
 *
 * @example
 * ```ts
 * import type { ThreadCallResult } from "./runtime.ts";
 * const r: ThreadCallResult = { ok: false, code: 101, kind: "no_service", message: 'No service "x"' };
 * console.assert(!r.ok && r.kind === "no_service");
 * ```
 */
export type ThreadCallResult =
  | { ok: true; status: number; meta: [string, string][]; body: Uint8Array }
  | { ok: false; code: number; kind: string; message: string };

/**
 * A handler runtime: runs a thread's jobs. Errors it throws (or rejects with) become error
 * replies; the thread goes on.
 *
 * @example
 * ```ts
 * import type { HandlerRuntime } from "./runtime.ts";
 * const runtime: HandlerRuntime = {
 *   services: ["echo"],
 *   handle: (req) => req.body,
 * };
 * console.assert(runtime.services[0] === "echo");
 * ```
 */
export interface HandlerRuntime {
  /** The services this runtime serves; a job names one by its index in this list. */
  readonly services: readonly string[];
  /** Runs one job. `serviceIndex` indexes `services`. */
  handle(req: HandlerRequest, serviceIndex: number): HandlerResult | Promise<HandlerResult>;
  /** Called once when the thread stops on request. */
  close?(): void | Promise<void>;
  /**
   * Optional: the job `id` (its {@linkcode HandlerRequest.id}) was cancelled, its client
   * went away; the client was answered `cancelled` already. Called for a job the runtime
   * took and whose result was not yet written, or one that just ended (a cancel can cross
   * a reply): ignore ids you do not hold. A runtime may stop the handler (the TypeScript
   * runtime aborts its `AbortSignal`) or let it finish; its result is dropped either way.
   */
  cancel?(id: number): void;
  /**
   * Optional: the job `id` ended (its result or error was written); a runtime that keeps
   * something per job lets go of it here. Called once per job that ends, also for one the
   * runtime never saw (cancelled, or out of time, while it waited on the thread): ignore
   * ids you do not hold.
   */
  ended?(id: number): void;
  /**
   * Optional, with `tick`: runs one job and returns its result, or `undefined` when the job
   * waits; then `done` is called exactly once, later: from inside `tick`, or from a promise
   * while {@linkcode HandlerRuntime.waitsOnEventLoop}. A throw fails the job. The thread
   * uses it instead of `handle`.
   */
  start?(
    req: HandlerRequest,
    serviceIndex: number,
    done: (error: unknown, result?: HandlerResult) => void,
  ): HandlerResult | undefined;
  /**
   * Optional, with `start`: runs what is due at `now` (`performance.now()`): timers, waiting
   * jobs whose time came. Returns when it next must run (a `performance.now()` time;
   * Infinity: only when a job arrives). The thread calls it after every batch of jobs and
   * whenever it wakes.
   */
  tick?(now: number): number;
  /**
   * Optional, with `tick`: true while the runtime also waits on something only the event
   * loop can finish (a promise: I/O, a module load). The thread then waits with
   * `Atomics.waitAsync`, letting the event loop run, until a job, a `done` called from that
   * promise, or the time `tick` returned.
   */
  readonly waitsOnEventLoop?: boolean;
}

/**
 * The shape of a handler runtime module: what `HandlerPoolOptions.module` must
 * export.
 *
 * @example
 * ```ts
 * import type { HandlerRuntimeModule } from "./runtime.ts";
 * const mod: HandlerRuntimeModule = {
 *   createHandlerRuntime: () => ({ services: ["ping"], handle: () => "pong" }),
 * };
 * console.assert(typeof mod.createHandlerRuntime === "function");
 * ```
 */
export interface HandlerRuntimeModule {
  /** Builds the runtime on a thread. A throw fails the pool's start (or that restart). */
  createHandlerRuntime(context: HandlerRuntimeContext): HandlerRuntime | Promise<HandlerRuntime>;
}
