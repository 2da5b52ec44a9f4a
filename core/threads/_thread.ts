/**
 * Private: one handler thread as the pool's main thread sees it. Its Web Worker (started and
 * ended here), its two rings and control words, its slot table (a job takes a slot until
 * its reply frees it), and the jobs held on the main thread because its job ring was full.
 *
 * Cut from `pool.ts` because this is what the pool does to *one* thread, with no pool-wide
 * state: the pool decides (which thread, when to restart, what a loss does to the jobs) and
 * keeps the counts across threads; a `Thread` only keeps its own tables straight.
 *
 * A ticket is `generation << 16 | slot` (see `_pool_protocol.ts`): the slot indexes the
 * tables below, so a reply finds its job by array index.
 *
 * @module
 */

import { createRing, RingConsumer, RingProducer, ringStats } from "./ring.ts";
import {
  CTL_ASYNC,
  CTL_DONE,
  CTL_SLEEPS,
  KIND_JOB,
  KIND_STOP,
  THREAD_CONTROL_BYTES,
  type ThreadInit,
  type ThreadMessage,
} from "./_pool_protocol.ts";
import type { PoolJob, ReplyCallback, ThreadCounters, ThreadStatus } from "./pool_types.ts";

/** Smallest ring DATA bytes the pool accepts; also the size of a lost thread's spare rings. */
export const MIN_RING_BYTES = 4096;

const THREAD_ENTRY = new URL("./thread_main.ts", import.meta.url).href;

/** How a thread's first start ended. */
export interface ThreadResult {
  ok: boolean;
  message?: string;
}

/** What every thread of a pool is started with. */
export interface ThreadSpawnConfig {
  /** URL of the handler runtime module. */
  module: string;
  /** The pool's `moduleOptions`. */
  moduleOptions: unknown;
  /** DATA bytes of each ring. */
  ringBytes: number;
  /** The pool control buffer (the main thread's doorbell). */
  poolControl: SharedArrayBuffer;
  /** Jobs the thread runs at once; the rest of its slots wait on the thread. */
  maxRunning: number;
  /** Whether handlers may call services. */
  calls: boolean;
}

/** What a thread's Web Worker reports, passed on to the pool. */
export interface ThreadEvents {
  /** A lifecycle message from the thread. */
  message(t: Thread, msg: ThreadMessage): void;
  /** The Web Worker failed (uncaught error, unreadable message). */
  failed(t: Thread, reason: string, cause?: unknown): void;
}

/** Main-thread bookkeeping of one handler thread. */
export class Thread {
  readonly index: number;
  readonly slots: number;
  status: ThreadStatus = "starting";
  webWorker: Worker | null = null;
  jobRing!: SharedArrayBuffer;
  replyRing!: SharedArrayBuffer;
  jobs!: RingProducer;
  replies!: RingConsumer;
  ctl!: Int32Array;
  // Slot tables, indexed by slot.
  readonly tickets: Int32Array;
  readonly gens: Uint16Array;
  readonly busy: Uint8Array;
  readonly jobIds: Float64Array;
  readonly deadlines: Float64Array;
  readonly deadlineMs: Float64Array;
  /**
   * The jobs' deadlines as the thread reads them, in shared memory: absolute time
   * (`performance.timeOrigin + performance.now()`, ms), 0 = none. Written before the job is
   * published, so the ring's publication orders it.
   */
  readonly sharedDeadlines: Float64Array;
  readonly callbacks: (ReplyCallback | null)[];
  /** Told when the slot is free again (`HandlerPool.submit`'s `onFreed`). */
  readonly freed: ((() => void) | null)[];
  readonly heldJobs: (PoolJob | null)[];
  readonly free: Int32Array;
  freeTop = 0;
  inFlight = 0;
  held: number[] = [];
  heldHead = 0;
  /** Records for the thread other than jobs (call answers) waiting for ring space. */
  heldRecords: {
    kind: number;
    id: number;
    aux: number;
    meta: Uint8Array | null;
    body: Uint8Array;
  }[] = [];
  dirty = false;
  spaceWait = false;
  startedAt = 0;
  backoff = 0;
  restarts = 0;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  /**
   * Its slots count in the pool's concurrency: a thread of the pool's start, or one added
   * (`HandlerPool.grow`) once ready; not while retiring or retired.
   */
  member = true;
  /** Added by `HandlerPool.grow` and not ready yet. */
  growing = false;
  /** A STOP record was written for it (it finishes what it holds and exits). */
  stopSent = false;
  onStarted: ((r: ThreadResult) => void) | null = null;
  base = { jobFull: 0, jobWake: 0, replyFull: 0, replyWake: 0, done: 0, sleeps: 0 };

  constructor(index: number, slots: number) {
    this.index = index;
    this.slots = slots;
    this.tickets = new Int32Array(slots);
    this.gens = new Uint16Array(slots);
    this.busy = new Uint8Array(slots);
    this.jobIds = new Float64Array(slots);
    this.deadlines = new Float64Array(slots);
    this.deadlineMs = new Float64Array(slots);
    this.sharedDeadlines = new Float64Array(new SharedArrayBuffer(8 * Math.max(1, slots)));
    this.callbacks = new Array(slots).fill(null);
    this.freed = new Array(slots).fill(null);
    this.heldJobs = new Array(slots).fill(null);
    this.free = new Int32Array(slots);
  }

  get heldCount(): number {
    return this.held.length - this.heldHead;
  }

  // ---- the Web Worker ----

  /**
   * Starts the thread on fresh rings: a new Web Worker, told everything in one `init`
   * message; what it reports goes to `events`. Throws (with no Web Worker left) when the
   * init message cannot be sent.
   */
  spawn(config: ThreadSpawnConfig, events: ThreadEvents): void {
    this.jobRing = createRing(config.ringBytes);
    this.replyRing = createRing(config.ringBytes);
    const control = new SharedArrayBuffer(THREAD_CONTROL_BYTES);
    // A job never wakes a thread that waits lazily (an in-place `block` with every slot
    // taken): it could not start before the wait ends anyway.
    this.jobs = new RingProducer(this.jobRing, { lazyKind: KIND_JOB });
    this.replies = new RingConsumer(this.replyRing);
    this.ctl = new Int32Array(control);
    this.freeTop = 0;
    this.held = [];
    this.heldHead = 0;
    this.heldRecords = [];
    this.spaceWait = false;
    this.dirty = false;
    this.stopSent = false;
    this.status = "starting";
    this.startedAt = performance.now();
    const webWorker = new Worker(THREAD_ENTRY, {
      type: "module",
      name: `ep-handler-${this.index}`,
    });
    this.webWorker = webWorker;
    webWorker.onmessage = (e: MessageEvent<ThreadMessage>) => {
      if (this.webWorker === webWorker) events.message(this, e.data);
    };
    webWorker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      if (this.webWorker !== webWorker) return;
      const reason = `uncaught ${e.message || "error"}`;
      events.failed(this, reason, e.error);
    };
    webWorker.onmessageerror = () => {
      if (this.webWorker === webWorker) {
        events.failed(this, "a message from the thread could not be read");
      }
    };
    const init: ThreadInit = {
      type: "init",
      thread: this.index,
      module: config.module,
      moduleOptions: config.moduleOptions,
      jobRing: this.jobRing,
      replyRing: this.replyRing,
      control,
      poolControl: config.poolControl,
      deadlines: this.sharedDeadlines.buffer as SharedArrayBuffer,
      maxRunning: config.maxRunning,
      calls: config.calls,
    };
    try {
      webWorker.postMessage(init);
    } catch (err) {
      // moduleOptions that cannot be structured-cloned, typically.
      this.webWorker = null;
      webWorker.terminate();
      throw err;
    }
  }

  /**
   * Asks the thread to finish its jobs and exit (a STOP record, which also wakes it).
   * Returns false when the job ring has no room for it.
   */
  requestStop(): boolean {
    if (!this.jobs.tryWrite(0, KIND_STOP, 0, null, null)) return false;
    this.jobs.flush();
    this.stopSent = true;
    return true;
  }

  /** Terminates the thread's Web Worker and folds its ring counters into the thread's totals. */
  end(): void {
    const webWorker = this.webWorker;
    if (webWorker === null) return;
    this.webWorker = null;
    webWorker.onmessage = null;
    webWorker.onerror = (e: ErrorEvent) => e.preventDefault();
    webWorker.terminate();
    const j = ringStats(this.jobRing);
    const r = ringStats(this.replyRing);
    // Keep the totals in `base`, and zero the live rings' share: counters() adds both.
    this.base.jobFull += j.fullEvents;
    this.base.jobWake += j.dataWakeups;
    this.base.replyFull += r.fullEvents;
    this.base.replyWake += r.dataWakeups;
    this.base.done += this.ctl[CTL_DONE] >>> 0;
    this.base.sleeps += this.ctl[CTL_SLEEPS] >>> 0;
    this.jobRing = createRing(MIN_RING_BYTES);
    this.replyRing = createRing(MIN_RING_BYTES);
    this.ctl = new Int32Array(new SharedArrayBuffer(THREAD_CONTROL_BYTES));
  }

  /** A snapshot of the thread's counters, totals across restarts included. */
  counters(): ThreadCounters {
    const jobRing = ringStats(this.jobRing);
    const replyRing = ringStats(this.replyRing);
    jobRing.fullEvents += this.base.jobFull;
    jobRing.dataWakeups += this.base.jobWake;
    replyRing.fullEvents += this.base.replyFull;
    replyRing.dataWakeups += this.base.replyWake;
    return {
      thread: this.index,
      status: this.status,
      jobsInFlight: this.inFlight,
      jobsHeld: this.heldCount,
      asyncJobsInFlight: this.ctl[CTL_ASYNC],
      jobsDone: this.base.done + (this.ctl[CTL_DONE] >>> 0),
      sleeps: this.base.sleeps + (this.ctl[CTL_SLEEPS] >>> 0),
      restarts: this.restarts,
      jobRing,
      replyRing,
    };
  }

  // ---- held jobs ----

  /**
   * Holds the job of `slot` on the main thread (the job ring was full, or jobs are held
   * already and order must be kept) and writes it when the thread releases space.
   * `serviceIndex` maps service names to the indices the thread knows.
   */
  hold(slot: number, job: PoolJob, serviceIndex: ReadonlyMap<string, number>): void {
    this.heldJobs[slot] = job;
    this.held.push(slot);
    this.waitForSpace(serviceIndex);
  }

  /**
   * Writes a record for the thread (the answer to one of its calls), after whatever is
   * held already, in order; held (and written later) when the ring is full.
   */
  writeRecord(
    kind: number,
    id: number,
    aux: number,
    meta: Uint8Array | null,
    body: Uint8Array,
    serviceIndex: ReadonlyMap<string, number>,
  ): void {
    if (
      this.heldRecords.length === 0 && this.heldCount === 0 &&
      this.jobs.tryWrite(id, kind, aux, meta, body)
    ) {
      this.jobs.flush();
      return;
    }
    this.heldRecords.push({ kind, id, aux, meta, body });
    this.waitForSpace(serviceIndex);
  }

  /** Writes the held jobs once the ring has room for the first (one wait at a time). */
  waitForSpace(serviceIndex: ReadonlyMap<string, number>): void {
    if (this.spaceWait) return;
    this.spaceWait = true;
    const jobs = this.jobs;
    const record = this.heldRecords[0];
    const first = record ? null : this.heldJobs[this.held[this.heldHead]];
    const size = record
      ? (record.meta?.length ?? 0) + record.body.length
      : first === null || first === undefined
      ? 0
      : (first.meta?.length ?? 0) + first.body.length;
    const wait = jobs.waitForSpaceAsync(size);
    const retry = () => {
      if (this.jobs !== jobs) return; // the thread was restarted meanwhile
      this.spaceWait = false;
      this.writeHeld(serviceIndex);
    };
    if (wait === undefined) queueMicrotask(retry);
    else wait.then(retry);
  }

  /**
   * Writes held jobs in order while they fit, skipping slots taken back meanwhile (a
   * deadline passed), publishes them, and waits again if some are left.
   */
  writeHeld(serviceIndex: ReadonlyMap<string, number>): void {
    const records = this.heldRecords;
    while (records.length > 0) {
      const r = records[0];
      if (!this.jobs.tryWrite(r.id, r.kind, r.aux, r.meta, r.body)) {
        this.jobs.flush();
        this.waitForSpace(serviceIndex);
        return;
      }
      records.shift();
    }
    const held = this.held;
    while (this.heldHead < held.length) {
      const slot = held[this.heldHead];
      const job = this.heldJobs[slot];
      if (job !== null) {
        const service = serviceIndex.get(job.service)!;
        if (
          !this.jobs.tryWrite(this.tickets[slot], KIND_JOB, service, job.meta ?? null, job.body)
        ) {
          break;
        }
        this.heldJobs[slot] = null;
      }
      this.heldHead++;
    }
    if (this.heldHead === held.length) {
      held.length = 0;
      this.heldHead = 0;
    }
    this.jobs.flush();
    if (this.heldCount > 0) this.waitForSpace(serviceIndex);
  }
}
