/**
 * Private: a service's recent service times and their p95, the delay after which the
 * balancer hedges a job of the service (SPEC.md §9.10). A ring of the last
 * {@linkcode SERVICE_TIMES_KEPT} times; the p95 is their nearest-rank 95th percentile,
 * recomputed (a sort of at most 128 numbers) only when asked and only every
 * {@linkcode RESORT_EVERY} new times, so a service answering thousands of jobs a second
 * sorts a few hundred times a second at most.
 *
 * @module
 */

/** How many recent times are kept. */
export const SERVICE_TIMES_KEPT = 128;
/** Fewer times than this: no p95 yet (NaN), so no job is hedged by it. */
export const SERVICE_TIMES_MIN = 20;
/** New times between two sorts. */
const RESORT_EVERY = 8;

/**
 * The last {@linkcode SERVICE_TIMES_KEPT} service times of a service, in ms.
 *
 * @example
 * ```ts
 * import { ServiceTimes } from "./_service_times.ts";
 * const t = new ServiceTimes();
 * for (let i = 1; i <= 20; i++) t.add(i);
 * console.assert(t.p95() === 19);
 * ```
 */
export class ServiceTimes {
  #ring = new Float64Array(SERVICE_TIMES_KEPT);
  #sorted = new Float64Array(SERVICE_TIMES_KEPT);
  #count = 0;
  #next = 0;
  #p95 = NaN;
  #sinceSort = Infinity;

  /** Times kept (at most {@linkcode SERVICE_TIMES_KEPT}). */
  get count(): number {
    return this.#count;
  }

  /** Records one service time, ms; the oldest kept is forgotten when the ring is full. */
  add(ms: number): void {
    this.#ring[this.#next] = ms;
    this.#next = (this.#next + 1) % SERVICE_TIMES_KEPT;
    if (this.#count < SERVICE_TIMES_KEPT) this.#count++;
    this.#sinceSort++;
  }

  /**
   * The nearest-rank 95th percentile of the times kept (the ⌈0.95 n⌉-th smallest), as of
   * the last sort; NaN while fewer than {@linkcode SERVICE_TIMES_MIN} are kept.
   */
  p95(): number {
    const n = this.#count;
    if (n < SERVICE_TIMES_MIN) return NaN;
    if (this.#sinceSort >= RESORT_EVERY || Number.isNaN(this.#p95)) {
      const sorted = this.#sorted.subarray(0, n);
      sorted.set(this.#ring.subarray(0, n));
      sorted.sort();
      this.#p95 = sorted[Math.ceil(0.95 * n) - 1];
      this.#sinceSort = 0;
    }
    return this.#p95;
  }
}
