/**
 * `deno task soak`: ep under steady load for a while, watched for leaks and drift.
 *
 * Starts a balancer and 4 single-slot module workers as processes (`mod.ts balancer`,
 * `mod.ts worker --threads 1 --concurrency 1`, the TypeScript demo services), measures the
 * capacity for the heavy-tail mix (90 % 1 ms, 10 % 20 ms jobs of the `sleep` service) with
 * a short closed loop, then drives that mix open-loop with Poisson arrivals over EP at 85 %
 * of capacity (`cli/loadgen/`) for `--minutes`. Meanwhile it samples the RSS of every
 * process (`/proc/<pid>/status` VmRSS) every 2 s. It reports p50/p99 per window (latency
 * drift), errors, and RSS at start (after warm-up), end and max per process.
 *
 * Exits 1 on any error (a failed request, a process that died) or when a process's RSS at
 * the end exceeds its RSS after warm-up by more than `--rss-bound-mib` (default 64 MiB).
 * The bound: a Deno process here settles at 50–130 MiB with a GC sawtooth of a few MiB to
 * a few tens of MiB; 64 MiB is well above that swing, and at ~1 000 requests/s a leak of
 * 1 KiB per request crosses it within about a minute (smaller leaks need longer runs; the
 * report also gives each process's RSS slope after warm-up, in MiB per minute).
 *
 * ```sh
 * deno task soak                      # one minute
 * deno task soak --minutes 30 --json  # longer, one JSON report on stdout
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadResult, parseMix, percentiles, runLoad } from "../../cli/loadgen/mod.ts";
import { Proc, waitStats } from "../_cluster.ts";

const USAGE = `Usage: deno task soak [--minutes N] [--json] [options]

  --minutes N        length of the loaded run (default 1; fractions ok)
  --load P           share of the measured capacity to drive (default 0.85)
  --rate R           requests/s instead of P × capacity
  --window-s S       latency window (default 60, or 15 for runs under 2 minutes)
  --warmup-s S       RSS baseline taken this long into the run (default 10)
  --rss-bound-mib M  allowed RSS growth per process after warm-up (default 64)
  --seed S           seed of the arrivals and job times (default 1)
  --json             print one JSON report`;

const MIX = "1@0.9,20@0.1";
const WORKERS = 4;
const MIB = 1 << 20;

/** One process watched. */
interface Watched {
  name: string;
  pid: number;
  samples: { t: number; rss: number }[];
}

/** The report printed (and returned as JSON). */
export interface SoakReport {
  minutes: number;
  mix: string;
  workers: number;
  capacityPerS: { measured: number; theoretical: number };
  ratePerS: number;
  windows: {
    fromS: number;
    sent: number;
    ok: number;
    errors: Record<string, number>;
    p50Ms: number;
    p99Ms: number;
    maxMs: number;
    sendLagP99Ms: number;
    throughputPerS: number;
  }[];
  latencyDrift: { p50: number; p99: number };
  errors: number;
  errorKinds: Record<string, number>;
  processes: {
    name: string;
    pid: number;
    rssMiB: { start: number; end: number; max: number; growth: number };
    slopeMiBPerMin: number;
  }[];
  rssBoundMiB: number;
  failures: string[];
}

function readRss(pid: number): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = status.match(/^VmRSS:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Least-squares slope of (t ms, rss bytes), in MiB per minute. */
function slope(samples: { t: number; rss: number }[]): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mt = samples.reduce((s, x) => s + x.t, 0) / n;
  const mr = samples.reduce((s, x) => s + x.rss, 0) / n;
  let num = 0;
  let den = 0;
  for (const x of samples) {
    num += (x.t - mt) * (x.rss - mr);
    den += (x.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60_000 / MIB;
}

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

/** Runs a soak and returns its report. */
export async function soak(options: {
  minutes: number;
  load?: number;
  rate?: number;
  windowS?: number;
  warmupS?: number;
  rssBoundMiB?: number;
  seed?: number;
  log?: (line: string) => void;
}): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const totalMs = options.minutes * 60_000;
  const windowMs = (options.windowS ?? (options.minutes >= 2 ? 60 : 15)) * 1000;
  const warmupMs = (options.warmupS ?? 10) * 1000;
  const bound = options.rssBoundMiB ?? 64;
  const seed = options.seed ?? 1;
  const mix = parseMix(MIX);
  const procs: Proc[] = [];
  const failures: string[] = [];
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    const b = new Proc(["balancer", "--port", "0", "--log-level", "warning"]);
    procs.push(b);
    const m = await b.waitFor(/listening on [^:]+:(\d+)/, 30_000);
    const addr = `127.0.0.1:${m[1]}`;
    for (let i = 0; i < WORKERS; i++) {
      procs.push(
        new Proc([
          "worker",
          "--connect",
          addr,
          "--threads",
          "1",
          "--concurrency",
          "1",
          "--log-level",
          "warning",
        ]),
      );
    }
    await waitStats(addr, (s) => s.providers.length === WORKERS, 30_000);
    const watched: Watched[] = [
      { name: "balancer", pid: b.child.pid, samples: [] },
      ...procs.slice(1).map((p, i) => ({ name: `worker${i + 1}`, pid: p.child.pid, samples: [] })),
      { name: "generator", pid: Deno.pid, samples: [] },
    ];
    const died = new Set<string>();
    procs.forEach((p, i) =>
      p.exited.then((st) => {
        if (sampler !== undefined) died.add(`${watched[i].name} exited (${st.code})`);
      })
    );

    // Capacity for this mix, measured: a closed loop keeping every slot and prefetch busy.
    const target = { protocol: "ep" as const, addr, service: "sleep" };
    const cal = await runLoad({
      target,
      mode: "closed",
      connections: WORKERS * 4,
      durationMs: 4_000,
      mix,
      seed,
    });
    const theoretical = WORKERS / (mix.reduce((n, e) => n + e.ms * e.p, 0) / 1000);
    const measured = cal.throughput;
    const rate = options.rate ?? (options.load ?? 0.85) * Math.min(measured, theoretical);
    log(
      `soak: capacity ${measured.toFixed(0)}/s measured, ${theoretical.toFixed(0)}/s in theory; ` +
        `driving ${rate.toFixed(0)}/s for ${options.minutes} min`,
    );

    const t0 = performance.now();
    const sample = () => {
      const t = performance.now() - t0;
      for (const w of watched) {
        const rss = readRss(w.pid);
        if (!Number.isNaN(rss)) w.samples.push({ t, rss });
      }
    };
    sample();
    sampler = setInterval(sample, 2_000);

    const windows: SoakReport["windows"] = [];
    const errorKinds: Record<string, number> = {};
    for (let k = 0; (k * windowMs) < totalMs; k++) {
      const ms = Math.min(windowMs, totalMs - k * windowMs);
      if (ms < 1_000) break;
      const r: LoadResult = await runLoad({
        target,
        rate,
        durationMs: ms,
        mix,
        seed: seed + 1 + k,
        connections: 2,
        timeoutMs: 30_000,
      });
      const p = percentiles(r.latency);
      for (const [kind, n] of Object.entries(r.errors)) {
        errorKinds[kind] = (errorKinds[kind] ?? 0) + n;
      }
      windows.push({
        fromS: round((k * windowMs) / 1000, 0),
        sent: r.sent,
        ok: r.ok,
        errors: r.errors,
        p50Ms: round(p.p50 / 1000, 2),
        p99Ms: round(p.p99 / 1000, 2),
        maxMs: round(p.max / 1000, 2),
        sendLagP99Ms: round(percentiles(r.sendLag).p99 / 1000, 2),
        throughputPerS: round(r.throughput, 0),
      });
      const w = windows[windows.length - 1];
      log(
        `  window ${w.fromS}s: ${w.ok}/${w.sent} ok, p50 ${w.p50Ms} ms, p99 ${w.p99Ms} ms, ` +
          `max ${w.maxMs} ms, errors ${JSON.stringify(w.errors)}`,
      );
      if (died.size > 0) break;
    }
    sample();
    clearInterval(sampler);
    sampler = undefined;

    const processes: SoakReport["processes"] = watched.map((w) => {
      const after = w.samples.filter((s) => s.t >= Math.min(warmupMs, totalMs / 2));
      const base = after[0] ?? w.samples[0];
      const last = w.samples[w.samples.length - 1];
      const max = Math.max(...w.samples.map((s) => s.rss));
      return {
        name: w.name,
        pid: w.pid,
        rssMiB: {
          start: round(base.rss / MIB),
          end: round(last.rss / MIB),
          max: round(max / MIB),
          growth: round((last.rss - base.rss) / MIB),
        },
        slopeMiBPerMin: round(slope(after)),
      };
    });
    const errors = Object.values(errorKinds).reduce((n, x) => n + x, 0);
    if (errors > 0) failures.push(`${errors} requests failed: ${JSON.stringify(errorKinds)}`);
    for (const d of died) failures.push(d);
    for (const p of processes) {
      if (p.name !== "generator" && p.rssMiB.growth > bound) {
        failures.push(`${p.name} RSS grew ${p.rssMiB.growth} MiB after warm-up (bound ${bound})`);
      }
    }
    const first = windows[0];
    const last = windows[windows.length - 1];
    return {
      minutes: options.minutes,
      mix: MIX,
      workers: WORKERS,
      capacityPerS: { measured: round(measured, 0), theoretical: round(theoretical, 0) },
      ratePerS: round(rate, 0),
      windows,
      latencyDrift: {
        p50: first && last ? round(last.p50Ms / Math.max(0.001, first.p50Ms), 2) : 1,
        p99: first && last ? round(last.p99Ms / Math.max(0.001, first.p99Ms), 2) : 1,
      },
      errors,
      errorKinds,
      processes,
      rssBoundMiB: bound,
      failures,
    };
  } finally {
    clearInterval(sampler);
    sampler = undefined;
    await Promise.all(procs.map((p) => p.stop()));
  }
}

async function main(args: string[]): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        minutes: { type: "string", default: "1" },
        load: { type: "string" },
        rate: { type: "string" },
        "window-s": { type: "string" },
        "warmup-s": { type: "string" },
        "rss-bound-mib": { type: "string" },
        seed: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    console.error(`soak: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) {
    console.error(`soak: --minutes must be positive\n${USAGE}`);
    return 2;
  }
  const report = await soak({
    minutes,
    load: num(values.load),
    rate: num(values.rate),
    windowS: num(values["window-s"]),
    warmupS: num(values["warmup-s"]),
    rssBoundMiB: num(values["rss-bound-mib"]),
    seed: num(values.seed),
    log: values.json ? undefined : (line) => console.log(line),
  });
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    console.log(
      `soak: ${report.errors} errors; latency drift p50 ×${report.latencyDrift.p50}, ` +
        `p99 ×${report.latencyDrift.p99} (last window / first)`,
    );
    for (const p of report.processes) {
      console.log(
        `  ${p.name.padEnd(9)} RSS ${p.rssMiB.start} → ${p.rssMiB.end} MiB ` +
          `(max ${p.rssMiB.max}, ${p.rssMiB.growth >= 0 ? "+" : ""}${p.rssMiB.growth}, ` +
          `slope ${p.slopeMiBPerMin} MiB/min)`,
      );
    }
    console.log(
      report.failures.length === 0
        ? `soak: ok (RSS bound +${report.rssBoundMiB} MiB after warm-up)`
        : `soak: FAILED\n  ${report.failures.join("\n  ")}`,
    );
  }
  return report.failures.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
