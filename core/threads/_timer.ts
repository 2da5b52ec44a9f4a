/**
 * Private: timers for deadlines that may lie far ahead. `setTimeout` holds a delay of at
 * most 2^31 − 1 ms (about 24.8 days); a longer one fires after 1 ms (Deno, as Node, with a
 * `TimeoutOverflowWarning` on stderr), yet a job's deadline may be up to 2^32 − 1 ms away
 * (EP's `deadline_ms`, HTTP's `ep-timeout`). A timer armed through {@linkcode timerDelay}
 * fires at the deadline or earlier, never later; its callback checks the time and arms
 * again when the deadline is still ahead. {@linkcode EarliestTimer} is one such timer kept at
 * the earliest of many deadlines (the pool's and the inline pool's job deadlines, and the
 * abort signals of a thread's TypeScript jobs).
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

/**
 * One timer for many deadlines, armed at the earliest asked for and never disarmed when a
 * deadline goes away: it fires, `onFire` handles what is due and returns the earliest
 * deadline left (`performance.now()` time; Infinity: none), and it arms for that. Disarming
 * and arming a timer per job costs more (≈ 5 µs of CPU per job) than one firing that finds
 * nothing due. Not what keeps a process alive (unref'd), unless made with `keepAlive`: then
 * an armed timer holds the event loop open, as a `setTimeout` does, until it fires or stops.
 *
 * @example
 * ```ts
 * import { EarliestTimer } from "./_timer.ts";
 * const t = new EarliestTimer(() => Infinity);
 * t.armBy(performance.now() + 60_000);
 * t.stop();
 * ```
 */
export class EarliestTimer {
  readonly #onFire: () => number;
  readonly #keepAlive: boolean;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;

  /**
   * `onFire` runs when the earliest deadline may have passed. With `keepAlive`, an armed
   * timer keeps the event loop running (a thread's job signals, which a test awaits).
   */
  constructor(onFire: () => number, options?: { keepAlive?: boolean }) {
    this.#onFire = onFire;
    this.#keepAlive = options?.keepAlive ?? false;
  }

  /** Makes sure it fires by `at` (`performance.now()` time). */
  armBy(at: number): void {
    if (at < this.#armedFor) this.#arm(at);
  }

  /** Stops it (the owner closes). */
  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Infinity;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedFor = at;
    // A deadline beyond what setTimeout holds: it fires early, finds nothing due, re-arms.
    this.#timer = setTimeout(this.#fire, timerDelay(at - performance.now()));
    if (!this.#keepAlive) Deno.unrefTimer(this.#timer);
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const next = this.#onFire();
    if (next < Infinity) this.#arm(next);
  };
}
