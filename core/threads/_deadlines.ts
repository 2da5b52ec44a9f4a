/**
 * Private: the pool's job deadlines. A job's deadline is a time in its slot of the thread's
 * tables (0 = none); one interval timer checks them every `DEADLINE_TICK_MS` while at least
 * one job has a deadline, and stops when none has, so an idle pool holds no timer.
 *
 * Cut from `pool.ts` because the timer's life (started by the first deadline, stopped with
 * the last) was written out at every place a deadline ends; here it is written once. What
 * an expired job means (fail it; take it back or ask its thread to interrupt it) stays in
 * the pool, which the timer calls.
 *
 * @module
 */

import type { Thread } from "./_thread.ts";

const DEADLINE_TICK_MS = 5;

/** Keeps the deadline timer running exactly while some job has a deadline. */
export class DeadlineClock {
  readonly #onTick: () => void;
  #jobs = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  /** `onTick` runs every few milliseconds while some job has a deadline. */
  constructor(onTick: () => void) {
    this.#onTick = onTick;
  }

  /** Gives the job in `slot` of `t` a deadline `deadlineMs` from now. */
  set(t: Thread, slot: number, deadlineMs: number): void {
    t.deadlines[slot] = performance.now() + Math.max(0, deadlineMs);
    t.deadlineMs[slot] = deadlineMs;
    if (this.#jobs++ === 0) {
      this.#timer = setInterval(this.#onTick, DEADLINE_TICK_MS);
    }
  }

  /** Removes the deadline of the job in `slot` of `t`, if it has one. */
  clear(t: Thread, slot: number): void {
    if (t.deadlines[slot] !== 0) {
      t.deadlines[slot] = 0;
      if (--this.#jobs === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    }
  }

  /** Stops the timer (the pool closes). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
