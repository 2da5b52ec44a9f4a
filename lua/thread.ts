/**
 * The Lua handler runtime for the handler-thread pool: one wasmoon engine per thread
 * (`LuaHandlerRuntime`) serving the services a control script declared. Pass
 * {@linkcode LUA_RUNTIME} as the pool's `module` with {@linkcode LuaThreadOptions}.
 *
 * Services come from files (`ep.service("echo", "services/echo.lua")`), read on the
 * thread, or are written inline in the control script (`ep.service("x", function(req) …
 * end)`): then the thread runs the control script once more in "thread" mode, where only
 * `ep.service` does anything, to pick up the functions.
 *
 * `ep.call` is handed to the main thread through the thread's rings (the context's `call`),
 * which calls through its own balancer, the balancers it pulls from, or an upstream.
 *
 * @module
 */
import { decodeMeta, encodeMeta } from "../protocol/ep_meta.ts";
import type {
  HandlerRequest,
  HandlerResult,
  HandlerRuntime,
  HandlerRuntimeContext,
} from "../core/threads/runtime.ts";
import {
  LuaHandlerRuntime,
  type LuaJob,
  type LuaReply,
  type LuaServiceSource,
} from "./handler_runtime.ts";
import { LuaError } from "./errors.ts";
import { configureLogging } from "../core/logging.ts";

/**
 * URL of this module, for `HandlerPool.start({ module: LUA_RUNTIME, … })`.
 *
 * @example
 * ```ts
 * import { LUA_RUNTIME } from "./thread.ts";
 * console.assert(LUA_RUNTIME.endsWith("/lua/thread.ts"));
 * ```
 */
export const LUA_RUNTIME: string = import.meta.url;

/**
 * Options of the Lua runtime (the pool's `moduleOptions`).
 *
 * @example
 * ```ts
 * import type { LuaThreadOptions } from "./thread.ts";
 * const o: LuaThreadOptions = {
 *   services: [{ name: "echo", file: "/srv/scripts/services/echo.lua" }],
 *   scriptDir: "/srv/scripts/",
 * };
 * console.assert(o.services.length === 1);
 * ```
 */
export interface LuaThreadOptions {
  /** Services: a file (absolute path) returning the handler, or inline in `script`. */
  services: { name: string; file?: string }[];
  /** The control script (absolute path), for inline services. */
  script?: string;
  /** Directory `require` resolves modules in. */
  scriptDir: string;
  /** Memory cap per engine in bytes (default 64 MiB). */
  memoryLimitBytes?: number;
  /** Lowest log level on the handler threads (as on the main thread). Default `info`. */
  logLevel?: string;
}

/**
 * Quotes `text` as a Lua long string (`[==[ … ]==]`) with a level that does not occur in it.
 *
 * @example
 * ```ts
 * import { luaLongString } from "./thread.ts";
 * console.assert(luaLongString("a]]b") === "[=[\na]]b]=]");
 * ```
 */
export function luaLongString(text: string): string {
  let eq = "";
  while (text.includes(`]${eq}]`)) eq += "=";
  return `[${eq}[\n${text}]${eq}]`;
}

/**
 * Builds the runtime on a handler thread (called by the pool).
 *
 * @example
 * ```ts ignore
 * import { HandlerPool } from "../core/threads/pool.ts";
 * import { LUA_RUNTIME } from "./thread.ts";
 * const pool = await HandlerPool.start({ module: LUA_RUNTIME, moduleOptions: options });
 * ```
 */
export async function createHandlerRuntime(ctx: HandlerRuntimeContext): Promise<HandlerRuntime> {
  const o = ctx.options as LuaThreadOptions;
  // Logs from a handler thread (ep.log, Lua errors) go to the console like the main thread's.
  await configureLogging({ level: o.logLevel });
  // The thread's wait loop wakes the runtime for its timers (one futex wait, no CPU).
  return await luaHandlerRuntime(o, {
    interrupt: ctx.interrupt,
    call: ctx.call,
    block: ctx.block,
    clock: "thread",
  });
}

/**
 * How {@linkcode luaHandlerRuntime} runs: the interrupt slot its hook reads, how `ep.call`
 * is carried out, and who wakes it for its timers (see `LuaHandlerRuntimeOptions.clock`).
 */
export interface LuaRuntimeHost {
  /** The interrupt slot (a handler thread's, or one of the caller's own). */
  interrupt: Int32Array;
  /** Carries out `ep.call` (absent: `ep.call` fails). */
  call?: HandlerRuntimeContext["call"];
  /** A handler thread's `block`: `ep.sleep` waits in place when it can (`"thread"` clock). */
  block?: HandlerRuntimeContext["block"];
  /** `"thread"`: a handler thread's wait loop; `"inline"`: a one-slot worker's main thread. */
  clock: "thread" | "inline";
}

/**
 * The Lua handler runtime for `o`'s services, as a handler runtime (`runtime.ts`): on a
 * handler thread ({@linkcode createHandlerRuntime}) or on a one-slot worker's main thread
 * (`inline.ts`). With the `"inline"` clock it also stops a waiting job on `cancel`.
 *
 * @example
 * ```ts ignore
 * const runtime = await luaHandlerRuntime(options, { interrupt, clock: "inline" });
 * ```
 */
export async function luaHandlerRuntime(
  o: LuaThreadOptions,
  host: LuaRuntimeHost,
): Promise<HandlerRuntime> {
  const sources: LuaServiceSource[] = [];
  let inlineScript: string | null = null;
  let controlLua: string | null = null;
  for (const s of o.services) {
    if (s.file) {
      const source = await Deno.readTextFile(s.file);
      const chunkName = s.file.startsWith(o.scriptDir) ? s.file.slice(o.scriptDir.length) : s.file;
      sources.push({ name: s.name, source, chunkName });
      continue;
    }
    if (!o.script) throw new TypeError(`Service "${s.name}" is inline but no script was given`);
    inlineScript ??= await Deno.readTextFile(o.script);
    controlLua ??= await Deno.readTextFile(new URL("./control.lua", import.meta.url));
    const name = o.script.slice(o.script.lastIndexOf("/") + 1);
    sources.push({
      name: s.name,
      chunkName: name,
      // control.lua's "thread" mode runs the script's top level with only ep.service acting.
      source: `if __EP_INLINE == nil then
  local run = assert(load(${luaLongString(controlLua)}, "=control.lua"))("thread")
  local main, syntax = load(${luaLongString(inlineScript)}, ${JSON.stringify("@" + name)})
  if not main then error(syntax, 0) end
  run(main)
end
local h = __EP_INLINE[${JSON.stringify(s.name)}]
if h == nil then error(${JSON.stringify(`service "${s.name}" is not defined inline`)}) end
return h`,
    });
  }
  // ep.call goes to the main thread (it owns the sockets: its balancer, the balancers it
  // pulls from, upstreams) and its answer comes back through this thread's ring.
  const threadCall = host.call;
  const call = threadCall &&
    ((
      request: { service: string; body: Uint8Array; timeoutMs: number; upstream?: string },
      done: (
        error: { kind: string; message: string } | null,
        reply?: { status: number; body: Uint8Array },
      ) => void,
    ) =>
      threadCall(request, (r) => {
        if (r.ok) done(null, { status: r.status, body: r.body });
        else done({ kind: r.kind, message: r.message });
      }));
  const runtime = await LuaHandlerRuntime.create({
    services: sources,
    scriptDir: o.scriptDir,
    interrupt: host.interrupt,
    memoryLimitBytes: o.memoryLimitBytes,
    call,
    block: host.block,
    clock: host.clock,
  });
  const names = o.services.map((s) => s.name);
  return {
    services: names,
    handle(req: HandlerRequest, serviceIndex: number): HandlerResult | Promise<HandlerResult> {
      let reply: LuaReply | Promise<LuaReply>;
      try {
        reply = runtime.handleSync(luaJob(req, names[serviceIndex]));
      } catch (err) {
        throw withTraceback(err);
      }
      if (reply instanceof Promise) {
        return reply.then(toResult, (err) => {
          throw withTraceback(err);
        });
      }
      return toResult(reply);
    },
    start(req, serviceIndex, done): HandlerResult | undefined {
      let reply: LuaReply | undefined;
      try {
        reply = runtime.start(luaJob(req, names[serviceIndex]), (err, r) => {
          if (err) done(withTraceback(err));
          else done(null, toResult(r!));
        });
      } catch (err) {
        throw withTraceback(err);
      }
      return reply === undefined ? undefined : toResult(reply);
    },
    // Inline, a cancelled job waits (nothing runs while the caller does): stop it now.
    cancel: host.clock === "inline" ? (id: number) => void runtime.interrupt(id) : undefined,
    tick: (now: number) => runtime.tick(now),
    get waitsOnEventLoop() {
      return runtime.waitsOnEventLoop;
    },
    async close() {
      await runtime.close();
    },
  };
}

/**
 * The job a Lua handler gets for a handler thread's request: the request line from
 * `ep-method`, `ep-path`, `ep-query` (an HTTP job; else method "EP" and path
 * `"/<service>"`), `req.id` from `ep-request-id`, `req.attempt` from `ep-attempt` (1 when
 * absent), `req.hedge` from `ep-hedge` (`1`: a hedged copy), `req.deadline_ms` from the
 * request's deadline; every other key is a header. No `ep-` key is ever a header (SPEC.md
 * §10).
 *
 * @example
 * ```ts
 * import { luaJob } from "./thread.ts";
 * import { encodeMeta } from "../protocol/ep_meta.ts";
 * const meta = encodeMeta([["ep-request-id", "r1"], ["ep-attempt", "2"], ["x-a", "1"]]);
 * const job = luaJob({ id: 1, service: "s", meta, body: new Uint8Array() }, "s");
 * console.assert(job.attempt === 2 && job.requestId === "r1" && job.headers.length === 1);
 * ```
 */
export function luaJob(req: HandlerRequest, service: string): LuaJob {
  let method = "EP";
  let path = "/" + service;
  let query = "";
  let headers: [string, string][] = EMPTY_HEADERS;
  let http = false; // an HTTP job (SPEC.md §10): its header strings are byte strings
  let attempt = 1;
  let hedge = false;
  let requestId: string | undefined;
  if (req.meta.length > 0) {
    headers = [];
    for (const [k, v] of decodeMeta(req.meta)) {
      // Keys beginning with "ep-" are ep's own (SPEC.md §10): never a header.
      if (k.charCodeAt(0) !== 0x65 || !k.startsWith("ep-")) headers.push([k, v]);
      else if (k === "ep-method") {
        method = v;
        http = true;
      } else if (k === "ep-path") path = v;
      else if (k === "ep-query") query = v;
      else if (k === "ep-request-id") requestId = v;
      else if (k === "ep-attempt") attempt = attemptOf(v);
      else if (k === "ep-hedge") hedge = v === "1";
    }
  }
  return {
    id: req.id,
    service,
    method,
    path,
    query,
    headers,
    body: req.body,
    headerBytes: http,
    attempt,
    hedge,
    requestId,
    deadline: req.deadline,
  };
}

const EMPTY_HEADERS: [string, string][] = [];

/** `ep-attempt`'s value: 2, 3, … (anything else, which ep never sends, counts as 1). */
function attemptOf(v: string): number {
  const n = Number(v);
  return Number.isSafeInteger(n) && n > 1 ? n : 1;
}

function toResult(reply: LuaReply): HandlerResult {
  return {
    status: reply.status,
    meta: reply.headers.length > 0 ? encodeMeta(lowerNames(reply.headers)) : undefined,
    body: reply.body,
  };
}

/** Keeps a Lua traceback for the main thread's log (the client sees the first line). */
function withTraceback(err: unknown): unknown {
  if (err instanceof LuaError && err.traceback) {
    const e = new Error(err.message);
    e.name = err.name;
    e.stack = `${err.name}: ${err.message}\n${err.traceback}`;
    return e;
  }
  return err;
}

function lowerNames(headers: [string, string][]): [string, string][] {
  return headers.map(([k, v]) => [k.toLowerCase(), v]);
}
