/**
 * Errors raised by the protocol layer. Decoders never throw for "need more bytes"; they
 * report these through their sink when the input is malformed or over a limit.
 *
 * @module
 */

/**
 * EP error codes, carried in ERROR frames (see `protocol/SPEC.md` §8), with their names in
 * {@linkcode errorCodeName}.
 *
 * @example
 * ```ts
 * import { ErrorCode, errorCodeName } from "./errors.ts";
 * console.assert(ErrorCode.OVERLOADED === 102 && errorCodeName[ErrorCode.OVERLOADED] === "overloaded");
 * ```
 */
export const ErrorCode = {
  /** A frame or payload is structurally invalid. Connection-level; the sender closes. */
  MALFORMED: 1,
  /** A frame's declared payload length exceeds the limit. Connection-level. */
  FRAME_TOO_LARGE: 2,
  /** No protocol version in common. Connection-level. */
  UNSUPPORTED_VERSION: 3,
  /** Missing or wrong token. Connection-level. */
  UNAUTHORIZED: 4,
  /** A frame type that is unknown or not allowed in the connection's state. */
  UNEXPECTED_FRAME: 5,
  /** A per-connection limit was exceeded (jobs in flight, services, ...). */
  LIMIT_EXCEEDED: 6,
  /** The peer missed its heartbeats. Connection-level. */
  HEARTBEAT_TIMEOUT: 7,
  /** The request is invalid (bad service name, bad metadata). */
  BAD_REQUEST: 100,
  /** No worker has registered the service. */
  NO_SERVICE: 101,
  /** The service's queue is full. */
  OVERLOADED: 102,
  /** The job's deadline passed (queued or running). */
  TIMEOUT: 103,
  /** The worker holding the job was lost and the retry budget is spent. */
  WORKER_LOST: 104,
  /** The handler raised an error. */
  HANDLER_ERROR: 105,
  /** The job was cancelled. */
  CANCELLED: 106,
  /** The server is draining or shutting down and takes no new jobs. */
  SHUTTING_DOWN: 107,
  /** An unexpected internal failure. */
  INTERNAL: 108,
  /** The handler's reply is too large to be carried back (a ring or a frame limit). */
  REPLY_TOO_LARGE: 109,
} as const;

/** One of the values of {@linkcode ErrorCode}. */
export type ErrorCodeValue = typeof ErrorCode[keyof typeof ErrorCode];

/** Lower-case names of the error codes, as used in logs, metrics and the CLI. */
export const errorCodeName: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(
    Object.entries(ErrorCode).map(([k, v]) => [v, k.toLowerCase()]),
  ),
);

/**
 * Malformed EP input. `code` is the EP error code to send back before closing.
 *
 * @example
 * ```ts
 * import { ErrorCode, ProtocolError } from "./errors.ts";
 * const err = new ProtocolError(ErrorCode.MALFORMED, "Reserved bits set");
 * console.assert(err.code === 1);
 * ```
 */
export class ProtocolError extends Error {
  /** The EP error code. */
  readonly code: number;
  /** Creates the error. */
  constructor(code: number, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/**
 * A frame's declared length is over the limit. Raised as soon as the length is read,
 * before any payload is buffered.
 *
 * @example
 * ```ts
 * import { FrameTooLargeError } from "./errors.ts";
 * const err = new FrameTooLargeError(1 << 30, 1 << 24);
 * console.assert(err.code === 2);
 * ```
 */
export class FrameTooLargeError extends ProtocolError {
  /** The length the frame declared. */
  readonly size: number;
  /** The limit in force. */
  readonly limit: number;
  /** Creates the error. */
  constructor(size: number, limit: number, options?: ErrorOptions) {
    super(2, `Frame payload of ${size} bytes exceeds the limit of ${limit}`, options);
    this.name = "FrameTooLargeError";
    this.size = size;
    this.limit = limit;
  }
}

/**
 * An HTTP request that must be refused. `status` is the response status and the message is
 * the one-line reason sent in the body. When `close` is true the framing is lost and the
 * connection must be closed after the response.
 *
 * @example
 * ```ts
 * import { HttpError } from "./errors.ts";
 * const err = new HttpError(431, "Too many header fields");
 * console.assert(err.close);
 * ```
 */
export class HttpError extends Error {
  /** The HTTP status to answer with. */
  readonly status: number;
  /** Whether the connection must be closed after answering. */
  readonly close: boolean;
  /** Creates the error. */
  constructor(status: number, message: string, options?: ErrorOptions & { close?: boolean }) {
    super(message, options);
    this.name = "HttpError";
    this.status = status;
    this.close = options?.close ?? true;
  }
}

/**
 * An HTTP response that cannot be read: malformed, over a limit, or not asked for (see
 * `HttpResponseParser`). The connection it came on is unusable.
 *
 * @example
 * ```ts
 * import { HttpResponseError } from "./errors.ts";
 * const err = new HttpResponseError("Malformed status line");
 * console.assert(err.name === "HttpResponseError");
 * ```
 */
export class HttpResponseError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HttpResponseError";
  }
}
