/**
 * What a client sees when the handler pool fails a job: the pool's errors (`errors.ts`)
 * mapped to the {@linkcode JobError} of the job, with the code a client gets (an HTTP
 * status or an EP error code). Two paths hand jobs to a pool and share this mapping: the
 * balancer's all-in-one provider (`LocalPoolProvider`) and a module worker (`WorkerNode`).
 *
 * It also keeps {@linkcode handlerCounters}, the process's count of handler failures that
 * the metrics report (`ep_lua_*`), since the mapping is where those failures are seen.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "../../protocol/errors.ts";
import {
  HandlerError,
  HandlerThreadLostError,
  JobTimeoutError,
  PoolClosedError,
  RingMessageTooLargeError,
} from "../errors.ts";
import { JobError } from "../job.ts";

const log = getLogger(["ep", "handler"]);

/**
 * Handler failures seen by this process: Lua errors turned into error replies, and jobs
 * interrupted at their deadline (the Lua hook stops them; metrics `ep_lua_*`).
 *
 * @example
 * ```ts
 * import { handlerCounters } from "./job_errors.ts";
 * console.assert(handlerCounters.errors >= 0);
 * ```
 */
export const handlerCounters: { errors: number; interrupts: number } = {
  errors: 0,
  interrupts: 0,
};

/**
 * Maps a pool failure reported for a job (through its reply callback) to the job error a
 * client sees. A {@linkcode RingMessageTooLargeError} there is the handler's *reply* that
 * did not fit (`reply_too_large`); a request that does not fit is refused by `submit`
 * itself (see {@linkcode submitError}).
 *
 * @example
 * ```ts
 * import { poolError } from "./job_errors.ts";
 * import { PoolClosedError } from "../errors.ts";
 * console.assert(poolError(new PoolClosedError("closed")).kind === "shutting_down");
 * ```
 */
export function poolError(err: Error, service = ""): JobError {
  if (err instanceof JobError) return err;
  if (err instanceof JobTimeoutError) handlerCounters.interrupts++;
  if (err instanceof HandlerError) {
    if (err.handlerErrorName.startsWith("Lua")) handlerCounters.errors++;
    // The client gets the first line; the log gets the whole story (a Lua traceback).
    log.warn("Handler of {service} failed: {error}", { service, error: err });
  }
  if (err instanceof JobTimeoutError) {
    return new JobError(ErrorCode.TIMEOUT, "Handler timed out", { cause: err });
  }
  if (err instanceof HandlerError) {
    const line = err.message.split("\n")[0];
    return new JobError(ErrorCode.HANDLER_ERROR, line || "Handler failed", { cause: err });
  }
  if (err instanceof HandlerThreadLostError) {
    return new JobError(ErrorCode.WORKER_LOST, "Handler thread lost", { cause: err });
  }
  if (err instanceof PoolClosedError) {
    return new JobError(ErrorCode.SHUTTING_DOWN, "Shutting down", { cause: err });
  }
  if (err instanceof RingMessageTooLargeError) {
    return new JobError(
      ErrorCode.REPLY_TOO_LARGE,
      `Reply of ${err.size} bytes exceeds the limit of ${err.limit} bytes of the handler rings`,
      { cause: err },
    );
  }
  log.error("Unexpected handler pool failure for {service}: {error}", { service, error: err });
  return new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
}

/**
 * Maps what `HandlerPool.submit` (or the metadata encoding before it) threw to
 * the job error a client sees. The pool takes nothing when it throws.
 *
 * @example
 * ```ts
 * import { submitError } from "./job_errors.ts";
 * import { RingMessageTooLargeError } from "../errors.ts";
 * const err = submitError(new RingMessageTooLargeError(40_000, 32_752), "echo");
 * console.assert(err.kind === "bad_request" && err.message.includes("32752"));
 * ```
 */
export function submitError(err: unknown, service: string): JobError {
  if (err instanceof RingMessageTooLargeError) {
    return new JobError(
      ErrorCode.BAD_REQUEST,
      `Request of ${err.size} bytes exceeds the limit of ${err.limit} bytes for the handlers of "${service}"`,
      { cause: err },
    );
  }
  if (err instanceof PoolClosedError) {
    return new JobError(ErrorCode.SHUTTING_DOWN, "Shutting down", { cause: err });
  }
  if (err instanceof RangeError) {
    // encodeMeta: a key over 255 bytes or a value over 65 535 (a library caller's job).
    return new JobError(ErrorCode.BAD_REQUEST, `Invalid request: ${err.message}`, { cause: err });
  }
  log.error("Cannot hand a job of {service} to the handler pool: {error}", {
    service,
    error: err,
  });
  return new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
}
