/**
 * A pool that runs handlers on this thread: a map of TypeScript functions, what a node uses
 * when it is given handlers as functions rather than as a module (functions cannot cross to
 * a Web Worker); or any handler runtime (`runtime.ts`), such as the Lua runtime of a
 * one-slot worker (`lua/inline.ts`), which saves the two thread hops a job otherwise makes. To the balancer's local provider and to a module worker it is a pool like the
 * handler-thread pool ({@linkcode JobPool}): slots, one reply callback per job, deadlines,
 * cancellation, calls of other services. Handlers see the same `EpRequest` and
 * `HandlerContext` as on a handler thread, through the same runtime (`ts_runtime.ts`), and
 * their results are checked by the same rules.
 *
 * What differs: a handler runs on the thread that also serves the sockets, so one that
 * computes for long holds up everything else; use it for handlers that mostly wait
 * (`await`), and a handler module on threads for work that computes. `concurrency` jobs run
 * at once; `queue` more may wait here to start (a module worker's prefetch).
 *
 * @example
 * ```ts
 * import { InlinePool } from "./inline_pool.ts";
 * const pool = await InlinePool.start({
 *   handlers: { hello: (req) => `hello ${req.text()}` },
 *   concurrency: 2,
 * });
 * const reply = await new Promise<Uint8Array>((resolve, reject) => {
 *   pool.submit({ id: 1, service: "hello", body: new TextEncoder().encode("ada") }, (err, r) => {
 *     if (err) reject(err);
 *     else resolve(r!.body);
 *   });
 * });
 * console.assert(new TextDecoder().decode(reply) === "hello ada");
 * await pool.close();
 * ```
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "../../protocol/errors.ts";
import { HandlerError, JobError, JobTimeoutError, PoolClosedError } from "../errors.ts";
import type { Handlers } from "./handler_context.ts";
import type {
  CloseOptions,
  JobPool,
  JobReply,
  PoolCall,
  PoolCallReply,
  PoolCounters,
  PoolJob,
  ReplyCallback,
} from "./pool_types.ts";
import { ReplyParts } from "./_reply.ts";
import { EarliestTimer } from "./_timer.ts";
import type { HandlerResult, HandlerRuntime, ThreadCall, ThreadCallResult } from "./runtime.ts";
import { tsHandlerRuntime } from "./ts_runtime.ts";

const log = getLogger(["ep", "pool"]);
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const GEN_MAX = 0x7fff;
const MAX_SLOTS = 0xffff;

/**
 * Options of {@linkcode InlinePool.start}.
 *
 * @example
 * ```ts
 * import type { InlinePoolOptions } from "./inline_pool.ts";
 * const options: InlinePoolOptions = { handlers: { ping: () => "pong" }, concurrency: 8 };
 * console.assert(options.concurrency === 8);
 * ```
 */
export interface InlinePoolOptions {
  /** The handlers by service name (functions; other values are ignored). */
  handlers?: Handlers;
  /**
   * Instead of `handlers`: builds the handler runtime the pool runs, given the function that
   * carries out its calls of other services (a runtime's `HandlerRuntimeContext.call`). The
   * pool calls its `handle`, `cancel` and `ended` (both optional) and `close` when it closes.
   */
  runtime?: (
    call: (request: ThreadCall, done: (result: ThreadCallResult) => void) => void,
  ) => HandlerRuntime | Promise<HandlerRuntime>;
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Jobs taken beyond `concurrency`, waiting here to start (default 0). */
  queue?: number;
  /**
   * Carries out a handler's `ctx.call`: resolves with the reply, rejects with a `JobError`.
   * Without it calls reject `no_service`.
   */
  onCall?: (call: PoolCall) => Promise<PoolCallReply>;
}

/** One slot's job. */
interface Slot {
  ticket: number;
  gen: number;
  busy: boolean;
  started: boolean;
  jobId: number;
  job: PoolJob | null;
  callback: ReplyCallback | null;
  /** Told when the slot is free again (`submit`'s `onFreed`). */
  freed: (() => void) | null;
  /** When its time is up (`performance.now()`), or undefined. */
  deadline: number | undefined;
  deadlineMs: number;
}

/** A {@linkcode JobPool} that runs a map of functions on this thread (see the module doc). */
export class InlinePool implements JobPool {
  readonly #runtime: HandlerRuntime;
  readonly #serviceIndex: ReadonlyMap<string, number>;
  readonly #concurrency: number;
  readonly #slots: Slot[] = [];
  readonly #free: number[] = [];
  /**
   * Tickets of the jobs waiting to start, in order; one taken back meanwhile (cancelled, out
   * of time) is skipped when its turn comes.
   */
  #waiting: number[] = [];
  #waitingHead = 0;
  #running = 0;
  #inFlight = 0;
  #pumpQueued = false;
  #closing = false;
  #closed: Promise<void> | null = null;
  #drained: (() => void) | null = null;
  readonly #reply = new ReplyParts();
  #submitted = 0;
  /** The one deadline timer for all slots (a timer per job cost ≈ 5 µs of CPU per job). */
  readonly #timer = new EarliestTimer(() => this.#sweep());
  #replied = 0;
  #failed = 0;
  /** Told when slots free up without a reply callback to say so. */
  onSlotsAvailable: (() => void) | undefined = undefined;

  private constructor(options: InlinePoolOptions, runtime: HandlerRuntime) {
    const { concurrency, queue } = sizes(options);
    this.#runtime = runtime;
    this.#serviceIndex = new Map(this.#runtime.services.map((s, i) => [s, i]));
    this.#concurrency = concurrency;
    for (let i = 0; i < concurrency + queue; i++) {
      this.#slots.push({
        ticket: 0,
        gen: 0,
        busy: false,
        started: false,
        jobId: 0,
        job: null,
        callback: null,
        freed: null,
        deadline: undefined,
        deadlineMs: 0,
      });
    }
    for (let i = concurrency + queue - 1; i >= 0; i--) this.#free.push(i);
  }

  /**
   * Makes the pool (and its runtime, which may take a while: a Lua engine).
   *
   * @throws {TypeError} when `handlers` has no function, or neither it nor `runtime` is given.
   * @throws {RangeError} for a concurrency or queue out of range.
   */
  static async start(options: InlinePoolOptions): Promise<InlinePool> {
    sizes(options);
    const call = caller(options.onCall);
    let runtime: HandlerRuntime;
    if (options.runtime) runtime = await options.runtime(call);
    else if (options.handlers) runtime = tsHandlerRuntime(options.handlers, call);
    else throw new TypeError("InlinePool needs handlers or a runtime");
    return new InlinePool(options, runtime);
  }

  /** The services: the names of the handler functions, sorted. */
  get services(): readonly string[] {
    return this.#runtime.services;
  }

  /** Whether the pool serves `service`. */
  serves(service: string): boolean {
    return this.#serviceIndex.has(service);
  }

  /** Jobs run at once. */
  get concurrency(): number {
    return this.#concurrency;
  }

  /** Jobs `submit` takes now. */
  get freeSlots(): number {
    return this.#closing ? 0 : this.#free.length;
  }

  /** Jobs holding a slot. */
  get jobsInFlight(): number {
    return this.#inFlight;
  }

  /** No limit of its own: jobs do not cross a ring. */
  get maxMessageBytes(): number {
    return Infinity;
  }

  /**
   * Takes a job (its body is copied), or returns false when no slot is free. It starts in a
   * microtask, never inside `submit`; `onReply` is called once, after its slot is free
   * (before, when it says `cancelled` or `timeout` while its handler runs on). `onFreed`,
   * if given, is called once, when its slot is free again.
   *
   * @throws {PoolClosedError} once {@linkcode InlinePool.close} was called.
   * @throws {RangeError} for a service the pool does not serve.
   */
  submit(job: PoolJob, onReply: ReplyCallback, onFreed?: () => void): boolean {
    if (this.#closing) throw new PoolClosedError();
    if (!this.#serviceIndex.has(job.service)) {
      throw new RangeError(`Unknown service: "${job.service}"`);
    }
    const index = this.#free.pop();
    if (index === undefined) return false;
    const s = this.#slots[index];
    s.gen = s.gen >= GEN_MAX ? 1 : s.gen + 1;
    s.ticket = (s.gen << 16) | index;
    s.busy = true;
    s.started = false;
    s.jobId = job.id;
    s.job = { ...job, body: job.body.slice() };
    s.callback = onReply;
    s.freed = onFreed ?? null;
    s.deadline = undefined;
    if (job.deadlineMs !== undefined) {
      s.deadlineMs = job.deadlineMs;
      s.deadline = performance.now() + Math.max(0, job.deadlineMs);
      this.#timer.armBy(s.deadline);
    }
    this.#inFlight++;
    this.#submitted++;
    this.#waiting.push(s.ticket);
    this.#schedule();
    return true;
  }

  /**
   * Cancels job `id`: its callback gets a `cancelled` `JobError` (in a microtask). A job
   * waiting to start is dropped; a running one's signal fires, and its slot stays taken
   * until its handler ends. False when no job with that id holds a slot.
   */
  cancel(id: number): boolean {
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i];
      if (!s.busy || s.jobId !== id) continue;
      const cb = s.callback;
      s.callback = null;
      if (s.started) {
        this.#runtime.cancel?.(s.ticket);
      } else {
        this.#release(s, i);
      }
      if (cb !== null) {
        this.#failed++;
        queueMicrotask(() => invoke(cb, new JobError(ErrorCode.CANCELLED, "Cancelled"), null));
      }
      if (!s.busy) this.#checkDrained();
      return true;
    }
    return false;
  }

  /** A snapshot of the counters (no threads: jobs run on this thread). */
  counters(): PoolCounters {
    return {
      threads: [],
      jobsInFlight: this.#inFlight,
      freeSlots: this.freeSlots,
      submitted: this.#submitted,
      replied: this.#replied,
      failed: this.#failed,
      threadsLost: 0,
      mainSleeps: 0,
    };
  }

  /**
   * Stops taking jobs, lets those in flight finish (`drain`, default true, up to
   * `timeoutMs`), then fails the rest with {@linkcode PoolClosedError} and fires their
   * signals. A handler that never ends cannot be stopped.
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closed === null) {
      this.#closing = true;
      this.#closed = this.#close(options.drain ?? true, options.timeoutMs ?? 30_000);
    }
    return this.#closed;
  }

  async #close(drain: boolean, timeoutMs: number): Promise<void> {
    if (drain && this.#inFlight > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.#drained = null;
    }
    const left = new PoolClosedError(
      drain ? `Handler pool closed: drain timed out after ${timeoutMs} ms` : undefined,
    );
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i];
      if (!s.busy) continue;
      const cb = s.callback;
      s.callback = null;
      if (s.started) this.#runtime.cancel?.(s.ticket);
      else this.#release(s, i);
      if (cb !== null) {
        this.#failed++;
        invoke(cb, left, null);
      }
    }
    this.#waiting = [];
    this.#waitingHead = 0;
    this.#timer.stop();
    try {
      await this.#runtime.close?.();
    } catch (err) {
      log.error("Closing the handler runtime failed: {error}", { error: err });
    }
  }

  #schedule(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pump);
  }

  /** Starts waiting jobs while fewer than `concurrency` run. */
  #pump = (): void => {
    this.#pumpQueued = false;
    const q = this.#waiting;
    while (this.#running < this.#concurrency && this.#waitingHead < q.length) {
      const ticket = q[this.#waitingHead++];
      const s = this.#slots[ticket & 0xffff];
      if (s.ticket === ticket && s.busy && !s.started) this.#start(s);
    }
    if (this.#waitingHead === q.length) {
      q.length = 0;
      this.#waitingHead = 0;
    }
  };

  #start(s: Slot): void {
    const job = s.job!;
    const ticket = s.ticket;
    if (s.deadline !== undefined && performance.now() >= s.deadline) {
      // Its time ran out while it waited (its timer is late): not worth starting.
      return this.#expired(s, ticket);
    }
    s.started = true;
    s.job = null;
    this.#running++;
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = this.#runtime.handle({
        id: ticket,
        service: job.service,
        meta: job.meta ?? EMPTY,
        body: job.body,
        deadline: s.deadline,
      }, this.#serviceIndex.get(job.service)!);
    } catch (err) {
      return this.#finish(s, ticket, undefined, err ?? new Error(String(err)));
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.#finish(s, ticket, value, undefined),
        (err) => this.#finish(s, ticket, undefined, err ?? new Error(String(err))),
      );
    } else {
      this.#finish(s, ticket, result, undefined);
    }
  }

  /** A job ended: free its slot, answer its callback (if not answered already). */
  #finish(s: Slot, ticket: number, value: HandlerResult | undefined, err: unknown): void {
    this.#running--;
    this.#runtime.ended?.(ticket);
    if (s.ticket !== ticket || !s.busy) return; // closed meanwhile
    const cb = s.callback;
    const id = s.jobId;
    // A job that ended once its time was up is answered as timed out, however it ended:
    // a runtime that enforces deadlines itself (Lua's hook and clock, TypeScript's signal)
    // may see it before the pool's one deadline timer fires.
    const late = s.deadline !== undefined && performance.now() >= s.deadline;
    this.#release(s, s.ticket & 0xffff);
    if (cb === null) {
      // Answered earlier (timeout, cancel): its slot is free only now.
      if (this.onSlotsAvailable && !this.#closing) safely(this.onSlotsAvailable);
    } else if (late) {
      this.#failed++;
      invoke(cb, new JobTimeoutError(s.deadlineMs), null);
    } else if (err !== undefined) {
      this.#failed++;
      invoke(cb, handlerError(err), null);
    } else {
      const reply = this.#reply;
      try {
        reply.set(value);
      } catch (problem) {
        this.#failed++;
        invoke(cb, handlerError(problem), null);
        return this.#after();
      }
      const body = reply.body;
      const answer: JobReply = {
        id,
        status: reply.status,
        meta: reply.meta ?? EMPTY,
        body: typeof body === "string" ? utf8.encode(body) : body,
      };
      this.#replied++;
      invoke(cb, null, answer);
    }
    this.#after();
  }

  #after(): void {
    this.#checkDrained();
    if (this.#waitingHead < this.#waiting.length) this.#schedule();
  }

  /** The deadline timer fired: fails the jobs whose time is up; returns the next deadline. */
  #sweep(): number {
    const now = performance.now();
    let next = Infinity;
    for (let i = 0; i < this.#slots.length; i++) {
      const s = this.#slots[i];
      if (!s.busy || s.callback === null || s.deadline === undefined) continue;
      if (now >= s.deadline) this.#expired(s, s.ticket);
      else if (s.deadline < next) next = s.deadline;
    }
    return next;
  }

  #expired(s: Slot, ticket: number): void {
    if (s.ticket !== ticket || !s.busy) return;
    const cb = s.callback;
    s.callback = null;
    if (!s.started) {
      // It never started: take it back (its turn in the waiting list is skipped).
      this.#release(s, ticket & 0xffff);
      this.#checkDrained();
    }
    if (cb !== null) {
      this.#failed++;
      invoke(cb, new JobTimeoutError(s.deadlineMs), null);
    }
  }

  #release(s: Slot, index: number): void {
    const freed = s.freed;
    s.busy = false;
    s.started = false;
    s.job = null;
    s.callback = null;
    s.freed = null;
    this.#inFlight--;
    this.#free.push(index);
    if (freed !== null) safely(freed);
  }

  #checkDrained(): void {
    if (this.#drained !== null && this.#inFlight === 0) this.#drained();
  }
}

/** A handler's throw or rejection, or a result the rules refuse, as the pools report it. */
function handlerError(err: unknown): HandlerError {
  const e = err instanceof Error ? err : new Error(String(err));
  return new HandlerError(e.message, {
    handlerErrorName: e.name || "Error",
    handlerStack: e.stack,
  });
}

function invoke(cb: ReplyCallback, err: Error | null, reply: JobReply | null): void {
  try {
    cb(err, reply);
  } catch (e) {
    log.error("A reply callback threw: {error}", { error: e });
  }
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    log.error("A pool event callback threw: {error}", { error: e });
  }
}

function isThenable(value: unknown): value is Promise<HandlerResult> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}

/** Jobs run at once and jobs waiting to start, checked. */
function sizes(options: InlinePoolOptions): { concurrency: number; queue: number } {
  const concurrency = options.concurrency ?? 1;
  const queue = options.queue ?? 0;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_SLOTS) {
    throw new RangeError(`Concurrency must be an integer from 1 to ${MAX_SLOTS}: "${concurrency}"`);
  }
  if (!Number.isInteger(queue) || queue < 0 || concurrency + queue > MAX_SLOTS) {
    throw new RangeError(`Queue must be an integer from 0: "${queue}"`);
  }
  return { concurrency, queue };
}

/** What carries out a handler's calls of other services: `onCall`, its failures as results. */
function caller(
  onCall: InlinePoolOptions["onCall"],
): (request: ThreadCall, done: (r: ThreadCallResult) => void) => void {
  return (request, done) => {
    const fail = (err: unknown) => {
      const e = err instanceof JobError
        ? err
        : new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
      if (!(err instanceof JobError)) log.error("A call failed: {error}", { error: err });
      done({ ok: false, code: e.code, kind: e.kind, message: e.message });
    };
    if (onCall === undefined) {
      return fail(new JobError(ErrorCode.NO_SERVICE, "This node cannot call services"));
    }
    let promise: Promise<PoolCallReply>;
    try {
      promise = onCall({
        thread: 0,
        service: request.service,
        body: request.body,
        timeoutMs: request.timeoutMs ?? 0,
        upstream: request.upstream,
        meta: request.meta ?? [],
      });
    } catch (err) {
      return fail(err);
    }
    promise.then((r) => done({ ok: true, status: r.status, meta: r.meta, body: r.body }), fail);
  };
}
