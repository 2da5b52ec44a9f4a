/**
 * The load generator behind `ep bench` and the head-to-head benchmark
 * (`tests/bench/compare.ts`): open-loop Poisson arrivals (or a closed loop of N requests in
 * flight), over EP or HTTP/1.1, against any service.
 *
 * ## Measuring without coordinated omission
 *
 * In the open loop every request has an *intended* send time, fixed before the run from a
 * seeded schedule ({@linkcode poissonSchedule}). Its latency is measured from that
 * intended time to the moment its answer is read, so a generator that falls behind, a
 * connection that is not free, or a server that stalls the generator all show up as
 * latency instead of hiding it. How far the generator itself fell behind is reported as
 * the *send lag* (actual − intended send time) next to its own CPU use, so that a
 * generator that became the bottleneck is visible.
 *
 * Timing: the main thread never spins for long and never blocks. A small clock thread
 * (a Web Worker) waits in `Atomics.wait` until shortly before the next intended time
 * (no CPU, ≈ 0.1 ms late) and wakes the main thread through `Atomics.waitAsync`, with a
 * `setTimeout` 2 ms later as a safety net (Deno may defer a `waitAsync` wake-up until its
 * event loop turns); the main thread spins for at most {@linkcode LoadOptions.spinMicros}
 * to hit the time, then sends every request that is due, and also sends due requests
 * whenever an answer arrives. Deno's `setTimeout` alone fires 1–1.5 ms late, too coarse
 * for millisecond jobs. Measured on an idle 2-core VM at 1 700 arrivals/s: send lag p50
 * ≈ 50 µs, p99 ≈ 1 ms, about 10 % of a core.
 *
 * Connections: EP pipelines over one or a few connections ({@linkcode LoadOptions.connections}).
 * HTTP sends one request per connection at a time (no pipelining): a pool of keep-alive
 * connections, opened ahead of the run and grown on demand up to
 * {@linkcode LoadOptions.maxConnections}; a request that finds every connection busy at the
 * cap waits (a *stall*, counted) and its wait counts in its latency.
 *
 * ## Percentiles
 *
 * Latencies are kept in a {@linkcode Histogram}: exact for values under 256 µs, then
 * log-linear buckets 1/128 of a power of two wide (under 0.8 % of the value). The p-th
 * percentile is the value at rank ⌈p/100 · n⌉ among the n recorded values, sorted (nearest
 * rank, no interpolation), reported as the upper edge of its bucket and clamped to the
 * exact minimum and maximum. `max` is exact. Histograms merge by adding counts.
 *
 * @module
 */
import process from "node:process";
import { type Client, connect as epConnect, ConnectionClosedError } from "../../core/net/client.ts";
import { JobError } from "../../core/job.ts";
import { type HttpResponse, HttpResponseParser } from "../../protocol/http_response_parser.ts";
import { connect as tcpConnect, type TcpTransport } from "../../core/net/transport.ts";

// ---------------------------------------------------------------------------------------
// Histogram

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
export interface HistogramJson {
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
 * import { Histogram } from "./loadgen.ts";
 * const h = new Histogram();
 * for (let v = 1; v <= 1000; v++) h.record(v);
 * console.assert(h.percentile(10) === 100); // exact below 256
 * console.assert(h.percentile(50) >= 500 && h.percentile(50) / 500 < 1.008); // upper edge
 * console.assert(h.percentile(99) >= 990 && h.percentile(99) / 990 < 1.008);
 * ```
 */
export class Histogram {
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
  merge(other: Histogram): this {
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

  /** The histogram as JSON (lossless: {@linkcode Histogram.fromJSON} restores it). */
  toJSON(): HistogramJson {
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

  /** Restores a histogram written by {@linkcode Histogram.toJSON}. */
  static fromJSON(json: HistogramJson): Histogram {
    const h = new Histogram(json.unit);
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
 * import { Histogram, percentiles } from "./loadgen.ts";
 * const h = new Histogram();
 * h.record(100);
 * console.assert(percentiles(h).p99 === 100);
 * ```
 */
export function percentiles(h: Histogram): Percentiles {
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

// ---------------------------------------------------------------------------------------
// Seeded randomness, job-time mixes, schedules

/**
 * A seeded pseudo-random generator (sfc32, seeded through splitmix32): the same seed gives
 * the same sequence on every machine. Returns numbers in [0, 1).
 *
 * @example
 * ```ts
 * import { createRng } from "./loadgen.ts";
 * const a = createRng(42), b = createRng(42);
 * console.assert(a() === b() && a() < 1);
 * ```
 */
export function createRng(seed: number): () => number {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(), b = split(), c = split(), d = split();
  return () => {
    a >>>= 0;
    b >>>= 0;
    c >>>= 0;
    d >>>= 0;
    const t = (a + b + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) >>> 0;
    return t / 4294967296;
  };
}

/** One entry of a job-time mix: `ms` milliseconds with probability `p`. */
export interface MixEntry {
  /** Job time in milliseconds. */
  ms: number;
  /** Probability, 0–1. */
  p: number;
}

/**
 * Parses a job-time mix `ms@probability,…` such as `1@0.9,20@0.1`. A single `ms` (no `@`)
 * means that time always. Probabilities must sum to 1 (± 0.001).
 *
 * @throws {RangeError} on a malformed entry or probabilities that do not sum to 1.
 *
 * @example
 * ```ts
 * import { parseMix } from "./loadgen.ts";
 * console.assert(parseMix("1@0.9,20@0.1")[1].ms === 20);
 * console.assert(parseMix("2")[0].p === 1);
 * ```
 */
export function parseMix(text: string): MixEntry[] {
  const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) throw new RangeError(`Empty job-time mix "${text}"`);
  const out: MixEntry[] = [];
  for (const part of parts) {
    const m = /^(\d+(?:\.\d+)?)(?:@(\d*(?:\.\d+)?))?$/.exec(part);
    if (!m || (m[2] !== undefined && m[2] === "")) {
      throw new RangeError(`Invalid mix entry "${part}": expected ms@probability`);
    }
    const ms = Number(m[1]);
    const p = m[2] === undefined ? (parts.length === 1 ? 1 : NaN) : Number(m[2]);
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Invalid probability in mix entry "${part}"`);
    out.push({ ms, p });
  }
  const sum = out.reduce((n, e) => n + e.p, 0);
  if (Math.abs(sum - 1) > 0.001) {
    throw new RangeError(`Mix probabilities sum to ${sum}, not 1: "${text}"`);
  }
  return out;
}

/**
 * The mean job time of a mix, in milliseconds.
 *
 * @example
 * ```ts
 * import { mixMean, parseMix } from "./loadgen.ts";
 * console.assert(Math.abs(mixMean(parseMix("1@0.9,20@0.1")) - 2.9) < 1e-9);
 * ```
 */
export function mixMean(mix: readonly MixEntry[]): number {
  return mix.reduce((n, e) => n + e.ms * e.p, 0);
}

/** The intended send times of a run, and the job time of each request when there is a mix. */
export interface Schedule {
  /** Intended send times in ms from the start of the run, ascending. */
  at: Float64Array;
  /** Job time of each request in ms, when a mix was given. */
  jobMs: Float64Array | null;
}

/** Options for {@linkcode poissonSchedule}. */
export interface ScheduleOptions {
  /** Mean arrivals per second. */
  rate: number;
  /** Length of the run in ms. */
  durationMs: number;
  /** Seed: the same seed, rate, duration and mix give the same schedule. */
  seed: number;
  /** Job-time mix, drawn per request from its own seeded stream. */
  mix?: readonly MixEntry[];
}

/**
 * A seeded Poisson arrival sequence (exponential gaps) with a job time per request.
 *
 * @example
 * ```ts
 * import { parseMix, poissonSchedule } from "./loadgen.ts";
 * const s = poissonSchedule({ rate: 1000, durationMs: 1000, seed: 1, mix: parseMix("1@0.5,2@0.5") });
 * console.assert(s.at.length > 900 && s.at.length < 1100 && s.jobMs!.length === s.at.length);
 * ```
 */
export function poissonSchedule(options: ScheduleOptions): Schedule {
  const { rate, durationMs, seed, mix } = options;
  if (!(rate > 0) || !(durationMs > 0)) {
    throw new RangeError(`Rate and duration must be positive: "${rate}", "${durationMs}"`);
  }
  const arrivals = createRng(seed);
  const times: number[] = [];
  const meanGap = 1000 / rate;
  let t = 0;
  for (;;) {
    t += -Math.log(1 - arrivals()) * meanGap;
    if (t >= durationMs) break;
    times.push(t);
  }
  const at = Float64Array.from(times);
  let jobMs: Float64Array | null = null;
  if (mix && mix.length > 0) {
    const draw = mixSampler(mix, seed);
    jobMs = new Float64Array(at.length);
    for (let i = 0; i < at.length; i++) jobMs[i] = draw();
  }
  return { at, jobMs };
}

/**
 * Draws job times from a mix with its own seeded stream (the one {@linkcode poissonSchedule}
 * uses for the same seed).
 *
 * @example
 * ```ts
 * import { mixSampler, parseMix } from "./loadgen.ts";
 * const draw = mixSampler(parseMix("1@0.5,3@0.5"), 7);
 * console.assert([1, 3].includes(draw()));
 * ```
 */
export function mixSampler(mix: readonly MixEntry[], seed: number): () => number {
  const draw = createRng((seed ^ 0x5bd1e995) >>> 0);
  return () => {
    let u = draw();
    for (const e of mix) {
      if (u < e.p) return e.ms;
      u -= e.p;
    }
    return mix[mix.length - 1].ms;
  };
}

/**
 * The ideal central queue for a schedule: `servers` identical servers fed from one FIFO
 * queue with zero dispatch cost (the M/G/k discipline), each job holding a server for
 * exactly its job time. Returns each job's response time (wait + job) in µs: the floor
 * any real balancer can be compared with for the same arrivals.
 *
 * @example
 * ```ts
 * import { simulateCentralQueue } from "./loadgen.ts";
 * const h = simulateCentralQueue({ at: new Float64Array([0, 0, 0]), jobMs: new Float64Array([2, 2, 2]) }, 2);
 * console.assert(h.max === 4000 && h.min === 2000);
 * ```
 */
export function simulateCentralQueue(schedule: Schedule, servers: number): Histogram {
  if (!schedule.jobMs) throw new TypeError("The schedule has no job times (no mix)");
  if (!(servers >= 1)) throw new RangeError(`Servers must be at least 1: "${servers}"`);
  const free = new Float64Array(servers);
  const h = new Histogram();
  const { at, jobMs } = schedule;
  for (let i = 0; i < at.length; i++) {
    let k = 0;
    for (let j = 1; j < servers; j++) if (free[j] < free[k]) k = j;
    const start = Math.max(at[i], free[k]);
    free[k] = start + jobMs[i];
    h.record((free[k] - at[i]) * 1000);
  }
  return h;
}

// ---------------------------------------------------------------------------------------
// The clock thread

const CLOCK_SOURCE = `
self.onmessage = (e) => {
  const ctl = new Int32Array(e.data, 0, 4);
  const target = new Float64Array(e.data, 16, 1);
  let fired = 0;
  for (;;) {
    const s = Atomics.load(ctl, 0);
    if (s < 0) break;
    if (s === fired) { Atomics.wait(ctl, 0, s); continue; }
    const left = target[0] - (performance.timeOrigin + performance.now());
    if (left > 0) { Atomics.wait(ctl, 0, s, left); continue; }
    fired = s;
    Atomics.store(ctl, 1, s);
    Atomics.notify(ctl, 1);
  }
  self.close();
};
`;

/**
 * Wakes the main thread at a `performance.now()` time, to about 0.1 ms, without spinning
 * and without blocking the event loop: a Web Worker waits in `Atomics.wait` and rings the
 * main thread through `Atomics.waitAsync`. Falls back to `setTimeout` where workers are
 * unavailable.
 */
class AlarmClock {
  #ctl: Int32Array | null = null;
  #target: Float64Array | null = null;
  #worker: Worker | null = null;
  #seq = 0;
  readonly precise: boolean;

  constructor() {
    try {
      const sab = new SharedArrayBuffer(32);
      const url = URL.createObjectURL(new Blob([CLOCK_SOURCE], { type: "text/javascript" }));
      this.#worker = new Worker(url, { type: "module" });
      URL.revokeObjectURL(url);
      this.#ctl = new Int32Array(sab, 0, 4);
      this.#target = new Float64Array(sab, 16, 1);
      this.#worker.postMessage(sab);
      this.precise = true;
    } catch {
      this.precise = false;
    }
  }

  /** Resolves at or after `t` (`performance.now()` time). */
  async waitUntil(t: number): Promise<void> {
    const ctl = this.#ctl;
    if (!ctl || !this.#target) {
      const left = t - performance.now();
      if (left > 0) await new Promise((r) => setTimeout(r, left));
      return;
    }
    const s = this.#seq = (this.#seq + 1) & 0x3fffffff;
    this.#target[0] = performance.timeOrigin + t;
    Atomics.store(ctl, 0, s);
    Atomics.notify(ctl, 0);
    while (Atomics.load(ctl, 1) !== s && performance.now() < t) {
      const r = Atomics.waitAsync(ctl, 1, Atomics.load(ctl, 1));
      if (!r.async) continue;
      // Deno resolves `waitAsync` only when its event loop turns (denoland/deno#15358): a
      // timer 2 ms past the target makes sure it turns, so a lost wake-up costs 2 ms, not a
      // stall (the send lag shows it).
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        r.value,
        new Promise((res) => timer = setTimeout(res, Math.max(0, t - performance.now()) + 2)),
      ]);
      clearTimeout(timer);
    }
  }

  close(): void {
    if (this.#ctl) {
      Atomics.store(this.#ctl, 0, -1);
      Atomics.notify(this.#ctl, 0);
    }
    this.#worker?.terminate();
    this.#worker = null;
  }
}

// ---------------------------------------------------------------------------------------
// Senders

/** What a request ended with. */
interface Outcome {
  /** Error kind, or null for a success. */
  error: string | null;
  /** Job time the server reported (`x-slept-us`), in µs, or -1. */
  sleptUs: number;
}

type Done = (outcome: Outcome) => void;

interface Sender {
  /** Sends request `i` (job time `jobMs`, or NaN) and calls `done` once with its outcome. */
  send(jobMs: number, done: Done): void;
  /** Requests waiting for a connection (HTTP at its cap). */
  readonly waiting: number;
  /** Requests that had to wait for a connection because of the cap. */
  readonly stalls: number;
  /** Connections opened so far. */
  readonly opened: number;
  /** Fails what is outstanding with `kind` and closes every connection. */
  close(kind: string): void;
}

const enc = new TextEncoder();
const SLEPT_KEY = "x-slept-us";

/** What to send: the target of a run. */
export interface Target {
  /** `ep` (EP, pipelined) or `http` (HTTP/1.1 keep-alive, one request per connection). */
  protocol: "ep" | "http";
  /** Server address, `host:port`. */
  addr: string;
  /** Service name (EP), and by default the first path segment (HTTP). */
  service: string;
  /** HTTP path; default `/<service>`. */
  path?: string;
  /** Request body when there is no job-time mix. */
  body?: Uint8Array;
  /** Header fields (HTTP) or metadata (EP). */
  headers?: [string, string][];
  /** EP token. */
  token?: string;
}

/**
 * The request for a job time: with a mix (`jobMs` a number), EP sends the number as the
 * body and HTTP as `?ms=N` (the `sleep` service reads either); otherwise the fixed body.
 */
function epBody(target: Target, jobMs: number): Uint8Array {
  if (!Number.isNaN(jobMs)) return enc.encode(String(jobMs));
  return target.body ?? new Uint8Array(0);
}

async function epSender(
  target: Target,
  connections: number,
  timeoutMs: number,
): Promise<Sender> {
  const clients: Client[] = [];
  try {
    for (let i = 0; i < connections; i++) {
      clients.push(await epConnect(target.addr, { token: target.token, timeoutMs }));
    }
  } catch (err) {
    for (const c of clients) c.close();
    throw err;
  }
  let rr = 0;
  const meta = target.headers ?? [];
  const options = { timeoutMs, meta };
  return {
    waiting: 0,
    stalls: 0,
    opened: connections,
    send(jobMs, done) {
      const c = clients[rr];
      rr = (rr + 1) % clients.length;
      c.request(target.service, epBody(target, jobMs), options).then((reply) => {
        let slept = -1;
        for (const [k, v] of reply.meta) if (k === SLEPT_KEY) slept = Number(v);
        done({
          error: reply.status >= 200 && reply.status < 300 ? null : `status_${reply.status}`,
          sleptUs: slept,
        });
      }, (err) => {
        done({
          error: err instanceof JobError
            ? err.kind
            : err instanceof ConnectionClosedError
            ? "closed"
            : "internal",
          sleptUs: -1,
        });
      });
    },
    close() {
      for (const c of clients) c.close();
    },
  };
}

interface HttpRequest {
  jobMs: number;
  done: Done;
  queuedAt: number;
}

class HttpConn {
  t: TcpTransport | null = null;
  /** Reads the responses (strict, incremental; see `protocol/http_response_parser.ts`). */
  parser: HttpResponseParser | null = null;
  current: HttpRequest | null = null;
  sentAt = 0;
  dead = false;
  /** The server closed the connection: a response it cut short counts as `closed`. */
  ending = false;
  /** What to do once the chunk that completed a response is consumed. */
  after = AFTER_NONE;
}

const AFTER_NONE = 0;
const AFTER_RELEASE = 1;
const AFTER_CLOSE = 2;

/** The outcome of a response: ok for 2xx, else `http_<status>`; the `x-slept-us` header. */
function httpOutcome(r: HttpResponse): Outcome {
  let slept = -1;
  const h = r.headers;
  for (let i = 0; i < h.length; i++) if (h[i][0] === SLEPT_KEY) slept = Number(h[i][1]);
  return { error: r.status >= 200 && r.status < 300 ? null : `http_${r.status}`, sleptUs: slept };
}

function httpSender(
  target: Target,
  initial: number,
  maxConnections: number,
  timeoutMs: number,
): Promise<Sender> {
  const path = target.path ?? `/${target.service}`;
  const extra = (target.headers ?? []).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const cache = new Map<number, Uint8Array>();
  // A job-time run (`jobMs` a number) sends `?ms=N` without a body; otherwise the body.
  const methodOf = (jobMs: number) =>
    Number.isNaN(jobMs) && (target.body?.length ?? 0) > 0 ? "POST" : "GET";
  const requestBytes = (jobMs: number): Uint8Array => {
    let bytes = cache.get(jobMs);
    if (bytes) return bytes;
    const body = Number.isNaN(jobMs) ? target.body ?? new Uint8Array(0) : new Uint8Array(0);
    const query = Number.isNaN(jobMs) ? "" : `${path.includes("?") ? "&" : "?"}ms=${jobMs}`;
    const head = `${methodOf(jobMs)} ${path}${query} HTTP/1.1\r\nhost: ${target.addr}\r\n${extra}` +
      (body.length > 0 ? `content-length: ${body.length}\r\n` : "") + "\r\n";
    const h = enc.encode(head);
    bytes = new Uint8Array(h.length + body.length);
    bytes.set(h);
    bytes.set(body, h.length);
    if (cache.size < 1024) cache.set(jobMs, bytes);
    return bytes;
  };
  const idle: HttpConn[] = [];
  const all = new Set<HttpConn>();
  const queue: HttpRequest[] = [];
  let qHead = 0;
  let connecting = 0;
  let stalls = 0;
  let opened = 0;
  let closed = false;

  const finish = (c: HttpConn, outcome: Outcome) => {
    const req = c.current;
    c.current = null;
    if (req) req.done(outcome);
  };
  const drop = (c: HttpConn, kind: string) => {
    if (c.dead) return;
    c.dead = true;
    all.delete(c);
    const i = idle.indexOf(c);
    if (i >= 0) idle.splice(i, 1);
    c.t?.close();
    if (c.current) finish(c, { error: kind, sleptUs: -1 });
    if (!closed) pump();
  };
  const onData = (c: HttpConn, chunk: Uint8Array) => {
    if (!c.current) {
      drop(c, "unexpected_response");
      return;
    }
    c.parser!.push(chunk);
    // The next request goes out only now: bytes after the response in the same chunk
    // were a response nobody asked for (a parser error), not the next one's answer.
    const after = c.after;
    c.after = AFTER_NONE;
    if (after === AFTER_CLOSE) drop(c, "closed");
    else if (after === AFTER_RELEASE) release(c);
  };
  const adopt = (t: TcpTransport): HttpConn => {
    const c = new HttpConn();
    c.t = t;
    c.parser = new HttpResponseParser({
      response(r) {
        finish(c, httpOutcome(r));
        c.after = r.keepAlive ? AFTER_RELEASE : AFTER_CLOSE;
      },
      error() {
        drop(c, c.ending ? "closed" : "bad_response");
      },
    });
    all.add(c);
    t.start({
      data: (chunk) => onData(c, chunk),
      end: () => {
        // Completes a body delimited by the end of the connection, or fails a cut one.
        c.ending = true;
        if (c.current) c.parser!.end();
        drop(c, "closed");
      },
    });
    return c;
  };
  const open = () => {
    connecting++;
    opened++;
    tcpConnect(target.addr).then((t) => {
      connecting--;
      if (closed) {
        t.close();
        return;
      }
      release(adopt(t));
    }, () => {
      connecting--;
      // The server refused: fail the oldest waiting request, and all of them when no
      // connection is left to serve them.
      if (qHead < queue.length) queue[qHead++].done({ error: "connect", sleptUs: -1 });
      if (all.size === 0 && connecting === 0) {
        while (qHead < queue.length) queue[qHead++].done({ error: "connect", sleptUs: -1 });
      }
    });
  };
  const sendOn = (c: HttpConn, req: HttpRequest) => {
    c.current = req;
    c.sentAt = performance.now();
    c.parser!.sent(methodOf(req.jobMs));
    c.t!.write(requestBytes(req.jobMs));
  };
  const release = (c: HttpConn) => {
    if (c.dead || closed) return;
    if (qHead < queue.length) {
      sendOn(c, queue[qHead++]);
      if (qHead > 1024 && qHead * 2 > queue.length) {
        queue.splice(0, qHead);
        qHead = 0;
      }
    } else idle.push(c);
  };
  const pump = () => {
    while (qHead < queue.length && idle.length > 0) sendOn(idle.pop()!, queue[qHead++]);
    const want = queue.length - qHead - connecting;
    for (let i = 0; i < want && all.size + connecting < maxConnections; i++) open();
  };
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of all) {
      if (c.current && now - c.sentAt > timeoutMs) drop(c, "timeout");
    }
    while (qHead < queue.length && now - queue[qHead].queuedAt > timeoutMs) {
      queue[qHead++].done({ error: "timeout", sleptUs: -1 });
    }
  }, 50);

  return new Promise((resolve, reject) => {
    // Open the initial connections before the run; the first failure fails the start.
    let ready = 0;
    let failed = false;
    const n = Math.max(1, Math.min(initial, maxConnections));
    for (let i = 0; i < n; i++) {
      opened++;
      tcpConnect(target.addr).then((t) => {
        if (failed) {
          t.close();
          return;
        }
        idle.push(adopt(t));
        if (++ready === n) resolve(sender);
      }, (err) => {
        if (failed) return;
        failed = true;
        clearInterval(sweeper);
        for (const c of all) c.t?.close();
        reject(err);
      });
    }
    const sender: Sender = {
      get waiting() {
        return queue.length - qHead;
      },
      get stalls() {
        return stalls;
      },
      get opened() {
        return opened;
      },
      send(jobMs, done) {
        const c = idle.pop();
        if (c) {
          sendOn(c, { jobMs, done, queuedAt: performance.now() });
          return;
        }
        if (all.size + connecting >= maxConnections) stalls++;
        queue.push({ jobMs, done, queuedAt: performance.now() });
        pump();
      },
      close(kind) {
        closed = true;
        clearInterval(sweeper);
        while (qHead < queue.length) queue[qHead++].done({ error: kind, sleptUs: -1 });
        for (const c of [...all]) drop(c, kind);
      },
    };
  });
}

// ---------------------------------------------------------------------------------------
// Runs

/** A snapshot while a run goes, for progress lines. */
export interface Progress {
  /** Ms since the run started. */
  elapsedMs: number;
  /** Requests sent. */
  sent: number;
  /** Answers received (successes and errors). */
  done: number;
  /** Errors so far. */
  errors: number;
  /** Answers per second over the last interval. */
  rate: number;
  /** p99 latency so far, µs. */
  p99Us: number;
  /** Requests in flight. */
  inFlight: number;
}

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  /** What to load. */
  target: Target;
  /** `open` (scheduled arrivals) or `closed` (N requests always in flight). Default `open`. */
  mode?: "open" | "closed";
  /** Open loop: mean arrivals per second (Poisson). */
  rate?: number;
  /** Open loop: an explicit schedule instead of rate/seed/mix (its `at` defines the run). */
  schedule?: Schedule;
  /** Length of the run in ms (the schedule's span in the open loop). Default 10 000. */
  durationMs?: number;
  /** Seed of the schedule and of the job-time draws. Default 1. */
  seed?: number;
  /** Job-time mix for the `sleep` service (EP body / HTTP `?ms=`). */
  mix?: readonly MixEntry[];
  /**
   * EP: connections to pipeline over (default 1). HTTP: connections opened before the run
   * (default 16). Closed loop: requests kept in flight (default 16).
   */
  connections?: number;
  /** HTTP: most connections open at once (default 1024). */
  maxConnections?: number;
  /** Per-request timeout in ms (default 30 000). */
  timeoutMs?: number;
  /** Called every `progressMs` with a snapshot. */
  onProgress?: (p: Progress) => void;
  /** Progress interval in ms (default 1 000). */
  progressMs?: number;
  /** Longest spin before an intended send time, in µs (default 60). */
  spinMicros?: number;
  /** Stops the run early. */
  signal?: AbortSignal;
}

/** What a run measured. */
export interface LoadResult {
  /** `open` or `closed`. */
  mode: "open" | "closed";
  /** What was loaded. */
  target: Omit<Target, "body"> & { bodyBytes: number };
  /** Requested rate (open loop), or 0. */
  rate: number;
  /** Requests kept in flight (closed loop), or 0. */
  concurrency: number;
  /** Seed of the schedule. */
  seed: number;
  /** The job-time mix, if any. */
  mix: MixEntry[] | null;
  /** Wall time from the first intended send to the last answer, ms. */
  elapsedMs: number;
  /** Span of the sends (first to last intended send), ms. */
  sendWindowMs: number;
  /** Requests sent. */
  sent: number;
  /** Successful answers (2xx / REPLY with status 2xx). */
  ok: number;
  /** Failures by kind: EP error names, `http_<status>`, `timeout`, `closed`, `connect`. */
  errors: Record<string, number>;
  /** Requests sent per second over the send window. */
  sentRate: number;
  /** Successful answers per second over the elapsed time. */
  throughput: number;
  /** Latency of successful requests, µs (from the intended send time in the open loop). */
  latency: Histogram;
  /** Actual minus intended send time, µs (open loop). */
  sendLag: Histogram;
  /** Job time reported by the server minus the requested job time, µs (`sleep` only). */
  jobOvershoot: Histogram;
  /** The generator's own figures. */
  generator: {
    /** CPU used by the generator process over the run, % of one core. */
    cpuPercent: number;
    /** Requests that waited for a connection because of the HTTP connection cap. */
    stalls: number;
    /** Connections opened. */
    connections: number;
    /** Most requests in flight at once. */
    peakInFlight: number;
    /** Whether the precise clock thread was used. */
    preciseClock: boolean;
  };
}

/**
 * Runs a load and returns what it measured. Open loop by default: a seeded Poisson
 * schedule at `rate` for `durationMs`, latency from each intended send time.
 *
 * @example
 * ```ts ignore
 * import { parseMix, percentiles, runLoad } from "./loadgen.ts";
 * const r = await runLoad({
 *   target: { protocol: "http", addr: "127.0.0.1:7070", service: "sleep" },
 *   rate: 500,
 *   durationMs: 5_000,
 *   mix: parseMix("1@0.9,20@0.1"),
 * });
 * console.log(percentiles(r.latency).p99, r.errors);
 * ```
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const mode = options.mode ?? "open";
  const target = options.target;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const seed = options.seed ?? 1;
  const durationMs = options.durationMs ?? 10_000;
  const conns = options.connections ?? (target.protocol === "ep" && mode === "open" ? 1 : 16);
  const maxConnections = Math.max(conns, options.maxConnections ?? 1024);
  const spinMs = (options.spinMicros ?? 60) / 1000;

  let schedule: Schedule | null = null;
  if (mode === "open") {
    schedule = options.schedule ?? poissonSchedule({
      rate: options.rate ?? 100,
      durationMs,
      seed,
      mix: options.mix,
    });
  }

  const sender = target.protocol === "ep"
    ? await epSender(target, mode === "closed" ? Math.min(conns, 4) : conns, timeoutMs)
    : await httpSender(target, conns, maxConnections, timeoutMs);

  const latency = new Histogram();
  const sendLag = new Histogram();
  const jobOvershoot = new Histogram();
  const errors: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  let done = 0;
  let failed = 0;
  let peak = 0;
  let lastAnswer = 0;
  const clock = mode === "open" ? new AlarmClock() : null;
  const cpu0 = process.cpuUsage();
  const start = performance.now() + 5;
  let finished: () => void = () => {};
  const allDone = new Promise<void>((r) => finished = r);
  let sending = true;

  const answer = (intended: number, jobMs: number, outcome: Outcome) => {
    const now = performance.now();
    lastAnswer = now;
    done++;
    if (outcome.error === null) {
      ok++;
      latency.record((now - intended) * 1000);
      if (outcome.sleptUs >= 0 && !Number.isNaN(jobMs)) {
        jobOvershoot.record(outcome.sleptUs - jobMs * 1000);
      }
    } else {
      failed++;
      errors[outcome.error] = (errors[outcome.error] ?? 0) + 1;
    }
    if (!sending && done === sent) finished();
    else if (sendDue) sendDue();
  };
  // Open loop: sends every request whose time has come (also called after each answer,
  // so that a busy event loop still sends on time).
  let sendDue: (() => void) | null = null;

  // Progress.
  let lastDone = 0;
  let lastTick = start;
  const progress = options.onProgress
    ? setInterval(() => {
      const now = performance.now();
      options.onProgress!({
        elapsedMs: now - start,
        sent,
        done,
        errors: failed,
        rate: ((done - lastDone) * 1000) / Math.max(1, now - lastTick),
        p99Us: latency.percentile(99),
        inFlight: sent - done,
      });
      lastDone = done;
      lastTick = now;
    }, options.progressMs ?? 1_000)
    : undefined;
  // Keeps the event loop alive while the clock thread is the only thing pending.
  const keepAlive = setInterval(() => {}, 1_000);

  let sendWindowMs = 0;
  try {
    if (mode === "open" && schedule) {
      const { at, jobMs } = schedule;
      const n = at.length;
      let i = 0;
      sendDue = () => {
        const now = performance.now();
        while (i < n && start + at[i] <= now) {
          const intended = start + at[i];
          const ms = jobMs ? jobMs[i] : NaN;
          i++;
          sent++;
          if (sent - done > peak) peak = sent - done;
          sendLag.record((performance.now() - intended) * 1000);
          sender.send(ms, (o) => answer(intended, ms, o));
        }
      };
      const giveUp = start + at[n - 1 < 0 ? 0 : n - 1] + timeoutMs + 5_000;
      while (i < n && !options.signal?.aborted && performance.now() < giveUp) {
        const due = start + at[i];
        const early = due - spinMs;
        if (performance.now() < early) await clock!.waitUntil(early);
        while (performance.now() < due) { /* spin at most spinMicros */ }
        sendDue();
      }
      sendDue = null;
      sendWindowMs = n > 0 ? at[n - 1] : 0;
    } else {
      const lanes = Math.max(1, conns);
      const end = start + durationMs;
      await new Promise((r) => setTimeout(r, Math.max(0, start - performance.now())));
      const draw = options.mix && options.mix.length > 0 ? mixSampler(options.mix, seed) : null;
      const lane = () => {
        if (performance.now() >= end || options.signal?.aborted) return;
        const t = performance.now();
        const ms = draw ? draw() : NaN;
        sent++;
        if (sent - done > peak) peak = sent - done;
        sender.send(ms, (o) => {
          answer(t, ms, o);
          lane();
        });
      };
      for (let k = 0; k < lanes; k++) lane();
      await new Promise<void>((r) => {
        const check = setInterval(() => {
          if (performance.now() >= end || options.signal?.aborted) {
            clearInterval(check);
            r();
          }
        }, 10);
      });
      sendWindowMs = durationMs;
    }
    sending = false;
    if (done < sent) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        allDone,
        new Promise((r) => timer = setTimeout(r, timeoutMs + 1_000)),
      ]);
      clearTimeout(timer);
    }
  } finally {
    sending = false;
    clock?.close();
    clearInterval(progress);
    clearInterval(keepAlive);
    sender.close("timeout");
  }
  const cpu = process.cpuUsage(cpu0);
  const elapsedMs = Math.max(1, (lastAnswer || performance.now()) - start);
  const { body, ...rest } = target;
  return {
    mode,
    target: { ...rest, bodyBytes: body?.length ?? 0 },
    rate: mode === "open" ? options.rate ?? (schedule!.at.length * 1000) / durationMs : 0,
    concurrency: mode === "closed" ? conns : 0,
    seed,
    mix: options.mix ? [...options.mix] : null,
    elapsedMs,
    sendWindowMs,
    sent,
    ok,
    errors,
    sentRate: sendWindowMs > 0 ? (sent * 1000) / sendWindowMs : 0,
    throughput: (ok * 1000) / elapsedMs,
    latency,
    sendLag,
    jobOvershoot,
    generator: {
      cpuPercent: Math.round(((cpu.user + cpu.system) / 1000 / elapsedMs) * 1000) / 10,
      stalls: sender.stalls,
      connections: sender.opened,
      peakInFlight: peak,
      preciseClock: clock?.precise ?? false,
    },
  };
}

/** A {@linkcode LoadResult} as plain JSON (histograms included, losslessly). */
export interface LoadResultJson extends Omit<LoadResult, "latency" | "sendLag" | "jobOvershoot"> {
  /** Summary of the latency, µs. */
  latencyUs: Percentiles;
  /** Summary of the send lag, µs. */
  sendLagUs: Percentiles;
  /** Summary of the job-time overshoot, µs (count 0 when the service does not report it). */
  jobOvershootUs: Percentiles;
  /** The histograms. */
  histograms: { latency: HistogramJson; sendLag: HistogramJson; jobOvershoot: HistogramJson };
}

/**
 * A result as JSON, with the percentile summaries and the histograms.
 *
 * @example
 * ```ts ignore
 * import { resultToJson, runLoad } from "./loadgen.ts";
 * const r = await runLoad({ target: { protocol: "ep", addr: "127.0.0.1:7070", service: "echo" } });
 * console.log(JSON.stringify(resultToJson(r)));
 * ```
 */
export function resultToJson(r: LoadResult): LoadResultJson {
  const { latency, sendLag, jobOvershoot, ...rest } = r;
  return {
    ...rest,
    latencyUs: percentiles(latency),
    sendLagUs: percentiles(sendLag),
    jobOvershootUs: percentiles(jobOvershoot),
    histograms: {
      latency: latency.toJSON(),
      sendLag: sendLag.toJSON(),
      jobOvershoot: jobOvershoot.toJSON(),
    },
  };
}

/**
 * Formats microseconds as milliseconds with sensible precision (`0.412`, `12.3`, `1234`).
 *
 * @example
 * ```ts
 * import { fmtMs } from "./loadgen.ts";
 * console.assert(fmtMs(2500) === "2.50");
 * ```
 */
export function fmtMs(us: number): string {
  const ms = us / 1000;
  return ms < 1
    ? ms.toFixed(3)
    : ms < 10
    ? ms.toFixed(2)
    : ms < 100
    ? ms.toFixed(1)
    : ms.toFixed(0);
}

/**
 * A human-readable summary of a run (several lines, no trailing newline).
 *
 * @example
 * ```ts ignore
 * import { formatResult, runLoad } from "./loadgen.ts";
 * console.log(formatResult(await runLoad({ target: { protocol: "ep", addr: ":7070", service: "echo" } })));
 * ```
 */
export function formatResult(r: LoadResult, ideal?: Histogram): string {
  const l = percentiles(r.latency);
  const lag = percentiles(r.sendLag);
  const errs = Object.entries(r.errors).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  const mode = r.mode === "open"
    ? `open loop, Poisson ${r.rate} req/s, seed ${r.seed}`
    : `closed loop, ${r.concurrency} in flight`;
  const mix = r.mix ? `, mix ${r.mix.map((e) => `${e.ms}@${e.p}`).join(",")}` : "";
  const lines = [
    `${r.target.protocol.toUpperCase()} ${r.target.addr} ${r.target.service}: ${mode}${mix}`,
    `requests  sent ${r.sent} (${r.sentRate.toFixed(0)}/s), ok ${r.ok} (${
      r.throughput.toFixed(0)
    }/s), errors: ${errs}`,
    `latency   p50 ${fmtMs(l.p50)}  p90 ${fmtMs(l.p90)}  p99 ${fmtMs(l.p99)}  p99.9 ${
      fmtMs(l.p999)
    }  max ${fmtMs(l.max)} ms` + (r.mode === "open" ? " (from intended send times)" : ""),
  ];
  if (ideal) {
    const i = percentiles(ideal);
    lines.push(
      `ideal     p50 ${fmtMs(i.p50)}  p90 ${fmtMs(i.p90)}  p99 ${fmtMs(i.p99)}  p99.9 ${
        fmtMs(i.p999)
      }  max ${fmtMs(i.max)} ms (central queue, zero dispatch cost)`,
    );
  }
  if (r.jobOvershoot.count > 0) {
    const j = percentiles(r.jobOvershoot);
    lines.push(
      `job time  overshoot p50 ${j.p50} µs  p99 ${j.p99} µs  max ${j.max} µs (server-reported)`,
    );
  }
  lines.push(
    `generator cpu ${r.generator.cpuPercent}%` +
      (r.mode === "open"
        ? `, send lag p50 ${lag.p50} µs  p99 ${lag.p99} µs  max ${fmtMs(lag.max)} ms`
        : "") +
      `, connections ${r.generator.connections}, stalls ${r.generator.stalls}, peak in flight ${r.generator.peakInFlight}`,
  );
  return lines.join("\n");
}
