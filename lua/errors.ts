/**
 * Errors raised by `lua/`: a Lua handler that failed, was interrupted, or ran out of memory.
 * All three extend {@linkcode LuaError}, so `err instanceof LuaError` catches any of them.
 * Each sets `name` and passes `cause` through.
 *
 * The `message` is always one line and never holds a file path, so it can go to a client
 * as the reason of an error reply; the full Lua message and stack traceback are kept in
 * {@linkcode LuaError.traceback} for the log.
 *
 * @module
 */

/**
 * Options shared by the Lua error classes.
 *
 * @example
 * ```ts
 * import { LuaError, type LuaErrorOptions } from "./errors.ts";
 * const options: LuaErrorOptions = { traceback: "x.lua:1: boom\nstack traceback:", cause: 1 };
 * console.assert(new LuaError("x.lua:1: boom", options).cause === 1);
 * ```
 */
export interface LuaErrorOptions extends ErrorOptions {
  /** The Lua error message with its stack traceback, for the log (not for clients). */
  traceback?: string;
}

/**
 * A Lua error: a handler raised an error (`error(...)`, a runtime error such as indexing
 * nil), returned something that is not a response, or a script failed to load.
 *
 * @example
 * ```ts
 * import { LuaError } from "./errors.ts";
 * const err = new LuaError("user.lua:3: boom", {
 *   traceback: "user.lua:3: boom\nstack traceback:\n\t[C]: in function 'error'",
 * });
 * console.assert(err.name === "LuaError" && err.traceback.includes("stack traceback"));
 * ```
 */
export class LuaError extends Error {
  /** The Lua error message with its stack traceback (empty when there is none). */
  readonly traceback: string;
  /** Creates the error; `message` should be one line. */
  constructor(message: string, options?: LuaErrorOptions) {
    super(message, options);
    this.name = "LuaError";
    this.traceback = options?.traceback ?? "";
  }
}

/**
 * A Lua handler returned something that is not a response ep can send (a function, a
 * status outside 200–599, a body on 204, a header without a name, …): ep's verdict on the
 * reply, which its client is told even when handlers' own errors are not.
 *
 * @example
 * ```ts
 * import { LuaError, LuaReplyError } from "./errors.ts";
 * const err = new LuaReplyError("Handler returned status 99; allowed 200–599");
 * console.assert(err instanceof LuaError && err.name === "LuaReplyError");
 * ```
 */
export class LuaReplyError extends LuaError {
  /** Creates the error. */
  constructor(message: string, options?: LuaErrorOptions) {
    super(message, options);
    this.name = "LuaReplyError";
  }
}

/**
 * A Lua handler was interrupted because it ran past its time (the thread's interrupt flag
 * was set while it ran). The engine that ran it stays usable.
 *
 * @example
 * ```ts
 * import { LuaError, LuaTimeoutError } from "./errors.ts";
 * const err = new LuaTimeoutError("user");
 * console.assert(err instanceof LuaError && err.name === "LuaTimeoutError");
 * console.assert(err.message === 'Lua handler of service "user" was interrupted');
 * ```
 */
export class LuaTimeoutError extends LuaError {
  /** The service whose handler (or timer callback) was interrupted. */
  readonly service: string;
  /** Creates the error. */
  constructor(service: string, options?: LuaErrorOptions) {
    super(`Lua handler of service "${service}" was interrupted`, options);
    this.name = "LuaTimeoutError";
    this.service = service;
  }
}

/**
 * A Lua handler ran out of memory: it tried to allocate past the engine's memory cap.
 * `engineUsable` says whether the engine got back under its cap after a full garbage
 * collection; when it is false the engine must be replaced (a handler keeps memory alive
 * in a global), which `LuaHandlerRuntime` does by itself.
 *
 * @example
 * ```ts
 * import { LuaError, LuaMemoryError } from "./errors.ts";
 * const err = new LuaMemoryError("user", 8 << 20, true);
 * console.assert(err instanceof LuaError && err.limitBytes === 8 << 20);
 * ```
 */
export class LuaMemoryError extends LuaError {
  /** The service whose handler ran out of memory. */
  readonly service: string;
  /** The engine's memory cap in bytes. */
  readonly limitBytes: number;
  /** Whether the engine can go on serving (see the class description). */
  readonly engineUsable: boolean;
  /** Creates the error. */
  constructor(
    service: string,
    limitBytes: number,
    engineUsable: boolean,
    options?: LuaErrorOptions,
  ) {
    super(
      `Lua handler of service "${service}" ran out of memory (limit ${limitBytes} bytes)`,
      options,
    );
    this.name = "LuaMemoryError";
    this.service = service;
    this.limitBytes = limitBytes;
    this.engineUsable = engineUsable;
  }
}
