/**
 * ep's Lua layer: wasmoon (Lua 5.4) engines with a fast, interruptible call path, the `ep`
 * Lua module (`ep.lua`, `control.lua`; reference in `API.md`), the Lua handler runtime for
 * the handler threads, and control scripts that decide what a process is.
 *
 * @example
 * ```ts ignore
 * import { runScript } from "./mod.ts";
 * Deno.exit(await runScript("scripts/main.lua"));
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export * from "./engine.ts";
export * from "./handler_runtime.ts";
export * from "./control.ts";
export {
  createHandlerRuntime,
  LUA_RUNTIME,
  luaLongString,
  type LuaWorkerOptions,
} from "./thread.ts";
export type {
  HandlerReply,
  HandlerRequest,
  HandlerResult,
  HandlerRuntime,
  HandlerRuntimeContext,
} from "../core/threads/runtime.ts";
export type { Job } from "../core/job.ts";
