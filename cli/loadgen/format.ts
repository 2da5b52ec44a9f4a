/**
 * A load result as JSON (percentile summaries and lossless histograms) and as text.
 *
 * @module
 */
import {
  type LatencyHistogram,
  type LatencyHistogramJson,
  type Percentiles,
  percentiles,
} from "./latency_histogram.ts";
import type { LoadResult } from "./run_load.ts";

/** A {@linkcode LoadResult} as plain JSON (histograms included, losslessly). */
export interface LoadResultJson extends Omit<LoadResult, "latency" | "sendLag" | "jobOvershoot"> {
  /** Summary of the latency, µs. */
  latencyUs: Percentiles;
  /** Summary of the send lag, µs. */
  sendLagUs: Percentiles;
  /** Summary of the job-time overshoot, µs (count 0 when the service does not report it). */
  jobOvershootUs: Percentiles;
  /** The histograms. */
  histograms: {
    latency: LatencyHistogramJson;
    sendLag: LatencyHistogramJson;
    jobOvershoot: LatencyHistogramJson;
  };
}

/**
 * A result as JSON, with the percentile summaries and the histograms.
 *
 * @example
 * ```ts ignore
 * import { resultToJson } from "./format.ts";
 * import { runLoad } from "./run_load.ts";
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
 * import { fmtMs } from "./format.ts";
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
 * import { formatResult } from "./format.ts";
 * import { runLoad } from "./run_load.ts";
 * console.log(formatResult(await runLoad({ target: { protocol: "ep", addr: ":7070", service: "echo" } })));
 * ```
 */
export function formatResult(r: LoadResult, ideal?: LatencyHistogram): string {
  const l = percentiles(r.latency);
  const lag = percentiles(r.sendLag);
  const errs = Object.entries(r.errors).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
  const mode = r.mode === "open"
    ? `open loop, Poisson ${r.rate} req/s, seed ${r.seed}`
    : `closed loop, ${r.concurrency} in flight`;
  const mix = r.mix ? `, mix ${r.mix.map((e) => `${e.ms}@${e.p}`).join(",")}` : "";
  const lines = [
    `${r.target.protocol.toUpperCase()} ${
      r.target.servers?.join(",") ?? r.target.addr
    } ${r.target.service}: ${mode}${mix}`,
    `requests  sent ${r.sent} (${r.sentRate.toFixed(0)}/s), ok ${r.ok} (${
      r.throughput.toFixed(0)
    }/s), errors: ${errs}`,
    // Latency is measured on the requests that succeeded: with none, there is none to show.
    r.ok === 0
      ? `latency   none: no request succeeded (${r.sent} sent, errors: ${errs})`
      : `latency   p50 ${fmtMs(l.p50)}  p90 ${fmtMs(l.p90)}  p99 ${fmtMs(l.p99)}  p99.9 ${
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
      `, connections ${r.generator.connections}, stalls ${r.generator.stalls}, peak in flight ${r.generator.peakInFlight}` +
      (r.generator.retries > 0 ? `, retries ${r.generator.retries}` : ""),
  );
  return lines.join("\n");
}
