/**
 * The access log: one line per job the balancer settles, at info level in category
 * `["ep", "access"]` (written when `MonitorOptions.accessLog` is set):
 *
 * ```text
 * user ok wait 0.12ms service 3.40ms worker 10.0.0.5:40412 (w1)
 * user no_service wait - service - worker -
 * ```
 *
 * `-` stands for what a job did not have (a job refused before dispatch has no service
 * time and no worker). The line is rendered here, peer strings escaped (LogTape's default
 * formatter would quote every value); the record's properties (`service`, `outcome`,
 * `queueWaitMs`, `serviceMs`, `worker`) carry the same data for JSON lines.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Outcome } from "../balancer/balancer.ts";
import { escapeControls } from "../escape.ts";
import { workerLabel } from "./_provider_name.ts";
import { round } from "./_round.ts";

const accessLogger = getLogger(["ep", "access"]);

/**
 * Logs one settled job: its service, outcome, queue wait and service time (ms, NaN when
 * it had none) and the provider that ran it (`null`: none), as the balancer reports it to
 * its observer.
 *
 * @example
 * ```ts
 * import { configure, type LogRecord, reset } from "@logtape/logtape";
 * import { logAccess } from "./access_log.ts";
 * const records: LogRecord[] = [];
 * await configure({
 *   sinks: { buffer: (r: LogRecord) => records.push(r) },
 *   loggers: [
 *     { category: ["ep", "access"], lowestLevel: "info", sinks: ["buffer"] },
 *     { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
 *   ],
 * });
 * logAccess("user", "no_service", 0.5, NaN, null);
 * console.assert(records[0].message.join("") === "user no_service wait 0.50ms service - worker -");
 * await reset();
 * ```
 */
export function logAccess(
  service: string,
  outcome: Outcome,
  queueWaitMs: number,
  serviceMs: number,
  provider: string | null,
): void {
  const worker = provider === null ? "-" : workerLabel(provider);
  // The text is rendered here (the default formatter would quote every value), peer
  // strings escaped by logText; the properties carry the same data for JSON lines.
  const line = `${service} ${outcome} wait ${fmtMs(queueWaitMs)} service ${
    fmtMs(serviceMs)
  } worker ${worker}`;
  accessLogger.info(logText(line), {
    service,
    outcome,
    queueWaitMs: roundMs(queueWaitMs),
    serviceMs: roundMs(serviceMs),
    worker: provider === null ? null : worker,
  });
}

function roundMs(ms: number): number | null {
  return ms === ms ? round(ms, 3) : null;
}

/** A message template that renders as `text`: peer strings escaped, braces doubled. */
function logText(text: string): string {
  return escapeControls(text).replace(/[{}]/g, (c) => c + c);
}

function fmtMs(ms: number): string {
  if (ms !== ms) return "-";
  return ms < 10 ? `${ms.toFixed(2)}ms` : `${Math.round(ms)}ms`;
}
