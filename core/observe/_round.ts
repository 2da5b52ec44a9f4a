/**
 * Rounding of the numbers the status data and the metrics show.
 *
 * @module
 */

/** `v` rounded to `digits` decimals. */
export function round(v: number, digits: number): number {
  const f = Math.pow(10, digits);
  return Math.round(v * f) / f;
}
