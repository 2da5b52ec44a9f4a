/**
 * Timers for `ep.sleep`, `ep.timer` and `ep.every`: a min-heap of deadlines
 * ({@linkcode TimerHeap}) and two ways of being woken for them.
 *
 * - On a handler thread ({@linkcode ThreadClock}) the heap has no timer at all: the thread's
 *   wait loop runs what is due and then blocks in one futex wait (`Atomics.wait` on its job
 *   ring's doorbell) with a timeout ending just before the next deadline (by the floor of
 *   how late such waits wake, learned: `core/threads/wake_lead.ts`). It wakes for a job, a
 *   message, or that deadline; a pending sleep costs nothing, and precision is the futex's
 *   less that floor (p50 ≈ 0.03 ms late here).
 * - Elsewhere (the main thread, tests: code that must keep the event loop turning),
 *   {@linkcode PreciseClock} drives itself. Deno's `setTimeout` fires 0.2–1.4 ms late
 *   (measured on 2.9.6) and a pending `Atomics.waitAsync` timeout does not keep a process
 *   alive, so one `setTimeout` per deadline does the bulk, aimed {@linkcode COARSE_LEAD_MS}
 *   early; the rest is waited out in short `Atomics.wait` slices ({@linkcode SLICE_MS})
 *   with an event-loop hop (`setImmediate`) between them and a spin for the last
 *   {@linkcode SPIN_MS}.
 *   Accurate, but it costs CPU per deadline: it is not what handler threads use.
 * - On a one-slot worker's main thread, where Lua runs inline (`lua/inline.ts`),
 *   {@linkcode BlockingClock} drives itself without a spin beyond a few microseconds: the
 *   same coarse `setTimeout`, then one blocking `Atomics.wait` for the last
 *   {@linkcode MAX_BLOCK_MS} at most (aimed early by the learned floor of its lateness, the
 *   rest spun, as on a handler thread), after one `setImmediate` hop so that what is queued
 *   for the event loop runs first (sockets that became readable meanwhile are read after the
 *   wait: Deno polls them when its loop parks). Precision is the futex's less that floor,
 *   the CPU cost one wake-up; the price is that the thread's event loop
 *   stands still for those last milliseconds, which a one-slot worker can afford (its one
 *   job is the one waiting; what arrives meanwhile is read right after).
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { spinUntil, WakeLead } from "../core/threads/wake_lead.ts";

/** How early the coarse `setTimeout` aims before a deadline. */
export const COARSE_LEAD_MS = 2;
/** Longest `Atomics.wait` slice. */
export const SLICE_MS = 0.25;
/** Below this much time left, spin. */
export const SPIN_MS = 0.3;
/** Longest blocking wait of {@linkcode BlockingClock}, ms. */
export const MAX_BLOCK_MS = 3;

/** A scheduled callback; pass it to {@linkcode PreciseClock.cancel}. */
export interface ClockEntry {
  /** `performance.now()` time it is due. */
  readonly deadline: number;
}

interface Entry extends ClockEntry {
  deadline: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A min-heap of deadlines (`performance.now()` time), with no timer of its own: whoever owns
 * it runs what is due ({@linkcode TimerHeap.runDue}) and learns when it next must
 * ({@linkcode TimerHeap.next}). A handler thread drives it from its wait loop, sleeping in
 * one futex wait until the next deadline ({@linkcode ThreadClock}); {@linkcode PreciseClock}
 * drives itself from the event loop.
 */
export class TimerHeap {
  #heap: Entry[] = [];
  #live = 0;
  #seq = 0;
  #onError: (err: unknown) => void;
  /** Set by {@linkcode TimerHeap.close}. */
  protected closed = false;

  /** `onError` receives what a callback throws. */
  constructor(onError: (err: unknown) => void) {
    this.#onError = onError;
  }

  /** Entries pending. */
  get size(): number {
    return this.#live;
  }

  /** Calls `fn` once `ms` milliseconds from now. */
  after(ms: number, fn: () => void): ClockEntry {
    return this.at(performance.now() + ms, fn);
  }

  /** Calls `fn` at `performance.now()` time `deadline` (at once, on a later run, if past). */
  at(deadline: number, fn: () => void): ClockEntry {
    if (this.closed) throw new TypeError("The clock is closed");
    const entry: Entry = { deadline, seq: this.#seq++, fn, cancelled: false };
    this.#push(entry);
    this.#live++;
    if (this.#heap[0] === entry) this.topChanged();
    return entry;
  }

  /** Cancels an entry; harmless when it already ran or was cancelled. */
  cancel(entry: ClockEntry): void {
    const e = entry as Entry;
    if (e.cancelled) return;
    e.cancelled = true;
    e.fn = noop;
    this.#live--;
  }

  /** Cancels everything. */
  close(): void {
    this.closed = true;
    for (const e of this.#heap) e.cancelled = true;
    this.#heap = [];
    this.#live = 0;
  }

  /** The earliest pending deadline, or Infinity. */
  next(): number {
    this.#dropCancelled();
    return this.#heap.length > 0 ? this.#heap[0].deadline : Infinity;
  }

  /** Runs every entry due at `now` (and those its callbacks make due), in deadline order. */
  runDue(now: number): void {
    while (this.#heap.length > 0 && this.#heap[0].deadline <= now) {
      const e = this.#pop();
      if (e.cancelled) continue;
      e.cancelled = true;
      this.#live--;
      try {
        e.fn();
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  /** Called when a new entry became the earliest; subclasses arm their timer there. */
  protected topChanged(): void {}

  #dropCancelled(): void {
    while (this.#heap.length > 0 && this.#heap[0].cancelled) this.#pop();
  }

  #push(e: Entry): void {
    const h = this.#heap;
    let i = h.length;
    h.push(e);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p])) break;
      h[i] = h[p];
      i = p;
    }
    h[i] = e;
  }

  #pop(): Entry {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(h[r], h[l]) ? r : l;
        if (!before(h[c], last)) break;
        h[i] = h[c];
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

/**
 * The clock of a handler thread that waits in one futex wait: the thread calls
 * {@linkcode TimerHeap.runDue} when it wakes and sleeps until {@linkcode TimerHeap.next}.
 * The wait ends early by the learned floor of a futex wait's lateness and spins the few
 * microseconds left when it woke before the deadline (`core/threads/wake_lead.ts`); a
 * pending deadline costs nothing while the thread sleeps.
 */
export class ThreadClock extends TimerHeap {}

/**
 * A {@linkcode TimerHeap} that drives itself from the event loop: a coarse `setTimeout` aimed
 * {@linkcode COARSE_LEAD_MS} before the earliest deadline while it is more than `nearMs`
 * away, then `setImmediate` hops into {@linkcode SelfDrivenClock.waitNear}, which waits out
 * the rest its own way ({@linkcode PreciseClock}: slices and a spin; {@linkcode BlockingClock}:
 * one blocking wait).
 */
abstract class SelfDrivenClock extends TimerHeap {
  #timeout: ReturnType<typeof setTimeout> | undefined;
  #timeoutFor = Infinity;
  #hopPending = false;
  readonly #nearMs: number;
  /** A cell nobody notifies: `Atomics.wait` on it sleeps for its timeout. */
  protected readonly cell = new Int32Array(new SharedArrayBuffer(4));

  constructor(onError: (err: unknown) => void, nearMs: number) {
    super(onError);
    this.#nearMs = nearMs;
  }

  /** Cancels everything and releases the timeout. */
  override close(): void {
    super.close();
    this.#disarm();
  }

  protected override topChanged(): void {
    this.#arm();
  }

  /**
   * Waits out the last of deadline `top` (at most `nearMs` away): true when it is due now,
   * false when it hopped ({@linkcode SelfDrivenClock.hop}) to look again later.
   */
  protected abstract waitNear(top: number): boolean;

  /** Looks again after one turn of the event loop. */
  protected hop(): void {
    if (this.#hopPending) return;
    this.#hopPending = true;
    setImmediate(this.#wake);
  }

  #arm(): void {
    const top = this.next();
    if (top === Infinity || this.closed) {
      this.#disarm();
      return;
    }
    const d = top - performance.now();
    if (d > this.#nearMs) {
      if (this.#timeout !== undefined && this.#timeoutFor === top) return;
      if (this.#timeout !== undefined) clearTimeout(this.#timeout);
      this.#timeoutFor = top;
      this.#timeout = setTimeout(this.#wake, Math.max(1, Math.floor(d - COARSE_LEAD_MS)));
    } else {
      this.#disarm();
      this.hop();
    }
  }

  #disarm(): void {
    if (this.#timeout !== undefined) clearTimeout(this.#timeout);
    this.#timeout = undefined;
    this.#timeoutFor = Infinity;
  }

  #wake = (): void => {
    this.#timeout = undefined;
    this.#timeoutFor = Infinity;
    this.#hopPending = false;
    if (this.closed) return;
    const top = this.next();
    if (top === Infinity) return;
    if (top - performance.now() > this.#nearMs) {
      this.#arm(); // the coarse timer came early
      return;
    }
    if (!this.waitNear(top)) return;
    this.runDue(performance.now());
    this.#arm();
  };
}

/**
 * A {@linkcode TimerHeap} that drives itself from the event loop, for engines not run by a
 * handler thread's wait loop (tests, the main thread); see the module docs.
 */
export class PreciseClock extends SelfDrivenClock {
  /** `onError` receives what a callback throws. */
  constructor(onError: (err: unknown) => void) {
    super(onError, COARSE_LEAD_MS + 1);
  }

  protected override waitNear(top: number): boolean {
    let left = top - performance.now();
    if (left > SPIN_MS) {
      // Near: sleep one slice, then let the event loop run before looking again.
      Atomics.wait(this.cell, 0, 0, Math.min(SLICE_MS, left - SPIN_MS));
      left = top - performance.now();
      if (left > SPIN_MS) {
        this.hop();
        return false;
      }
    }
    while (performance.now() < top) { /* spin for the last fraction */ }
    return true;
  }
}

/**
 * A {@linkcode TimerHeap} for a thread that serves sockets and may block for a moment: a
 * one-slot worker's main thread running Lua inline. No spin and no slices: a coarse
 * `setTimeout` aimed {@linkcode COARSE_LEAD_MS} early, then one `Atomics.wait` for what is
 * left (at most {@linkcode MAX_BLOCK_MS}), after a `setImmediate` hop so that what is queued
 * for the event loop runs first (bytes that arrive meanwhile are read after the wait).
 */
export class BlockingClock extends SelfDrivenClock {
  /** Times the thread blocked for a deadline (for tests and benchmarks). */
  blocks = 0;
  readonly #lead = new WakeLead();

  /** `onError` receives what a callback throws. */
  constructor(onError: (err: unknown) => void) {
    super(onError, MAX_BLOCK_MS);
  }

  protected override waitNear(top: number): boolean {
    // Aimed early by the floor of how late such waits wake; the rest is spun (wake_lead.ts).
    const start = performance.now();
    const wait = top - start - this.#lead.ms;
    if (wait > 0) {
      this.blocks++;
      Atomics.wait(this.cell, 0, 0, wait);
      this.#lead.observe(performance.now() - start - wait);
    }
    spinUntil(top);
    return true;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.deadline < b.deadline || (a.deadline === b.deadline && a.seq < b.seq);
}

function noop(): void {}
