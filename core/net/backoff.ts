/**
 * Capped, jittered exponential back-off: the delay before a reconnect or a retry. The same
 * rule everywhere a peer is tried again, so that many clients that lost the same server at
 * the same moment do not come back in step (a thundering herd).
 *
 * @module
 */

/**
 * The delay before try number `attempt` (0 for the first one after a failure): `firstMs`
 * doubled per attempt, capped at `maxMs`, then scaled by a random factor in [0.5, 1)
 * ("equal jitter"), so it lies in [cap/2, cap) and never exceeds `maxMs`.
 *
 * @example
 * ```ts
 * import { backoffMs } from "./backoff.ts";
 * const d = backoffMs(3, 100, 5_000); // between 400 and 800
 * console.assert(d >= 400 && d < 800);
 * console.assert(backoffMs(40, 100, 5_000, () => 0.999) < 5_000);
 * ```
 */
export function backoffMs(
  attempt: number,
  firstMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const cap = Math.min(maxMs, firstMs * 2 ** Math.min(Math.max(0, attempt), 52));
  return cap * (0.5 + random() / 2);
}
