/**
 * A job: one request for a service, whichever protocol it arrived on, and its answer.
 * HTTP requests and EP REQUEST frames both become a {@linkcode Job}; a
 * {@linkcode JobHandler} answers it with a {@linkcode JobResult} or a {@linkcode JobError}.
 *
 * @module
 */
import { isServiceName } from "../protocol/ep_frames.ts";

// A job fails with a JobError: part of the JobHandler contract, so importable from here too.
export { httpStatusOf, JobError } from "./errors.ts";

/** A request for a service. */
export interface Job {
  /** The service named by the request (for HTTP, by default the first path segment). */
  service: string;
  /** The protocol the job arrived on. */
  protocol: "http" | "ep";
  /** HTTP method, or `"EP"` for EP requests. */
  method: string;
  /** HTTP path (without the query), or `/` + service for EP requests. */
  path: string;
  /** HTTP query string without `?`; empty for EP. */
  query: string;
  /** HTTP header fields (lower-case names) or EP metadata, in order. */
  headers: [string, string][];
  /** The request body. Owned by the job. */
  body: Uint8Array;
  /** Milliseconds the client gives the job; 0 means the server's default. */
  deadlineMs: number;
  /** Priority, 0–255, higher served first. */
  priority: number;
  /** The peer's address. */
  remote: string;
  /**
   * Who waits for the answer. A balancer does not dispatch a queued job whose origin is
   * abandoned (the client's connection ended, or it cancelled the request): it answers it
   * `cancelled` instead, and no worker spends time on it.
   */
  origin?: JobOrigin;
}

/** The waiting side of a job (see {@linkcode Job.origin}). */
export interface JobOrigin {
  /** True once nobody waits for the answer any more. */
  readonly abandoned: boolean;
}

/** The answer to a job. */
export interface JobResult {
  /** Status with HTTP meaning, 200–599 (no body with 204 and 304); 200 when absent. */
  status?: number;
  /**
   * Response headers (HTTP) or reply metadata (EP). For HTTP, names and values are byte
   * strings (code units 0x00–0xFF, one byte each), as the request's are: see
   * `protocol/http_writer.ts`.
   */
  headers?: [string, string][];
  /** The body. Strings are sent as UTF-8. */
  body?: Uint8Array | string;
}

/**
 * Why a handler's answer cannot be sent, or `null` when it can: its status must be an
 * integer from 200 to 599 (what an EP REPLY and a final HTTP response carry; SPEC.md
 * §6.9), and a 204 or 304 answer has no body. The message is the one-line reason the
 * client gets (HTTP 500, or EP ERROR handler_error).
 *
 * @example
 * ```ts
 * import { replyProblem } from "./job.ts";
 * console.assert(replyProblem(99, 0) === "Handler returned status 99; allowed 200–599");
 * console.assert(replyProblem(204, 0) === null && replyProblem(404, 3) === null);
 * ```
 */
export function replyProblem(status: unknown, bodyLength: number): string | null {
  if (typeof status !== "number") {
    return `Handler returned status "${
      String(status).slice(0, 32)
    }" (a ${typeof status}); allowed 200–599`;
  }
  if (!Number.isInteger(status) || status < 200 || status > 599) {
    return `Handler returned status ${status}; allowed 200–599`;
  }
  if ((status === 204 || status === 304) && bodyLength > 0) {
    return `Handler returned a body with status ${status}; a ${status} response has no body`;
  }
  return null;
}

/** Answers jobs. May answer synchronously (faster) or with a promise. */
export type JobHandler = (job: Job) => JobResult | Promise<JobResult>;

/**
 * The default HTTP route: the first path segment names the service (`/user/login` →
 * `user`). Returns `""` when the path has no valid service segment.
 *
 * @example
 * ```ts
 * import { serviceFromPath } from "./job.ts";
 * console.assert(serviceFromPath("/echo/x") === "echo");
 * console.assert(serviceFromPath("/") === "");
 * ```
 */
export function serviceFromPath(path: string): string {
  if (path.charCodeAt(0) !== 0x2f) return "";
  let end = path.indexOf("/", 1);
  if (end < 0) end = path.length;
  const name = path.slice(1, end);
  return isServiceName(name) ? name : "";
}

/**
 * The pool's metadata for a job: HTTP method, path and query as `ep-method`, `ep-path`,
 * `ep-query` (SPEC.md §10) followed by the headers; EP metadata as it came.
 *
 * @example
 * ```ts
 * import { jobMeta } from "./job.ts";
 * const meta = jobMeta({
 *   service: "echo", protocol: "http", method: "GET", path: "/echo", query: "a=1",
 *   headers: [["host", "x"]], body: new Uint8Array(0), deadlineMs: 0, priority: 0, remote: "",
 * });
 * console.assert(meta[0][0] === "ep-method" && meta.length === 4);
 * ```
 */
export function jobMeta(job: Job): [string, string][] {
  return job.protocol === "http"
    ? [["ep-method", job.method], ["ep-path", job.path], ["ep-query", job.query], ...job.headers]
    : job.headers;
}
