/**
 * Private: timers for deadlines that may lie far ahead. `setTimeout` holds a delay of at
 * most 2^31 − 1 ms (about 24.8 days); a longer one fires after 1 ms (Deno, as Node, with a
 * `TimeoutOverflowWarning` on stderr), yet a job's deadline may be up to 2^32 − 1 ms away
 * (EP's `deadline_ms`, HTTP's `ep-timeout`). A timer armed through {@linkcode timerDelay}
 * fires at the deadline or earlier, never later; its callback checks the time and arms
 * again when the deadline is still ahead.
 *
 * @module
 */

/** The longest delay `setTimeout` holds, ms. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * The delay to give `setTimeout` for a deadline `ms` from now: rounded up, from 0 to
 * {@linkcode MAX_TIMER_DELAY_MS}.
 *
 * @example
 * ```ts
 * import { MAX_TIMER_DELAY_MS, timerDelay } from "./_timer.ts";
 * console.assert(timerDelay(2 ** 32) === MAX_TIMER_DELAY_MS && timerDelay(-5) === 0);
 * console.assert(timerDelay(1.2) === 2);
 * ```
 */
export function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_DELAY_MS, Math.max(0, Math.ceil(ms)));
}
