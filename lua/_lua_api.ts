/**
 * The raw Lua 5.4 C API of wasmoon's WebAssembly module, typed, and the loading of that
 * module from the local `glue.wasm`.
 *
 * wasmoon's own wrappers (`engine.global.lua.lua_*`) go through emscripten's `ccall`,
 * which converts every string argument on each call; the functions here are the module's
 * exports (`module._lua_*`) called with numbers and pointers only, about twice as fast.
 * Strings go through {@linkcode LuaHeap}: written once into wasm memory, passed as pointer
 * and length.
 *
 * Rules for callers:
 * - `HEAPU8`/`HEAPU32` are replaced when wasm memory grows: read them from the module
 *   after anything that may allocate, never keep them.
 * - A Lua error inside an API call outside a protected call (`lua_pcallk`/`lua_resume`)
 *   aborts the whole module. Allocation is the usual cause: the engine lifts its memory cap
 *   whenever it calls the API from outside Lua.
 * - A JS function called from Lua (a C function or a hook) raises a Lua error with
 *   `lua_error`, which throws a number (emscripten's longjmp). JS code between Lua frames
 *   must let numbers through: catching one breaks the Lua state.
 *
 * @module
 */

import { LuaFactory } from "wasmoon";

/** A `lua_State*`. */
export type LuaState = number;

/** The exports of wasmoon's emscripten module that the engine uses. */
export interface RawLua {
  /** The heap as bytes (always the current view, also after memory growth). */
  readonly HEAPU8: Uint8Array;
  /** The heap as 32-bit words (always the current view). */
  readonly HEAPU32: Uint32Array;
  _malloc(size: number): number;
  _free(ptr: number): void;
  _realloc(ptr: number, size: number): number;
  addFunction(fn: (...args: number[]) => number | void, signature: string): number;
  removeFunction(ptr: number): void;

  _lua_gettop(L: LuaState): number;
  _lua_settop(L: LuaState, idx: number): void;
  _lua_pushvalue(L: LuaState, idx: number): void;
  _lua_rotate(L: LuaState, idx: number, n: number): void;
  _lua_checkstack(L: LuaState, n: number): number;
  _lua_type(L: LuaState, idx: number): number;
  _lua_tonumberx(L: LuaState, idx: number, isnum: number): number;
  _lua_tointegerx(L: LuaState, idx: number, isnum: number): bigint;
  _lua_isinteger(L: LuaState, idx: number): number;
  _lua_toboolean(L: LuaState, idx: number): number;
  _lua_tolstring(L: LuaState, idx: number, len: number): number;
  _lua_touserdata(L: LuaState, idx: number): number;
  _lua_topointer(L: LuaState, idx: number): number;
  _lua_rawlen(L: LuaState, idx: number): number;
  _lua_rawequal(L: LuaState, a: number, b: number): number;
  _lua_pushnil(L: LuaState): void;
  _lua_pushnumber(L: LuaState, n: number): void;
  _lua_pushinteger(L: LuaState, n: bigint): void;
  _lua_pushlstring(L: LuaState, s: number, len: number): number;
  _lua_pushcclosure(L: LuaState, fn: number, n: number): void;
  _lua_pushboolean(L: LuaState, b: number): void;
  _lua_pushlightuserdata(L: LuaState, p: number): void;
  _lua_pushthread(L: LuaState): number;
  _lua_getfield(L: LuaState, idx: number, k: number): number;
  _lua_rawget(L: LuaState, idx: number): number;
  _lua_rawgeti(L: LuaState, idx: number, n: bigint): number;
  _lua_rawgetp(L: LuaState, idx: number, p: number): number;
  _lua_createtable(L: LuaState, narr: number, nrec: number): void;
  _lua_getmetatable(L: LuaState, idx: number): number;
  _lua_setfield(L: LuaState, idx: number, k: number): void;
  _lua_rawset(L: LuaState, idx: number): void;
  _lua_rawseti(L: LuaState, idx: number, n: bigint): void;
  _lua_rawsetp(L: LuaState, idx: number, p: number): void;
  _lua_setmetatable(L: LuaState, idx: number): number;
  _lua_pcallk(
    L: LuaState,
    nargs: number,
    nresults: number,
    msgh: number,
    ctx: number,
    k: number,
  ): number;
  _lua_resume(L: LuaState, from: LuaState, narg: number, nres: number): number;
  _lua_isyieldable(L: LuaState): number;
  _lua_yieldk(L: LuaState, nresults: number, ctx: number, k: number): number;
  _lua_error(L: LuaState): number;
  _lua_next(L: LuaState, idx: number): number;
  _lua_newthread(L: LuaState): LuaState;
  _lua_resetthread(L: LuaState): number;
  _lua_sethook(L: LuaState, fn: number, mask: number, count: number): void;
  _lua_setallocf(L: LuaState, fn: number, ud: number): void;
  _luaL_ref(L: LuaState, t: number): number;
  _luaL_unref(L: LuaState, t: number, ref: number): void;
  _luaL_loadbufferx(L: LuaState, buf: number, size: number, name: number, mode: number): number;
  _luaL_traceback(L: LuaState, L1: LuaState, msg: number, level: number): void;
  _luaL_where(L: LuaState, level: number): void;
  _lua_concat(L: LuaState, n: number): void;
}

const RAW_FUNCTIONS = [
  "_malloc",
  "_free",
  "_realloc",
  "_lua_gettop",
  "_lua_settop",
  "_lua_pushvalue",
  "_lua_rotate",
  "_lua_checkstack",
  "_lua_type",
  "_lua_tonumberx",
  "_lua_tointegerx",
  "_lua_isinteger",
  "_lua_toboolean",
  "_lua_tolstring",
  "_lua_touserdata",
  "_lua_topointer",
  "_lua_rawlen",
  "_lua_rawequal",
  "_lua_pushnil",
  "_lua_pushnumber",
  "_lua_pushinteger",
  "_lua_pushlstring",
  "_lua_pushcclosure",
  "_lua_pushboolean",
  "_lua_pushlightuserdata",
  "_lua_pushthread",
  "_lua_getfield",
  "_lua_rawget",
  "_lua_rawgeti",
  "_lua_rawgetp",
  "_lua_createtable",
  "_lua_getmetatable",
  "_lua_setfield",
  "_lua_rawset",
  "_lua_rawseti",
  "_lua_rawsetp",
  "_lua_setmetatable",
  "_lua_pcallk",
  "_lua_resume",
  "_lua_isyieldable",
  "_lua_yieldk",
  "_lua_error",
  "_lua_next",
  "_lua_newthread",
  "_lua_resetthread",
  "_lua_sethook",
  "_lua_setallocf",
  "_luaL_ref",
  "_luaL_unref",
  "_luaL_loadbufferx",
  "_luaL_traceback",
  "_luaL_where",
  "_lua_concat",
] as const;

/**
 * The function inside an emscripten export wrapper. In wasmoon's build each
 * `module._lua_*` is `function () { assert(...); var f = exports[name]; assert(f);
 * return f.apply(null, arguments) }`: for one synchronous call, `Function.prototype.apply`
 * records its receiver and returns without calling it, which hands over the wasm export
 * itself. If the wrapper does not look like that, the wrapper is kept (slower, same
 * behaviour).
 */
function unwrapExport(wrapper: (...args: never[]) => unknown): (...args: never[]) => unknown {
  const proto = Function.prototype as { apply: unknown };
  const apply = proto.apply;
  let target: unknown = undefined;
  proto.apply = function (this: unknown): number {
    target = this;
    return 0;
  };
  try {
    wrapper();
  } catch {
    target = undefined;
  } finally {
    proto.apply = apply;
  }
  return typeof target === "function" && target !== wrapper && !("prototype" in target)
    ? target as (...args: never[]) => unknown
    : wrapper;
}

/**
 * Binds wasmoon's emscripten module: the wasm exports themselves, on an object of stable
 * shape (the module object holds hundreds of properties, so each lookup on it is a
 * dictionary lookup), and heap views that follow memory growth.
 */
export function bindRawLua(module: object): RawLua {
  const m = module as Record<string, unknown> & { HEAPU8: Uint8Array; HEAPU32: Uint32Array };
  let u8 = m.HEAPU8;
  let u32 = m.HEAPU32;
  const api: Record<string, unknown> = {
    get HEAPU8(): Uint8Array {
      // Growing wasm memory detaches the old buffer.
      if (u8.byteLength === 0) u8 = m.HEAPU8;
      return u8;
    },
    get HEAPU32(): Uint32Array {
      if (u32.byteLength === 0) u32 = m.HEAPU32;
      return u32;
    },
    addFunction: m.addFunction,
    removeFunction: m.removeFunction,
  };
  for (const name of RAW_FUNCTIONS) {
    const f = m[name];
    if (typeof f !== "function") throw new TypeError(`wasmoon's module lacks "${name}"`);
    api[name] = unwrapExport(f as (...args: never[]) => unknown);
  }
  return api as unknown as RawLua;
}

/** `LUA_REGISTRYINDEX` (`-LUAI_MAXSTACK - 1000`). */
export const LUA_REGISTRYINDEX = -1001000;
/** Status codes. */
export const LUA_OK = 0;
/** A coroutine yielded. */
export const LUA_YIELD = 1;
/** A runtime error. */
export const LUA_ERRRUN = 2;
/** A syntax error. */
export const LUA_ERRSYNTAX = 3;
/** A memory error. */
export const LUA_ERRMEM = 4;
/** Type codes. */
export const LUA_TNIL = 0;
/** Boolean. */
export const LUA_TBOOLEAN = 1;
/** Light userdata. */
export const LUA_TLIGHTUSERDATA = 2;
/** Number. */
export const LUA_TNUMBER = 3;
/** String. */
export const LUA_TSTRING = 4;
/** Table. */
export const LUA_TTABLE = 5;
/** Function. */
export const LUA_TFUNCTION = 6;
/** Hook mask: every `count` instructions. */
export const LUA_MASKCOUNT = 8;

/** Lua type names by type code + 1 (`LUA_TNONE` is -1). */
export const TYPE_NAMES: readonly string[] = [
  "no value",
  "nil",
  "boolean",
  "userdata",
  "number",
  "string",
  "table",
  "function",
  "userdata",
  "thread",
];

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * Scratch memory in the wasm heap for strings passed to and read from the raw API, plus
 * constant C strings (field names) allocated once.
 */
export class LuaHeap {
  readonly raw: RawLua;
  /** A 4-byte cell for `size_t*`/`int*` out-parameters. */
  readonly cell: number;
  #scratch = 0;
  #capacity = 0;
  #constants = new Map<string, number>();

  constructor(raw: RawLua) {
    this.raw = raw;
    this.cell = raw._malloc(8);
    this.#grow(4096);
  }

  /** A NUL-terminated constant C string, allocated once and kept for the heap's life. */
  cstring(s: string): number {
    let p = this.#constants.get(s);
    if (p === undefined) {
      const bytes = utf8.encode(s);
      p = this.raw._malloc(bytes.length + 1);
      this.raw.HEAPU8.set(bytes, p);
      this.raw.HEAPU8[p + bytes.length] = 0;
      this.#constants.set(s, p);
    }
    return p;
  }

  /** Pushes a JS string onto `L` as a Lua string (UTF-8). */
  pushString(L: LuaState, s: string): void {
    const raw = this.raw;
    const n = s.length;
    const max = n * 3;
    if (max > this.#capacity) this.#grow(max);
    const heap = raw.HEAPU8;
    const base = this.#scratch;
    if (n <= 64) {
      // Short ASCII strings (names, methods, paths) are copied by hand: cheaper than a
      // TextEncoder call.
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        heap[base + i] = c;
      }
      if (i === n) {
        raw._lua_pushlstring(L, base, n);
        return;
      }
    }
    const { written } = utf8.encodeInto(s, heap.subarray(base, base + max));
    raw._lua_pushlstring(L, base, written);
  }

  /**
   * Pushes a byte string (code units 0x00–0xFF, one byte each: HTTP header names and
   * values) onto `L` as those bytes. A string with a code unit above 0xFF is not a byte
   * string: it is pushed as UTF-8.
   */
  pushByteString(L: LuaState, s: string): void {
    const raw = this.raw;
    const n = s.length;
    if (n > this.#capacity) this.#grow(n);
    const heap = raw.HEAPU8;
    const base = this.#scratch;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) return this.pushString(L, s);
      heap[base + i] = c;
    }
    raw._lua_pushlstring(L, base, n);
  }

  /**
   * The bytes of the string at `idx` as a byte string (each byte one code unit, Latin-1),
   * or null when it is not a string (numbers are converted in place).
   */
  toByteString(L: LuaState, idx: number): string | null {
    const raw = this.raw;
    const p = raw._lua_tolstring(L, idx, this.cell);
    if (p === 0) return null;
    const len = raw.HEAPU32[this.cell >> 2];
    const heap = raw.HEAPU8;
    let s = "";
    for (let i = 0; i < len; i += 8192) {
      const part = heap.subarray(p + i, p + Math.min(len, i + 8192));
      s += String.fromCharCode.apply(null, part as unknown as number[]);
    }
    return s;
  }

  /** Pushes bytes onto `L` as a Lua string. */
  pushBytes(L: LuaState, bytes: Uint8Array): void {
    const raw = this.raw;
    if (bytes.length > this.#capacity) this.#grow(bytes.length);
    raw.HEAPU8.set(bytes, this.#scratch);
    raw._lua_pushlstring(L, this.#scratch, bytes.length);
  }

  /** Writes `s` as a NUL-terminated string into scratch memory; valid until the next use. */
  scratchCString(s: string): number {
    const max = s.length * 3 + 1;
    if (max > this.#capacity) this.#grow(max);
    const heap = this.raw.HEAPU8;
    const { written } = utf8.encodeInto(s, heap.subarray(this.#scratch, this.#scratch + max - 1));
    heap[this.#scratch + written] = 0;
    return this.#scratch;
  }

  /** The string at `idx` (numbers are converted in place), or null when it is not one. */
  toString(L: LuaState, idx: number): string | null {
    const raw = this.raw;
    const p = raw._lua_tolstring(L, idx, this.cell);
    if (p === 0) return null;
    const len = raw.HEAPU32[this.cell >> 2];
    const heap = raw.HEAPU8;
    if (len <= 32) {
      // Short ASCII strings (keys, names) by hand: cheaper than a TextDecoder call.
      let s = "";
      let i = 0;
      for (; i < len; i++) {
        const c = heap[p + i];
        if (c >= 0x80) break;
        s += String.fromCharCode(c);
      }
      if (i === len) return s;
    }
    return utf8Decoder.decode(heap.subarray(p, p + len));
  }

  /** A copy of the bytes of the string at `idx`, or null when it is not one. */
  toBytes(L: LuaState, idx: number): Uint8Array | null {
    const raw = this.raw;
    const p = raw._lua_tolstring(L, idx, this.cell);
    if (p === 0) return null;
    const len = raw.HEAPU32[this.cell >> 2];
    return raw.HEAPU8.slice(p, p + len);
  }

  /**
   * A description of the value at `idx` for an error message: the string itself for strings
   * and numbers, else `"(a <type> value)"`. Calls no metamethod, so it cannot raise.
   */
  describe(L: LuaState, idx: number): string {
    const t = this.raw._lua_type(L, idx);
    if (t === LUA_TSTRING || t === LUA_TNUMBER) return this.toString(L, idx) ?? "";
    return `(a ${TYPE_NAMES[t + 1] ?? "strange"} value)`;
  }

  /** Frees the scratch and the constants. */
  free(): void {
    const raw = this.raw;
    raw._free(this.#scratch);
    raw._free(this.cell);
    for (const p of this.#constants.values()) raw._free(p);
    this.#constants.clear();
    this.#scratch = 0;
    this.#capacity = 0;
  }

  #grow(min: number): void {
    let cap = Math.max(this.#capacity * 2, 4096);
    while (cap < min) cap *= 2;
    if (this.#scratch !== 0) this.raw._free(this.#scratch);
    this.#scratch = this.raw._malloc(cap);
    if (this.#scratch === 0) throw new RangeError(`Cannot allocate ${cap} bytes in the Lua heap`);
    this.#capacity = cap;
  }
}

/** wasmoon's module, loaded once per wasm location per thread. */
export interface LoadedLua {
  factory: LuaFactory;
  raw: RawLua;
}

const loaded = new Map<string, Promise<LoadedLua>>();

/**
 * Where `glue.wasm` is: next to wasmoon's `dist/index.js` as the import map resolves it,
 * else `node_modules/wasmoon/dist/glue.wasm` from the repository root (the path
 * `deno task compile` embeds). Throws `Deno.errors.NotFound` when it is in neither.
 */
export async function defaultWasmUrl(): Promise<URL> {
  const candidates: URL[] = [];
  try {
    candidates.push(new URL("glue.wasm", import.meta.resolve("wasmoon")));
  } catch {
    // not resolvable as a URL: try the repository layout
  }
  candidates.push(new URL("../node_modules/wasmoon/dist/glue.wasm", import.meta.url));
  for (const url of candidates) {
    if (url.protocol !== "file:") continue;
    try {
      if ((await Deno.stat(url)).isFile) return url;
    } catch {
      // try the next one
    }
  }
  throw new Deno.errors.NotFound(
    `Cannot find wasmoon's glue.wasm: "${candidates.map(String).join('", "')}"`,
  );
}

/**
 * Loads wasmoon's module from a local `glue.wasm` (never from a CDN), once per location.
 * Engines created from the same module share its wasm heap; each has its own Lua state
 * and memory cap.
 *
 * wasmoon's emscripten build accepts neither `wasmBinary` nor `instantiateWasm`, and runs
 * in its Node mode under Deno (main thread and Web Workers alike), where it reads the file
 * with `node:fs`: so the wasm is named by a `file:` URL or a path, not passed as bytes.
 */
export function loadLua(wasm?: URL | string): Promise<LoadedLua> {
  const key = wasm === undefined ? "" : String(wasm);
  let p = loaded.get(key);
  if (p === undefined) {
    p = (async () => {
      const url = wasm ?? await defaultWasmUrl();
      const factory = new LuaFactory(String(url));
      const module = (await factory.getLuaModule()).module;
      return { factory, raw: bindRawLua(module) };
    })();
    p.catch(() => loaded.delete(key));
    loaded.set(key, p);
  }
  return p;
}
