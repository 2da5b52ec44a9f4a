/**
 * The memory cap of a `LuaEngine` (`engine.ts`): the Lua state's allocator (wasm realloc/free
 * behind `lua_setallocf`) counts the state's bytes and refuses an allocation that would
 * pass the cap, but only while Lua runs.
 *
 * A Lua error in an API call made from JS would abort the whole wasm module, so the engine
 * lifts the cap ({@linkcode MemoryCap.enforce}`(false)`) whenever JS calls the API: while
 * it builds a request, reads a response, marks a thread in the guard table. A request body
 * therefore counts once the handler runs: the cap must exceed the largest body. What
 * happens after a refusal (a full collection, then `LuaEngine.healthy`) is the
 * engine's; {@linkcode MemoryCap.usable} is the line it draws.
 *
 * @module
 */

import type { LuaState, RawLua } from "./_lua_api.ts";

/**
 * Fraction of the cap an engine may hold after a full collection and still be used: above
 * it, a handler keeps memory alive (in a global) and the engine should be replaced.
 */
const USABLE_FRACTION = 0.75;

/** The byte count of one Lua state and the cap on it; see the module documentation. */
export class MemoryCap {
  /** The cap in bytes (0 = none). */
  readonly limitBytes: number;
  /** Bytes the Lua state holds now. */
  used = 0;
  /** The cap in force: `limitBytes` while Lua runs, 0 (none) while JS calls the API. */
  max = 0;

  readonly #raw: RawLua;

  constructor(raw: RawLua, limitBytes: number) {
    this.#raw = raw;
    this.limitBytes = limitBytes;
  }

  /**
   * Makes {@linkcode MemoryCap.alloc} the allocator of state `L` and returns its slot in
   * the wasm function table (for `removeFunction` on close). Blocks the state already
   * holds came from the same malloc, so it can free them; set {@linkcode MemoryCap.used}
   * from Lua's own count afterwards.
   */
  install(L: LuaState): number {
    const alloc = this.#raw.addFunction(this.alloc, "iiiii");
    this.#raw._lua_setallocf(L, alloc, 0);
    return alloc;
  }

  /** Memory cap on (Lua runs) or off (JS calls the API). */
  enforce(on: boolean): void {
    this.max = on ? this.limitBytes : 0;
  }

  /** Whether the state holds little enough to go on (call it after a full collection). */
  get usable(): boolean {
    return this.used <= this.limitBytes * USABLE_FRACTION;
  }

  /**
   * The state's allocator (`lua_Alloc`): wasm's realloc/free, counting bytes, and failing
   * an allocation that would pass the cap (`max`, 0 = none). Lua then collects and, if
   * that is not enough, raises a memory error. (wasmoon's `traceAllocations` does the
   * same through emscripten's export wrappers: Lua code that allocates a lot runs about
   * 1.5x faster with this one.)
   */
  readonly alloc = (_ud: number, ptr: number, osize: number, nsize: number): number => {
    const raw = this.#raw;
    nsize >>>= 0;
    if (nsize === 0) {
      if (ptr !== 0) {
        this.used -= osize >>> 0;
        raw._free(ptr);
      }
      return 0;
    }
    // With ptr NULL, osize is a type tag, not a size.
    const delta = ptr !== 0 ? nsize - (osize >>> 0) : nsize;
    if (delta > 0 && this.max > 0 && this.used + delta > this.max) return 0;
    const p = raw._realloc(ptr, nsize);
    if (p !== 0) this.used += delta;
    return p;
  };
}
