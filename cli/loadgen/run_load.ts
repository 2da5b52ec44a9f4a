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
 * Latencies are kept in a {@linkcode LatencyHistogram} (see `latency_histogram.ts` for the
 * percentile definition).
 *
 * @module
 */
import process from "node:process";
import { AlarmClock } from "./_alarm_clock.ts";
import { epSender } from "./ep_sender.ts";
import { LatencyHistogram } from "./latency_histogram.ts";
import { httpSender } from "./http_sender.ts";
import { type MixEntry, mixSampler } from "./mix.ts";
import { poissonSchedule, type Schedule } from "./schedule.ts";
import type { Outcome, Target } from "./sender.ts";

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
  latency: LatencyHistogram;
  /** Actual minus intended send time, µs (open loop). */
  sendLag: LatencyHistogram;
  /** Job time reported by the server minus the requested job time, µs (`sleep` only). */
  jobOvershoot: LatencyHistogram;
  /** The generator's own figures. */
  generator: {
    /** CPU used by the generator process over the run, % of one core. */
    cpuPercent: number;
    /** Requests that waited for a connection because of the HTTP connection cap. */
    stalls: number;
    /** Connections opened. */
    connections: number;
    /** Requests sent again after a failure (EP with `Target.retry`). */
    retries: number;
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
 * import { percentiles } from "./latency_histogram.ts";
 * import { parseMix } from "./mix.ts";
 * import { runLoad } from "./run_load.ts";
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

  const latency = new LatencyHistogram();
  const sendLag = new LatencyHistogram();
  const jobOvershoot = new LatencyHistogram();
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
      retries: sender.retries,
      peakInFlight: peak,
      preciseClock: clock?.precise ?? false,
    },
  };
}
