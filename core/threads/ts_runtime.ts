/**
 * The TypeScript handler runtime: runs on each handler thread and calls the handlers of a
 * user module, one exported function per service. This is how ep runs TypeScript handlers
 * when it is used as a library (Lua handlers have their own runtime in `lua/`).
 *
 * Pass it to the pool as `module` (`TS_HANDLER_RUNTIME` from `pool.ts`) with
 * `moduleOptions: { handlers: "<URL of the handler module>" }`. The handler module exports
 * functions by service name (any string, `export { login as "user.login" }` included), each
 * a {@linkcode Handler}: an `EpRequest` and a `HandlerContext` in, a result out:
 *
 * ```ts ignore
 * // handlers.ts
 * import type { EpRequest, HandlerContext } from "@ep/ep";
 * export function echo(req: EpRequest) { return req.body; }
 * export async function user(req: EpRequest, ctx: HandlerContext) {
 *   const name = req.searchParams.get("name") ?? req.text();
 *   if (!name) return { status: 400, body: "Name required" };
 *   const quota = await ctx.call("quota", name, { timeoutMs: req.deadlineMs });
 *   return { headers: { "content-type": "text/plain" }, body: `hello ${name}, ${quota.status}` };
 * }
 * ```
 *
 * A handler may return (or resolve with) bytes, a string (sent as UTF-8, status 200), or
 * `{ status, headers?, body }` (`meta` bytes instead of `headers` work too). A throw or a
 * rejection becomes an error reply (`HandlerError` on the main thread) and the thread goes
 * on. A running TypeScript handler cannot be interrupted (the interrupt flag is ignored):
 * its request's `signal` fires at its deadline and when its client goes away, and it is up
 * to the handler to stop.
 *
 * Per job the runtime makes the request object (its metadata decoded only when read) and
 * keeps it by slot until the job ends, for `cancel`; the context is one per thread.
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

import type { HandlerRuntime, HandlerRuntimeContext } from "./runtime.ts";
import { JobRequest } from "./ep_request.ts";
import { type Handler, handlerContext, type Handlers } from "./handler_context.ts";

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
 * The runtime over a map of handlers: services are its functions, sorted by name. Each job
 * gets an `EpRequest` and the one context; `cancel` fires the job's signal, `ended` lets go
 * of it. A handler thread runs it over a module's exports; `InlinePool` runs it on the main
 * thread over a map of functions.
 *
 * @throws {TypeError} when the map has no function.
 *
 * @example
 * ```ts
 * import { tsHandlerRuntime } from "./ts_runtime.ts";
 * const runtime = tsHandlerRuntime({ hi: (req) => `hi ${req.text()}` }, undefined);
 * const body = new TextEncoder().encode("ada");
 * const reply = runtime.handle({ id: 1, service: "hi", meta: new Uint8Array(), body }, 0);
 * runtime.ended!(1);
 * console.assert(reply === "hi ada");
 * ```
 */
export function tsHandlerRuntime(
  handlers: Handlers | Readonly<Record<string, unknown>>,
  call: HandlerRuntimeContext["call"],
): HandlerRuntime {
  const services = Object.keys(handlers).filter((k) => typeof handlers[k] === "function").sort();
  if (services.length === 0) throw new TypeError("No handler function given");
  const table = services.map((s) => handlers[s] as Handler);
  const ctx = handlerContext(call);
  // Jobs in flight by slot (a ticket's low 16 bits, HandlerRequest.id): an array store
  // per job, where a Map's set and delete cost ten times as much.
  const live: (JobRequest | undefined)[] = [];
  const tickets: number[] = [];
  return {
    services,
    handle(req, serviceIndex) {
      const r = new JobRequest(req);
      const slot = req.id & 0xffff;
      live[slot] = r;
      tickets[slot] = req.id;
      return table[serviceIndex](r, ctx);
    },
    cancel(id) {
      const slot = id & 0xffff;
      if (tickets[slot] === id) live[slot]!.cancel();
    },
    ended(id) {
      const slot = id & 0xffff;
      if (tickets[slot] !== id) return;
      live[slot]!.end();
      live[slot] = undefined;
      tickets[slot] = 0;
    },
  };
}

/**
 * Loads the handler module and returns the runtime the pool's thread drives. Services are
 * the module's exported functions, sorted by name.
 *
 * @throws {TypeError} if `options.handlers` is missing or not an absolute URL, or the module
 * exports no function.
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
  // A relative specifier would resolve against this file, inside ep: never what was meant.
  if (!URL.canParse(url)) {
    throw new TypeError(
      `The TypeScript handler module must be an absolute URL (new URL("./services.ts", import.meta.url)): "${url}"`,
    );
  }
  const mod = await import(url) as Record<string, unknown>;
  if (!Object.keys(mod).some((k) => typeof mod[k] === "function")) {
    throw new TypeError(`Handler module exports no function: "${url}"`);
  }
  return tsHandlerRuntime(mod, context.call);
}
