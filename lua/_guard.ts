/**
 * The guard table of a `LuaEngine` (`engine.ts`): the engine's piece of the sandbox that
 * is not the hook. It lists, with weak keys, the Lua threads that Lua code may not resume
 * or close: the coroutines ep runs calls in ({@linkcode GUARD_EP}; resuming or closing one
 * would hijack another request) and threads ep's interrupt cut short
 * ({@linkcode GUARD_CUT}; Lua left their hooks off, so resuming one, or closing it, which
 * runs its to-be-closed variables, would run code no hook stops).
 *
 * The engine marks threads (a new pooled coroutine; a thread its hook raised in); Lua
 * reads the table as `host.guard` in `ep.lua`'s sandbox section, where `coroutine.resume`,
 * `close` and `wrap` refuse a thread in it. Reference: `lua/API.md`, "Sandbox".
 *
 * @module
 */

import { LUA_REGISTRYINDEX, type LuaHeap, type LuaState, type RawLua } from "./_lua_api.ts";
import type { MemoryCap } from "./_memory_cap.ts";

/** Mark in the guard table: ep runs calls in this thread. */
export const GUARD_EP = 1n;
/** Mark in the guard table: ep's interrupt cut this thread short (its hooks stay off). */
export const GUARD_CUT = 2n;

/** The guard table in the registry; see the module documentation. */
export class GuardTable {
  /** Its registry reference (for the host table). */
  readonly ref: bigint;

  readonly #raw: RawLua;
  readonly #memory: MemoryCap;

  /** Creates the table in `L`'s registry (call it with the memory cap lifted). */
  constructor(raw: RawLua, heap: LuaHeap, L: LuaState, memory: MemoryCap) {
    this.#raw = raw;
    this.#memory = memory;
    raw._lua_createtable(L, 0, 0);
    raw._lua_createtable(L, 0, 1);
    heap.pushString(L, "k");
    raw._lua_setfield(L, -2, heap.cstring("__mode"));
    raw._lua_setmetatable(L, -2);
    this.ref = BigInt(raw._luaL_ref(L, LUA_REGISTRYINDEX));
  }

  /**
   * Marks thread `L` (`how`: {@linkcode GUARD_EP} or {@linkcode GUARD_CUT}), using its own
   * stack (the cap is lifted meanwhile: a memory error here, inside a hook, would leave the
   * thread unmarked).
   */
  mark(L: LuaState, how: bigint): void {
    const raw = this.#raw;
    const memory = this.#memory;
    const max = memory.max;
    memory.max = 0;
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, this.ref);
    raw._lua_pushthread(L);
    raw._lua_pushinteger(L, how);
    raw._lua_rawset(L, -3);
    raw._lua_settop(L, -2);
    memory.max = max;
  }
}
