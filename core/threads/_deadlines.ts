/**
 * Private: the pool's job deadlines. A job's deadline is a time in its slot of the thread's
 * tables (0 = none), also written to shared memory for the thread (a runtime that stops
 * handlers enforces it there, to the millisecond). On the main thread one timer is armed
 * at the earliest deadline only: it fires when a job outlives its time (or after the job
 * it was armed for finished, when it re-arms for the earliest left, if any), so a pool
 * whose jobs finish in time pays for about one timer per deadline's length, and an idle
 * pool holds at most one pending timer.
 *
 * Cut from `pool.ts` because the timer's life was written out at every place a deadline
 * ends; here it is written once. What an expired job means (fail it; take it back or ask
 * its thread to interrupt it) stays in the pool, which the timer calls.
 *
 * @module
 */

import type { Thread } from "./_thread.ts";
import { EarliestTimer } from "./_timer.ts";

/** Keeps one timer armed at the earliest deadline while some job has one. */
export class DeadlineClock {
  #jobs = 0;
  readonly #timer: EarliestTimer;

  /**
   * `onTick` runs when the earliest deadline may have passed; it fails what expired and
   * returns the earliest deadline left (`performance.now()` time), or Infinity.
   */
  constructor(onTick: () => number) {
    this.#timer = new EarliestTimer(() => {
      const next = onTick();
      return this.#jobs > 0 ? next : Infinity;
    });
  }

  /** Gives the job in `slot` of `t` a deadline `deadlineMs` from now. */
  set(t: Thread, slot: number, deadlineMs: number): void {
    const at = performance.now() + Math.max(0, deadlineMs);
    t.deadlines[slot] = at;
    t.deadlineMs[slot] = deadlineMs;
    t.sharedDeadlines[slot] = performance.timeOrigin + at;
    this.#jobs++;
    this.#timer.armBy(at);
  }

  /**
   * Removes the deadline of the job in `slot` of `t`, if it has one. The armed timer stays:
   * disarming and arming one per job costs more than letting it fire once, find nothing
   * due, and arm for whatever job is then the earliest.
   */
  clear(t: Thread, slot: number): void {
    if (t.deadlines[slot] !== 0) {
      t.deadlines[slot] = 0;
      t.sharedDeadlines[slot] = 0;
      this.#jobs--;
    }
  }

  /** Stops the timer (the pool closes). */
  stop(): void {
    this.#timer.stop();
  }
}
