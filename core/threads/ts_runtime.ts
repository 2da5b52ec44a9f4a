/**
 * The TypeScript handler runtime: runs on each handler thread and calls the handlers of a
 * user module, one exported function per service. This is how ep runs TypeScript handlers
 * when it is used as a library (Lua handlers have their own runtime in `lua/`).
 *
 * Pass it to the pool as `module` (`TS_HANDLER_RUNTIME` from `pool.ts`) with
 * `moduleOptions: { handlers: "<URL of the handler module>" }`. The handler module exports
 * functions by service name (any string, `export { login as "user.login" }` included):
 *
 * ```ts ignore
 * // handlers.ts
 * import type { HandlerRequest } from "@ep/ep/core";
 * export function echo(req: HandlerRequest) { return req.body; }
 * export async function user(req: HandlerRequest) {
 *   const name = new TextDecoder().decode(req.body);
 *   if (!name) return { status: 400, body: "Name required" };
 *   return `hello ${name}`;
 * }
 * ```
 *
 * A handler may return (or resolve with) bytes, a string (sent as UTF-8, status 200), or
 * `{ status, meta?, body }`. A throw or a rejection becomes an error reply
 * (`HandlerError` on the main thread) and the thread goes on. TypeScript handlers
 * cannot be interrupted: the interrupt flag is ignored.
 *
 * @example
 * ```ts ignore
 * import { HandlerPool, TS_HANDLER_RUNTIME } from "./pool.ts";
 * const pool = await HandlerPool.start({
 *   module: TS_HANDLER_RUNTIME,
 *   moduleOptions: { handlers: new URL("./handlers.ts", import.meta.url).href },
 * });
 * await pool.close();
 * ```
 *
 * @module
 */

import type {
  HandlerRequest,
  HandlerResult,
  HandlerRuntime,
  HandlerRuntimeContext,
} from "./runtime.ts";

/**
 * Options of the TypeScript handler runtime (the pool's `moduleOptions`).
 *
 * @example
 * ```ts
 * import type { TsHandlerOptions } from "./ts_runtime.ts";
 * const options: TsHandlerOptions = { handlers: "file:///srv/handlers.ts" };
 * console.assert(options.handlers.startsWith("file:"));
 * ```
 */
export interface TsHandlerOptions {
  /** URL of the module whose exported functions are the handlers, by service name. */
  handlers: string;
}

/**
 * A TypeScript handler.
 *
 * @example
 * ```ts
 * import type { TsHandler } from "./ts_runtime.ts";
 * const echo: TsHandler = (req) => req.body;
 * console.assert(typeof echo === "function");
 * ```
 */
export type TsHandler = (req: HandlerRequest) => HandlerResult | Promise<HandlerResult>;

/**
 * Loads the handler module and returns the runtime the pool's thread drives. Services are
 * the module's exported functions, sorted by name.
 *
 * @throws {TypeError} if `options.handlers` is missing or the module exports no function.
 *
 * @example
 * ```ts ignore
 * import { createHandlerRuntime } from "./ts_runtime.ts";
 * const runtime = await createHandlerRuntime({
 *   thread: 0,
 *   options: { handlers: new URL("./handlers.ts", import.meta.url).href },
 *   interrupt: new Int32Array(1),
 * });
 * console.log(runtime.services);
 * ```
 */
export async function createHandlerRuntime(
  context: HandlerRuntimeContext,
): Promise<HandlerRuntime> {
  const options = context.options as Partial<TsHandlerOptions> | undefined;
  const url = options?.handlers;
  if (typeof url !== "string" || url === "") {
    throw new TypeError(
      `The TypeScript handler runtime needs moduleOptions.handlers, a module URL: "${url}"`,
    );
  }
  const mod = await import(url) as Record<string, unknown>;
  const services = Object.keys(mod).filter((k) => typeof mod[k] === "function").sort();
  if (services.length === 0) {
    throw new TypeError(`Handler module exports no function: "${url}"`);
  }
  const table = services.map((s) => mod[s] as TsHandler);
  return {
    services,
    handle: (req, serviceIndex) => table[serviceIndex](req),
  };
}
