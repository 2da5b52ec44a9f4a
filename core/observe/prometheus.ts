/**
 * Building blocks of ep's metrics: a Prometheus histogram with fixed buckets, a sliding
 * window of log-scale buckets for quantiles (p50/p99 of the last minute), a ring of
 * per-second samples for sparklines, and a writer of the Prometheus text exposition format
 * (version 0.0.4).
 *
 * The recording side ({@linkcode Histogram.observe}, {@linkcode QuantileWindow.observe})
 * runs once per job on the main thread: a bucket search and an increment, no allocation.
 * Everything that allocates (exposition text, quantiles, series arrays) runs when someone
 * asks for them.
 *
 * @module
 */

/**
 * Bucket upper bounds, in seconds, of the queue-wait and service-time histograms: 100 µs to
 * 60 s in 1-2.5-5 steps. `+Inf` is implicit.
 *
 * @example
 * ```ts
 * import { SECONDS_BUCKETS } from "./prometheus.ts";
 * console.assert(SECONDS_BUCKETS[0] === 0.0001);
 * ```
 */
export const SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
]);

/**
 * A Prometheus histogram: counts per bucket (not cumulative; the last one is `+Inf`), sum
 * and count.
 *
 * @example
 * ```ts
 * import { Histogram } from "./prometheus.ts";
 * const h = new Histogram([0.1, 1]);
 * h.observe(0.05);
 * h.observe(5);
 * console.assert(h.count === 2 && h.counts[0] === 1 && h.counts[2] === 1);
 * ```
 */
export class Histogram {
  /** Upper bounds, ascending, without `+Inf`. */
  readonly bounds: readonly number[];
  /** Observations per bucket; index `bounds.length` is the `+Inf` bucket. */
  readonly counts: Float64Array;
  /** Sum of the observed values. */
  sum = 0;
  /** Number of observations. */
  count = 0;

  /** Creates a histogram with the given ascending upper bounds. */
  constructor(bounds: readonly number[] = SECONDS_BUCKETS) {
    for (let i = 1; i < bounds.length; i++) {
      if (!(bounds[i] > bounds[i - 1])) {
        throw new RangeError(`Histogram bounds must ascend: "${bounds.join(",")}"`);
      }
    }
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one value; NaN is ignored. */
  observe(value: number): void {
    if (value !== value) return;
    const b = this.bounds;
    let lo = 0;
    let hi = b.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (value <= b[mid]) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]++;
    this.sum += value;
    this.count++;
  }
}

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
 * import { QuantileWindow } from "./prometheus.ts";
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

/**
 * A ring of the last `length` samples (one a second for the sparklines). Missing samples
 * are NaN and come out as `null`.
 *
 * @example
 * ```ts
 * import { Series } from "./prometheus.ts";
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

/** Label pairs of one sample, in order. */
export type Labels = readonly (readonly [string, string])[];

/** The metric types ep exposes. */
export type MetricType = "counter" | "gauge" | "histogram";

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/**
 * Writes the Prometheus text exposition format 0.0.4: each family once, with `# HELP` and
 * `# TYPE` before its samples, samples of a family together, label values escaped.
 *
 * @example
 * ```ts
 * import { ExpositionWriter, Histogram } from "./prometheus.ts";
 * const w = new ExpositionWriter();
 * w.family("ep_requests_total", "counter", "Jobs answered.");
 * w.sample("ep_requests_total", [["service", "echo"], ["outcome", "ok"]], 3);
 * const h = new Histogram([0.1]);
 * h.observe(0.05);
 * w.family("ep_wait_seconds", "histogram", "Wait.");
 * w.histogram("ep_wait_seconds", [["service", "echo"]], h);
 * console.assert(w.text().includes('ep_wait_seconds_bucket{service="echo",le="+Inf"} 1'));
 * ```
 */
export class ExpositionWriter {
  #lines: string[] = [];
  #families = new Set<string>();
  #current = "";
  #type: MetricType = "gauge";
  #labelValue: (value: string) => string;

  /**
   * Creates a writer. `labelValue` turns a label value into the text shown, before the
   * format's own escaping (ep passes `escapeControls`: a value may be a peer's name).
   */
  constructor(options: { labelValue?: (value: string) => string } = {}) {
    this.#labelValue = options.labelValue ?? ((v) => v);
  }

  /** Starts a family: its help text and type. A family may be started once. */
  family(name: string, type: MetricType, help: string): void {
    if (!NAME_RE.test(name)) throw new TypeError(`Invalid metric name "${name}"`);
    if (this.#families.has(name)) throw new TypeError(`Metric family "${name}" written twice`);
    this.#families.add(name);
    this.#current = name;
    this.#type = type;
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
  }

  /** One sample of the current counter or gauge family. */
  sample(name: string, labels: Labels, value: number): void {
    if (name !== this.#current || this.#type === "histogram") {
      throw new TypeError(`Sample "${name}" outside its family "${this.#current}"`);
    }
    this.#lines.push(`${name}${this.#labels(labels)} ${formatValue(value)}`);
  }

  /** The series of one histogram of the current histogram family (cumulative buckets). */
  histogram(name: string, labels: Labels, h: Histogram): void {
    if (name !== this.#current || this.#type !== "histogram") {
      throw new TypeError(`Histogram "${name}" outside its family "${this.#current}"`);
    }
    let cumulative = 0;
    for (let i = 0; i <= h.bounds.length; i++) {
      cumulative += h.counts[i];
      const le = i < h.bounds.length ? formatValue(h.bounds[i]) : "+Inf";
      this.#lines.push(
        `${name}_bucket${this.#labels([...labels, ["le", le]])} ${formatValue(cumulative)}`,
      );
    }
    this.#lines.push(`${name}_sum${this.#labels(labels)} ${formatValue(h.sum)}`);
    this.#lines.push(`${name}_count${this.#labels(labels)} ${formatValue(h.count)}`);
  }

  #labels(labels: Labels): string {
    return renderLabels(labels, this.#labelValue);
  }

  /** The exposition, ending with a newline. */
  text(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function renderLabels(labels: Labels, show: (value: string) => string): string {
  if (labels.length === 0) return "";
  let out = "{";
  for (let i = 0; i < labels.length; i++) {
    const [k, v] = labels[i];
    if (!LABEL_RE.test(k) || k.startsWith("__")) throw new TypeError(`Invalid label "${k}"`);
    out += `${i > 0 ? "," : ""}${k}="${escapeLabel(show(v))}"`;
  }
  return out + "}";
}

function escapeLabel(v: string): string {
  return v.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

function escapeHelp(v: string): string {
  return v.replace(/[\\\n]/g, (c) => (c === "\n" ? "\\n" : "\\\\"));
}

function formatValue(v: number): string {
  if (v !== v) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
