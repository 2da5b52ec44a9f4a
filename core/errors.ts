/**
 * Errors raised by `core/`, in one place, by meaning: a job that failed with an EP error
 * code ({@linkcode JobError}), the network's (a peer that does not read, a client
 * connection that closed), the rings' and the handler-thread pool's. Each class is a
 * condition a caller handles (the balancer maps them to EP error codes and HTTP statuses);
 * each sets `name` and passes `cause` through.
 *
 * @module
 */
import { ErrorCode, errorCodeName } from "../protocol/errors.ts";

// ---- jobs

const HTTP_STATUS: Readonly<Record<number, number>> = {
  [ErrorCode.BAD_REQUEST]: 400,
  [ErrorCode.UNAUTHORIZED]: 401,
  [ErrorCode.NO_SERVICE]: 503,
  [ErrorCode.OVERLOADED]: 503,
  [ErrorCode.TIMEOUT]: 504,
  [ErrorCode.WORKER_LOST]: 502,
  [ErrorCode.HANDLER_ERROR]: 500,
  [ErrorCode.CANCELLED]: 499,
  [ErrorCode.SHUTTING_DOWN]: 503,
  [ErrorCode.INTERNAL]: 500,
  [ErrorCode.REPLY_TOO_LARGE]: 502,
  [ErrorCode.LIMIT_EXCEEDED]: 429,
};

/**
 * The HTTP status that stands for an EP error code (SPEC.md, "Error codes").
 *
 * @example
 * ```ts
 * import { httpStatusOf } from "./errors.ts";
 * import { ErrorCode } from "../protocol/errors.ts";
 * console.assert(httpStatusOf(ErrorCode.TIMEOUT) === 504);
 * ```
 */
export function httpStatusOf(code: number): number {
  return HTTP_STATUS[code] ?? 500;
}

/**
 * A job that failed with an EP error code: answered as an EP ERROR frame or as the
 * matching HTTP status, with the message as the one-line reason.
 *
 * @example
 * ```ts
 * import { JobError } from "./errors.ts";
 * import { ErrorCode } from "../protocol/errors.ts";
 * const err = new JobError(ErrorCode.NO_SERVICE, 'No service "x"');
 * console.assert(err.status === 503 && err.kind === "no_service");
 * ```
 */
export class JobError extends Error {
  /** The EP error code. */
  readonly code: number;
  /** Creates the error. */
  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "JobError";
    this.code = code;
  }
  /** The HTTP status for this error. */
  get status(): number {
    return httpStatusOf(this.code);
  }
  /** The lower-case name of the code, such as `"overloaded"`. */
  get kind(): string {
    return errorCodeName[this.code] ?? "internal";
  }
}

// ---- network

/**
 * A peer was closed because it did not read its replies (its socket's send buffer stayed
 * full past the transport's limit).
 *
 * @example
 * ```ts
 * import { SlowPeerError } from "./errors.ts";
 * const err = new SlowPeerError('Peer "10.0.0.7:4000" did not read for too long');
 * console.assert(err.name === "SlowPeerError");
 * ```
 */
export class SlowPeerError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SlowPeerError";
  }
}

/**
 * An EP client's connection closed before the request was answered: requests in flight
 * reject with it at once, and new ones too.
 *
 * @example
 * ```ts
 * import { ConnectionClosedError } from "./errors.ts";
 * const err = new ConnectionClosedError("Connection closed by the server");
 * console.assert(err.name === "ConnectionClosedError");
 * ```
 */
export class ConnectionClosedError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

/**
 * An EP client could reach none of its servers: the request was never sent (so retrying it
 * is always safe). Its `cause` is the last server's failure (a refused connection, a
 * refusal such as `unauthorized`, no WELCOME in time).
 *
 * @example
 * ```ts
 * import { ConnectionClosedError, ServerUnreachableError } from "./errors.ts";
 * const err = new ServerUnreachableError('No server reachable ("10.0.0.1:7070": refused)');
 * console.assert(err instanceof ConnectionClosedError && err.name === "ServerUnreachableError");
 * ```
 */
export class ServerUnreachableError extends ConnectionClosedError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ServerUnreachableError";
  }
}

/**
 * A call of a service that could not be made at all: no balancer of its cluster could be
 * reached. Its `kind` is `"unavailable"` (what `ep.call` returns to a handler); where only
 * an EP code can travel it is `internal`.
 *
 * @example
 * ```ts
 * import { CallUnavailableError } from "./errors.ts";
 * const err = new CallUnavailableError("No balancer of billing is reachable");
 * console.assert(err.kind === "unavailable" && err.name === "CallUnavailableError");
 * ```
 */
export class CallUnavailableError extends JobError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.INTERNAL, message, options);
    this.name = "CallUnavailableError";
  }
  /** Always `"unavailable"`. */
  override get kind(): string {
    return "unavailable";
  }
}

// ---- rings and the handler-thread pool

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
 * The pool could not start: a handler thread (its runtime, or the handler modules it loads)
 * failed or was not ready in time. The pool is closed again before this is thrown.
 *
 * @example
 * ```ts
 * import { PoolStartError } from "./errors.ts";
 * const err = new PoolStartError("Handler pool failed to start: thread 0: boom");
 * console.assert(err.name === "PoolStartError");
 * ```
 */
export class PoolStartError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PoolStartError";
  }
}

/**
 * The pool took no job although its free-slot count said it had room: nothing was taken.
 * It does not happen while the count is right; the balancer answers such a job `internal`
 * and logs this error.
 *
 * @example
 * ```ts
 * import { PoolFullError } from "./errors.ts";
 * console.assert(new PoolFullError().message === "Pool had no free slot");
 * ```
 */
export class PoolFullError extends Error {
  /** Creates the error. */
  constructor(message = "Pool had no free slot", options?: ErrorOptions) {
    super(message, options);
    this.name = "PoolFullError";
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
