/**
 * How early a timed futex wait aims before its deadline (a handler thread's, and the
 * blocking clock of a one-slot worker's main thread).
 *
 * A timed `Atomics.wait` on this kind of machine wakes late by 23–130 µs even with a 1 µs
 * timer slack (measured on a Web Worker, 2 ms waits: p1 23, p10 26, p50 33, p99 99–128 µs),
 * and the floor of that overshoot is steady. So the thread learns a low quantile of it
 * ({@linkcode LEAD_QUANTILE}) and aims that much early; the few waits that then wake before
 * the deadline spin the microseconds left. Lateness drops by the floor, and the spin costs
 * next to nothing (at most {@linkcode MAX_LEAD_MS}, in about one wait in twenty).
 *
 * @module
 */

/** The quantile of a wait's overshoot that it aims early by. */
export const LEAD_QUANTILE = 0.05;
/** The most it aims early by, ms (so the most it may spin). */
export const MAX_LEAD_MS = 0.05;
/** How far one observation moves the estimate, ms. */
const STEP_MS = 0.004;

/**
 * A running estimate of a low quantile of how late timed waits wake (a stochastic quantile
 * estimate: up by `STEP × q` when a wait was later than it, down by `STEP × (1 − q)` when
 * earlier), bounded to [0, {@linkcode MAX_LEAD_MS}].
 *
 * @example
 * ```ts
 * import { WakeLead } from "./wake_lead.ts";
 * const lead = new WakeLead();
 * for (let i = 0; i < 2000; i++) lead.observe(0.03);
 * console.assert(Math.abs(lead.ms - 0.03) < 0.005);
 * ```
 */
export class WakeLead {
  #ms = 0;

  /** How early to aim, ms. */
  get ms(): number {
    return this.#ms;
  }

  /** A timed wait woke `overshootMs` after the time it asked for (it timed out). */
  observe(overshootMs: number): void {
    if (!Number.isFinite(overshootMs)) return;
    const below = overshootMs < this.#ms ? 1 : 0;
    const next = this.#ms + STEP_MS * (LEAD_QUANTILE - below);
    this.#ms = Math.min(MAX_LEAD_MS, Math.max(0, next));
  }
}

/**
 * Spins until `performance.now()` reaches `deadline` (at most a lead away), or until `stop`
 * says there is something better to do.
 */
export function spinUntil(deadline: number, stop?: () => boolean): void {
  while (performance.now() < deadline && !(stop?.() ?? false)) {
    // The few microseconds a timed wait aimed early by.
  }
}
