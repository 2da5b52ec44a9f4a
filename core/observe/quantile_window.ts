/**
 * Quantiles of the last minute, cheaply: a sliding window of log-scale buckets. The
 * monitor records each job's queue wait and service time in one (a bucket search and an
 * increment, no allocation) and reads the p50/p99 of the status data and the per-second
 * p99 of the sparklines from it.
 *
 * @module
 */

const Q_MIN = 1e-6; // seconds: everything at or below 1 µs shares bucket 0
const Q_GROWTH = 1.1;
const Q_LOG_GROWTH = Math.log(Q_GROWTH);
/** Buckets up to 1 µs · 1.1^194 ≈ 105 s; longer values share the last one. */
const Q_BUCKETS = 195;
const Q_SLOT_SECONDS = 5;

/**
 * Quantiles of the last minute: values are counted in log-scale buckets (each 10 % wider
 * than the previous, so a quantile is off by at most ±5 %), per second, folded into
 * five-second slots: the window covers the last 60 to 65 seconds.
 * {@linkcode QuantileWindow.tick} must be called once a second.
 *
 * @example
 * ```ts
 * import { QuantileWindow } from "./quantile_window.ts";
 * const w = new QuantileWindow();
 * for (let i = 1; i <= 100; i++) w.observe(i / 1000);
 * const p50 = w.quantile(0.5);
 * console.assert(p50 > 0.045 && p50 < 0.055);
 * ```
 */
export class QuantileWindow {
  #second = new Uint32Array(Q_BUCKETS);
  #secondCount = 0;
  #slots: Uint32Array[];
  #slotCounts: number[];
  #slot = 0;
  #ticks = 0;

  /** Creates a window of at least `seconds` (in whole five-second slots). Default 60. */
  constructor(seconds = 60) {
    // One slot more than the window: the slot being filled is only partly old.
    const n = Math.max(1, Math.ceil(seconds / Q_SLOT_SECONDS)) + 1;
    this.#slots = Array.from({ length: n }, () => new Uint32Array(Q_BUCKETS));
    this.#slotCounts = new Array(n).fill(0);
  }

  /** Records one value in seconds; NaN is ignored. */
  observe(seconds: number): void {
    if (seconds !== seconds) return;
    this.#second[bucketOf(seconds)]++;
    this.#secondCount++;
  }

  /**
   * Ends the current second: returns its `q` quantile (NaN when it saw nothing) and folds
   * it into the window.
   */
  tick(q: number): number {
    const value = quantileOf(this.#second, this.#secondCount, q);
    const slot = this.#slots[this.#slot];
    for (let i = 0; i < Q_BUCKETS; i++) slot[i] += this.#second[i];
    this.#slotCounts[this.#slot] += this.#secondCount;
    this.#second.fill(0);
    this.#secondCount = 0;
    if (++this.#ticks % Q_SLOT_SECONDS === 0) {
      this.#slot = (this.#slot + 1) % this.#slots.length;
      this.#slots[this.#slot].fill(0);
      this.#slotCounts[this.#slot] = 0;
    }
    return value;
  }

  /** Values in the window (the current second included). */
  get count(): number {
    let n = this.#secondCount;
    for (const c of this.#slotCounts) n += c;
    return n;
  }

  /** The `q` quantile (0–1) of the window in seconds, or NaN when it is empty. */
  quantile(q: number): number {
    const sum = this.#second.slice();
    let n = this.#secondCount;
    for (let s = 0; s < this.#slots.length; s++) {
      if (this.#slotCounts[s] === 0) continue;
      n += this.#slotCounts[s];
      const slot = this.#slots[s];
      for (let i = 0; i < Q_BUCKETS; i++) sum[i] += slot[i];
    }
    return quantileOf(sum, n, q);
  }
}

function bucketOf(seconds: number): number {
  if (seconds <= Q_MIN) return 0;
  const i = Math.ceil(Math.log(seconds / Q_MIN) / Q_LOG_GROWTH);
  return i >= Q_BUCKETS ? Q_BUCKETS - 1 : i;
}

/** The value standing for bucket `i`: the geometric middle of its bounds. */
function bucketValue(i: number): number {
  if (i === 0) return Q_MIN;
  return Q_MIN * Math.pow(Q_GROWTH, i - 0.5);
}

function quantileOf(buckets: Uint32Array, n: number, q: number): number {
  if (n === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * n));
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i];
    if (seen >= rank) return bucketValue(i);
  }
  return bucketValue(buckets.length - 1);
}
