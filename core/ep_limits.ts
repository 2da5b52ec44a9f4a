/**
 * What EP can carry, checked before a job is queued or a reply sent: ep's reserved `ep-`
 * metadata namespace, the metadata limits an HTTP request must fit (SPEC.md §2, §7), a
 * job's size as the handler rings count it, and the error for a reply EP cannot carry.
 *
 * @module
 */
import { MAX_META_ENTRIES } from "../protocol/ep_frames.ts";
import { ErrorCode, FrameTooLargeError } from "../protocol/errors.ts";
import { type Job, JobError } from "./job.ts";
/**
 * The metadata keys ep adds to an HTTP job at most (see `jobMeta`): `ep-method`,
 * `ep-path`, `ep-query`, `ep-request-id`, `ep-attempt`, `ep-hedge`.
 */
const HTTP_META_KEYS = 6;

/**
 * Removes the entries whose key is in ep's reserved `ep-` namespace (SPEC.md §10): what a
 * client sends there never reaches a handler. Returns `pairs` itself when it has none (the
 * usual case, no allocation).
 *
 * @example
 * ```ts
 * import { withoutReserved } from "./ep_limits.ts";
 * const kept = withoutReserved([["ep-path", "/evil"], ["accept", "text/plain"]]);
 * console.assert(kept.length === 1 && kept[0][0] === "accept");
 * ```
 */
export function withoutReserved(pairs: [string, string][]): [string, string][] {
  for (let i = 0; i < pairs.length; i++) {
    if (isReserved(pairs[i][0])) return pairs.filter(([k]) => !isReserved(k));
  }
  return pairs;
}

function isReserved(key: string): boolean {
  // "ep-" case-insensitively (HTTP names arrive lower-cased, library callers may not).
  return key.length >= 3 && (key.charCodeAt(0) | 0x20) === 0x65 &&
    (key.charCodeAt(1) | 0x20) === 0x70 && key.charCodeAt(2) === 0x2d;
}

/** UTF-8 byte length of a string (well-formed or not: a lone surrogate counts 3). */
export function utf8Bytes(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      n += 2; // a surrogate pair: 4 bytes for 2 units
      i++;
    } else n += 2;
  }
  return n;
}

/**
 * Why an HTTP request cannot become an EP job, or null when it can: EP metadata holds at
 * most 256 entries (ep adds `ep-method`, `ep-path`, `ep-query`), keys of 1–255 bytes and
 * values of at most 65 535 bytes (SPEC.md §2, §7). Lengths are counted in UTF-8 bytes. The
 * HTTP side answers such a request 431 before it becomes a job (an over-long path or query,
 * 414), so that it is never queued nor dispatched.
 *
 * @example
 * ```ts
 * import { httpMetaProblem } from "./ep_limits.ts";
 * console.assert(httpMetaProblem("/a", "", [["x-ok", "1"]]) === null);
 * const problem = httpMetaProblem("/a", "", [["x-" + "a".repeat(300), "1"]]);
 * console.assert(problem?.status === 431);
 * ```
 */
export function httpMetaProblem(
  path: string,
  query: string,
  headers: readonly (readonly [string, string])[],
): { status: 414 | 431; message: string } | null {
  // A UTF-16 unit is at most 3 bytes: only long strings need counting (the usual request
  // costs one length comparison per field).
  if (
    (path.length > 0x5555 && utf8Bytes(path) > 0xffff) ||
    (query.length > 0x5555 && utf8Bytes(query) > 0xffff)
  ) {
    return { status: 414, message: "Request target longer than 65535 bytes" };
  }
  if (headers.length + HTTP_META_KEYS > MAX_META_ENTRIES) {
    return {
      status: 431,
      message: `More than ${MAX_META_ENTRIES - HTTP_META_KEYS} header fields`,
    };
  }
  for (const [k, v] of headers) {
    if (k.length > 85 && utf8Bytes(k) > 255) {
      return {
        status: 431,
        message: `Header field name "${k.slice(0, 32)}..." is longer than 255 bytes`,
      };
    }
    if (v.length > 0x5555 && utf8Bytes(v) > 0xffff) {
      return { status: 431, message: `Header field "${k}" is longer than 65535 bytes` };
    }
  }
  return null;
}

/**
 * An upper bound of {@linkcode jobRingBytes}, from string lengths alone (a UTF-16 unit is
 * at most 3 UTF-8 bytes): when it fits a limit, the exact size need not be counted.
 *
 * @example
 * ```ts
 * import { jobRingBytes, jobRingBytesBound } from "./ep_limits.ts";
 * const job = {
 *   service: "echo", protocol: "http" as const, method: "GET", path: "/echo", query: "",
 *   headers: [["k", "ü"]] as [string, string][], body: new Uint8Array(3), deadlineMs: 0,
 *   priority: 0, remote: "",
 * };
 * console.assert(jobRingBytesBound(job) >= jobRingBytes(job));
 * ```
 */
export function jobRingBytesBound(job: Job): number {
  let n = 2 + job.body.length;
  for (const [k, v] of job.headers) n += 3 + 3 * (k.length + v.length);
  if (job.protocol === "http") {
    n += 3 * 3 + 24 + 3 * (job.method.length + job.path.length + job.query.length);
  }
  // ep-request-id (at most 64 ASCII characters), ep-attempt (up to 255), ep-hedge ("1").
  n += 3 + 13 + 64 + 3 + 10 + 3 + 3 + 8 + 1;
  return n;
}

/**
 * The size of a job as the handler rings carry it: its metadata (`jobMeta`,
 * encoded as in `protocol/ep_meta.ts`) plus its body, in bytes. Allocates nothing.
 *
 * @example
 * ```ts
 * import { jobRingBytes } from "./ep_limits.ts";
 * const size = jobRingBytes({
 *   service: "echo", protocol: "ep", method: "EP", path: "/echo", query: "",
 *   headers: [["k", "v"]], body: new Uint8Array(10), deadlineMs: 0, priority: 0, remote: "",
 * });
 * console.assert(size === 2 + 3 + 1 + 1 + 10);
 * ```
 */
export function jobRingBytes(job: Job, attempt = 1, hedge = false): number {
  let n = 0;
  let count = job.headers.length;
  for (const [k, v] of job.headers) n += 3 + utf8Bytes(k) + utf8Bytes(v);
  if (job.protocol === "http") {
    count += 3;
    n += 3 * 3 + "ep-method".length + "ep-path".length + "ep-query".length +
      utf8Bytes(job.method) + utf8Bytes(job.path) + utf8Bytes(job.query);
  }
  if (job.requestId !== undefined) {
    count++;
    n += 3 + "ep-request-id".length + utf8Bytes(job.requestId);
  }
  if (attempt > 1) {
    count++;
    n += 3 + "ep-attempt".length + String(attempt).length;
  }
  if (hedge) {
    count++;
    n += 3 + "ep-hedge".length + 1;
  }
  return (count > 0 ? 2 + n : 0) + job.body.length;
}

/**
 * The job error for a reply EP cannot carry (what the encoder threw): too large for a frame
 * (`reply_too_large`), or otherwise invalid (a metadata key EP does not allow, a status out
 * of range: `handler_error`, the handler's doing).
 *
 * @example
 * ```ts
 * import { unsendableReply } from "./ep_limits.ts";
 * import { FrameTooLargeError } from "../protocol/errors.ts";
 * console.assert(unsendableReply(new FrameTooLargeError(1 << 25, 1 << 24)).kind === "reply_too_large");
 * console.assert(unsendableReply(new RangeError('Invalid meta key "X"')).kind === "handler_error");
 * ```
 */
export function unsendableReply(err: unknown): JobError {
  if (err instanceof JobError) return err;
  if (err instanceof FrameTooLargeError) {
    return new JobError(
      ErrorCode.REPLY_TOO_LARGE,
      `Reply of ${err.size} bytes exceeds the limit of ${err.limit} bytes`,
      { cause: err },
    );
  }
  const why = err instanceof Error ? err.message : String(err);
  return new JobError(ErrorCode.HANDLER_ERROR, `Invalid reply from the handler: ${why}`, {
    cause: err,
  });
}
