/**
 * Marshalling between JS and Lua for a `LuaEngine` (`engine.ts`): the request table a
 * handler gets ({@linkcode LuaRequest}, built with the raw C API, no JS proxy), the
 * response read back from what it returns ({@linkcode LuaResponse}), and the plain values
 * ({@linkcode LuaValue}) that cross a coroutine yield or resume and the `ep._ext` host
 * functions.
 *
 * The engine calls these with the memory cap lifted (`_memory_cap.ts`): building a table
 * can then raise no Lua error, which outside a protected call would abort the wasm module.
 * Reading uses raw accesses only, so no metamethod of the handler's runs. The three types
 * are public; `engine.ts` re-exports them.
 *
 * @module
 */

import {
  LUA_TBOOLEAN,
  LUA_TNIL,
  LUA_TNUMBER,
  LUA_TSTRING,
  LUA_TTABLE,
  type LuaHeap,
  type LuaState,
  type RawLua,
  TYPE_NAMES,
} from "./_lua_api.ts";
import { replyProblem } from "../core/job.ts";
import { LuaReplyError } from "./errors.ts";

/**
 * A request as a handler sees it (`req` in `function(req)`): `service`, `method`, `path`,
 * `query` (a table, parsed and percent-decoded; for a repeated name the last value wins),
 * `query_string`, `headers` (a table by lower-case name; repeated fields joined with ", "),
 * `body` (a string), `attempt` (an integer, 1 unless redelivered), `hedge` (true on a hedged
 * copy), `id` (the request id, when the job has one) and `deadline_ms` (whole milliseconds
 * left when the handler starts, when the job has a deadline).
 *
 * @example
 * ```ts
 * import type { LuaRequest } from "./engine.ts";
 * const req: LuaRequest = {
 *   service: "user", method: "GET", path: "/user/7", query: "full=1",
 *   headers: [["accept", "text/plain"]], body: "", attempt: 2, requestId: "order-42",
 * };
 * console.assert(req.service === "user");
 * ```
 */
export interface LuaRequest {
  /** Service name. */
  service: string;
  /** HTTP method, or `"EP"`. */
  method: string;
  /** Path without the query. */
  path: string;
  /** Query string without `?`. */
  query: string;
  /** Header fields in order. */
  headers: readonly (readonly [string, string])[];
  /** Body bytes, or text sent as UTF-8. */
  body: Uint8Array | string;
  /**
   * Whether header names and values are byte strings (code units 0x00–0xFF, one byte each),
   * as HTTP's are: Lua then sees their bytes as they are, and the reply's header strings
   * are read back as byte strings (each Lua byte one code unit), so HTTP header bytes go
   * through a Lua handler unchanged. Otherwise (EP metadata, which is text) they are
   * UTF-8 both ways.
   */
  headerBytes?: boolean;
  /** Delivery attempt: 1 (the default) the first time, 2, 3, … when redelivered (`req.attempt`). */
  attempt?: number;
  /** A hedged copy (`req.hedge`, SPEC.md §9.10); default false. */
  hedge?: boolean;
  /** The request id (`req.id`): the client's `x-request-id`, or one the balancer made. */
  requestId?: string;
  /**
   * When the job's time is up (`performance.now()`): `req.deadline_ms` is the time left
   * when the handler starts, in whole milliseconds, never below 0. Absent: no deadline
   * (`req.deadline_ms` is nil).
   */
  deadline?: number;
}

/**
 * A handler's response. A handler that returns a string gives status 200, a
 * `text/plain; charset=utf-8` content type and the string; one that returns a table gives
 * its `status` (default 200), `headers` (name → string, or → list of strings for a repeated
 * field) and `body` (a string; default empty); one that returns nothing gives 204.
 *
 * @example
 * ```ts
 * import type { LuaResponse } from "./engine.ts";
 * const res: LuaResponse = { status: 200, headers: [], body: new Uint8Array() };
 * console.assert(res.status === 200);
 * ```
 */
export interface LuaResponse {
  /** Status, 200–599 (no body with 204 and 304). */
  status: number;
  /** Header fields. */
  headers: [string, string][];
  /** Body bytes. */
  body: Uint8Array;
}

/**
 * A value passed through a coroutine yield or resume. Tables and functions cross as null.
 *
 * @example
 * ```ts
 * import type { LuaValue } from "./engine.ts";
 * const args: LuaValue[] = ["sleep", 5, true, null];
 * console.assert(args.length === 4);
 * ```
 */
export type LuaValue = string | number | boolean | null | Uint8Array;

type FieldName =
  | "service"
  | "method"
  | "path"
  | "query"
  | "query_string"
  | "headers"
  | "body"
  | "attempt"
  | "hedge"
  | "id"
  | "deadline_ms"
  | "status";

const EMPTY: Uint8Array = new Uint8Array(0);
const TEXT_PLAIN: readonly [string, string] = ["content-type", "text/plain; charset=utf-8"];

/**
 * Moves requests, responses and plain values between JS and one Lua state's stacks; see
 * the module documentation. One per engine: it holds the field names as C strings.
 */
export class Marshal {
  readonly #raw: RawLua;
  readonly #heap: LuaHeap;
  readonly #k: Record<FieldName, number>;

  constructor(raw: RawLua, heap: LuaHeap) {
    this.#raw = raw;
    this.#heap = heap;
    const h = heap;
    this.#k = {
      service: h.cstring("service"),
      method: h.cstring("method"),
      path: h.cstring("path"),
      query: h.cstring("query"),
      query_string: h.cstring("query_string"),
      headers: h.cstring("headers"),
      body: h.cstring("body"),
      attempt: h.cstring("attempt"),
      hedge: h.cstring("hedge"),
      id: h.cstring("id"),
      deadline_ms: h.cstring("deadline_ms"),
      status: h.cstring("status"),
    };
  }

  /** Pushes `v` onto `L`'s stack (a safe integer as a Lua integer). */
  pushValue(L: LuaState, v: LuaValue): void {
    const raw = this.#raw;
    if (v === null) raw._lua_pushnil(L);
    else if (typeof v === "string") this.#heap.pushString(L, v);
    else if (v instanceof Uint8Array) this.#heap.pushBytes(L, v);
    else if (typeof v === "number") {
      if (Number.isSafeInteger(v)) raw._lua_pushinteger(L, BigInt(v));
      else raw._lua_pushnumber(L, v);
    } else raw._lua_pushboolean(L, v ? 1 : 0);
  }

  /** The top `n` values of `L`'s stack; tables, functions and the like read as null. */
  readValues(L: LuaState, n: number): LuaValue[] {
    const raw = this.#raw;
    const out: LuaValue[] = [];
    const first = raw._lua_gettop(L) - n + 1;
    for (let i = first; i < first + n; i++) {
      const t = raw._lua_type(L, i);
      if (t === LUA_TSTRING) out.push(this.#heap.toString(L, i));
      else if (t === LUA_TNUMBER) out.push(raw._lua_tonumberx(L, i, 0));
      else if (t === LUA_TBOOLEAN) out.push(raw._lua_toboolean(L, i) !== 0);
      else out.push(null);
    }
    return out;
  }

  /** Pushes the request table onto `co` (memory cap lifted: no Lua error can happen). */
  pushRequest(co: LuaState, req: LuaRequest): void {
    const raw = this.#raw;
    const heap = this.#heap;
    const k = this.#k;
    const id = req.requestId;
    const deadline = req.deadline;
    raw._lua_checkstack(co, 8);
    raw._lua_createtable(co, 0, 8 + (id === undefined ? 0 : 1) + (deadline === undefined ? 0 : 1));
    heap.pushString(co, req.service);
    raw._lua_setfield(co, -2, k.service);
    heap.pushString(co, req.method);
    raw._lua_setfield(co, -2, k.method);
    heap.pushString(co, req.path);
    raw._lua_setfield(co, -2, k.path);
    this.#pushQuery(co, req.query);
    raw._lua_setfield(co, -2, k.query);
    heap.pushString(co, req.query);
    raw._lua_setfield(co, -2, k.query_string);

    const headers = req.headers;
    const bytes = req.headerBytes === true; // HTTP: byte strings, pushed byte for byte
    raw._lua_createtable(co, 0, headers.length);
    for (let i = 0; i < headers.length; i++) {
      const name = headers[i][0].toLowerCase();
      if (bytes) heap.pushByteString(co, name);
      else heap.pushString(co, name);
      raw._lua_pushvalue(co, -1);
      if (raw._lua_rawget(co, -3) === LUA_TNIL) {
        raw._lua_settop(co, -2);
        if (bytes) heap.pushByteString(co, headers[i][1]);
        else heap.pushString(co, headers[i][1]);
      } else {
        const before = bytes ? heap.toByteString(co, -1) : heap.toString(co, -1);
        raw._lua_settop(co, -2);
        const joined = `${before}, ${headers[i][1]}`;
        if (bytes) heap.pushByteString(co, joined);
        else heap.pushString(co, joined);
      }
      raw._lua_rawset(co, -3);
    }
    raw._lua_setfield(co, -2, k.headers);

    if (typeof req.body === "string") heap.pushString(co, req.body);
    else heap.pushBytes(co, req.body);
    raw._lua_setfield(co, -2, k.body);

    const attempt = req.attempt;
    // (Nothing here may throw: the table is half built.)
    raw._lua_pushinteger(co, Number.isSafeInteger(attempt) && attempt! > 1 ? BigInt(attempt!) : 1n);
    raw._lua_setfield(co, -2, k.attempt);
    raw._lua_pushboolean(co, req.hedge === true ? 1 : 0);
    raw._lua_setfield(co, -2, k.hedge);
    if (id !== undefined) {
      heap.pushString(co, id);
      raw._lua_setfield(co, -2, k.id);
    }
    if (deadline !== undefined) {
      const left = Math.floor(deadline - performance.now());
      raw._lua_pushinteger(co, BigInt(left > 0 ? Math.min(left, Number.MAX_SAFE_INTEGER) : 0));
      raw._lua_setfield(co, -2, k.deadline_ms);
    }
  }

  #pushQuery(co: LuaState, query: string): void {
    const raw = this.#raw;
    const heap = this.#heap;
    if (query.length === 0) {
      raw._lua_createtable(co, 0, 0);
      return;
    }
    const parts = query.split("&");
    raw._lua_createtable(co, 0, parts.length);
    for (const part of parts) {
      if (part.length === 0) continue;
      const eq = part.indexOf("=");
      const name = decodeQueryComponent(eq < 0 ? part : part.slice(0, eq));
      if (name.length === 0) continue;
      heap.pushString(co, name);
      heap.pushString(co, eq < 0 ? "" : decodeQueryComponent(part.slice(eq + 1)));
      raw._lua_rawset(co, -3);
    }
  }

  /**
   * Reads a handler's `nres` results on `co` into a response (raw accesses only: no
   * metamethod runs). `service` names the handler in errors; `headerBytes` reads the header
   * strings back as byte strings (see {@linkcode LuaRequest.headerBytes}).
   */
  readResponse(co: LuaState, nres: number, service: string, headerBytes: boolean): LuaResponse {
    const raw = this.#raw;
    const heap = this.#heap;
    if (nres === 0) return { status: 204, headers: [], body: EMPTY };
    const idx = raw._lua_gettop(co) - nres + 1;
    const t = raw._lua_type(co, idx);
    if (t === LUA_TSTRING || t === LUA_TNUMBER) {
      return { status: 200, headers: [[...TEXT_PLAIN]], body: heap.toBytes(co, idx) ?? EMPTY };
    }
    if (t === LUA_TNIL) return { status: 204, headers: [], body: EMPTY };
    if (t !== LUA_TTABLE) {
      throw new LuaReplyError(
        `Handler of service "${service}" returned a ${
          TYPE_NAMES[t + 1]
        }; expected a string or a table`,
      );
    }
    raw._lua_checkstack(co, 4);
    let status = 200;
    this.rawField(co, idx, "status");
    const st = raw._lua_type(co, -1);
    if (st === LUA_TNUMBER) {
      status = raw._lua_tonumberx(co, -1, 0);
    } else if (st !== LUA_TNIL) {
      throw new LuaReplyError(
        `Handler of service "${service}" returned a ${TYPE_NAMES[st + 1]} status`,
      );
    }
    raw._lua_settop(co, -2);

    let body = EMPTY;
    this.rawField(co, idx, "body");
    const bt = raw._lua_type(co, -1);
    if (bt === LUA_TSTRING || bt === LUA_TNUMBER) body = heap.toBytes(co, -1) ?? EMPTY;
    else if (bt !== LUA_TNIL) {
      throw new LuaReplyError(
        `Handler of service "${service}" returned a ${TYPE_NAMES[bt + 1]} body`,
      );
    }
    raw._lua_settop(co, -2);
    // 200–599, no body with 204/304: the rule of every handler (core/job.ts).
    const problem = replyProblem(status, body.length);
    if (problem !== null) throw new LuaReplyError(problem);

    const headers: [string, string][] = [];
    // For HTTP the header strings are bytes: read back as byte strings, byte for byte.
    const str = headerBytes
      ? (L: LuaState, i: number) => heap.toByteString(L, i)
      : (L: LuaState, i: number) => heap.toString(L, i);
    this.rawField(co, idx, "headers");
    const ht = raw._lua_type(co, -1);
    if (ht === LUA_TTABLE) {
      const hidx = raw._lua_gettop(co);
      raw._lua_pushnil(co);
      while (raw._lua_next(co, hidx)) {
        if (raw._lua_type(co, -2) !== LUA_TSTRING) {
          throw new LuaReplyError(
            `Handler of service "${service}" returned a header without a name`,
          );
        }
        const name = str(co, -2) ?? "";
        const vt = raw._lua_type(co, -1);
        if (vt === LUA_TSTRING || vt === LUA_TNUMBER) {
          raw._lua_pushvalue(co, -1);
          headers.push([name, str(co, -1) ?? ""]);
          raw._lua_settop(co, -2);
        } else if (vt === LUA_TTABLE) {
          const n = raw._lua_rawlen(co, -1);
          for (let i = 1; i <= n; i++) {
            const et = raw._lua_rawgeti(co, -1, BigInt(i));
            if (et !== LUA_TSTRING && et !== LUA_TNUMBER) {
              throw new LuaReplyError(
                `Handler of service "${service}" returned a bad value for header "${name}"`,
              );
            }
            headers.push([name, str(co, -1) ?? ""]);
            raw._lua_settop(co, -2);
          }
        } else {
          throw new LuaReplyError(
            `Handler of service "${service}" returned a bad value for header "${name}"`,
          );
        }
        raw._lua_settop(co, -2);
      }
    } else if (ht !== LUA_TNIL) {
      throw new LuaReplyError(
        `Handler of service "${service}" returned headers that are not a table`,
      );
    }
    return { status, headers, body };
  }

  /** Pushes `t[name]` for the table at `idx` without metamethods. */
  rawField(
    L: LuaState,
    idx: number,
    name: FieldName | "debug" | "traceback" | "collectgarbage",
  ): void {
    const key = this.#heap.cstring(name);
    this.#raw._lua_pushlstring(L, key, name.length);
    this.#raw._lua_rawget(L, idx);
  }
}

function decodeQueryComponent(s: string): string {
  const plus = s.includes("+") ? s.replaceAll("+", " ") : s;
  if (!plus.includes("%")) return plus;
  try {
    return decodeURIComponent(plus);
  } catch {
    return plus; // malformed escape: keep the text as it came
  }
}
