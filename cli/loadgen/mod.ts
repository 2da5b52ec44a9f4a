/**
 * The load generator behind `ep bench`, the head-to-head benchmark
 * (`tests/bench/compare.ts`) and the soak test: open-loop Poisson arrivals (or a closed
 * loop of N requests in flight), over EP or HTTP/1.1, against any service, measured without
 * coordinated omission (see `run_load.ts`). This module only re-exports:
 *
 * - `run_load.ts`: {@linkcode runLoad}, its options and result
 * - `sender.ts`: {@linkcode Target}, what a run sends (`ep_sender.ts`, `http_sender.ts`
 *   send it)
 * - `schedule.ts`, `mix.ts`, `rng.ts`: seeded arrivals and job-time mixes
 * - `central_queue.ts`: the ideal central queue, the floor a balancer is compared with
 * - `latency_histogram.ts`: the latency histogram and its percentiles
 * - `format.ts`: a result as JSON and as text
 * - `report.ts`: the HTML report and its SVG plots
 *
 * @example
 * ```ts ignore
 * import { formatResult, parseMix, runLoad } from "./mod.ts";
 * const r = await runLoad({
 *   target: { protocol: "ep", addr: "127.0.0.1:7070", service: "sleep" },
 *   rate: 500,
 *   mix: parseMix("1@0.9,20@0.1"),
 * });
 * console.log(formatResult(r));
 * ```
 *
 * @module
 */
export { simulateCentralQueue } from "./central_queue.ts";
export { fmtMs, formatResult, type LoadResultJson, resultToJson } from "./format.ts";
export {
  LatencyHistogram,
  type LatencyHistogramJson,
  type Percentiles,
  percentiles,
} from "./latency_histogram.ts";
export { type MixEntry, mixMean, mixSampler, parseMix } from "./mix.ts";
export {
  barChartSvg,
  type BarGroup,
  escapeXml,
  type HtmlReport,
  latencyPlotSvg,
  type LatencySeries,
  type PlotOptions,
  renderHtml,
  type ReportRun,
} from "./report.ts";
export { createRng } from "./rng.ts";
export { type LoadOptions, type LoadResult, type Progress, runLoad } from "./run_load.ts";
export { poissonSchedule, type Schedule, type ScheduleOptions } from "./schedule.ts";
export type { Target } from "./sender.ts";
