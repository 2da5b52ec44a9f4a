/**
 * JSON for `ep.json`: Lua values on a Lua stack to JSON text and back, through the raw C
 * API (no Lua-side parser: JSON.parse and JSON.stringify do the text work).
 *
 * Mapping:
 * - A table is an array when it carries the array marker metatable (`ep.json.array`, and
 *   every array that `decode` makes) or when its keys are exactly 1..n with n ≥ 1; any
 *   other table is an object, whose keys must be strings or numbers (numbers become
 *   strings). An empty unmarked table is `{}`.
 * - `ep.json.null` (a light userdata NULL) is `null`, both ways, so `[1, null, 3]` keeps its
 *   length. A marked array with holes encodes the holes as `null`.
 * - Integers stay integers (up to 2^53 when decoding); NaN and ±inf cannot be encoded.
 * - Strings are UTF-8 in Lua; invalid UTF-8 is encoded as U+FFFD.
 *
 * @module
 */

import {
  LUA_REGISTRYINDEX,
  LUA_TBOOLEAN,
  LUA_TLIGHTUSERDATA,
  LUA_TNIL,
  LUA_TNUMBER,
  LUA_TSTRING,
  LUA_TTABLE,
  type LuaHeap,
  type LuaState,
  TYPE_NAMES,
} from "./_lua_api.ts";

/** Deepest nesting `encode` and `decode` accept. */
export const JSON_MAX_DEPTH = 200;

/**
 * Encodes the value at absolute stack index `idx` of `L` as JSON text of at most
 * `maxLength` UTF-16 code units. Throws a JS `TypeError`/`RangeError` for values JSON
 * cannot hold and a `RangeError` for a longer text; leaves the stack as it found it (when
 * it throws, the caller's Lua error unwinds the stack anyway).
 *
 * The bound matters: the text is built in JS memory, outside the Lua memory cap, and a
 * small Lua value can stand for a huge text (a sparse marked array, a string or a table
 * referenced many times), which would otherwise take gigabytes and seconds in a host
 * function, where ep's interrupt cannot reach.
 */
export function encodeJson(
  heap: LuaHeap,
  L: LuaState,
  idx: number,
  arrayMeta: bigint,
  maxLength: number,
): string {
  const out: Out = { parts: [], length: 0, max: maxLength };
  const seen = new Set<number>();
  encodeValue(heap, L, idx, arrayMeta, out, seen, 0);
  return out.parts.join("");
}

/** The text being built, and its length. */
interface Out {
  parts: string[];
  length: number;
  max: number;
}

function emit(out: Out, s: string): void {
  out.length += s.length;
  if (out.length > out.max) throw new RangeError(`JSON text longer than ${out.max} characters`);
  out.parts.push(s);
}

function encodeValue(
  heap: LuaHeap,
  L: LuaState,
  idx: number,
  arrayMeta: bigint,
  out: Out,
  seen: Set<number>,
  depth: number,
): void {
  const raw = heap.raw;
  const t = raw._lua_type(L, idx);
  switch (t) {
    case LUA_TNIL:
      emit(out, "null");
      return;
    case LUA_TBOOLEAN:
      emit(out, raw._lua_toboolean(L, idx) ? "true" : "false");
      return;
    case LUA_TNUMBER:
      if (raw._lua_isinteger(L, idx)) {
        const n = raw._lua_tonumberx(L, idx, 0);
        emit(out, Number.isSafeInteger(n) ? String(n) : raw._lua_tointegerx(L, idx, 0).toString());
      } else {
        const n = raw._lua_tonumberx(L, idx, 0);
        if (!Number.isFinite(n)) throw new RangeError(`Cannot encode the number "${n}" as JSON`);
        emit(out, JSON.stringify(n));
      }
      return;
    case LUA_TSTRING:
      emit(out, JSON.stringify(heap.toString(L, idx)));
      return;
    case LUA_TLIGHTUSERDATA:
      if (raw._lua_touserdata(L, idx) === 0) {
        emit(out, "null");
        return;
      }
      break;
    case LUA_TTABLE:
      encodeTable(heap, L, idx, arrayMeta, out, seen, depth);
      return;
  }
  throw new TypeError(`Cannot encode a ${TYPE_NAMES[t + 1]} value as JSON`);
}

function encodeTable(
  heap: LuaHeap,
  L: LuaState,
  idx: number,
  arrayMeta: bigint,
  out: Out,
  seen: Set<number>,
  depth: number,
): void {
  const raw = heap.raw;
  if (depth >= JSON_MAX_DEPTH) {
    throw new RangeError(`Cannot encode tables nested deeper than ${JSON_MAX_DEPTH} levels`);
  }
  const ptr = raw._lua_topointer(L, idx);
  if (seen.has(ptr)) throw new TypeError("Cannot encode a table that contains itself as JSON");
  seen.add(ptr);
  raw._lua_checkstack(L, 4);

  let marked = false;
  if (raw._lua_getmetatable(L, idx)) {
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, arrayMeta);
    marked = raw._lua_rawequal(L, -1, -2) !== 0;
    raw._lua_settop(L, -3);
  }

  // One pass over the keys decides array or object.
  let count = 0;
  let maxIndex = 0;
  let positiveIntegers = true;
  raw._lua_pushnil(L);
  while (raw._lua_next(L, idx)) {
    count++;
    if (positiveIntegers && raw._lua_type(L, -2) === LUA_TNUMBER && raw._lua_isinteger(L, -2)) {
      const k = raw._lua_tonumberx(L, -2, 0);
      if (k >= 1 && k <= 0x7fffffff) {
        if (k > maxIndex) maxIndex = k;
      } else {
        positiveIntegers = false;
      }
    } else {
      positiveIntegers = false;
    }
    raw._lua_settop(L, -2);
  }

  const isArray = marked ? positiveIntegers : count > 0 && positiveIntegers && maxIndex === count;
  if (isArray) {
    emit(out, "[");
    for (let i = 1; i <= maxIndex; i++) {
      if (i > 1) emit(out, ",");
      raw._lua_rawgeti(L, idx, BigInt(i));
      encodeValue(heap, L, raw._lua_gettop(L), arrayMeta, out, seen, depth + 1);
      raw._lua_settop(L, -2);
    }
    emit(out, "]");
  } else {
    emit(out, "{");
    let first = true;
    raw._lua_pushnil(L);
    while (raw._lua_next(L, idx)) {
      if (!first) emit(out, ",");
      first = false;
      const kt = raw._lua_type(L, -2);
      let key: string;
      if (kt === LUA_TSTRING) {
        key = heap.toString(L, -2) ?? "";
      } else if (kt === LUA_TNUMBER) {
        // Convert a copy: lua_tolstring on the key itself would break lua_next.
        raw._lua_pushvalue(L, -2);
        key = heap.toString(L, -1) ?? "";
        raw._lua_settop(L, -2);
      } else {
        throw new TypeError(`Cannot encode a table with a ${TYPE_NAMES[kt + 1]} key as JSON`);
      }
      emit(out, JSON.stringify(key) + ":");
      encodeValue(heap, L, raw._lua_gettop(L), arrayMeta, out, seen, depth + 1);
      raw._lua_settop(L, -2);
    }
    emit(out, "}");
  }
  seen.delete(ptr);
}

/**
 * Parses `text` and pushes the value onto `L`. Throws a JS `SyntaxError` for invalid JSON
 * and a `RangeError` for a text whose value cannot fit in `maxBytes` (0 = no limit) of Lua
 * memory (nothing pushed).
 *
 * `JSON.parse` builds the whole value in JS, outside the Lua memory cap, before any of it
 * reaches Lua: three bytes of text (`[],`) make a table, and a 30 MB text took 2 s and
 * 900 MB of JS memory before the cap stopped the push. So the text is scanned first for a
 * lower bound of what its value takes in Lua (a table ≥ 32 bytes, a value ≥ 16).
 */
export function decodeJson(
  heap: LuaHeap,
  L: LuaState,
  text: string,
  arrayMeta: bigint,
  maxBytes = 0,
): void {
  if (maxBytes > 0 && minimumLuaBytes(text) > maxBytes) {
    throw new RangeError(`JSON text too large for the memory cap (${maxBytes} bytes)`);
  }
  const value: unknown = JSON.parse(text);
  pushValue(heap, L, value, arrayMeta, 0);
}

/** A lower bound of the Lua memory the value of JSON `text` takes (0 for a bad text). */
function minimumLuaBytes(text: string): number {
  let containers = 0;
  let values = 1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) containers++; // [ {
    else if (c === 0x2c) values++; // ,
  }
  return containers * 32 + values * 16;
}

function pushValue(
  heap: LuaHeap,
  L: LuaState,
  value: unknown,
  arrayMeta: bigint,
  depth: number,
): void {
  const raw = heap.raw;
  if (value === null) {
    raw._lua_pushlightuserdata(L, 0);
  } else if (typeof value === "string") {
    heap.pushString(L, value);
  } else if (typeof value === "number") {
    if (Number.isSafeInteger(value)) raw._lua_pushinteger(L, BigInt(value));
    else raw._lua_pushnumber(L, value);
  } else if (typeof value === "boolean") {
    raw._lua_pushboolean(L, value ? 1 : 0);
  } else {
    if (depth >= JSON_MAX_DEPTH) {
      throw new RangeError(`Cannot decode JSON nested deeper than ${JSON_MAX_DEPTH} levels`);
    }
    raw._lua_checkstack(L, 3);
    if (Array.isArray(value)) {
      raw._lua_createtable(L, value.length, 0);
      for (let i = 0; i < value.length; i++) {
        pushValue(heap, L, value[i], arrayMeta, depth + 1);
        raw._lua_rawseti(L, -2, BigInt(i + 1));
      }
      raw._lua_rawgeti(L, LUA_REGISTRYINDEX, arrayMeta);
      raw._lua_setmetatable(L, -2);
    } else {
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj);
      raw._lua_createtable(L, 0, keys.length);
      for (const k of keys) {
        heap.pushString(L, k);
        pushValue(heap, L, obj[k], arrayMeta, depth + 1);
        raw._lua_rawset(L, -3);
      }
    }
  }
}
