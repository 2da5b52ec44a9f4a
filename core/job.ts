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
  /**
   * What the request said of hedging (`ep-hedge`, SPEC.md §9.10): true (`1`), the balancer
   * may send a copy of it to another worker when it runs long; false (`0`), never; absent,
   * as its service is configured.
   */
  hedge?: boolean;
  /**
   * The request id (set by the balancer that took the job: the client's `x-request-id`
   * when it is a short token, else one it makes), sent to workers and handlers as
   * `ep-request-id` and shown in logs and error replies.
   */
  requestId?: string;
}

/** The waiting side of a job (see {@linkcode Job.origin}). */
export interface JobOrigin {
  /** True once nobody waits for the answer any more. */
  readonly abandoned: boolean;
  /**
   * Optional: registers `listener`, called when the origin becomes abandoned (at most once
   * per listener; the caller checks `abandoned` for an origin already abandoned). A balancer
   * holding jobs of an origin that offers it does not poll `abandoned` on a timer.
   */
  watch?(listener: () => void): void;
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
 * The metadata a job travels with to workers and handler threads: for HTTP, its method, path
 * and query as `ep-method`, `ep-path`, `ep-query`; for every job its `ep-request-id`, on a
 * redelivery `ep-attempt` (2, 3, …), on a hedged copy `ep-hedge: 1` (SPEC.md §10); then its
 * headers (HTTP) or EP metadata, in order.
 *
 * @example
 * ```ts
 * import { jobMeta } from "./job.ts";
 * const meta = jobMeta({
 *   service: "echo", protocol: "http", method: "GET", path: "/echo", query: "a=1",
 *   headers: [["host", "x"]], body: new Uint8Array(0), deadlineMs: 0, priority: 0, remote: "",
 *   requestId: "r1",
 * }, 2);
 * console.assert(meta.map(([k]) => k).join() === "ep-method,ep-path,ep-query,ep-request-id,ep-attempt,host");
 * ```
 */
export function jobMeta(job: Job, attempt = 1, hedge = false): [string, string][] {
  const id = job.requestId;
  if (job.protocol !== "http" && id === undefined && attempt <= 1 && !hedge) return job.headers;
  const meta: [string, string][] = job.protocol === "http"
    ? [["ep-method", job.method], ["ep-path", job.path], ["ep-query", job.query]]
    : [];
  if (id !== undefined) meta.push(["ep-request-id", id]);
  if (attempt > 1) meta.push(["ep-attempt", String(attempt)]);
  if (hedge) meta.push(["ep-hedge", "1"]);
  for (let i = 0; i < job.headers.length; i++) meta.push(job.headers[i]);
  return meta;
}

const ID_PREFIX = Array.from(
  crypto.getRandomValues(new Uint8Array(4)),
  (b) => b.toString(16).padStart(2, "0"),
).join("");
let idCounter = 0;
const CLIENT_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * The request id for a job: the client's own (`x-request-id`, when it is 1–64 characters of
 * `[A-Za-z0-9._:-]`), else a new one: 16 hex digits, a random per-process prefix and a
 * counter (unique in practice, cheap to make).
 *
 * @example
 * ```ts
 * import { requestIdOf } from "./job.ts";
 * const job = (headers: [string, string][]) => ({
 *   service: "s", protocol: "http" as const, method: "GET", path: "/s", query: "", headers,
 *   body: new Uint8Array(0), deadlineMs: 0, priority: 0, remote: "",
 * });
 * console.assert(requestIdOf(job([["x-request-id", "abc-1"]])) === "abc-1");
 * console.assert(/^[0-9a-f]{16}$/.test(requestIdOf(job([["x-request-id", "bad id"]]))));
 * ```
 */
export function requestIdOf(job: Job): string {
  for (let i = 0; i < job.headers.length; i++) {
    const [k, v] = job.headers[i];
    if (k === "x-request-id" && CLIENT_ID.test(v)) return v;
  }
  idCounter = (idCounter + 1) >>> 0;
  return ID_PREFIX + idCounter.toString(16).padStart(8, "0");
}

/**
 * What a request's `ep-hedge` field says (SPEC.md §10, §9.10): `1` true, `0` false,
 * anything else or absent undefined (as the service is configured). Read by the HTTP and
 * EP connections before they drop the client's `ep-` fields.
 *
 * @example
 * ```ts
 * import { hedgeOf } from "./job.ts";
 * console.assert(hedgeOf([["ep-hedge", "1"]]) === true && hedgeOf([]) === undefined);
 * ```
 */
export function hedgeOf(headers: readonly (readonly [string, string])[]): boolean | undefined {
  for (let i = 0; i < headers.length; i++) {
    const [k, v] = headers[i];
    if (k === "ep-hedge") return v === "1" ? true : v === "0" ? false : undefined;
  }
  return undefined;
}
