/**
 * The access log: one line per job the balancer settles, at info level in category
 * `["ep", "access"]` (written when `MonitorOptions.accessLog` is set). Like nginx's
 * combined format it starts with the client's address, the request and what was answered
 * (status with HTTP meaning, body bytes), then ep's own fields and the request id:
 *
 * ```text
 * 10.0.0.9:51234 "POST /user/login" 200 17 user ok wait 0.12ms service 3.40ms worker 10.0.0.5:40412 (w1) id 52b2768b00000018
 * 10.0.0.9:51236 "GET /usersX/1" 503 20 usersX no_service wait - service - worker - id 52b2768b00000019
 * 10.0.0.9:51240 "EP /echo" 200 2 echo ok wait 0.05ms service 0.30ms worker local id 52b2768b0000001a
 * ```
 *
 * An EP request shows as method `EP` and path `/` + service. `bytes` counts the body the
 * client was sent (for a refusal, its one-line reason). `-` stands for what a job did not
 * have (a job refused before dispatch has no service time and no worker). The line is
 * rendered here, peer strings escaped and `"` in the request shown as `\x22` (LogTape's
 * default formatter would quote every value); the record's properties (`client`,
 * `method`, `path`, `status`, `bytes`, `service`, `outcome`, `queueWaitMs`, `serviceMs`,
 * `worker`, `requestId`) carry the same data for JSON lines.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Outcome } from "../balancer/balancer.ts";
import { escapeControls, oneLine } from "../escape.ts";
import { type Job, JobError, type JobResult } from "../job.ts";
import { workerLabel } from "./_provider_name.ts";
import { round } from "./_round.ts";

const accessLogger = getLogger(["ep", "access"]);
const enc = new TextEncoder();

/**
 * Logs one settled job: its service, outcome, queue wait and service time (ms, NaN when
 * it had none), the provider that ran it (`null`: none), and — when given — the request
 * and its answer (a result or an error), as the balancer reports it to its observer.
 *
 * @example
 * ```ts
 * import { configure, type LogRecord, reset } from "@logtape/logtape";
 * import { logAccess } from "./access_log.ts";
 * import { JobError } from "../job.ts";
 * const records: LogRecord[] = [];
 * await configure({
 *   sinks: { buffer: (r: LogRecord) => records.push(r) },
 *   loggers: [
 *     { category: ["ep", "access"], lowestLevel: "info", sinks: ["buffer"] },
 *     { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
 *   ],
 * });
 * const job = {
 *   service: "user", protocol: "http" as const, method: "GET", path: "/user/1", query: "",
 *   headers: [], body: new Uint8Array(0), deadlineMs: 0, priority: 0,
 *   remote: "10.0.0.9:51234", requestId: "r-1",
 * };
 * logAccess("user", "no_service", 0.5, NaN, null, job, new JobError(101, 'No service "user"'));
 * console.assert(
 *   records[0].message.join("") ===
 *     '10.0.0.9:51234 "GET /user/1" 503 18 user no_service wait 0.50ms service - worker - id r-1',
 * );
 * await reset();
 * ```
 */
export function logAccess(
  service: string,
  outcome: Outcome,
  queueWaitMs: number,
  serviceMs: number,
  provider: string | null,
  job?: Job,
  answer?: JobResult | JobError,
): void {
  const worker = provider === null ? "-" : workerLabel(provider);
  const status = answer === undefined
    ? null
    : answer instanceof JobError
    ? answer.status
    : answer.status ?? 200;
  const bytes = answer === undefined ? null : bodyBytes(answer, job?.protocol ?? "ep");
  const requestId = job?.requestId ?? null;
  // The text is rendered here (the default formatter would quote every value), each peer
  // string escaped; the properties carry the same data for JSON lines.
  const line = `${shown(job?.remote)} "${quoted(job?.method)} ${quoted(job?.path)}" ${
    status ?? "-"
  } ${bytes ?? "-"} ${shown(service)} ${outcome} wait ${fmtMs(queueWaitMs)} service ${
    fmtMs(serviceMs)
  } worker ${shown(worker)} id ${shown(requestId)}`;
  accessLogger.info(logText(line), {
    client: job?.remote ?? null,
    method: job?.method ?? null,
    path: job?.path ?? null,
    status,
    bytes,
    service,
    outcome,
    queueWaitMs: roundMs(queueWaitMs),
    serviceMs: roundMs(serviceMs),
    worker: provider === null ? null : worker,
    requestId,
  });
}

/**
 * The body bytes the client is sent: a result's body, or an error's one-line reason (HTTP
 * ends it with a newline; an EP ERROR frame carries it as it is).
 */
function bodyBytes(answer: JobResult | JobError, protocol: Job["protocol"]): number {
  if (answer instanceof JobError) {
    return enc.encode(oneLine(answer.message)).length + (protocol === "http" ? 1 : 0);
  }
  const body = answer.body;
  if (body === undefined) return 0;
  return typeof body === "string" ? enc.encode(body).length : body.length;
}

/** A peer string as one line of inert text; `-` when absent or empty. */
function shown(text: string | null | undefined): string {
  return text ? escapeControls(text) : "-";
}

/** {@linkcode shown}, with `"` as `\x22` (as nginx does) inside the quoted request field. */
function quoted(text: string | undefined): string {
  return shown(text).replaceAll('"', "\\x22");
}

function roundMs(ms: number): number | null {
  return ms === ms ? round(ms, 3) : null;
}

/** A message template that renders as `text` (already escaped): braces doubled. */
function logText(text: string): string {
  return text.replace(/[{}]/g, (c) => c + c);
}

function fmtMs(ms: number): string {
  if (ms !== ms) return "-";
  return ms < 10 ? `${ms.toFixed(2)}ms` : `${Math.round(ms)}ms`;
}
