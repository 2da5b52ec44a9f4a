/**
 * The host table of a `LuaEngine` (`engine.ts`): the thin layer of JS functions that
 * `ep.lua` builds the friendly `ep` module on (the skynet way). The engine pushes it once,
 * as the argument of the chunk `ep.lua`; Lua code never sees it, only what `ep.lua` made
 * of it.
 *
 * - `log`, `now`, `env`: `ep.log` (and `print`), `ep.now`, `ep.env`.
 * - `json_encode`, `json_decode`, `json_null`, `array_mt`: `ep.json` (`_json.ts`).
 * - `timer_start`, `timer_cancel`: `ep.timer`, `ep.every`, scheduled by the engine's
 *   {@linkcode LuaTimerHost}; the engine runs a due timer's callback.
 * - `managed`: whether Lua runs in ep's own coroutine of a call (`ep.sleep`, `ep.call`
 *   yield it).
 * - `block`: `ep.sleep` waiting without a yield, when the engine's owner allows it
 *   (`LuaEngineOptions.block`; absent otherwise).
 * - `interrupting`, `guard`: the sandbox (`ep.lua`'s xpcall and coroutine wrappers;
 *   `_guard.ts`).
 * - `read_module`, `script_dir`: the `require` searcher (`_require.ts`).
 * - `ext`: `ep._ext`, the engine's `hostFunctions` (the control script's `ep.listen`, …).
 *
 * A host function that throws raises a Lua error at the caller's position. The host reads
 * the running call through {@linkcode HostCall}; the engine owns the call itself.
 *
 * @module
 */

import {
  LUA_REGISTRYINDEX,
  LUA_TNUMBER,
  LUA_TSTRING,
  type LuaHeap,
  type LuaState,
  type RawLua,
  TYPE_NAMES,
} from "./_lua_api.ts";
import { decodeJson, encodeJson } from "./_json.ts";
import type { LuaValue, Marshal } from "./_marshal.ts";
import { readModule, scriptDirPath } from "./_require.ts";

/**
 * What the engine and the runtime log through: a LogTape `Logger` fits (`getLogger(...)`).
 *
 * @example
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * import type { LuaLogger } from "./engine.ts";
 * const log: LuaLogger = getLogger(["ep", "lua"]);
 * console.assert(typeof log.getChild === "function");
 * ```
 */
export interface LuaLogger {
  /** The logger of a subcategory. */
  getChild(subcategory: string): LuaLogger;
  /** Logs at debug level. */
  debug(message: string, properties?: Record<string, unknown>): void;
  /** Logs at info level. */
  info(message: string, properties?: Record<string, unknown>): void;
  /** Logs at warning level. */
  warn(message: string, properties?: Record<string, unknown>): void;
  /** Logs at error level. */
  error(message: string, properties?: Record<string, unknown>): void;
}

/**
 * What the engine asks of its scheduler for `ep.timer`/`ep.every`: when timer `id` is
 * due, call {@linkcode LuaEngine.fireTimer}.
 *
 * @example
 * ```ts
 * import type { LuaTimerHost } from "./engine.ts";
 * const pending = new Map<number, number>();
 * const host: LuaTimerHost = {
 *   set: (id, ms) => void pending.set(id, ms),
 *   clear: (id) => void pending.delete(id),
 * };
 * host.set(1, 10, false);
 * console.assert(pending.get(1) === 10);
 * ```
 */
export interface LuaTimerHost {
  /** Starts timer `id`: due after `ms`, then every `ms` when `repeat`. */
  set(id: number, ms: number, repeat: boolean): void;
  /** Stops timer `id`. */
  clear(id: number): void;
}

/** Longest JSON text `ep.json.encode` builds in an engine without a memory cap. */
const JSON_MAX_TEXT = 256 * 1024 * 1024;

/** What the host functions read of the call that runs now (the engine's call record). */
export interface HostCall {
  /** The service it belongs to: `ep.log`'s category, the owner of a timer it starts. */
  readonly service: string;
  /** The coroutine it runs in. */
  readonly thread: LuaState;
  /** A service file (or ep.lua) loading, not a handler call or timer callback. */
  readonly loading: boolean;
  /** The interrupt stopped it. */
  readonly interrupted: boolean;
  /** ep is closing its coroutine's to-be-closed variables. */
  readonly closing: boolean;
}

/** Options of {@linkcode HostTable}. */
export interface HostTableOptions {
  /** The wasm module's API. */
  raw: RawLua;
  /** The engine's strings in wasm memory. */
  heap: LuaHeap;
  /** The engine's marshalling (values of `ext` functions). */
  marshal: Marshal;
  /** The engine's memory cap (0 = none): also the bound of `ep.json`'s texts. */
  memoryLimitBytes: number;
  /** The directory `require` reads modules from, if any. */
  scriptDir: URL | undefined;
  /** The logger whose children `[service]` get `ep.log`. */
  log: LuaLogger;
  /** Scheduler of `ep.timer`/`ep.every`; without it they raise an error. */
  timers: LuaTimerHost | undefined;
  /** `ep._ext` functions (see `LuaEngineOptions.hostFunctions`). */
  hostFunctions: Record<string, (...args: LuaValue[]) => LuaValue | void>;
  /** `ep.sleep` without a yield, when it can (see `LuaEngineOptions.block`). */
  block?: (until: number) => boolean;
  /** The call that runs now, or null. */
  current: () => HostCall | null;
}

interface TimerInfo {
  service: string;
  repeat: boolean;
}

/** The host table and what its functions keep (timers, loggers); see the module documentation. */
export class HostTable {
  readonly #raw: RawLua;
  readonly #heap: LuaHeap;
  readonly #marshal: Marshal;
  readonly #memoryLimitBytes: number;
  readonly #scriptDir: URL | undefined;
  readonly #log: LuaLogger;
  readonly #loggers = new Map<string, LuaLogger>();
  readonly #timers: LuaTimerHost | undefined;
  readonly #timerInfo = new Map<number, TimerInfo>();
  #nextTimerId = 0;
  readonly #ext: Record<string, (...args: LuaValue[]) => LuaValue | void>;
  readonly #current: () => HostCall | null;
  readonly #block: ((until: number) => boolean) | undefined;
  #arrayMetaRef = 0n;
  #functions: number[] = [];

  constructor(options: HostTableOptions) {
    this.#raw = options.raw;
    this.#heap = options.heap;
    this.#marshal = options.marshal;
    this.#memoryLimitBytes = options.memoryLimitBytes;
    this.#scriptDir = options.scriptDir;
    this.#log = options.log;
    this.#timers = options.timers;
    this.#ext = options.hostFunctions;
    this.#current = options.current;
    this.#block = options.block;
  }

  /**
   * Takes timer `id` as it fires: the service that started it, or undefined when it was
   * cancelled. A one-shot timer is forgotten.
   */
  dueTimer(id: number): string | undefined {
    const info = this.#timerInfo.get(id);
    if (info === undefined) return undefined;
    if (!info.repeat) this.#timerInfo.delete(id);
    return info.service;
  }

  /** Stops every timer Lua started (the engine closes). */
  stopTimers(): void {
    for (const id of this.#timerInfo.keys()) this.#timers?.clear(id);
    this.#timerInfo.clear();
  }

  /** Frees the host functions' slots in the wasm function table (after `lua_close`). */
  free(): void {
    for (const f of this.#functions) this.#raw.removeFunction(f);
    this.#functions = [];
  }

  /**
   * Pushes the host table onto `L`'s stack (with the memory cap lifted); `guardRef` is the
   * guard table's registry reference (`_guard.ts`).
   */
  push(L: LuaState, guardRef: bigint): void {
    const raw = this.#raw;
    const heap = this.#heap;
    // The metatable ep.json gives arrays (registry), also `host.array_mt`.
    raw._lua_createtable(L, 0, 1);
    heap.pushString(L, "array");
    raw._lua_setfield(L, -2, heap.cstring("__name"));
    this.#arrayMetaRef = BigInt(raw._luaL_ref(L, LUA_REGISTRYINDEX));

    raw._lua_createtable(L, 0, 16);
    const fn = (name: string, f: (L: LuaState) => number) => {
      raw._lua_pushcclosure(L, this.#hostFunction(f), 0);
      raw._lua_setfield(L, -2, heap.cstring(name));
    };
    fn("log", (L) => {
      const level = heap.toString(L, 1) ?? "info";
      const message = heap.toString(L, 2) ?? "";
      this.#logMessage(level, message);
      return 0;
    });
    fn("now", (L) => {
      raw._lua_pushnumber(L, performance.now());
      return 1;
    });
    fn("env", (L) => {
      const name = this.#checkString(L, 1, "ep.env");
      let value: string | undefined;
      try {
        value = Deno.env.get(name);
      } catch {
        value = undefined; // no permission: same as unset
      }
      if (value === undefined) raw._lua_pushnil(L);
      else heap.pushString(L, value);
      return 1;
    });
    fn("json_encode", (L) => {
      raw._lua_settop(L, 1);
      // The text is built in JS, outside the memory cap, so it stops at the cap (it could
      // not be pushed back into Lua anyway).
      const max = this.#memoryLimitBytes > 0 ? this.#memoryLimitBytes : JSON_MAX_TEXT;
      heap.pushString(L, encodeJson(heap, L, 1, this.#arrayMetaRef, max));
      return 1;
    });
    fn("json_decode", (L) => {
      const text = this.#checkString(L, 1, "ep.json.decode");
      try {
        decodeJson(heap, L, text, this.#arrayMetaRef, this.#memoryLimitBytes);
      } catch (err) {
        if (err instanceof SyntaxError) throw new SyntaxError(`Invalid JSON: ${err.message}`);
        throw err;
      }
      return 1;
    });
    fn("managed", (L) => {
      const call = this.#current();
      raw._lua_pushboolean(L, call !== null && !call.loading && call.thread === L ? 1 : 0);
      return 1;
    });
    // ep.sleep's wait without a yield (host.block(until) → true when it waited it out):
    // only in a handler call's own coroutine, where the yield would otherwise go.
    const block = this.#block;
    if (block !== undefined) {
      fn("block", (L) => {
        const call = this.#current();
        const ok = call !== null && !call.loading && call.thread === L &&
          block(raw._lua_tonumberx(L, 1, 0));
        raw._lua_pushboolean(L, ok ? 1 : 0);
        return 1;
      });
    }
    // Whether the running call is being stopped (interrupted, or closed by ep): ep.lua's
    // xpcall then skips the handler's message handler, which would run with hooks off.
    fn("interrupting", (L) => {
      const call = this.#current();
      raw._lua_pushboolean(L, call !== null && (call.interrupted || call.closing) ? 1 : 0);
      return 1;
    });
    fn("timer_start", (L) => {
      const ms = raw._lua_tonumberx(L, 1, 0);
      const repeat = raw._lua_toboolean(L, 2) !== 0;
      if (this.#timers === undefined) {
        throw new TypeError(`${repeat ? "ep.every" : "ep.timer"} is not available in this engine`);
      }
      const id = ++this.#nextTimerId;
      this.#timerInfo.set(id, { service: this.#current()?.service ?? "ep", repeat });
      this.#timers.set(id, ms, repeat);
      raw._lua_pushinteger(L, BigInt(id));
      return 1;
    });
    fn("timer_cancel", (L) => {
      const id = raw._lua_tonumberx(L, 1, 0);
      if (this.#timerInfo.delete(id)) this.#timers?.clear(id);
      return 0;
    });
    fn("read_module", (L) => {
      const source = readModule(this.#scriptDir, this.#checkString(L, 1, "read_module"));
      if (source === null) raw._lua_pushnil(L);
      else heap.pushString(L, source);
      return 1;
    });
    raw._lua_createtable(L, 0, 8);
    for (const [name, f] of Object.entries(this.#ext)) {
      fn(name, (L) => {
        const result = f(...this.#marshal.readValues(L, raw._lua_gettop(L)));
        if (result === undefined) return 0;
        this.#marshal.pushValue(L, result);
        return 1;
      });
    }
    raw._lua_setfield(L, -2, heap.cstring("ext"));
    raw._lua_pushlightuserdata(L, 0);
    raw._lua_setfield(L, -2, heap.cstring("json_null"));
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, this.#arrayMetaRef);
    raw._lua_setfield(L, -2, heap.cstring("array_mt"));
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, guardRef);
    raw._lua_setfield(L, -2, heap.cstring("guard"));
    if (this.#scriptDir !== undefined) {
      heap.pushString(L, scriptDirPath(this.#scriptDir));
      raw._lua_setfield(L, -2, heap.cstring("script_dir"));
    }
  }

  /**
   * Wraps a JS function as a Lua C function. A JS exception becomes a Lua error with the
   * caller's position; a number (a Lua error unwinding through the function) passes.
   */
  #hostFunction(f: (L: LuaState) => number): number {
    const raw = this.#raw;
    const heap = this.#heap;
    const wrapper = (L: number): number => {
      let message: string;
      try {
        return f(L);
      } catch (err) {
        if (typeof err === "number") throw err;
        message = err instanceof Error ? err.message : String(err);
      }
      raw._luaL_where(L, 1);
      heap.pushString(L, message);
      raw._lua_concat(L, 2);
      return raw._lua_error(L);
    };
    const ptr = raw.addFunction(wrapper, "ii");
    this.#functions.push(ptr);
    return ptr;
  }

  #checkString(L: LuaState, idx: number, fname: string): string {
    const t = this.#raw._lua_type(L, idx);
    if (t !== LUA_TSTRING && t !== LUA_TNUMBER) {
      throw new TypeError(
        `bad argument #${idx} to '${fname}' (string expected, got ${
          t === -1 ? "no value" : TYPE_NAMES[t + 1]
        })`,
      );
    }
    return this.#heap.toString(L, idx) ?? "";
  }

  #logMessage(level: string, message: string): void {
    const service = this.#current()?.service ?? "ep";
    let logger = this.#loggers.get(service);
    if (logger === undefined) {
      logger = this.#log.getChild(service);
      this.#loggers.set(service, logger);
    }
    // A plain message, not a template: braces are escaped.
    const text = message.replaceAll("{", "{{").replaceAll("}", "}}");
    switch (level) {
      case "debug":
        logger.debug(text);
        break;
      case "warn":
        logger.warn(text);
        break;
      case "error":
        logger.error(text);
        break;
      default:
        logger.info(text);
    }
  }
}
