/**
 * A ring of per-second samples: the history behind the status page's sparklines (rates,
 * queue depths, busy slots, p99 queue wait), kept for a few minutes.
 *
 * @module
 */

/**
 * A ring of the last `length` samples (one a second for the sparklines). Missing samples
 * are NaN and come out as `null`.
 *
 * @example
 * ```ts
 * import { Series } from "./series.ts";
 * const s = new Series(3);
 * s.push(1); s.push(2); s.push(3); s.push(4);
 * console.assert(s.toArray().join() === "2,3,4");
 * ```
 */
export class Series {
  #data: Float32Array;
  #next = 0;
  #size = 0;

  /** Creates an empty ring of `length` samples. */
  constructor(length: number) {
    this.#data = new Float32Array(length);
  }

  /** Appends a sample, dropping the oldest when full. */
  push(value: number): void {
    this.#data[this.#next] = value;
    this.#next = (this.#next + 1) % this.#data.length;
    if (this.#size < this.#data.length) this.#size++;
  }

  /** Samples held. */
  get size(): number {
    return this.#size;
  }

  /** The newest sample, or NaN. */
  get last(): number {
    if (this.#size === 0) return NaN;
    return this.#data[(this.#next - 1 + this.#data.length) % this.#data.length];
  }

  /** The samples, oldest first, rounded to `digits` decimals, NaN as null. */
  toArray(digits = 3): (number | null)[] {
    const out: (number | null)[] = new Array(this.#size);
    const start = (this.#next - this.#size + this.#data.length) % this.#data.length;
    const f = Math.pow(10, digits);
    for (let i = 0; i < this.#size; i++) {
      const v = this.#data[(start + i) % this.#data.length];
      out[i] = v !== v ? null : Math.round(v * f) / f;
    }
    return out;
  }

  /** Mean of the newest `n` samples that are numbers, or NaN. */
  mean(n: number): number {
    let sum = 0;
    let k = 0;
    for (let i = 1; i <= Math.min(n, this.#size); i++) {
      const v = this.#data[(this.#next - i + this.#data.length) % this.#data.length];
      if (v === v) {
        sum += v;
        k++;
      }
    }
    return k === 0 ? NaN : sum / k;
  }
}
