/**
 * The handler-thread pool's vocabulary: the jobs it takes, the replies and callbacks it
 * gives back, and what it reports about itself and its threads. The pool itself is
 * `pool.ts`; the per-thread bookkeeping (`_thread.ts`) speaks these types too.
 *
 * @module
 */
import type { RingStats } from "./ring.ts";
/**
 * A job for the pool.
 *
 * @example
 * ```ts
 * import type { PoolJob } from "./pool_types.ts";
 * const job: PoolJob = { id: 42, service: "user", body: new TextEncoder().encode("bob"), deadlineMs: 500 };
 * console.assert(job.id === 42);
 * ```
 */
export interface PoolJob {
  /** The caller's id, handed back in the reply. */
  id: number;
  /** Service name; must be one of `HandlerPool.services`. */
  service: string;
  /** Metadata bytes (headers, encoded by the caller). */
  meta?: Uint8Array;
  /** Body bytes. Copied into the ring: the caller may reuse the array once submit returns. */
  body: Uint8Array;
  /**
   * Milliseconds from submission after which the job fails with
   * `JobTimeoutError` and its thread is asked to interrupt it (checked every
   * few milliseconds).
   */
  deadlineMs?: number;
}

/**
 * A handler's reply.
 *
 * @example
 * ```ts
 * import type { JobReply } from "./pool_types.ts";
 * const reply: JobReply = { id: 42, status: 200, meta: new Uint8Array(), body: new Uint8Array([1]) };
 * console.assert(reply.status === 200);
 * ```
 */
export interface JobReply {
  /** The job's `id`. */
  id: number;
  /** Status set by the handler (200 unless it said otherwise). */
  status: number;
  /** Reply metadata bytes (empty when none). */
  meta: Uint8Array;
  /** Reply body bytes. */
  body: Uint8Array;
}

/**
 * Called once per submitted job, with an error or a reply. Errors:
 * `HandlerError`, `HandlerThreadLostError`,
 * `JobTimeoutError`, `PoolClosedError`,
 * `RingMessageTooLargeError` (the reply was too large), a `cancelled` `JobError`
 * (`HandlerPool.cancel`).
 *
 * @example
 * ```ts
 * import type { ReplyCallback } from "./pool_types.ts";
 * const onReply: ReplyCallback = (err, reply) => {
 *   if (err) console.error(err.name, err.message);
 *   else console.assert(reply!.status >= 0);
 * };
 * console.assert(typeof onReply === "function");
 * ```
 */
export type ReplyCallback = (error: Error | null, reply: JobReply | null) => void;

/**
 * Reported when a thread is lost.
 *
 * @example
 * ```ts
 * import type { ThreadLostEvent } from "./pool_types.ts";
 * const log = (e: ThreadLostEvent) => `thread ${e.thread}: ${e.reason}, ${e.failedJobs} jobs failed`;
 * console.assert(typeof log === "function");
 * ```
 */
export interface ThreadLostEvent {
  /** Index of the thread. */
  thread: number;
  /** How it ended. */
  reason: string;
  /** Jobs that failed with `HandlerThreadLostError`. */
  failedJobs: number;
  /** Whether it is being restarted (false while the pool closes). */
  restarting: boolean;
}

/**
 * Options of `HandlerPool.close`.
 *
 * @example
 * ```ts
 * import type { CloseOptions } from "./pool_types.ts";
 * const now: CloseOptions = { drain: false };
 * console.assert(now.drain === false);
 * ```
 */
export interface CloseOptions {
  /** Let jobs in flight (and queued `call`s) finish first (default true). */
  drain?: boolean;
  /** Give up draining after this many milliseconds (default 30 000); the rest fail. */
  timeoutMs?: number;
}

/**
 * State of a thread. `retiring`: the pool shrinks (`HandlerPool.retire`); the thread takes no
 * new job, finishes those it holds, then stops (`retired`: its index may start again when the
 * pool grows).
 *
 * @example
 * ```ts
 * import type { ThreadStatus } from "./pool_types.ts";
 * const s: ThreadStatus = "ready";
 * console.assert(s === "ready");
 * ```
 */
export type ThreadStatus =
  | "starting"
  | "ready"
  | "restarting"
  | "retiring"
  | "stopping"
  | "stopped"
  | "retired";

/**
 * Counters of one thread (monotonic across restarts unless said otherwise).
 *
 * @example
 * ```ts
 * import type { ThreadCounters } from "./pool_types.ts";
 * const occupancy = (c: ThreadCounters) => c.jobRing.usedBytes / c.jobRing.capacity;
 * console.assert(typeof occupancy === "function");
 * ```
 */
export interface ThreadCounters {
  /** Index of the thread. */
  thread: number;
  /** Its state. */
  status: ThreadStatus;
  /** Jobs holding a slot (gauge). */
  jobsInFlight: number;
  /** Of those, jobs held on the main thread because the job ring was full (gauge). */
  jobsHeld: number;
  /** Async jobs the thread awaits (gauge, reported by the thread). */
  asyncJobsInFlight: number;
  /** Jobs the thread finished. */
  jobsDone: number;
  /** Times the thread went to sleep waiting for jobs. */
  sleeps: number;
  /** Times the thread was restarted. */
  restarts: number;
  /**
   * Job ring (main → thread): occupancy of the current ring, `fullEvents` = jobs the main
   * thread had to hold, `dataWakeups` = wake-ups of the sleeping thread.
   */
  jobRing: RingStats;
  /**
   * Reply ring (thread → main): occupancy of the current ring, `fullEvents` = replies the
   * thread had to hold, `dataWakeups` = wake-ups of the sleeping main thread.
   */
  replyRing: RingStats;
}

/**
 * Counters of a pool.
 *
 * @example
 * ```ts
 * import type { PoolCounters } from "./pool_types.ts";
 * const busy = (c: PoolCounters) => c.jobsInFlight / (c.jobsInFlight + c.freeSlots);
 * console.assert(typeof busy === "function");
 * ```
 */
export interface PoolCounters {
  /** Per thread. */
  threads: ThreadCounters[];
  /** Jobs holding a slot (gauge). */
  jobsInFlight: number;
  /** Free slots on ready threads (gauge). */
  freeSlots: number;
  /** Jobs accepted. */
  submitted: number;
  /** Jobs answered with a reply (including handler errors). */
  replied: number;
  /** Jobs failed by the pool (thread lost, timeout, closed). */
  failed: number;
  /** Threads lost. */
  threadsLost: number;
  /** Times the main thread slept in `Atomics.waitAsync` waiting for replies. */
  mainSleeps: number;
  /** Growing and shrinking (`HandlerPool.grow`, `HandlerPool.retire`); absent: a fixed pool. */
  scaling?: ScalingCounters;
}

/**
 * How a pool's thread count changed: counts, and the last changes with their reasons.
 *
 * @example
 * ```ts
 * import type { ScalingCounters } from "./pool_types.ts";
 * const s: ScalingCounters = {
 *   threads: 2,
 *   starting: 0,
 *   up: 1,
 *   down: 0,
 *   changes: [{ at: 1_700_000_000_000, direction: "up", threads: 2, reason: "wait p99 80 ms > 50 ms (svc)" }],
 * };
 * console.assert(s.changes[0].threads === s.threads);
 * ```
 */
export interface ScalingCounters {
  /** Threads serving (their slots count), restarting ones included. */
  threads: number;
  /** Threads added and still starting. */
  starting: number;
  /** The slot limit, when slots scale instead of threads (`HandlerPoolOptions.slotLimit`). */
  slots?: number;
  /** Threads added (`grow`). */
  up: number;
  /** Threads retired (`retire`). */
  down: number;
  /** The last changes, oldest first (at most 20). */
  changes: ScaleChange[];
}

/**
 * One change of a pool's thread count.
 *
 * @example
 * ```ts
 * import type { ScaleChange } from "./pool_types.ts";
 * const c: ScaleChange = { at: Date.now(), direction: "down", threads: 1, reason: "idle" };
 * console.assert(c.direction === "down");
 * ```
 */
export interface ScaleChange {
  /** When, Unix ms. */
  at: number;
  /** Added a thread, or retired one. */
  direction: "up" | "down";
  /** Threads after it (serving and starting). */
  threads: number;
  /** The slot limit after it, when slots scale instead of threads. */
  slots?: number;
  /** Why (the autoscaler's words), or empty. */
  reason: string;
}

/**
 * A pool whose thread count changes while it runs: `HandlerPool` has it; a
 * {@linkcode JobPool} of functions on the main thread does not.
 *
 * @example
 * ```ts
 * import type { ScalablePool } from "./pool_types.ts";
 * const size = (p: ScalablePool) => p.threads + p.threadsStarting;
 * console.assert(typeof size === "function");
 * ```
 */
export interface ScalablePool {
  /** Threads serving (their slots count), restarting ones included. */
  readonly threads: number;
  /** Threads added and not ready yet (their slots do not count yet). */
  readonly threadsStarting: number;
  /** Jobs one thread runs at once. */
  readonly perThreadConcurrency: number;
  /** What grow and retire change: threads, or a limit on the slots offered. */
  readonly scaleUnit: "threads" | "slots";
  /** Units now: threads serving and starting, or the slot limit. */
  readonly scaleSize: number;
  /** Slots one unit brings: a thread's, or one. */
  readonly scaleStep: number;
  /**
   * Starts one more thread, or offers one more slot; false when it cannot (closing, at the
   * limit).
   */
  grow(reason?: string): boolean;
  /**
   * Retires one thread (it finishes its jobs first), or offers one slot fewer (jobs above
   * the limit finish, none starts until those in flight fit it); false when one is left.
   */
  retire(reason?: string): boolean;
  /**
   * Told when the slots that count change: a thread added became ready, a thread began
   * retiring or came back. (Free slots that appear are also told through
   * `onSlotsAvailable`.)
   */
  onResize: (() => void) | undefined;
}

/**
 * A handler's call of a service, as the pool hands it to `HandlerPoolOptions.onCall`.
 *
 * @example
 * ```ts
 * import type { PoolCall } from "./pool_types.ts";
 * const call: PoolCall = { thread: 0, service: "user", body: new Uint8Array(), timeoutMs: 0, meta: [] };
 * console.assert(call.upstream === undefined);
 * ```
 */
export interface PoolCall {
  /** The thread whose handler calls. */
  thread: number;
  /** The service called. */
  service: string;
  /** The request body. */
  body: Uint8Array;
  /** Time allowed, ms; 0: the default. */
  timeoutMs: number;
  /** A named upstream to call through, instead of this node's own balancers. */
  upstream?: string;
  /** Request metadata. */
  meta: [string, string][];
}

/**
 * The reply to a {@linkcode PoolCall} (any status: a 404 is a reply, not an error).
 *
 * @example
 * ```ts
 * import type { PoolCallReply } from "./pool_types.ts";
 * const r: PoolCallReply = { status: 200, meta: [], body: new TextEncoder().encode("ok") };
 * console.assert(r.status === 200);
 * ```
 */
export interface PoolCallReply {
  /** Status with HTTP meaning. */
  status: number;
  /** Reply metadata. */
  meta: [string, string][];
  /** Reply body. */
  body: Uint8Array;
}

/**
 * What runs a node's jobs, as the balancer's local provider (`LocalPoolProvider`), a module
 * worker (`WorkerNode`) and the monitor use it: the handler-thread pool (`HandlerPool`), or
 * `InlinePool`, which runs a map of functions on this thread. Slots, one reply callback per
 * job, cancellation, counters.
 *
 * @example
 * ```ts
 * import type { JobPool } from "./pool_types.ts";
 * const busy = (p: JobPool) => p.jobsInFlight / Math.max(1, p.jobsInFlight + p.freeSlots);
 * console.assert(typeof busy === "function");
 * ```
 */
export interface JobPool {
  /** The services it runs. */
  readonly services: readonly string[];
  /** Whether it runs `service`. */
  serves(service: string): boolean;
  /** Jobs it runs at once. */
  readonly concurrency: number;
  /** Jobs `submit` takes now (its concurrency and room for jobs waiting to start, less what it holds). */
  readonly freeSlots: number;
  /** Jobs holding a slot. */
  readonly jobsInFlight: number;
  /** Largest job or reply payload (meta + body bytes); Infinity: no limit of its own. */
  readonly maxMessageBytes: number;
  /** Told when slots free up without a reply callback to say so. */
  onSlotsAvailable: (() => void) | undefined;
  /**
   * Takes a job, or returns false taking nothing when no slot is free; `onReply` is called
   * exactly once, never synchronously: after the job's slot is free when it brings the
   * job's reply or error, possibly before when it says `cancelled` or `timeout` (the handler
   * still runs). `onFreed`, if given, is called exactly once, when the job's slot is free
   * again, whatever freed it (its reply, a late one, being taken back before it started,
   * the loss of its thread, close).
   */
  submit(job: PoolJob, onReply: ReplyCallback, onFreed?: () => void): boolean;
  /** Cancels job `id`: its callback gets a `cancelled` `JobError`; false when not held. */
  cancel(id: number): boolean;
  /** Stops taking jobs, lets those in flight finish (`drain`), fails the rest. */
  close(options?: CloseOptions): Promise<void>;
  /** A snapshot of its counters. */
  counters(): PoolCounters;
}
