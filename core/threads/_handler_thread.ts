/**
 * Private: a handler thread's loop (`HandlerThread`), run by the Web Worker entry
 * `thread_main.ts`: it serves jobs from the thread's job ring, calls the handler runtime,
 * and writes replies to its reply ring until told to stop.
 *
 * ## The loop and how it waits
 *
 * - Read every job available; call the runtime for each. A synchronous result is written
 *   to the reply ring at once; a promise counts as an async job in flight and writes its
 *   reply when it settles (replies settled in the same tick are published together).
 * - Replies and job-ring space are published after each handler run, not at the end of a
 *   batch: a handler's duration is unknown, and a reply must not wait for the jobs queued
 *   behind it. Publishing is one store; the wake-up (the expensive part) happens only when
 *   the main thread sleeps, at most once per sleep.
 * - A runtime with `start` and `tick` (the Lua runtime) waits only on its own timers: after
 *   each batch the thread ticks it and then blocks in one `Atomics.wait` on the job ring,
 *   with a timeout equal to the runtime's next deadline, less the floor of how late such
 *   waits wake (learned, ≤ 50 µs: `wake_lead.ts`; a wait that then wakes before the
 *   deadline spins the microseconds left). It wakes for a job, a stop, or that deadline;
 *   waiting jobs cost no CPU and the event loop never turns for them.
 * - Nothing in flight (any runtime): the same single `Atomics.wait`, without a timeout.
 * - A handler may wait inside its own run, in the same single `Atomics.wait` (the
 *   context's `block`: the Lua runtime's `ep.sleep` when its job is all there is); a
 *   record that needs the thread (a job it could start, a cancel, a stop) ends that wait
 *   early, and the handler waits the usual way; a job that could not start anyway is
 *   queued on the thread and the wait goes on.
 * - Promises in flight (a runtime with `handle` only, such as TypeScript handlers), or
 *   replies held because the reply ring was full: `Atomics.waitAsync` instead, so that the
 *   event loop runs the handlers' continuations, timers and I/O.
 *
 * ## Ends
 *
 * - A handler that throws or rejects produces an ERROR reply; the thread goes on.
 * - A STOP record: finish the async jobs in flight, call the runtime's `close`, and return
 *   from {@linkcode HandlerThread.run} (the entry, `thread_main.ts`, posts `stopped`).
 * - A CANCEL record (the job's client went away; the main thread answered it already): a
 *   job still waiting on the thread ends without running, a running one is handed to the
 *   runtime's `cancel`. The runtime's `ended` hears of every job that ends.
 *
 * @module
 */

import { spinUntil, WakeLead } from "./wake_lead.ts";
import { errorCodeName } from "../../protocol/errors.ts";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import type { Doorbell } from "./doorbell.ts";
import { RingConsumer, RingProducer, RingRecord, utf8Length } from "./ring.ts";
import { ReplyParts } from "./_reply.ts";
import {
  CANCEL_DEADLINE,
  CTL_ASYNC,
  CTL_DONE,
  CTL_INTERRUPT,
  CTL_SLEEPS,
  KIND_CALL,
  KIND_CALL_ERROR,
  KIND_CALL_REPLY,
  KIND_CANCEL,
  KIND_ERROR,
  KIND_JOB,
  KIND_REPLY,
  KIND_STOP,
  KIND_TOO_LARGE,
  type ThreadInit,
} from "./_pool_protocol.ts";
import type {
  HandlerRequest,
  HandlerResult,
  HandlerRuntime,
  ThreadCall,
  ThreadCallResult,
} from "./runtime.ts";

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();

interface HeldReply {
  ticket: number;
  kind: number;
  aux: number;
  meta: Uint8Array | null;
  body: Uint8Array | string;
}

/** A handler thread's loop over its rings; see the module documentation. */
export class HandlerThread {
  readonly #jobs: RingConsumer;
  readonly #replies: RingProducer;
  readonly #ctl: Int32Array;
  readonly #mainBell: Doorbell;
  readonly #runtime: HandlerRuntime;
  readonly #services: readonly string[];
  readonly #rec = new RingRecord();
  /** Records read while a handler blocks (`block`): the loop's own may be in use. */
  readonly #blockRec = new RingRecord();
  readonly #reply = new ReplyParts();
  readonly #held: HeldReply[] = [];
  readonly #deadlines: Float64Array;
  /** Jobs run at once; more wait in {@linkcode HandlerThread.#queued}, in arrival order. */
  readonly #maxRunning: number;
  #running = 0;
  #queued: { ticket: number; req: HandlerRequest; serviceIndex: number }[] = [];
  #queuedHead = 0;
  /** Runs jobs with `start` and waits with `tick` (see the module docs). */
  readonly #ticking: boolean;
  #async = 0;
  /** Jobs started with `start` whose `done` has not been called. */
  #waiting = 0;
  #inTick = false;
  /** Calls sent to the main thread, by call id, awaiting their answer record. */
  readonly #calls = new Map<number, (result: ThreadCallResult) => void>();
  #nextCall = 1;
  #done = 0;
  #sleeps = 0;
  #stopping = false;
  #flushScheduled = false;
  #spaceWait = false;
  #wake: (() => void) | null = null;
  /** The loop waits on the event loop with its job ring armed lazily (every slot taken). */
  #waitsLazily = false;
  /** How early a timed wait aims before the runtime's next deadline. */
  readonly #lead = new WakeLead();
  /** Whether a record waits in the job ring (ends a spin). */
  readonly #hasJob = () => this.#jobs.hasData();

  constructor(init: ThreadInit, runtime: HandlerRuntime, ctl: Int32Array, mainBell: Doorbell) {
    this.#ctl = ctl;
    this.#mainBell = mainBell;
    this.#jobs = new RingConsumer(init.jobRing);
    this.#replies = new RingProducer(init.replyRing, { dataBell: mainBell });
    this.#runtime = runtime;
    this.#services = runtime.services;
    this.#deadlines = new Float64Array(init.deadlines);
    this.#maxRunning = init.maxRunning > 0 ? init.maxRunning : Infinity;
    this.#ticking = typeof runtime.start === "function" && typeof runtime.tick === "function";
  }

  async run(): Promise<void> {
    const runtime = this.#runtime;
    for (;;) {
      this.#drain();
      this.#startQueued();
      let due = Infinity;
      if (this.#ticking) {
        this.#inTick = true;
        try {
          due = runtime.tick!(performance.now());
        } finally {
          this.#inTick = false;
        }
        this.#replies.flush();
        // Jobs that ended in the tick made room for queued ones: start them, tick again.
        if (this.#startQueued()) continue;
      }
      const busy = this.#async + this.#waiting + this.#queued.length - this.#queuedHead;
      if (this.#stopping && busy === 0 && this.#held.length === 0) break;
      if (this.#jobs.hasData()) continue;
      const eventLoop = this.#ticking && runtime.waitsOnEventLoop === true;
      if (this.#async === 0 && this.#held.length === 0 && !eventLoop) {
        // Only the runtime's own deadline, if any, is pending: block the thread until the
        // main thread publishes a record, or until that deadline.
        this.#sleepUntil(due);
      } else {
        // Handlers' continuations need the event loop: wait without blocking it. Woken by
        // a new job, or by a settling job that must end the loop (#wake). With every slot
        // taken, a new job could not start: only another record wakes it (a lazy arm), and
        // any job that settles meanwhile wakes the loop (#flushSettled), which then reads
        // the ring or waits again, armed the usual way.
        let timeout = Infinity;
        if (due !== Infinity) {
          timeout = due - performance.now();
          if (!(timeout > 0)) continue;
        }
        const lazy = this.#running >= this.#maxRunning;
        const wait = this.#stopping && !eventLoop
          ? undefined
          : this.#jobs.waitForDataAsync(timeout, lazy);
        if (wait === undefined && !this.#stopping) continue;
        this.#ctl[CTL_SLEEPS] = ++this.#sleeps;
        this.#waitsLazily = lazy;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          wait?.then(() => resolve());
        });
        this.#wake = null;
        this.#waitsLazily = false;
      }
    }
    await this.#runtime.close?.();
  }

  /** Reads and runs every job available; publishes after each one. */
  #drain(): void {
    const jobs = this.#jobs;
    const rec = this.#rec;
    while (jobs.read(rec)) {
      if (rec.kind === KIND_JOB) {
        this.#runJob(rec);
        this.#startQueued();
      } else if (rec.kind === KIND_CALL_REPLY || rec.kind === KIND_CALL_ERROR) {
        this.#callAnswered(rec);
        this.#startQueued();
      } else if (rec.kind === KIND_CANCEL) {
        this.#cancel(rec.id, rec.aux === CANCEL_DEADLINE);
      } else if (rec.kind === KIND_STOP) {
        this.#stopping = true;
      }
      jobs.release();
      this.#replies.flush();
    }
  }

  #runJob(rec: RingRecord): void {
    const ticket = rec.id;
    const serviceIndex = rec.aux;
    const jobs = this.#jobs;
    const absolute = this.#deadlines[ticket & 0xffff];
    const req: HandlerRequest = {
      id: ticket,
      service: this.#services[serviceIndex],
      meta: rec.metaLength === 0 ? EMPTY : jobs.takeMeta(rec),
      body: jobs.takeBody(rec),
      deadline: absolute === 0 ? undefined : absolute - performance.timeOrigin,
    };
    if (this.#running >= this.#maxRunning || this.#queuedHead < this.#queued.length) {
      this.#queued.push({ ticket, req, serviceIndex });
      return;
    }
    this.#run(ticket, req, serviceIndex);
  }

  /**
   * The main thread cancelled a job (its client went away, or its deadline passed) and
   * answered it already. One still waiting here ends now without running (its reply only
   * frees its slot), rather than holding its slot until the jobs ahead of it end; a running
   * one is the runtime's to stop, or not (at a deadline, the runtime's own deadline and the
   * interrupt flag do it).
   */
  #cancel(ticket: number, deadline: boolean): void {
    const q = this.#queued;
    for (let i = this.#queuedHead; i < q.length; i++) {
      if (q[i].ticket !== ticket) continue;
      q.splice(i, 1);
      this.#running++;
      const why = deadline ? "Timed out before it started" : "Cancelled before it started";
      this.#finish(ticket, undefined, new Error(why), true);
      return;
    }
    if (!deadline) this.#runtime.cancel?.(ticket);
  }

  /**
   * A handler's `ep.call` (the context's `call`): sent to the main thread as a CALL record;
   * the answer comes back as a CALL_REPLY or CALL_ERROR record with the same id.
   */
  call = (request: ThreadCall, done: (result: ThreadCallResult) => void): void => {
    let id = this.#nextCall;
    while (this.#calls.has(id)) id = id >= 0x7fff_ffff ? 1 : id + 1;
    this.#nextCall = id >= 0x7fff_ffff ? 1 : id + 1;
    const meta: [string, string][] = [
      ["service", request.service],
      ["timeout", String(Math.max(0, Math.round(request.timeoutMs ?? 0)))],
    ];
    if (request.upstream) meta.push(["upstream", request.upstream]);
    if (request.meta) { for (const m of request.meta) meta.push(m); }
    let encoded: Uint8Array;
    try {
      encoded = encodeMeta(meta);
    } catch (err) {
      done({ ok: false, code: 100, kind: "bad_request", message: (err as Error).message });
      return;
    }
    this.#calls.set(id, done);
    this.#write(id, KIND_CALL, 0, encoded, request.body);
    this.#replies.flush();
  };

  /** The context's `block` (`runtime.ts`): one futex wait until `until`, if nothing else waits. */
  block = (until: number): boolean => {
    if (!this.#ticking || this.#async !== 0 || this.#held.length !== 0 || this.#stopping) {
      return false;
    }
    // What the handlers wrote so far goes out before the thread sleeps.
    this.#replies.flush();
    const jobs = this.#jobs;
    for (;;) {
      // A job that could not start now anyway (the thread runs all it may) waits on the
      // thread as usual; any other record ends the wait (the handler waits the usual way).
      while (this.#running >= this.#maxRunning && jobs.peekKind() === KIND_JOB) {
        jobs.read(this.#blockRec);
        this.#runJob(this.#blockRec);
        jobs.release();
      }
      if (performance.now() >= until) return true;
      if (jobs.hasData()) return false;
      // Armed the usual way, although a job published now could not start before the wait
      // ends: armed lazily (not woken by it), the wait was measured to end later under load
      // (BENCHMARKS.md, "Tried, not kept").
      this.#sleepUntil(until);
    }
  };

  /**
   * The thread's one wait: a futex wait on the job ring until the main thread publishes a
   * record or until `due` (Infinity: none), aimed early by the floor of how late such waits
   * wake and the microseconds left spun (`wake_lead.ts`). Returns at once when a record is
   * there already; the caller looks at the ring and the clock again.
   */
  #sleepUntil(due: number): void {
    const jobs = this.#jobs;
    const seq = jobs.armData();
    if (seq === -1) return;
    const start = performance.now();
    const timeout = due - start - this.#lead.ms;
    if (!(timeout > 0)) {
      // Too close to wait: no futex call (a zero timeout may still give up the CPU).
      jobs.disarmData();
    } else {
      this.#ctl[CTL_SLEEPS] = ++this.#sleeps;
      if (jobs.sleepSync(seq, timeout) !== "timed-out") return;
      this.#lead.observe(performance.now() - start - timeout);
    }
    spinUntil(due, this.#hasJob);
  }

  #callAnswered(rec: RingRecord): void {
    const done = this.#calls.get(rec.id);
    if (done === undefined) return;
    this.#calls.delete(rec.id);
    const jobs = this.#jobs;
    let result: ThreadCallResult;
    if (rec.kind === KIND_CALL_REPLY) {
      result = {
        ok: true,
        status: rec.aux,
        meta: rec.metaLength === 0 ? [] : decodeMeta(jobs.takeMeta(rec)),
        body: jobs.takeBody(rec),
      };
    } else {
      result = {
        ok: false,
        code: rec.aux,
        kind: rec.metaLength > 0 ? jobs.metaText(rec) : errorCodeName[rec.aux] ?? "internal",
        message: jobs.bodyText(rec),
      };
    }
    // As from a tick: the loop publishes what the handler's continuation writes.
    const was = this.#inTick;
    this.#inTick = true;
    try {
      done(result);
    } finally {
      this.#inTick = was;
    }
  }

  /** Starts the jobs waiting on the thread while it runs fewer than its limit. */
  #startQueued(): boolean {
    let started = false;
    const q = this.#queued;
    while (this.#running < this.#maxRunning && this.#queuedHead < q.length) {
      const { ticket, req, serviceIndex } = q[this.#queuedHead];
      q[this.#queuedHead++] = undefined!;
      started = true;
      if (req.deadline !== undefined && performance.now() >= req.deadline) {
        // Its time ran out while it waited here: the main thread answered it already;
        // this reply only frees its slot.
        this.#running++;
        this.#finish(ticket, undefined, new Error("Timed out before it started"), true);
        continue;
      }
      // The reply of the job that made room goes out before this one runs (it may wait in
      // place: `block`).
      this.#replies.flush();
      this.#run(ticket, req, serviceIndex);
      this.#replies.flush();
    }
    if (this.#queuedHead === q.length && q.length > 0) {
      q.length = 0;
      this.#queuedHead = 0;
    }
    return started;
  }

  #run(ticket: number, req: HandlerRequest, serviceIndex: number): void {
    this.#running++;
    if (this.#ticking) {
      this.#startJob(ticket, req, serviceIndex);
      return;
    }
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = this.#runtime.handle(req, serviceIndex);
    } catch (err) {
      this.#finish(ticket, undefined, err, true);
      return;
    }
    if (isThenable(result)) {
      this.#ctl[CTL_ASYNC] = ++this.#async;
      result.then(
        (value) => this.#settled(ticket, value, undefined, false),
        (err) => this.#settled(ticket, undefined, err, true),
      );
    } else {
      this.#finish(ticket, result, undefined, false);
    }
  }

  /** Runs a job with the runtime's `start`: answered now, or by `done` from a later tick. */
  #startJob(ticket: number, req: HandlerRequest, serviceIndex: number): void {
    let answered = false;
    const done = (err: unknown, value?: HandlerResult) => {
      if (answered) return;
      answered = true;
      this.#waiting--;
      this.#finish(ticket, value, err, err !== undefined && err !== null);
      // From a tick the loop publishes; from a promise (a runtime waiting on the event
      // loop) publish here, and end the loop's asynchronous wait.
      if (!this.#inTick) this.#scheduleFlush();
    };
    this.#waiting++;
    let result: HandlerResult | undefined;
    try {
      result = this.#runtime.start!(req, serviceIndex, done);
    } catch (err) {
      if (!answered) {
        answered = true;
        this.#waiting--;
        this.#finish(ticket, undefined, err, true);
      }
      return;
    }
    if (result !== undefined && !answered) {
      answered = true;
      this.#waiting--;
      this.#finish(ticket, result, undefined, false);
    }
  }

  #scheduleFlush(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushSettled);
    }
  }

  #settled(ticket: number, value: HandlerResult | undefined, err: unknown, failed: boolean) {
    this.#ctl[CTL_ASYNC] = --this.#async;
    this.#finish(ticket, value, err, failed);
    this.#scheduleFlush();
  }

  #flushSettled = (): void => {
    this.#flushScheduled = false;
    this.#replies.flush();
    // A ticking runtime's job ended from a promise: back to the loop, which ticks again.
    // So too when a job waits on the thread, or when the loop waits lazily (a job published
    // since did not wake it, and a slot is free now).
    if (
      (this.#stopping && this.#async === 0) || this.#ticking ||
      this.#queuedHead < this.#queued.length || this.#waitsLazily
    ) this.#wake?.();
  };

  #finish(ticket: number, result: HandlerResult | undefined, err: unknown, failed: boolean) {
    this.#running--;
    this.#ctl[CTL_DONE] = ++this.#done;
    // An interrupt aimed at this job is spent.
    if (this.#ctl[CTL_INTERRUPT] === ticket) {
      Atomics.compareExchange(this.#ctl, CTL_INTERRUPT, ticket, 0);
    }
    this.#runtime.ended?.(ticket);
    if (failed) return this.#writeError(ticket, err);
    const reply = this.#reply;
    try {
      reply.set(result);
    } catch (problem) {
      return this.#writeError(ticket, problem);
    }
    this.#write(ticket, KIND_REPLY, reply.status, reply.meta, reply.body);
  }

  #writeError(ticket: number, err: unknown): void {
    const e = err instanceof Error ? err : new Error(String(err));
    const name = encoder.encode(e.name || "Error");
    // An enormous message or stack must not turn into a second failure: cut it to what
    // surely fits (3 UTF-8 bytes per UTF-16 unit at most).
    const room = Math.max(0, Math.floor((this.#replies.maxPayload - name.length) / 3));
    const text = `${e.message}\u0000${e.stack ?? ""}`.slice(0, Math.min(room, 8192));
    this.#write(ticket, KIND_ERROR, 0, name, text);
  }

  #write(
    ticket: number,
    kind: number,
    aux: number,
    meta: Uint8Array | null,
    body: Uint8Array | string,
  ): void {
    const replies = this.#replies;
    const size = (meta === null ? 0 : meta.length) +
      (typeof body === "string" ? utf8Length(body) : body.length);
    if (size > replies.maxPayload) {
      kind = KIND_TOO_LARGE;
      aux = 0;
      meta = null;
      body = String(size);
    }
    if (this.#held.length === 0) {
      const ok = typeof body === "string"
        ? replies.tryWriteText(ticket, kind, aux, meta, body)
        : replies.tryWrite(ticket, kind, aux, meta, body);
      if (ok) return;
    }
    // The reply ring is full: hold the reply (bounded by the jobs the main thread lets this
    // thread have) and retry when the main thread releases space.
    this.#held.push({ ticket, kind, aux, meta, body });
    this.#waitForSpace();
  }

  #waitForSpace(): void {
    if (this.#spaceWait) return;
    this.#spaceWait = true;
    const retry = () => {
      this.#spaceWait = false;
      const held = this.#held;
      const replies = this.#replies;
      let i = 0;
      for (; i < held.length; i++) {
        const h = held[i];
        const ok = typeof h.body === "string"
          ? replies.tryWriteText(h.ticket, h.kind, h.aux, h.meta, h.body)
          : replies.tryWrite(h.ticket, h.kind, h.aux, h.meta, h.body);
        if (!ok) break;
      }
      held.splice(0, i);
      replies.flush();
      if (held.length > 0) this.#waitForSpace();
      else this.#wake?.();
    };
    const h = this.#held[0];
    const size = (h.meta?.length ?? 0) +
      (typeof h.body === "string" ? utf8Length(h.body) : h.body.length);
    const wait = this.#replies.waitForSpaceAsync(size);
    if (wait === undefined) queueMicrotask(retry);
    else wait.then(retry);
  }
}

function isThenable(value: unknown): value is Promise<HandlerResult> {
  return value !== null && typeof value === "object" &&
    typeof (value as { then?: unknown }).then === "function";
}
