/**
 * The latency histogram of the load generator: HDR-like, exact for values under 256 µs,
 * then log-linear buckets 1/128 of a power of two wide (under 0.8 % of the value). (Not
 * the fixed Prometheus buckets of the status metrics in `core/observe/`.)
 *
 * ## Percentiles
 *
 * The p-th percentile is the value at rank ⌈p/100 · n⌉ among the n recorded values, sorted
 * (nearest rank, no interpolation), reported as the upper edge of its bucket and clamped to
 * the exact minimum and maximum. `max` is exact. Histograms merge by adding counts.
 *
 * @module
 */

const SUB_BITS = 8;
const SUB = 1 << SUB_BITS; // 256: values below are exact
const HALF = SUB >> 1; // 128 buckets per power of two above
const TOP_EXP = 32 - SUB_BITS; // values up to 2^32 - 1
const BUCKETS = SUB + TOP_EXP * HALF;
const MAX_VALUE = 0xffffffff;

function bucketOf(v: number): number {
  if (v < SUB) return v;
  const e = 31 - Math.clz32(v) - (SUB_BITS - 1);
  return SUB + (e - 1) * HALF + ((v >>> e) - HALF);
}

function bucketLow(i: number): number {
  if (i < SUB) return i;
  const j = i - SUB;
  const e = Math.floor(j / HALF) + 1;
  return ((j % HALF) + HALF) * 2 ** e;
}

function bucketHigh(i: number): number {
  if (i < SUB) return i;
  const e = Math.floor((i - SUB) / HALF) + 1;
  return bucketLow(i) + 2 ** e - 1;
}

/** A histogram as JSON: exact summary figures and the non-empty buckets. */
export interface LatencyHistogramJson {
  /** Unit of the values (`"us"` for latencies). */
  unit: string;
  /** Values recorded. */
  count: number;
  /** Exact smallest value, or 0 when empty. */
  min: number;
  /** Exact largest value, or 0 when empty. */
  max: number;
  /** Exact mean, or 0 when empty. */
  mean: number;
  /** `[lowest value of the bucket, count]` for every non-empty bucket, ascending. */
  buckets: [number, number][];
}

/**
 * An HDR-like histogram of non-negative values (microseconds, in practice): exact below
 * 256, then log-linear buckets under 0.8 % wide, up to 2³² − 1 (larger values are
 * clamped). See the module docs for the percentile definition.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "./latency_histogram.ts";
 * const h = new LatencyHistogram();
 * for (let v = 1; v <= 1000; v++) h.record(v);
 * console.assert(h.percentile(10) === 100); // exact below 256
 * console.assert(h.percentile(50) >= 500 && h.percentile(50) / 500 < 1.008); // upper edge
 * console.assert(h.percentile(99) >= 990 && h.percentile(99) / 990 < 1.008);
 * ```
 */
export class LatencyHistogram {
  #counts = new Float64Array(BUCKETS);
  #count = 0;
  #min = Infinity;
  #max = 0;
  #sum = 0;
  /** Unit of the values, for JSON and reports. */
  readonly unit: string;

  /** Creates an empty histogram. */
  constructor(unit = "us") {
    this.unit = unit;
  }

  /** Records one value (rounded to an integer; negative values count as 0). */
  record(value: number): void {
    const v = value > 0 ? Math.min(MAX_VALUE, Math.round(value)) : 0;
    this.#counts[bucketOf(v)]++;
    this.#count++;
    this.#sum += v;
    if (v < this.#min) this.#min = v;
    if (v > this.#max) this.#max = v;
  }

  /** Values recorded. */
  get count(): number {
    return this.#count;
  }

  /** Exact smallest value (0 when empty). */
  get min(): number {
    return this.#count === 0 ? 0 : this.#min;
  }

  /** Exact largest value (0 when empty). */
  get max(): number {
    return this.#max;
  }

  /** Exact mean (0 when empty). */
  get mean(): number {
    return this.#count === 0 ? 0 : this.#sum / this.#count;
  }

  /**
   * The p-th percentile (0–100): the value at nearest rank ⌈p/100 · n⌉, as its bucket's
   * upper edge, clamped to the exact min and max. 0 when empty.
   */
  percentile(p: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * this.#count));
    let seen = 0;
    const counts = this.#counts;
    for (let i = 0; i < BUCKETS; i++) {
      seen += counts[i];
      if (seen >= rank) return Math.min(this.#max, Math.max(this.#min, bucketHigh(i)));
    }
    return this.#max;
  }

  /** Adds every value of `other` to this histogram. */
  merge(other: LatencyHistogram): this {
    const a = this.#counts;
    const b = other.#counts;
    for (let i = 0; i < BUCKETS; i++) a[i] += b[i];
    if (other.#count > 0) {
      this.#count += other.#count;
      this.#sum += other.#sum;
      if (other.#min < this.#min) this.#min = other.#min;
      if (other.#max > this.#max) this.#max = other.#max;
    }
    return this;
  }

  /** Non-empty buckets as `[upper edge, count]`, ascending (for plots). */
  *buckets(): Generator<[number, number]> {
    const counts = this.#counts;
    for (let i = 0; i < BUCKETS; i++) {
      if (counts[i] > 0) yield [Math.min(this.#max, bucketHigh(i)), counts[i]];
    }
  }

  /** The histogram as JSON (lossless: {@linkcode LatencyHistogram.fromJSON} restores it). */
  toJSON(): LatencyHistogramJson {
    const buckets: [number, number][] = [];
    const counts = this.#counts;
    for (let i = 0; i < BUCKETS; i++) if (counts[i] > 0) buckets.push([bucketLow(i), counts[i]]);
    return {
      unit: this.unit,
      count: this.#count,
      min: this.min,
      max: this.#max,
      mean: this.mean,
      buckets,
    };
  }

  /** Restores a histogram written by {@linkcode LatencyHistogram.toJSON}. */
  static fromJSON(json: LatencyHistogramJson): LatencyHistogram {
    const h = new LatencyHistogram(json.unit);
    for (const [low, n] of json.buckets) h.#counts[bucketOf(Math.min(MAX_VALUE, low))] += n;
    h.#count = json.count;
    h.#min = json.count === 0 ? Infinity : json.min;
    h.#max = json.max;
    h.#sum = json.mean * json.count;
    return h;
  }
}

/** The usual figures of a histogram. */
export interface Percentiles {
  /** Values recorded. */
  count: number;
  /** Exact minimum. */
  min: number;
  /** Exact mean. */
  mean: number;
  /** Median. */
  p50: number;
  /** 90th percentile. */
  p90: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Exact maximum. */
  max: number;
}

/**
 * p50, p90, p99, p99.9, max (and count, min, mean) of a histogram.
 *
 * @example
 * ```ts
 * import { LatencyHistogram, percentiles } from "./latency_histogram.ts";
 * const h = new LatencyHistogram();
 * h.record(100);
 * console.assert(percentiles(h).p99 === 100);
 * ```
 */
export function percentiles(h: LatencyHistogram): Percentiles {
  return {
    count: h.count,
    min: h.min,
    mean: Math.round(h.mean * 10) / 10,
    p50: h.percentile(50),
    p90: h.percentile(90),
    p99: h.percentile(99),
    p999: h.percentile(99.9),
    max: h.max,
  };
}
