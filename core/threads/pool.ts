/**
 * The handler-thread pool: N handler threads (Web Workers), each running a handler runtime
 * module (the contract is in `runtime.ts`), fed through lock-free rings (see `ring.ts`).
 * Sockets and dispatch stay on the main thread; handlers run on the threads.
 *
 * ```
 * main: submit ──► job ring t ──► thread t: runtime.handle(req) ──► reply ring t ──┐
 * main: onReply ◄── scheduler (drains every reply ring in turn, fairly) ◄───────────┘
 * ```
 *
 * - One ring pair per thread (single producer, single consumer each). Job record: KIND
 *   JOB, AUX = service index, ID = ticket, META = job meta, BODY = job body; the full table
 *   of kinds is in `_pool_protocol.ts`.
 * - Each thread has `perThreadConcurrency` slots; a job takes a slot until its reply (or
 *   the loss of its thread) frees it. {@linkcode HandlerPool.freeSlots} is a field read,
 *   and {@linkcode HandlerPool.submit} allocates nothing beyond the job and its reply.
 * - The thread count changes while the pool runs ({@linkcode HandlerPool.grow},
 *   {@linkcode HandlerPool.retire}; `core/node/autoscaler.ts` decides when). An added
 *   thread's slots count once it is ready; a retiring thread's free slots leave at once, it
 *   takes no new job, finishes the jobs it holds (none is lost) and then stops. Its index is
 *   the next one to start again, so thread indices stay small and counters stay per index.
 * - Jobs submitted in one tick are published with one store per thread, in a microtask.
 *   A job that does not fit in its thread's ring is held on the main thread and written
 *   when the thread releases space: nothing is dropped.
 * - The main thread waits for replies on one doorbell shared by all reply rings, asleep in
 *   `Atomics.waitAsync` (by default at once). A wake-up through `waitAsync` adds ≈ 40 µs to
 *   a job's round trip in Deno 2.9.6; checking once per event-loop turn for `pollMicros`
 *   after activity saves that latency but each check costs a MessageChannel message:
 *   measured on a Lua worker at 300 jobs/s, polling for 50 µs cost ≈ 110 µs of CPU per
 *   job (≈ 500 against ≈ 390), CPU that jobs on a busy machine do not get. Opt in where
 *   latency matters more than CPU.
 *
 * ## Where the parts are
 *
 * This file holds the pool's public types and the {@linkcode HandlerPool} class. The
 * handler-runtime contract is in `runtime.ts`; one thread's bookkeeping (its Web Worker,
 * rings, slot table and held jobs) in `_thread.ts`; the reply polling and draining in
 * `_reply_scheduler.ts`; the deadline timer in `_deadlines.ts`; what the rings carry in
 * `_pool_protocol.ts`; the handler thread's entry in `thread_main.ts`, its loop in `_handler_thread.ts`.
 *
 * Why this file is still over 600 lines: about 240 of them are the documented public types
 * of the pool's API (jobs, replies, options, counters). The class (about 660) is one state
 * machine over the slot counts (free slots, jobs in flight, the counters), which a
 * submission, a reply, a deadline, the loss of a thread and close all change; it stays in
 * one class so that those changes are read side by side rather than handed to helpers as
 * shared state.
 *
 * @example
 * ```ts ignore
 * import { HandlerPool, TS_HANDLER_RUNTIME } from "./pool.ts";
 * const pool = await HandlerPool.start({
 *   module: TS_HANDLER_RUNTIME,
 *   moduleOptions: { handlers: new URL("./my_handlers.ts", import.meta.url).href },
 *   threads: 2,
 * });
 * const reply = await pool.call({ id: 1, service: "echo", body: new Uint8Array([1]) });
 * console.log(reply.status, reply.body);
 * await pool.close();
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { JobError } from "../errors.ts";
import { RING_MAX_CAPACITY, type RingConsumer, ringMaxPayload, type RingRecord } from "./ring.ts";
import {
  HandlerError,
  HandlerThreadLostError,
  JobTimeoutError,
  PoolClosedError,
  PoolStartError,
  RingMessageTooLargeError,
} from "../errors.ts";
import {
  CANCEL_DEADLINE,
  CTL_INTERRUPT,
  KIND_CALL,
  KIND_CALL_ERROR,
  KIND_CALL_REPLY,
  KIND_CANCEL,
  KIND_ERROR,
  KIND_JOB,
  KIND_REPLY,
  KIND_TOO_LARGE,
  POOL_CONTROL_BYTES,
  type ThreadMessage,
} from "./_pool_protocol.ts";
import {
  MIN_RING_BYTES,
  Thread,
  type ThreadEvents,
  type ThreadResult,
  type ThreadSpawnConfig,
} from "./_thread.ts";
import { ReplyScheduler } from "./_reply_scheduler.ts";
import { DeadlineClock } from "./_deadlines.ts";

import type {
  CloseOptions,
  JobPool,
  JobReply,
  PoolCall,
  PoolCallReply,
  PoolCounters,
  PoolJob,
  ReplyCallback,
  ScalablePool,
  ScaleChange,
  ScalingCounters,
  ThreadLostEvent,
} from "./pool_types.ts";

export type {
  CloseOptions,
  JobPool,
  JobReply,
  PoolCall,
  PoolCallReply,
  PoolCounters,
  PoolJob,
  ReplyCallback,
  ScalablePool,
  ScaleChange,
  ScalingCounters,
  ThreadCounters,
  ThreadLostEvent,
  ThreadStatus,
} from "./pool_types.ts";

const logger = getLogger(["ep", "pool"]);
const textEncoder = new TextEncoder();

/**
 * URL of the TypeScript handler runtime (`ts_runtime.ts`): pass it as `module`, with
 * `moduleOptions: { handlers: "<URL of a module exporting handlers by service name>" }`.
 *
 * @example
 * ```ts
 * import { TS_HANDLER_RUNTIME } from "./pool.ts";
 * console.assert(TS_HANDLER_RUNTIME.endsWith("/ts_runtime.ts"));
 * ```
 */
export const TS_HANDLER_RUNTIME: string = new URL("./ts_runtime.ts", import.meta.url).href;

/**
 * Options of {@linkcode HandlerPool.start}.
 *
 * @example
 * ```ts
 * import { type HandlerPoolOptions, TS_HANDLER_RUNTIME } from "./pool.ts";
 * const options: HandlerPoolOptions = {
 *   module: TS_HANDLER_RUNTIME,
 *   moduleOptions: { handlers: "file:///srv/handlers.ts" },
 *   threads: 2,
 *   perThreadConcurrency: 16,
 * };
 * console.assert(options.threads === 2);
 * ```
 */
export interface HandlerPoolOptions {
  /** URL of the handler runtime module (exports `createHandlerRuntime`). */
  module: string | URL;
  /** Passed to the runtime's factory on every thread (structured-cloned). */
  moduleOptions?: unknown;
  /** Threads (default: `navigator.hardwareConcurrency`). */
  threads?: number;
  /**
   * Jobs one thread may hold at once (default 8). Above 1, a thread's queue forms in its
   * ring, and a job may wait behind a slow one while another thread idles; async handlers
   * need it to overlap their waits.
   */
  perThreadConcurrency?: number;
  /**
   * Jobs one thread may hold beyond its concurrency, waiting on the thread to start
   * (default 0). A thread then starts the next job the moment one finishes, without a round
   * trip through the main thread: what a module worker's prefetch is for. They count in
   * {@linkcode HandlerPool.freeSlots}, not in {@linkcode HandlerPool.concurrency}.
   */
  perThreadQueue?: number;
  /**
   * DATA bytes of each ring, a power of two from 4096 (default 1 MiB). Job and reply
   * payloads (meta + body) are limited to half of it minus 16 bytes.
   */
  ringBytes?: number;
  /**
   * Microseconds the main thread keeps checking for replies, once per event-loop turn,
   * after the last reply or submission, before it sleeps in `Atomics.waitAsync`
   * (default 0: sleep at once; see the module docs for what polling costs).
   */
  pollMicros?: number;
  /**
   * Carries out a handler's call of a service (`ep.call`, the runtime context's `call`):
   * resolves with the reply, rejects with a `JobError` (its code goes back to the handler).
   * Without it handlers cannot call services.
   */
  onCall?: (call: PoolCall) => Promise<PoolCallReply>;
  /** Milliseconds to wait for all threads to be ready (default 30 000). */
  startTimeoutMs?: number;
  /** Called when a thread is lost (after its jobs failed). */
  onThreadLost?: (event: ThreadLostEvent) => void;
  /** Called when a restarted thread is ready: slots became free without a reply. */
  onSlotsAvailable?: () => void;
  /**
   * Scale slots instead of threads: the pool keeps its threads' slots but takes at most this
   * many jobs at once, and {@linkcode HandlerPool.grow} and {@linkcode HandlerPool.retire}
   * move this limit by one slot (up to `threads × perThreadConcurrency`, down to 1). With it,
   * `perThreadQueue` room is not offered: no job waits on a thread beyond the limit.
   */
  slotLimit?: number;
}

const EMPTY = new Uint8Array(0);
const DEFAULT_RING_BYTES = 1 << 20;
const DEFAULT_CONCURRENCY = 8;
const MAX_CONCURRENCY = 0xffff;
const STOP_TIMEOUT_MS = 2000;
const MAX_BACKOFF_MS = 5000;
const GEN_MAX = 0x7fff;
const MAX_THREADS = 1024;
const MAX_CHANGES = 20;

/**
 * A pool of handler threads with slots: the dispatcher asks {@linkcode HandlerPool.freeSlots}
 * and {@linkcode HandlerPool.submit}s; replies come back through a callback. A thread
 * that dies fails its jobs with {@linkcode HandlerThreadLostError} and is restarted.
 *
 * @example
 * ```ts ignore
 * import { HandlerPool, TS_HANDLER_RUNTIME } from "./pool.ts";
 * const pool = await HandlerPool.start({
 *   module: TS_HANDLER_RUNTIME,
 *   moduleOptions: { handlers: new URL("./handlers.ts", import.meta.url).href },
 * });
 * if (pool.freeSlots > 0) {
 *   pool.submit({ id: 1, service: "echo", body: new Uint8Array([7]) }, (err, reply) => {
 *     if (err) console.error(err);
 *     else console.log(reply!.body);
 *   });
 * }
 * await pool.close({ drain: true });
 * ```
 */
export class HandlerPool implements JobPool, ScalablePool {
  readonly #spawnConfig: ThreadSpawnConfig;
  readonly #threadEvents: ThreadEvents = {
    message: (t, msg) => this.#onThreadMessage(t, msg),
    failed: (t, reason, cause) => this.#threadFailed(t, reason, cause),
  };
  readonly #ringBytes: number;
  readonly #perThread: number;
  /** Slots of one thread: its concurrency and its queue. */
  readonly #threadSlots: number;
  /** Threads whose slots count (Thread.member). */
  #members = 0;
  #onResize?: () => void;
  #scaledUp = 0;
  #scaledDown = 0;
  #changes: ScaleChange[] = [];
  /** Jobs taken at most at once when slots scale ({@linkcode HandlerPoolOptions.slotLimit}). */
  #limit = Infinity;
  readonly #scalesSlots: boolean;
  readonly #onCall?: (call: PoolCall) => Promise<PoolCallReply>;
  readonly #startTimeoutMs: number;
  readonly #onThreadLost?: (event: ThreadLostEvent) => void;
  #onSlotsAvailable?: () => void;
  readonly #threads: Thread[] = [];
  readonly #poolControl = new SharedArrayBuffer(POOL_CONTROL_BYTES);
  readonly #scheduler: ReplyScheduler;
  #services: readonly string[] = [];
  #serviceIndex = new Map<string, number>();
  #free = 0;
  #inFlight = 0;
  #rr = 0;
  // Publication.
  #dirty: Thread[] = [];
  #flushQueued = false;
  // Deadlines.
  readonly #deadlines = new DeadlineClock(() => this.#sweepDeadlines());
  // call() jobs waiting for a slot.
  #callQueue: { job: PoolJob; cb: ReplyCallback }[] = [];
  #callHead = 0;
  // Closing.
  #closing = false;
  #closed: Promise<void> | null = null;
  #drained: (() => void) | null = null;
  #stopped: (() => void) | null = null;
  // Counters.
  #submitted = 0;
  #replied = 0;
  #failed = 0;
  #threadsLost = 0;

  private constructor(options: HandlerPoolOptions) {
    const threads = options.threads ?? navigator.hardwareConcurrency ?? 1;
    const concurrency = options.perThreadConcurrency ?? DEFAULT_CONCURRENCY;
    const queue = options.perThreadQueue ?? 0;
    const ringBytes = options.ringBytes ?? DEFAULT_RING_BYTES;
    const pollMicros = options.pollMicros ?? 0;
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
      throw new RangeError(`Threads must be an integer from 1 to ${MAX_THREADS}: "${threads}"`);
    }
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new RangeError(
        `Per-thread concurrency must be an integer from 1 to ${MAX_CONCURRENCY}: "${concurrency}"`,
      );
    }
    if (
      !Number.isInteger(ringBytes) || ringBytes < MIN_RING_BYTES || ringBytes > RING_MAX_CAPACITY ||
      (ringBytes & (ringBytes - 1)) !== 0
    ) {
      throw new RangeError(
        `Ring bytes must be a power of two from ${MIN_RING_BYTES} to ${RING_MAX_CAPACITY}: "${ringBytes}"`,
      );
    }
    if (!(pollMicros >= 0)) throw new RangeError(`Poll micros must be >= 0: "${pollMicros}"`);
    if (!Number.isInteger(queue) || queue < 0 || concurrency + queue > MAX_CONCURRENCY) {
      throw new RangeError(`Per-thread queue must be an integer from 0: "${queue}"`);
    }

    this.#spawnConfig = {
      module: String(options.module),
      moduleOptions: options.moduleOptions,
      ringBytes,
      poolControl: this.#poolControl,
      maxRunning: concurrency,
      calls: options.onCall !== undefined,
    };
    this.#onCall = options.onCall;
    this.#perThread = concurrency;
    this.#threadSlots = concurrency + queue;
    this.#members = threads;
    this.#ringBytes = ringBytes;
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.#onThreadLost = options.onThreadLost;
    this.#onSlotsAvailable = options.onSlotsAvailable;
    this.#scalesSlots = options.slotLimit !== undefined;
    if (this.#scalesSlots) {
      const limit = options.slotLimit!;
      if (!Number.isInteger(limit) || limit < 1 || limit > threads * concurrency) {
        throw new RangeError(
          `Slot limit must be an integer from 1 to ${threads * concurrency}: "${limit}"`,
        );
      }
      this.#limit = limit;
    }
    for (let i = 0; i < threads; i++) this.#threads.push(new Thread(i, this.#threadSlots));
    this.#scheduler = new ReplyScheduler(this.#threads, this.#poolControl, pollMicros / 1000, {
      inFlight: () => this.#inFlight,
      reply: (t, replies, rec) => this.#onReply(t, replies, rec),
      drained: () => this.#afterDrain(),
    });
  }

  /**
   * Starts the threads and resolves when every one has loaded its runtime and reported
   * its services. Rejects (and stops every thread) if one fails to start.
   *
   * @example
   * ```ts ignore
   * import { HandlerPool, TS_HANDLER_RUNTIME } from "./pool.ts";
   * const pool = await HandlerPool.start({
   *   module: TS_HANDLER_RUNTIME,
   *   moduleOptions: { handlers: new URL("./handlers.ts", import.meta.url).href },
   *   threads: 2,
   * });
   * console.log(pool.services, pool.freeSlots);
   * await pool.close();
   * ```
   */
  static async start(options: HandlerPoolOptions): Promise<HandlerPool> {
    const pool = new HandlerPool(options);
    await pool.#startAll();
    return pool;
  }

  async #startAll(): Promise<void> {
    const started = this.#threads.map((t) =>
      new Promise<ThreadResult>((resolve) => {
        t.onStarted = resolve;
        try {
          t.spawn(this.#spawnConfig, this.#threadEvents);
        } catch (err) {
          t.onStarted = null;
          t.status = "stopped";
          resolve({ ok: false, message: `thread ${t.index}: ${(err as Error)?.message ?? err}` });
        }
      })
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<ThreadResult[]>((resolve) => {
      timer = setTimeout(
        () => resolve([{ ok: false, message: `not ready within ${this.#startTimeoutMs} ms` }]),
        this.#startTimeoutMs,
      );
    });
    const results = await Promise.race([Promise.all(started), timeout]);
    clearTimeout(timer);
    const failed = results.findIndex((r) => !r.ok);
    if (failed >= 0) {
      const message = `Handler pool failed to start: ${results[failed].message}`;
      logger.error("{message}", { message });
      await this.close({ drain: false, timeoutMs: 0 });
      throw new PoolStartError(message);
    }
    logger.debug("Handler pool started: {threads} threads, services {services}", {
      threads: this.#members,
      services: this.#services,
    });
  }

  /** Services the runtime serves (as the first thread reported them). */
  get services(): readonly string[] {
    return this.#services;
  }

  /**
   * Threads whose slots count: those the pool started with and those added once ready, less
   * those retiring or retired (a thread restarting after a crash still counts).
   */
  get threads(): number {
    return this.#members;
  }

  /** Threads added ({@linkcode HandlerPool.grow}) and not ready yet. */
  get threadsStarting(): number {
    let n = 0;
    for (const t of this.#threads) if (t.growing) n++;
    return n;
  }

  /** Jobs one thread runs at once (its share of {@linkcode HandlerPool.concurrency}). */
  get perThreadConcurrency(): number {
    return this.#perThread;
  }

  /** What grow and retire change: threads, or (`slotLimit` given) the slot limit. */
  get scaleUnit(): "threads" | "slots" {
    return this.#scalesSlots ? "slots" : "threads";
  }

  /** Units now: threads serving and starting, or the slot limit. */
  get scaleSize(): number {
    return this.#scalesSlots ? this.#limit : this.#members + this.threadsStarting;
  }

  /** Slots one unit brings: a thread's, or one. */
  get scaleStep(): number {
    return this.#scalesSlots ? 1 : this.#perThread;
  }

  /** The callback told when the slots that count change (see `ScalablePool.onResize`). */
  get onResize(): (() => void) | undefined {
    return this.#onResize;
  }

  set onResize(cb: (() => void) | undefined) {
    this.#onResize = cb;
  }

  /**
   * Sets the callback told when slots free up without a reply callback to say so (a thread
   * restarted, a timed-out job's thread finally let go of it).
   */
  set onSlotsAvailable(cb: (() => void) | undefined) {
    this.#onSlotsAvailable = cb;
  }

  /**
   * Jobs the threads run at once, all threads together (`threads × perThreadConcurrency`),
   * or the slot limit when slots scale.
   */
  get concurrency(): number {
    return Math.min(this.#members * this.#perThread, this.#limit);
  }

  /**
   * Free slots on ready threads, within the slot limit when slots scale: how many jobs
   * {@linkcode HandlerPool.submit} takes now.
   */
  get freeSlots(): number {
    if (this.#closing) return 0;
    return this.#scalesSlots
      ? Math.max(0, Math.min(this.#free, this.#limit - this.#inFlight))
      : this.#free;
  }

  /** Jobs holding a slot. */
  get jobsInFlight(): number {
    return this.#inFlight;
  }

  /** Largest job or reply payload (meta + body bytes). */
  get maxMessageBytes(): number {
    return ringMaxPayload(this.#ringBytes);
  }

  /** Whether the pool serves `service`. */
  serves(service: string): boolean {
    return this.#serviceIndex.has(service);
  }

  /**
   * Hands a job to the least busy ready thread. Returns false, taking nothing, when no
   * slot is free. `onReply` is called exactly once, never synchronously; the slot is free
   * again before it is called, so it may submit the next job, except when it says
   * `cancelled` or `timeout` while the job is on its thread (the slot stays taken until the
   * thread lets go of the job). `onFreed`, if given, is called exactly once, when the job's
   * slot is free again, whatever freed it: before `onReply` for a reply, an error, a job
   * taken back before it was written, the loss of its thread or close; later for a job
   * answered `cancelled` or `timeout` while on its thread.
   *
   * @throws {PoolClosedError} once {@linkcode HandlerPool.close} was called.
   * @throws {RangeError} for a service the pool does not serve.
   * @throws {RingMessageTooLargeError} if meta + body exceed {@linkcode HandlerPool.maxMessageBytes}.
   */
  submit(job: PoolJob, onReply: ReplyCallback, onFreed?: () => void): boolean {
    if (this.#closing) throw new PoolClosedError();
    return this.#submit(job, onReply, onFreed);
  }

  #submit(job: PoolJob, onReply: ReplyCallback, onFreed?: () => void): boolean {
    const service = this.#serviceIndex.get(job.service);
    if (service === undefined) throw new RangeError(`Unknown service: "${job.service}"`);
    const meta = job.meta ?? null;
    const size = (meta === null ? 0 : meta.length) + job.body.length;
    const max = ringMaxPayload(this.#ringBytes);
    if (size > max) throw new RingMessageTooLargeError(size, max);
    if (this.#inFlight >= this.#limit) return false;
    const t = this.#pick();
    if (t === null) return false;
    const slot = t.free[--t.freeTop];
    const gen = t.gens[slot] = t.gens[slot] >= GEN_MAX ? 1 : t.gens[slot] + 1;
    const ticket = (gen << 16) | slot;
    t.tickets[slot] = ticket;
    t.busy[slot] = 1;
    t.jobIds[slot] = job.id;
    t.callbacks[slot] = onReply;
    t.freed[slot] = onFreed ?? null;
    t.inFlight++;
    this.#inFlight++;
    this.#free--;
    this.#submitted++;
    if (job.deadlineMs !== undefined) this.#deadlines.set(t, slot, job.deadlineMs);
    if (t.heldCount === 0 && t.jobs.tryWrite(ticket, KIND_JOB, service, meta, job.body)) {
      this.#markDirty(t);
    } else {
      t.hold(slot, job, this.#serviceIndex);
    }
    this.#scheduler.watch();
    return true;
  }

  /**
   * Runs a job and resolves with its reply. Unlike {@linkcode HandlerPool.submit} it waits
   * for a free slot (in an unbounded FIFO queue).
   *
   * @example
   * ```ts ignore
   * const reply = await pool.call({ id: 1, service: "echo", body: new Uint8Array([1]) });
   * ```
   */
  call(job: PoolJob): Promise<JobReply> {
    return new Promise<JobReply>((resolve, reject) => {
      const cb: ReplyCallback = (err, reply) => (err ? reject(err) : resolve(reply!));
      if (this.#closing) return reject(new PoolClosedError());
      try {
        if (this.#callHead < this.#callQueue.length || !this.#submit(job, cb)) {
          this.#callQueue.push({ job, cb });
        }
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * Cancels job `id` (a {@linkcode PoolJob.id}; its client went away): its reply callback
   * gets a `cancelled` {@linkcode JobError} now (in a microtask, never synchronously), and
   * a later reply is dropped. A job not yet written to its thread's ring is taken back
   * (its slot is free at once); one on its thread is sent a CANCEL record, and its slot stays
   * taken until the thread lets go of it: a job waiting there ends without running, a
   * running one is its runtime's to stop (TypeScript handlers see their `AbortSignal`
   * fire). Returns false when no job with that id holds a slot (answered already, or
   * unknown). Job ids should be unique among the jobs in flight; with several, the first
   * found is cancelled.
   *
   * @example
   * ```ts ignore
   * pool.submit({ id: 7, service: "slow", body: new Uint8Array() }, (err) => {
   *   console.assert(err instanceof JobError && err.kind === "cancelled");
   * });
   * pool.cancel(7);
   * ```
   */
  cancel(id: number): boolean {
    for (const t of this.#threads) {
      for (let slot = 0; slot < t.slots; slot++) {
        if (t.busy[slot] === 0 || t.jobIds[slot] !== id) continue;
        const cb = t.callbacks[slot];
        if (t.heldJobs[slot] !== null) {
          // Never written: take it back.
          this.#release(t, slot);
          this.#serveCalls();
          this.#checkDrained();
        } else {
          t.callbacks[slot] = null;
          this.#deadlines.clear(t, slot);
          if (t.webWorker !== null) {
            t.writeRecord(KIND_CANCEL, t.tickets[slot], 0, null, EMPTY, this.#serviceIndex);
          }
        }
        if (cb !== null) {
          this.#failed++;
          queueMicrotask(() =>
            this.#invoke(cb, new JobError(ErrorCode.CANCELLED, "Cancelled"), null)
          );
        }
        return true;
      }
    }
    return false;
  }

  /**
   * Sets a thread's interrupt flag to -1 ("interrupt whatever runs"), for runtimes that
   * can stop a running handler. TypeScript handlers cannot be interrupted.
   */
  interrupt(thread: number): void {
    const t = this.#threads[thread];
    if (t === undefined) throw new RangeError(`No such thread: "${thread}"`);
    Atomics.store(t.ctl, CTL_INTERRUPT, -1);
  }

  /**
   * Adds a thread: a retiring one that has not been told to stop yet comes back at once
   * (its free slots count again); otherwise one starts (the lowest retired index first), and
   * its slots count once it is ready ({@linkcode HandlerPool.onSlotsAvailable} and
   * {@linkcode HandlerPool.onResize} are told then). `reason` is kept with the change
   * ({@linkcode ScalingCounters}). False when closing or at 1024 threads.
   *
   * @example
   * ```ts ignore
   * pool.grow("wait p99 80 ms > 50 ms");
   * ```
   */
  grow(reason = ""): boolean {
    if (this.#closing) return false;
    if (this.#scalesSlots) {
      if (this.#limit >= this.#members * this.#perThread) return false;
      this.#limit++;
      this.#changed("up", reason);
      logger.info("Slot limit raised: {slots} slots", { slots: this.#limit });
      this.#serveCalls();
      this.#resized(this.freeSlots > 0);
      return true;
    }
    const back = this.#threads.find((t) => t.status === "retiring" && !t.stopSent);
    if (back !== undefined) {
      back.status = "ready";
      back.member = true;
      this.#members++;
      back.freeTop = 0;
      for (let slot = back.slots - 1; slot >= 0; slot--) {
        if (back.busy[slot] === 0) back.free[back.freeTop++] = slot;
      }
      this.#free += back.freeTop;
      this.#changed("up", reason);
      logger.info("Handler thread {thread} kept (was retiring): {threads} threads", {
        thread: back.index,
        threads: this.#members,
      });
      this.#serveCalls();
      this.#resized(back.freeTop > 0);
      return true;
    }
    let t = this.#threads.find((x) => x.status === "retired" && x.webWorker === null);
    if (t === undefined) {
      if (this.#threads.length >= MAX_THREADS) return false;
      t = new Thread(this.#threads.length, this.#threadSlots);
      this.#threads.push(t);
    }
    t.member = false;
    t.growing = true;
    t.backoff = 0;
    try {
      t.spawn(this.#spawnConfig, this.#threadEvents);
    } catch (err) {
      t.growing = false;
      t.status = "retired";
      logger.error("Handler thread {thread} cannot be started: {error}", {
        thread: t.index,
        error: err,
      });
      return false;
    }
    this.#changed("up", reason);
    logger.info("Handler thread {thread} starting: {threads} threads and 1 starting", {
      thread: t.index,
      threads: this.#members,
    });
    return true;
  }

  /**
   * Retires a thread: one still starting stops at once; otherwise the ready thread holding
   * the fewest jobs takes no new job (its free slots leave {@linkcode HandlerPool.freeSlots}
   * and {@linkcode HandlerPool.concurrency} at once), finishes the jobs it holds, and stops.
   * No job is lost. False when it would leave no thread, or when closing.
   *
   * @example
   * ```ts ignore
   * pool.retire("idle");
   * ```
   */
  retire(reason = ""): boolean {
    if (this.#scalesSlots) {
      // Jobs above the lower limit finish; none starts until in flight fits it.
      if (this.#closing || this.#limit <= 1) return false;
      this.#limit--;
      this.#changed("down", reason);
      logger.info("Slot limit lowered: {slots} slots ({held} jobs in flight)", {
        slots: this.#limit,
        held: this.#inFlight,
      });
      this.#resized(false);
      return true;
    }
    if (this.#closing || this.#members + this.threadsStarting <= 1) return false;
    const growing = this.#threads.find((t) => t.growing);
    if (growing !== undefined) {
      // Not serving yet: nothing to finish.
      growing.growing = false;
      clearTimeout(growing.restartTimer);
      growing.end();
      growing.status = "retired";
      this.#changed("down", reason);
      logger.info("Handler thread {thread} retired before it was ready: {threads} threads", {
        thread: growing.index,
        threads: this.#members,
      });
      return true;
    }
    let pick: Thread | null = null;
    for (const t of this.#threads) {
      if (!t.member) continue;
      if (t.status === "restarting") {
        pick = t; // no Web Worker: nothing to finish
        break;
      }
      if (t.status === "ready" && (pick === null || t.inFlight <= pick.inFlight)) pick = t;
    }
    if (pick === null) return false;
    pick.member = false;
    this.#members--;
    if (pick.status === "restarting") {
      clearTimeout(pick.restartTimer);
      pick.restartTimer = undefined;
      pick.status = "retired";
    } else {
      this.#free -= pick.freeTop;
      pick.freeTop = 0;
      pick.status = "retiring";
      if (pick.inFlight === 0) this.#stopRetiring(pick);
    }
    this.#changed("down", reason);
    logger.info("Handler thread {thread} retiring ({held} jobs to finish): {threads} threads", {
      thread: pick.index,
      held: pick.inFlight,
      threads: this.#members,
    });
    this.#resized(false);
    return true;
  }

  #stopRetiring(t: Thread): void {
    if (t.stopSent || t.webWorker === null) return;
    if (!t.requestStop()) {
      // No room for STOP (cancel records fill the ring): it holds no job, end it.
      t.end();
      t.status = "retired";
    }
  }

  #changed(direction: "up" | "down", reason: string): void {
    if (direction === "up") this.#scaledUp++;
    else this.#scaledDown++;
    this.#changes.push({
      at: Date.now(),
      direction,
      threads: this.#members + this.threadsStarting,
      ...(this.#scalesSlots ? { slots: this.#limit } : {}),
      reason,
    });
    if (this.#changes.length > MAX_CHANGES) this.#changes.shift();
  }

  #resized(slotsFreed: boolean): void {
    if (this.#onResize) this.#safely(this.#onResize);
    if (slotsFreed && this.#onSlotsAvailable) this.#safely(this.#onSlotsAvailable);
  }

  /** A snapshot of the pool's counters (allocates; not for the hot path). */
  counters(): PoolCounters {
    const threads = this.#threads.filter((t) => t.status !== "retired").map((t) => t.counters());
    const scaling: ScalingCounters = {
      threads: this.#members,
      starting: this.threadsStarting,
      ...(this.#scalesSlots ? { slots: this.#limit } : {}),
      up: this.#scaledUp,
      down: this.#scaledDown,
      changes: this.#changes.map((c) => ({ ...c })),
    };
    return {
      scaling,
      threads,
      jobsInFlight: this.#inFlight,
      freeSlots: this.freeSlots,
      submitted: this.#submitted,
      replied: this.#replied,
      failed: this.#failed,
      threadsLost: this.#threadsLost,
      mainSleeps: this.#scheduler.sleeps,
    };
  }

  /**
   * Stops taking jobs, lets the jobs in flight finish (`drain`, default true, up to
   * `timeoutMs`), fails the rest with {@linkcode PoolClosedError}, then stops every
   * thread. A thread stuck in a busy handler cannot be stopped in Deno 2.9.6
   * (`Worker.terminate()` does not stop it) and keeps the process alive.
   *
   * @example
   * ```ts ignore
   * await pool.close({ drain: true, timeoutMs: 5_000 });
   * ```
   */
  close(options: CloseOptions = {}): Promise<void> {
    if (this.#closed === null) {
      this.#closing = true;
      this.#closed = this.#close(options.drain ?? true, options.timeoutMs ?? 30_000);
    }
    return this.#closed;
  }

  async #close(drain: boolean, timeoutMs: number): Promise<void> {
    logger.debug("Closing handler pool (drain: {drain})", { drain });
    if (drain && (this.#inFlight > 0 || this.#callHead < this.#callQueue.length)) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#drained = resolve;
        timer = setTimeout(resolve, timeoutMs);
      });
      clearTimeout(timer);
      this.#drained = null;
    }
    // Whatever is left fails now.
    const left = new PoolClosedError(
      drain ? `Handler pool closed: drain timed out after ${timeoutMs} ms` : undefined,
    );
    const queued = this.#callQueue.splice(this.#callHead);
    this.#callQueue = [];
    this.#callHead = 0;
    for (const q of queued) q.cb(left, null);
    for (const t of this.#threads) {
      for (let slot = 0; slot < t.slots; slot++) {
        if (t.busy[slot] === 0) continue;
        const cb = t.callbacks[slot];
        this.#release(t, slot);
        if (cb !== null) {
          this.#failed++;
          this.#invoke(cb, left, null);
        }
      }
      if (t.ctl !== undefined) Atomics.store(t.ctl, CTL_INTERRUPT, -1);
    }
    this.#deadlines.stop();
    // Stop the threads: a STOP record wakes a sleeping thread; the thread answers
    // "stopped" and closes itself.
    const running = this.#threads.filter((t) => t.webWorker !== null);
    for (const t of this.#threads) {
      clearTimeout(t.restartTimer);
      if (t.webWorker === null && t.status !== "retired") t.status = "stopped";
    }
    if (running.length > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#stopped = () => {
          if (this.#threads.every((t) => t.webWorker === null)) resolve();
        };
        timer = setTimeout(resolve, STOP_TIMEOUT_MS);
        for (const t of running) {
          t.status = "stopping";
          if (!t.requestStop()) t.end(); // ring full of abandoned jobs: no clean stop
        }
      });
      clearTimeout(timer);
      this.#stopped = null;
    }
    for (const t of this.#threads) {
      if (t.webWorker !== null) {
        logger.warn(
          "Handler thread {thread} did not stop; it may be stuck in a handler and keep the process alive",
          { thread: t.index },
        );
        t.end();
      }
    }
    this.#scheduler.close();
    logger.debug("Handler pool closed");
  }

  // ---- threads (what one thread does is in _thread.ts; here what it means for the pool) ----

  #onThreadMessage(t: Thread, msg: ThreadMessage): void {
    switch (msg.type) {
      case "ready":
        return this.#threadReady(t, msg.services);
      case "init-error":
        return this.#threadFailed(t, `the handler runtime failed to start: ${msg.message}`);
      case "exit":
        return this.#threadFailed(t, msg.reason);
      case "stopped":
        t.end();
        if (t.status === "retiring") {
          t.status = "retired";
          logger.info("Handler thread {thread} retired", { thread: t.index });
        } else {
          t.status = "stopped";
        }
        this.#stopped?.();
        return;
    }
  }

  #threadReady(t: Thread, services: string[]): void {
    if (services.length === 0 || services.length > 0x10000) {
      return this.#threadFailed(
        t,
        `the runtime must serve 1 to 65536 services, not ${services.length}`,
      );
    }
    if (this.#serviceIndex.size === 0 && this.#services.length === 0) {
      this.#services = Object.freeze([...services]);
      this.#serviceIndex = new Map(services.map((s, i) => [s, i]));
    } else if (
      services.length !== this.#services.length || services.some((s, i) => s !== this.#services[i])
    ) {
      return this.#threadFailed(
        t,
        `the runtime reported services ${JSON.stringify(services)}, not ${
          JSON.stringify(this.#services)
        }`,
      );
    }
    if (this.#closing) {
      t.status = "stopping";
      t.requestStop();
      return;
    }
    t.status = "ready";
    for (let i = 0; i < t.slots; i++) t.free[i] = t.slots - 1 - i;
    t.freeTop = t.slots;
    this.#free += t.slots;
    const started = t.onStarted;
    t.onStarted = null;
    if (started !== null) {
      started({ ok: true });
    } else if (t.growing) {
      t.growing = false;
      t.member = true;
      this.#members++;
      logger.info("Handler thread {thread} started: {threads} threads", {
        thread: t.index,
        threads: this.#members,
      });
      this.#serveCalls();
      this.#resized(true);
    } else {
      logger.info("Handler thread {thread} restarted", { thread: t.index });
      this.#serveCalls();
      if (this.#onSlotsAvailable) this.#safely(this.#onSlotsAvailable);
    }
  }

  /** A thread died or failed to start: fail its jobs, report, restart. */
  #threadFailed(t: Thread, reason: string, cause?: unknown): void {
    if (t.webWorker === null) return;
    const starting = t.status === "starting";
    const wasReady = t.status === "ready";
    t.end();
    if (wasReady) this.#free -= t.freeTop;
    t.freeTop = 0;
    this.#threadsLost++;
    const started = t.onStarted;
    t.onStarted = null;
    if (started !== null) {
      // First start: the pool's start fails; no restart.
      t.status = "stopped";
      started({ ok: false, message: `thread ${t.index}: ${reason}` });
      return;
    }
    const retiring = t.status === "retiring";
    const error = new HandlerThreadLostError(t.index, reason, { cause });
    let failedJobs = 0;
    for (let slot = 0; slot < t.slots; slot++) {
      if (t.busy[slot] === 0) continue;
      const cb = t.callbacks[slot];
      this.#release(t, slot, false);
      if (cb !== null) {
        failedJobs++;
        this.#failed++;
        this.#invoke(cb, error, null);
      }
    }
    t.freeTop = 0;
    const restarting = !this.#closing && !retiring;
    t.status = restarting ? "restarting" : retiring ? "retired" : "stopped";
    logger.warn("Handler thread {thread} lost: {reason}; {failedJobs} jobs failed", {
      thread: t.index,
      reason,
      failedJobs,
      restarting,
    });
    if (this.#onThreadLost) {
      const event: ThreadLostEvent = { thread: t.index, reason, failedJobs, restarting };
      this.#safely(() => this.#onThreadLost!(event));
    }
    if (restarting) {
      const uptime = performance.now() - t.startedAt;
      t.backoff = starting || uptime < 1000
        ? Math.min(MAX_BACKOFF_MS, Math.max(50, t.backoff * 2))
        : 0;
      t.restarts++;
      t.restartTimer = setTimeout(() => {
        t.restartTimer = undefined;
        if (this.#closing) return;
        try {
          t.spawn(this.#spawnConfig, this.#threadEvents);
        } catch (err) {
          t.status = "stopped";
          logger.error("Handler thread {thread} cannot be restarted: {error}", {
            thread: t.index,
            error: err,
          });
        }
      }, t.backoff);
    } else {
      this.#stopped?.();
    }
    this.#checkDrained();
  }

  #pick(): Thread | null {
    const threads = this.#threads;
    const n = threads.length;
    let best: Thread | null = null;
    let bestFree = 0;
    for (let k = 0; k < n; k++) {
      const t = threads[(this.#rr + k) % n];
      if (t.freeTop > bestFree && t.status === "ready") {
        best = t;
        bestFree = t.freeTop;
      }
    }
    this.#rr = this.#rr + 1 === n ? 0 : this.#rr + 1;
    return best;
  }

  /** Frees a slot. `toFreeList` is false when the thread is gone. */
  #release(t: Thread, slot: number, toFreeList = true): void {
    const freed = t.freed[slot];
    t.busy[slot] = 0;
    t.tickets[slot] = 0;
    t.callbacks[slot] = null;
    t.freed[slot] = null;
    t.heldJobs[slot] = null;
    this.#deadlines.clear(t, slot);
    t.inFlight--;
    this.#inFlight--;
    if (toFreeList && t.status === "ready") {
      t.free[t.freeTop++] = slot;
      this.#free++;
    } else if (t.status === "retiring" && t.inFlight === 0 && !this.#closing) {
      this.#stopRetiring(t);
    }
    if (freed !== null) this.#safely(freed);
  }

  // ---- publication (jobs held for a full ring: Thread.hold in _thread.ts) ----

  #markDirty(t: Thread): void {
    if (!t.dirty) {
      t.dirty = true;
      this.#dirty.push(t);
    }
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(this.#flush);
    }
  }

  #flush = (): void => {
    if (!this.#flushQueued) return;
    this.#flushQueued = false;
    const dirty = this.#dirty;
    for (let i = 0; i < dirty.length; i++) {
      const t = dirty[i];
      t.dirty = false;
      if (t.webWorker !== null) t.jobs.flush();
    }
    dirty.length = 0;
  };

  // ---- replies (the polling and draining are in _reply_scheduler.ts) ----

  /** After a drain that took replies. */
  #afterDrain(): void {
    this.#serveCalls();
    this.#checkDrained();
    // Jobs submitted from reply callbacks: publish now rather than after this task.
    if (this.#flushQueued) this.#flush();
  }

  #onReply(t: Thread, replies: RingConsumer, rec: RingRecord): void {
    if (rec.kind === KIND_CALL) return this.#onThreadCall(t, replies, rec);
    const slot = rec.id & 0xffff;
    if (slot >= t.slots || t.tickets[slot] !== rec.id || t.busy[slot] === 0) {
      logger.debug("Stale reply {ticket} from thread {thread} ignored", {
        ticket: rec.id,
        thread: t.index,
      });
      return;
    }
    const cb = t.callbacks[slot];
    const id = t.jobIds[slot];
    this.#release(t, slot);
    if (cb === null) {
      // Timed out earlier: the reply is late, but its slot is free again only now.
      this.#serveCalls();
      if (this.#onSlotsAvailable) this.#safely(this.#onSlotsAvailable);
      return;
    }
    this.#replied++;
    if (rec.kind === KIND_REPLY) {
      const reply: JobReply = {
        id,
        status: rec.aux,
        meta: rec.metaLength === 0 ? EMPTY : replies.takeMeta(rec),
        body: replies.takeBody(rec),
      };
      this.#invoke(cb, null, reply);
    } else if (rec.kind === KIND_ERROR) {
      const name = replies.metaText(rec);
      const text = replies.bodyText(rec);
      const nul = text.indexOf("\u0000");
      const message = nul < 0 ? text : text.slice(0, nul);
      const stack = nul < 0 ? undefined : text.slice(nul + 1);
      this.#invoke(
        cb,
        new HandlerError(message, { handlerErrorName: name, handlerStack: stack }),
        null,
      );
    } else if (rec.kind === KIND_TOO_LARGE) {
      const size = Number(replies.bodyText(rec));
      this.#invoke(cb, new RingMessageTooLargeError(size, ringMaxPayload(this.#ringBytes)), null);
    } else {
      this.#invoke(cb, new HandlerError(`Unknown reply kind ${rec.kind}`), null);
    }
  }

  /** A handler calls a service: carry it out and write the answer to the thread's ring. */
  #onThreadCall(t: Thread, replies: RingConsumer, rec: RingRecord): void {
    const id = rec.id;
    const meta = rec.metaLength === 0 ? [] : decodeMeta(replies.takeMeta(rec));
    const body = replies.takeBody(rec);
    let service = "";
    let timeoutMs = 0;
    let upstream: string | undefined;
    const extra: [string, string][] = [];
    for (const [k, v] of meta) {
      if (k === "service" && service === "") service = v;
      else if (k === "timeout") timeoutMs = Number(v) || 0;
      else if (k === "upstream") upstream = v;
      else extra.push([k, v]);
    }
    const jobs = t.jobs;
    const answer = (kind: number, aux: number, m: Uint8Array | null, b: Uint8Array) => {
      // A restarted thread has new rings and forgot its calls.
      if (t.jobs === jobs && t.webWorker !== null) {
        t.writeRecord(kind, id, aux, m, b, this.#serviceIndex);
      }
    };
    const fail = (err: unknown) => {
      const e = err instanceof JobError
        ? err
        : new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
      if (!(err instanceof JobError)) logger.error("A call failed: {error}", { error: err });
      answer(KIND_CALL_ERROR, e.code, textEncoder.encode(e.kind), textEncoder.encode(e.message));
    };
    if (this.#onCall === undefined) {
      return fail(new JobError(ErrorCode.NO_SERVICE, "This node cannot call services"));
    }
    let promise: Promise<PoolCallReply>;
    try {
      promise = this.#onCall({ thread: t.index, service, body, timeoutMs, upstream, meta: extra });
    } catch (err) {
      return fail(err);
    }
    promise.then((r) => {
      let m: Uint8Array | null = null;
      try {
        m = r.meta.length > 0 ? encodeMeta(r.meta) : null;
      } catch (err) {
        return fail(err);
      }
      answer(KIND_CALL_REPLY, r.status, m, r.body);
    }, fail);
  }

  #invoke(cb: ReplyCallback, err: Error | null, reply: JobReply | null): void {
    try {
      cb(err, reply);
    } catch (e) {
      logger.error("A reply callback threw: {error}", { error: e });
    }
  }

  #safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      logger.error("A pool event callback threw: {error}", { error: e });
    }
  }

  #serveCalls(): void {
    const q = this.#callQueue;
    while (this.#callHead < q.length && this.#free > 0) {
      const { job, cb } = q[this.#callHead];
      try {
        if (!this.#submit(job, cb)) break;
      } catch (err) {
        cb(err instanceof Error ? err : new Error(String(err)), null);
      }
      q[this.#callHead++] = undefined!;
    }
    if (this.#callHead === q.length && q.length > 0) {
      q.length = 0;
      this.#callHead = 0;
    }
  }

  #checkDrained(): void {
    if (this.#drained === null || this.#inFlight !== 0) return;
    // Queued calls count too, unless no thread is left to run them.
    const queued = this.#callHead < this.#callQueue.length;
    if (!queued || !this.#threads.some((t) => t.status === "ready")) this.#drained();
  }

  // ---- deadlines (the timer is in _deadlines.ts) ----

  /**
   * Fails the jobs whose deadline passed (a running one stays in its slot until let go);
   * returns the earliest deadline left, or Infinity.
   */
  #sweepDeadlines(): number {
    const now = performance.now();
    let next = Infinity;
    for (const t of this.#threads) {
      for (let slot = 0; slot < t.slots; slot++) {
        const deadline = t.deadlines[slot];
        if (deadline === 0 || t.busy[slot] === 0) continue;
        if (deadline > now) {
          if (deadline < next) next = deadline;
          continue;
        }
        const cb = t.callbacks[slot];
        const err = new JobTimeoutError(t.deadlineMs[slot]);
        if (t.heldJobs[slot] !== null) {
          // Never written: take it back.
          this.#release(t, slot);
        } else {
          // Running or queued on the thread: the slot stays taken until the thread lets
          // go of the job; ask the runtime to interrupt it, and the thread to drop it at
          // once if it still waits there (not when the jobs ahead of it end).
          t.callbacks[slot] = null;
          this.#deadlines.clear(t, slot);
          Atomics.store(t.ctl, CTL_INTERRUPT, t.tickets[slot]);
          if (t.webWorker !== null) {
            t.writeRecord(
              KIND_CANCEL,
              t.tickets[slot],
              CANCEL_DEADLINE,
              null,
              EMPTY,
              this.#serviceIndex,
            );
          }
        }
        if (cb !== null) {
          this.#failed++;
          this.#invoke(cb, err, null);
        }
      }
    }
    this.#checkDrained();
    return next;
  }
}
