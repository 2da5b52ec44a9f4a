/**
 * Errors raised by `core/`: the rings and the handler-thread pool. Each class is a condition
 * a caller handles (the balancer maps them to EP error codes and HTTP statuses); each sets
 * `name` and passes `cause` through.
 *
 * @module
 */

/**
 * A message cannot fit in a ring, however empty the ring is. Raised before anything is
 * written, so the ring is never corrupted; the caller refuses the job (or carries it
 * another way).
 *
 * @example
 * ```ts
 * import { RingMessageTooLargeError } from "./errors.ts";
 * const err = new RingMessageTooLargeError(1 << 20, 524_272);
 * console.assert(err.name === "RingMessageTooLargeError" && err.size === 1 << 20);
 * ```
 */
export class RingMessageTooLargeError extends RangeError {
  /** The payload size that was offered, in bytes. */
  readonly size: number;
  /** The largest payload the ring accepts, in bytes. */
  readonly limit: number;
  /** Creates the error. */
  constructor(size: number, limit: number, options?: ErrorOptions) {
    super(`Message of ${size} bytes exceeds the ring's limit of ${limit} bytes`, options);
    this.name = "RingMessageTooLargeError";
    this.size = size;
    this.limit = limit;
  }
}

/**
 * The handler thread that held a job was lost (an uncaught error outside a handler,
 * `self.close()`, `Deno.exit()` in the worker). The job may or may not have run; the
 * thread is restarted and the other threads keep serving.
 *
 * @example
 * ```ts
 * import { HandlerThreadLostError } from "./errors.ts";
 * const err = new HandlerThreadLostError(2, "Uncaught Error: boom");
 * console.assert(err.thread === 2 && err.message.includes("boom"));
 * ```
 */
export class HandlerThreadLostError extends Error {
  /** Index of the thread that was lost. */
  readonly thread: number;
  /** Creates the error; `reason` says how the thread ended. */
  constructor(thread: number, reason: string, options?: ErrorOptions) {
    super(`Handler thread ${thread} was lost: ${reason}`, options);
    this.name = "HandlerThreadLostError";
    this.thread = thread;
  }
}

/**
 * The pool is closing or closed and takes no new jobs, or it closed before the job could
 * finish (`close({ drain: false })`, or a drain that ran out of time).
 *
 * @example
 * ```ts
 * import { PoolClosedError } from "./errors.ts";
 * const err = new PoolClosedError("Pool is closed");
 * console.assert(err.name === "PoolClosedError");
 * ```
 */
export class PoolClosedError extends Error {
  /** Creates the error. */
  constructor(message = "Handler pool is closed", options?: ErrorOptions) {
    super(message, options);
    this.name = "PoolClosedError";
  }
}

/**
 * A handler threw or rejected. The error crossed a thread boundary, so only its name,
 * message and stack survive; `handlerErrorName` is the original `name` (`"TypeError"`, …).
 *
 * @example
 * ```ts
 * import { HandlerError } from "./errors.ts";
 * const err = new HandlerError("Unknown user \"bob\"", { handlerErrorName: "Error" });
 * console.assert(err.name === "HandlerError" && err.handlerErrorName === "Error");
 * ```
 */
export class HandlerError extends Error {
  /** The `name` of the error the handler raised. */
  readonly handlerErrorName: string;
  /** Creates the error. */
  constructor(
    message: string,
    options?: ErrorOptions & { handlerErrorName?: string; handlerStack?: string },
  ) {
    super(message, options);
    this.name = "HandlerError";
    this.handlerErrorName = options?.handlerErrorName ?? "Error";
    if (options?.handlerStack) this.stack = options.handlerStack;
  }
}

/**
 * A job's deadline passed before its handler replied. The thread running it is asked to
 * interrupt it; its slot stays taken until the thread lets go of the job.
 *
 * @example
 * ```ts
 * import { JobTimeoutError } from "./errors.ts";
 * const err = new JobTimeoutError(250);
 * console.assert(err.deadlineMs === 250);
 * ```
 */
export class JobTimeoutError extends Error {
  /** The deadline the job was given, in milliseconds from submission. */
  readonly deadlineMs: number;
  /** Creates the error. */
  constructor(deadlineMs: number, options?: ErrorOptions) {
    super(`Job did not finish within its deadline of ${deadlineMs} ms`, options);
    this.name = "JobTimeoutError";
    this.deadlineMs = deadlineMs;
  }
}
