/**
 * The Prometheus text exposition format, version 0.0.4: {@linkcode ExpositionWriter}
 * writes each family once with its `# HELP` and `# TYPE`, escapes help and label values,
 * and writes a {@linkcode BucketHistogram} as cumulative buckets with `_sum` and `_count`. The
 * histogram has fixed buckets ({@linkcode SECONDS_BUCKETS} for times).
 *
 * Recording ({@linkcode BucketHistogram.observe}) runs once per job on the main thread: a bucket
 * search and an increment, no allocation. The text is written, and allocates, only when
 * someone scrapes. ep's own families (names, help, where the values come from) are in
 * `metrics.ts`.
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
 * A Prometheus histogram with fixed buckets: counts per bucket (not cumulative; the last one
 * is `+Inf`), sum and count. (The load generator's latency histogram, with its exact
 * percentiles, is another thing: `cli/loadgen/`.)
 *
 * @example
 * ```ts
 * import { BucketHistogram } from "./prometheus.ts";
 * const h = new BucketHistogram([0.1, 1]);
 * h.observe(0.05);
 * h.observe(5);
 * console.assert(h.count === 2 && h.counts[0] === 1 && h.counts[2] === 1);
 * ```
 */
export class BucketHistogram {
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
 * import { ExpositionWriter, BucketHistogram } from "./prometheus.ts";
 * const w = new ExpositionWriter();
 * w.family("ep_requests_total", "counter", "Jobs answered.");
 * w.sample("ep_requests_total", [["service", "echo"], ["outcome", "ok"]], 3);
 * const h = new BucketHistogram([0.1]);
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
  histogram(name: string, labels: Labels, h: BucketHistogram): void {
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
