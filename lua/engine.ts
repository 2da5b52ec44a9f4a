/**
 * One Lua 5.4 engine (wasmoon, WebAssembly) for service handlers, driven through the raw
 * C API: a handler call builds its request table and reads its response with a few dozen
 * API calls and no JS proxy, in a pooled coroutine.
 *
 * ```
 * loadHandler(source) ─► function in the registry (ref)
 * callHandler(ref, req) ─► coroutine from the pool ─► lua_resume
 *     returned  ─► { done: true, value: response }        coroutine back to the pool
 *     yielded   ─► { done: false, call, op, args }        resume(call, values) later
 *     error     ─► throws LuaError / LuaTimeoutError / LuaMemoryError
 * ```
 *
 * This file is the engine itself: loading, calling, resuming and cancelling, the hook, the
 * coroutine pool and the stack discipline. Its parts, each a file:
 * - `_marshal.ts`: the request table, the response, values across a yield
 *   ({@linkcode LuaRequest}, {@linkcode LuaResponse}, {@linkcode LuaValue}).
 * - `_host.ts`: the host table of JS functions that `ep.lua` builds the `ep` module on
 *   (logging, time, JSON, timers: {@linkcode LuaTimerHost}, {@linkcode LuaLogger}).
 * - `_memory_cap.ts`: the allocator that counts the state's bytes and enforces the cap.
 * - `_guard.ts`: the guard table of threads Lua code may not resume or close.
 * - `_require.ts`: the script directory and the reading of module files.
 * - `_lua_api.ts` (the raw C API, strings in wasm memory), `_json.ts` (`ep.json`), and
 *   `ep.lua` (the `ep` module, the `require` searcher, the sandbox).
 *
 * - **Stack discipline**: after every call, successful or not, the main state's stack is
 *   exactly as before ({@linkcode LuaEngine.stackTop}); a coroutine goes back to the pool
 *   empty.
 * - **Interrupts**: with `interrupt` set, a count hook runs every `hookPeriod` (1000)
 *   instructions and reads the shared slot: 0 = run on; -1 = interrupt whatever runs;
 *   any other value = interrupt the call whose `token` it is (a call without a token is
 *   interrupted by any nonzero value). An interrupted handler is stopped by yielding its
 *   coroutine from the hook, which `pcall` cannot catch; where Lua cannot yield (inside a
 *   C call such as `table.sort`'s comparator or `require`), the hook raises "interrupted"
 *   at every tick until the call is back where it can. The slot is reset to 0 when the
 *   interrupt is taken. Cost: while a count hook is set, Lua checks it at every
 *   instruction, so a CPU-bound Lua loop runs about 2× slower (the period hardly
 *   matters); a trivial handler does not notice (`tests/bench/lua_bench.ts`).
 * - **Sandbox**: handler code cannot remove or replace the hook, nor run Lua where it does
 *   not reach (`ep.lua`'s sandbox section; `lua/API.md`, "Sandbox"). The engine's part:
 *   the hook is set again on every resume; a coroutine the hook stopped is dropped without
 *   running its to-be-closed variables (Lua leaves its hooks off) and other threads it
 *   stopped are marked in the guard table (`_guard.ts`), with ep's own coroutines, so that
 *   Lua code cannot resume or close them; the to-be-closed variables of a failed or
 *   cancelled call run under the memory cap with a budget of hook ticks.
 * - **Memory cap**: enforced only while Lua runs (`_memory_cap.ts`; a request body counts
 *   once the handler runs: the cap must exceed the largest body). A handler that passes
 *   the cap gets `LuaMemoryError`; the engine then runs a full collection and stays usable
 *   if it is back under 75 % of its cap, else {@linkcode LuaEngine.healthy} turns false
 *   and the engine should be replaced (the handler keeps memory alive in a global).
 * - **Failure**: a JS exception out of `lua_resume` (a wasm trap) leaves the state
 *   inconsistent: {@linkcode LuaEngine.failed} turns true and the engine refuses all calls.
 * - **`require`** reads `<scriptDir>/<name>.lua` and `<scriptDir>/<name>/init.lua` through
 *   Deno, so it also works for files embedded in a `deno compile` binary; paths cannot
 *   leave `scriptDir` (`_require.ts`).
 *
 * Longer than 600 lines: {@linkcode LuaEngine} is one state machine (run, hook, finish
 * share the running call, the pool and the interrupt), and much of the file is the
 * documentation of its public API.
 *
 * @example
 * ```ts ignore
 * import { LuaEngine } from "./engine.ts";
 * const engine = await LuaEngine.create({ memoryLimitBytes: 16 << 20 });
 * const ref = engine.loadHandler(`return function(req) return "hi " .. req.body end`, "hi.lua");
 * const step = engine.callHandler(ref, {
 *   service: "hi", method: "POST", path: "/hi", query: "", headers: [], body: "bob",
 * });
 * if (step.done) console.log(new TextDecoder().decode(step.value.body)); // "hi bob"
 * engine.close();
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { LuaEngine as WasmoonEngine } from "wasmoon";
import {
  loadLua,
  LUA_ERRMEM,
  LUA_MASKCOUNT,
  LUA_OK,
  LUA_REGISTRYINDEX,
  LUA_TFUNCTION,
  LUA_YIELD,
  LuaHeap,
  type LuaState,
  type RawLua,
  TYPE_NAMES,
} from "./_lua_api.ts";
import { type LuaRequest, type LuaResponse, type LuaValue, Marshal } from "./_marshal.ts";
import { type HostCall, HostTable, type LuaLogger, type LuaTimerHost } from "./_host.ts";
import { MemoryCap } from "./_memory_cap.ts";
import { GUARD_CUT, GUARD_EP, GuardTable } from "./_guard.ts";
import { toDirUrl } from "./_require.ts";
import { LuaError, LuaMemoryError, LuaTimeoutError } from "./errors.ts";

export type { LuaRequest, LuaResponse, LuaValue } from "./_marshal.ts";
export type { LuaLogger, LuaTimerHost } from "./_host.ts";

/**
 * Value of the interrupt slot that interrupts whatever call runs.
 *
 * @example
 * ```ts
 * import { INTERRUPT_ANY } from "./engine.ts";
 * const slot = new Int32Array(new SharedArrayBuffer(4));
 * Atomics.store(slot, 0, INTERRUPT_ANY);
 * console.assert(Atomics.load(slot, 0) === -1);
 * ```
 */
export const INTERRUPT_ANY: number = -1;

const DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024;
const DEFAULT_HOOK_PERIOD = 1000;
const MAX_IDLE_THREADS = 64;
/**
 * Hook ticks the to-be-closed variables of a failed or abandoned call get, together, when
 * ep closes its coroutine (100 × 1000 instructions); past that each one gets a single
 * instruction. They run after the call, where its timeout no longer reaches them.
 */
const CLOSE_BUDGET_TICKS = 100;

/**
 * Options of {@linkcode LuaEngine.create}.
 *
 * @example
 * ```ts
 * import type { LuaEngineOptions } from "./engine.ts";
 * const options: LuaEngineOptions = {
 *   memoryLimitBytes: 32 << 20,
 *   interrupt: new Int32Array(new SharedArrayBuffer(4)),
 *   scriptDir: "./scripts",
 * };
 * console.assert(options.memoryLimitBytes === 32 << 20);
 * ```
 */
export interface LuaEngineOptions {
  /** Location of wasmoon's `glue.wasm` (`file:` URL or path); default: the local package. */
  wasm?: URL | string;
  /** Memory cap of the Lua state in bytes (default 64 MiB; 0 = none). */
  memoryLimitBytes?: number;
  /** Shared interrupt slot (index 0); without it no hook is installed. */
  interrupt?: Int32Array;
  /** Lua instructions between two checks of `interrupt` (default 1000). */
  hookPeriod?: number;
  /**
   * Time slice in ms (default 0: none), for an engine on a thread that also serves sockets
   * (a one-slot worker's main thread, `lua/inline.ts`): a call that has run this long since
   * it was last started or resumed, in its own coroutine where Lua can yield, is suspended
   * by the hook with the step `{ op: "preempt" }`; resume it (no values) after the event
   * loop had its turn. Needs `interrupt` (the hook). The hook then also reads the clock:
   * a call past its own `LuaCallOptions.deadline` is interrupted without anyone writing the
   * interrupt slot (nobody can while Lua runs on that thread).
   */
  sliceMs?: number;
  /** Directory `require` resolves modules in (path or `file:` URL). */
  scriptDir?: string | URL;
  /** Logger whose children `[service]` get `ep.log`; default `["ep", "lua"]`. */
  log?: LuaLogger;
  /** Scheduler for `ep.timer`/`ep.every`; without it they raise an error. */
  timers?: LuaTimerHost;
  /**
   * Extra host functions, visible to Lua as `ep._ext.<name>(...)`: arguments and result
   * are plain values (string, number, boolean, nil). A throw becomes a Lua error. The
   * control script's `ep.listen`, `ep.service`, … are built on these (`lua/control.ts`).
   */
  hostFunctions?: Record<string, (...args: LuaValue[]) => LuaValue | void>;
  /**
   * Lets `ep.sleep` wait without yielding: called with the wake-up time
   * (`performance.now()`) from a handler call's own coroutine, it blocks the thread until
   * then and returns true, or returns false at once or early (the call then yields as
   * usual). Without it `ep.sleep` always yields.
   */
  block?: (until: number) => boolean;
}

/**
 * A handler call or timer callback that yielded and waits for
 * {@linkcode LuaEngine.resume} (or {@linkcode LuaEngine.cancel}). `T` is what the call
 * gives when it is done: a {@linkcode LuaResponse} for handlers, `undefined` for timers.
 *
 * @example
 * ```ts
 * import type { LuaCall, LuaResponse } from "./engine.ts";
 * function describe(call: LuaCall<LuaResponse>): string {
 *   return `${call.kind} of ${call.service}, token ${call.token}`;
 * }
 * console.assert(typeof describe === "function");
 * ```
 */
export interface LuaCall<T> {
  /** The service the call belongs to. */
  readonly service: string;
  /** The interrupt token (0 = none). */
  readonly token: number;
  /** A handler call or a timer callback. */
  readonly kind: "handler" | "timer";
  /** Whether it waits for a resume. */
  readonly suspended: boolean;
  /** Never set; carries `T`. */
  readonly result?: T;
}

/**
 * The outcome of running a call until it returns or yields: done with a value, or
 * suspended with the operation it asks for (`op`, e.g. `"sleep"`, and its arguments).
 *
 * @example
 * ```ts
 * import type { LuaResponse, LuaStep } from "./engine.ts";
 * function pending(step: LuaStep<LuaResponse>): string | null {
 *   return step.done ? null : step.op;
 * }
 * console.assert(pending({ done: true, value: { status: 200, headers: [], body: new Uint8Array() } }) === null);
 * ```
 */
export type LuaStep<T> =
  | { done: true; value: T }
  | { done: false; call: LuaCall<T>; op: string; args: LuaValue[] };

/**
 * Options of a handler call or timer callback.
 *
 * @example
 * ```ts
 * import type { LuaCallOptions } from "./engine.ts";
 * const options: LuaCallOptions = { token: 42 };
 * console.assert(options.token === 42);
 * ```
 */
export interface LuaCallOptions {
  /** Interrupt token: the slot value (besides -1) that interrupts this call; 0 = any. */
  token?: number;
  /**
   * With `LuaEngineOptions.sliceMs`: when the call's time is up (`performance.now()`); the
   * hook interrupts it past then, as if the slot had aimed at it.
   */
  deadline?: number;
}

type CallKind = "handler" | "timer" | "load";

/**
 * The engine's record of one call: its coroutine and the flags the hook, `#run`, `#finish`
 * and the host functions (through {@linkcode HostCall}) share.
 */
class CallState implements LuaCall<unknown>, HostCall {
  readonly thread: LuaState;
  readonly service: string;
  readonly token: number;
  readonly kind: "handler" | "timer";
  readonly loading: boolean;
  interrupted = false;
  /** When the hook interrupts it on its own (`LuaCallOptions.deadline`); Infinity: never. */
  deadline = Infinity;
  /**
   * The hook stopped this call's own coroutine by yielding or raising from inside the
   * hook: Lua leaves that thread's hooks off (`allowhook`), so nothing may run on it again.
   */
  cut = false;
  /** ep is closing the coroutine's to-be-closed variables (after an error or a cancel). */
  closing = false;
  suspended = false;
  done = false;
  /** The request's header strings are byte strings (see `LuaRequest.headerBytes`). */
  headerBytes = false;
  declare readonly result?: unknown;

  constructor(thread: LuaState, service: string, token: number, kind: CallKind) {
    this.thread = thread;
    this.service = service;
    this.token = token;
    this.kind = kind === "timer" ? "timer" : "handler";
    this.loading = kind === "load";
  }
}

let epSource: Promise<string> | undefined;

/** The text of `ep.lua`, read once per thread (embedded by `deno compile --include lua`). */
function loadEpSource(): Promise<string> {
  epSource ??= Deno.readTextFile(new URL("./ep.lua", import.meta.url));
  return epSource;
}

/**
 * A Lua engine for service handlers; see the module documentation for the design.
 *
 * @example
 * ```ts ignore
 * import { LuaEngine } from "./engine.ts";
 * const engine = await LuaEngine.create();
 * const ref = engine.loadHandler(`return function(req) return { status = 201, body = req.path } end`, "made.lua");
 * const step = engine.callHandler(ref, {
 *   service: "made", method: "GET", path: "/made", query: "", headers: [], body: "",
 * });
 * console.log(step.done && step.value.status); // 201
 * engine.close();
 * ```
 */
export class LuaEngine {
  /** The memory cap in bytes (0 = none). */
  readonly memoryLimitBytes: number;

  #wasmoon: WasmoonEngine;
  #raw: RawLua;
  #heap: LuaHeap;
  #L: LuaState;
  #log: LuaLogger;
  #memory: MemoryCap;
  #marshal: Marshal;
  #host: HostTable;
  #guard!: GuardTable;
  #interrupt: Int32Array | undefined;
  #functions: number[] = [];
  #nresCell: number;
  #tracebackRef = 0n;
  #collectRef = 0n;
  #fireRef = 0n;
  #hookFn = 0;
  #hookPeriod = DEFAULT_HOOK_PERIOD;
  #closeTicks = 0;
  #failure: unknown = undefined;
  #idle: LuaState[] = [];
  #current: CallState | null = null;
  #hookYielded: LuaState = 0;
  /** The coroutine the hook suspended because its time slice was over (resumable). */
  #hookPreempted: LuaState = 0;
  #sliceMs = 0;
  /** When the running call's slice ends (`performance.now()`). */
  #sliceEnd = Infinity;
  #healthy = true;
  #closed = false;
  #kInterrupted: number;

  /**
   * Creates an engine: loads wasmoon from the local `glue.wasm`, opens the standard
   * libraries, installs the `ep` module, the `require` searcher and (with `interrupt`) the
   * hook.
   *
   * @example
   * ```ts ignore
   * import { LuaEngine } from "./engine.ts";
   * const flag = new Int32Array(new SharedArrayBuffer(4));
   * const engine = await LuaEngine.create({ interrupt: flag, scriptDir: "./scripts" });
   * engine.close();
   * ```
   */
  static async create(options: LuaEngineOptions = {}): Promise<LuaEngine> {
    const [{ factory, raw }, epLua] = await Promise.all([loadLua(options.wasm), loadEpSource()]);
    const wasmoon = await factory.createEngine({
      traceAllocations: false,
      enableProxy: false,
      injectObjects: false,
      openStandardLibs: true,
    });
    const engine = new LuaEngine(wasmoon, raw, options);
    try {
      engine.#init(epLua, options.hookPeriod ?? DEFAULT_HOOK_PERIOD);
    } catch (err) {
      engine.close();
      throw err;
    }
    return engine;
  }

  private constructor(wasmoon: WasmoonEngine, raw: RawLua, options: LuaEngineOptions) {
    this.#wasmoon = wasmoon;
    this.#raw = raw;
    this.#L = wasmoon.global.address;
    this.#heap = new LuaHeap(raw);
    this.#nresCell = raw._malloc(4);
    this.#log = options.log ?? getLogger(["ep", "lua"]);
    this.#interrupt = options.interrupt;
    this.#sliceMs = options.interrupt !== undefined ? Math.max(0, options.sliceMs ?? 0) : 0;
    this.#memory = new MemoryCap(raw, options.memoryLimitBytes ?? DEFAULT_MEMORY_LIMIT);
    this.memoryLimitBytes = this.#memory.limitBytes;
    this.#marshal = new Marshal(raw, this.#heap);
    this.#host = new HostTable({
      raw,
      heap: this.#heap,
      marshal: this.#marshal,
      memoryLimitBytes: this.memoryLimitBytes,
      scriptDir: options.scriptDir === undefined ? undefined : toDirUrl(options.scriptDir),
      log: this.#log,
      timers: options.timers,
      hostFunctions: options.hostFunctions ?? {},
      block: options.block,
      current: () => this.#current,
    });
    this.#kInterrupted = this.#heap.cstring("interrupted");
  }

  /** Allocator, hook, guard table, registry entries, the host table and ep.lua. */
  #init(epLua: string, hookPeriod: number): void {
    const raw = this.#raw;
    const L = this.#L;
    const top = raw._lua_gettop(L);
    // Our allocator from here on: it counts, and refuses past the cap while Lua runs.
    // Blocks the state already holds came from the same malloc, so it can free them; the
    // count starts from Lua's own.
    this.#functions.push(this.#memory.install(L));
    this.#collectRef = this.#refGlobalField("_G", "collectgarbage");
    this.#memory.used = Math.round(this.#collect("count") * 1024);
    // Set before any coroutine exists: lua_newthread copies the hook. Handlers cannot
    // reach debug.sethook (ep.lua), and #run sets it again on every resume anyway.
    if (this.#interrupt !== undefined) {
      this.#hookFn = raw.addFunction(this.#hook, "vii");
      this.#functions.push(this.#hookFn);
      this.#hookPeriod = hookPeriod;
      raw._lua_sethook(L, this.#hookFn, LUA_MASKCOUNT, hookPeriod);
    }
    // The guard table: threads Lua code may not resume or close.
    this.#guard = new GuardTable(raw, this.#heap, L, this.#memory);
    this.#guard.mark(L, GUARD_EP);
    this.#tracebackRef = this.#refGlobalField("debug", "traceback");

    // ep.lua(host) returns the timer dispatcher.
    this.#host.push(L, this.#guard.ref);
    const fire = this.#runChunk(epLua, "=ep.lua", "ep", 1);
    this.#fireRef = BigInt(fire);
    raw._lua_settop(L, top);
  }

  /** A registry reference to `_G.collectgarbage` or `debug.traceback`, read raw. */
  #refGlobalField(table: "debug" | "_G", field: "traceback" | "collectgarbage"): bigint {
    const raw = this.#raw;
    const L = this.#L;
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, 2n); // LUA_RIDX_GLOBALS
    if (table !== "_G") this.#marshal.rawField(L, raw._lua_gettop(L), table);
    this.#marshal.rawField(L, raw._lua_gettop(L), field);
    const ref = BigInt(raw._luaL_ref(L, LUA_REGISTRYINDEX));
    raw._lua_settop(L, table === "_G" ? -2 : -3);
    return ref;
  }

  /**
   * Whether the engine may go on serving: false once it {@linkcode LuaEngine.failed}, or
   * after an out-of-memory it could not recover from (then it is still consistent: calls
   * suspended on it may finish, but it should be replaced).
   */
  get healthy(): boolean {
    return this.#healthy && !this.#closed;
  }

  /**
   * Whether the engine failed: the wasm module trapped or threw while Lua ran, so the Lua
   * state may be inconsistent. A failed engine refuses every call (a `LuaError`) and must
   * be replaced; calls suspended on it are lost.
   */
  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Bytes the Lua state holds now. */
  get memoryUsed(): number {
    return this.#memory.used;
  }

  /** Size of the main state's stack; unchanged by every call (for tests). */
  get stackTop(): number {
    return this.#raw._lua_gettop(this.#L);
  }

  /** Coroutines waiting in the pool (for tests). */
  get idleCoroutines(): number {
    return this.#idle.length;
  }

  /**
   * Runs a service file, which must `return` its handler function, and keeps the function
   * in the registry. Errors in the file throw {@linkcode LuaError} (also for a syntax
   * error, or when it returns something else). `chunkName` names the file in messages
   * (give the path relative to the script directory, never an absolute one); `service` is
   * the log category of what the file logs while it loads.
   *
   * @example
   * ```ts ignore
   * const ref = engine.loadHandler(`return function(req) return "ok" end`, "ok.lua", "ok");
   * ```
   */
  loadHandler(source: string, chunkName: string, service: string = chunkName): number {
    this.#assertOpen();
    const raw = this.#raw;
    const L = this.#L;
    const top = raw._lua_gettop(L);
    const name = chunkName.startsWith("=") || chunkName.startsWith("@")
      ? chunkName
      : `=${chunkName}`;
    try {
      return this.#runChunk(source, name, service, 0);
    } finally {
      raw._lua_settop(L, top);
    }
  }

  /**
   * Forgets a handler loaded by {@linkcode LuaEngine.loadHandler}.
   *
   * @example
   * ```ts ignore
   * engine.unloadHandler(ref);
   * ```
   */
  unloadHandler(ref: number): void {
    if (!this.#closed) this.#raw._luaL_unref(this.#L, LUA_REGISTRYINDEX, ref);
  }

  /**
   * Calls handler `ref` with a request table, in a coroutine, until it returns (done) or
   * yields (suspended, with the operation it asks for). Throws {@linkcode LuaError} when
   * it fails, {@linkcode LuaTimeoutError} when interrupted, {@linkcode LuaMemoryError}
   * when it passes the memory cap.
   *
   * @example
   * ```ts ignore
   * const step = engine.callHandler(ref, req, { token: job.id });
   * if (!step.done && step.op === "sleep") setTimeout(() => engine.resume(step.call), step.args[0] as number);
   * ```
   */
  callHandler(ref: number, req: LuaRequest, options?: LuaCallOptions): LuaStep<LuaResponse> {
    this.#assertIdle();
    const co = this.#takeThread();
    const call = new CallState(co, req.service, options?.token ?? 0, "handler");
    call.headerBytes = req.headerBytes === true;
    if (options?.deadline !== undefined) call.deadline = options.deadline;
    const raw = this.#raw;
    raw._lua_rawgeti(co, LUA_REGISTRYINDEX, BigInt(ref));
    this.#marshal.pushRequest(co, req);
    return this.#run(call, 1) as LuaStep<LuaResponse>;
  }

  /**
   * Resumes a suspended call; `values` become the results of its `coroutine.yield`.
   *
   * @example
   * ```ts ignore
   * let step = engine.callHandler(ref, req);
   * while (!step.done) step = engine.resume(step.call);
   * ```
   */
  resume<T>(call: LuaCall<T>, values: readonly LuaValue[] = []): LuaStep<T> {
    this.#assertIdle();
    const state = this.#own(call);
    if (!state.suspended) throw new TypeError("The Lua call is not suspended");
    const co = state.thread;
    const raw = this.#raw;
    // Aimed at this call while it was suspended (its time ran out while it slept)?
    const flag = this.#interrupt;
    if (flag !== undefined && state.token !== 0 && Atomics.load(flag, 0) === state.token) {
      Atomics.compareExchange(flag, 0, state.token, 0);
      state.interrupted = true;
    }
    raw._lua_checkstack(co, values.length + 1);
    for (const v of values) this.#marshal.pushValue(co, v);
    return this.#run(state, values.length) as LuaStep<T>;
  }

  /**
   * Abandons a suspended call: its coroutine is closed (pending to-be-closed variables
   * run) and goes back to the pool. Does nothing for a call that is not suspended.
   *
   * @example
   * ```ts ignore
   * if (!step.done) engine.cancel(step.call);
   * ```
   */
  cancel(call: LuaCall<unknown>): void {
    if (this.#closed) return;
    const state = this.#own(call);
    if (!state.suspended) return;
    this.#assertIdle();
    this.#finish(state);
  }

  /**
   * Runs the callback of timer `id` (see {@linkcode LuaTimerHost}) in a coroutine of its
   * own. A cancelled timer is done at once. Errors throw, as for handlers.
   *
   * @example
   * ```ts ignore
   * const step = engine.fireTimer(id);
   * ```
   */
  fireTimer(id: number, options?: LuaCallOptions): LuaStep<undefined> {
    this.#assertIdle();
    const service = this.#host.dueTimer(id);
    if (service === undefined) return { done: true, value: undefined };
    const co = this.#takeThread();
    const call = new CallState(co, service, options?.token ?? 0, "timer");
    if (options?.deadline !== undefined) call.deadline = options.deadline;
    const raw = this.#raw;
    raw._lua_rawgeti(co, LUA_REGISTRYINDEX, this.#fireRef);
    raw._lua_pushinteger(co, BigInt(id));
    return this.#run(call, 1) as LuaStep<undefined>;
  }

  /**
   * Runs a full garbage collection.
   *
   * @example
   * ```ts ignore
   * engine.collectGarbage();
   * console.log(engine.memoryUsed);
   * ```
   */
  collectGarbage(): void {
    this.#assertIdle();
    this.#collect("collect");
  }

  /**
   * Closes the Lua state and frees what the engine took from the wasm heap. Suspended
   * calls are lost. Idempotent.
   *
   * @example
   * ```ts ignore
   * engine.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#current = null;
    this.#host.stopTimers();
    try {
      this.#wasmoon.global.close();
    } catch (err) {
      // A failed engine may not close cleanly; its memory is lost, the thread goes on.
      this.#log.warn("Closing a failed Lua engine failed: {error}", { error: err });
    }
    for (const f of this.#functions) this.#raw.removeFunction(f);
    this.#functions = [];
    this.#host.free();
    this.#raw._free(this.#nresCell);
    this.#heap.free();
  }

  // ---------------------------------------------------------------------------------
  // running

  /** Resumes `call`'s coroutine with `nargs` arguments on it and sorts out the result. */
  #run(call: CallState, nargs: number): LuaStep<unknown> {
    const raw = this.#raw;
    const co = call.thread;
    if (call.interrupted) {
      // Aimed at it while it was suspended: stop it now.
      const traceback = this.#traceback(co, "interrupted");
      this.#finish(call);
      throw new LuaTimeoutError(call.service, { traceback });
    }
    call.suspended = false;
    this.#current = call;
    if (this.#sliceMs > 0) this.#sliceEnd = performance.now() + this.#sliceMs;
    // Re-armed on every resume, whatever Lua did to this thread's hook.
    if (this.#hookFn !== 0) raw._lua_sethook(co, this.#hookFn, LUA_MASKCOUNT, this.#hookPeriod);
    this.#memory.enforce(true);
    let status: number;
    try {
      status = raw._lua_resume(co, this.#L, nargs, this.#nresCell);
    } catch (err) {
      // Not a Lua error: the wasm module trapped (or emscripten's exit threw) in the
      // middle of Lua, which leaves the state inconsistent.
      this.#failure = err;
      this.#healthy = false;
      this.#log.error("The Lua engine failed: {error}", { error: err });
      throw new LuaError("The Lua engine failed and is being replaced", { cause: err });
    } finally {
      this.#memory.enforce(false);
      this.#current = null;
    }
    const nres = raw.HEAPU32[this.#nresCell >> 2];

    if (status === LUA_OK) {
      try {
        const value = call.kind === "handler"
          ? this.#marshal.readResponse(co, nres, call.service, call.headerBytes)
          : undefined;
        return { done: true, value };
      } finally {
        raw._lua_settop(co, 0);
        this.#finish(call, true);
      }
    }
    if (status === LUA_YIELD) {
      if (this.#hookPreempted === co) {
        // Its slice is over: Lua resumes it where the hook stopped it.
        this.#hookPreempted = 0;
        call.suspended = true;
        return { done: false, call, op: "preempt", args: [] };
      }
      if (this.#hookYielded === co) {
        this.#hookYielded = 0;
        const traceback = this.#traceback(co, "interrupted");
        this.#finish(call);
        throw new LuaTimeoutError(call.service, { traceback });
      }
      const args = this.#marshal.readValues(co, nres);
      // ep.call's body is bytes (a Lua string is any bytes): read it as such.
      if (args[0] === "call" && nres >= 3 && typeof args[2] === "string") {
        args[2] = this.#heap.toBytes(co, -nres + 2) ?? new Uint8Array(0);
      }
      raw._lua_settop(co, -nres - 1);
      call.suspended = true;
      const op = typeof args[0] === "string" ? args[0] : "";
      return { done: false, call, op, args: args.slice(1) };
    }
    // An error: the message is on the coroutine's stack, its frames are still there.
    const message = this.#heap.describe(co, -1);
    const traceback = this.#traceback(co, message);
    this.#finish(call);
    if (call.interrupted) throw new LuaTimeoutError(call.service, { traceback });
    if (status === LUA_ERRMEM) throw this.#memoryError(call.service, traceback);
    throw new LuaError(clientMessage(message), { traceback });
  }

  /** Runs a chunk with a traceback handler; returns a registry ref of its first result. */
  #runChunk(source: string, chunkName: string, service: string, nargs: 0 | 1): number {
    const raw = this.#raw;
    const L = this.#L;
    const heap = this.#heap;
    const top0 = raw._lua_gettop(L); // the argument, if any, is at top0
    const bytes = new TextEncoder().encode(source);
    const buf = raw._malloc(bytes.length + 1);
    const name = raw._malloc(chunkName.length * 3 + 1);
    let status: number;
    try {
      raw.HEAPU8.set(bytes, buf);
      const nameBytes = new TextEncoder().encode(chunkName);
      raw.HEAPU8.set(nameBytes, name);
      raw.HEAPU8[name + nameBytes.length] = 0;
      raw._lua_rawgeti(L, LUA_REGISTRYINDEX, this.#tracebackRef);
      status = raw._luaL_loadbufferx(L, buf, bytes.length, name, heap.cstring("t"));
    } finally {
      raw._free(buf);
      raw._free(name);
    }
    if (status !== LUA_OK) {
      const message = heap.describe(L, -1);
      throw new LuaError(clientMessage(message), { traceback: message });
    }
    // [arg] traceback chunk -> traceback chunk [arg]
    let msgh = top0 + 1;
    if (nargs === 1) {
      raw._lua_rotate(L, top0, -1);
      msgh = top0;
    }
    const call = new CallState(L, service, 0, "load");
    this.#current = call;
    this.#memory.enforce(true);
    try {
      status = raw._lua_pcallk(L, nargs, 1, msgh, 0, 0);
    } finally {
      this.#memory.enforce(false);
      this.#current = null;
    }
    if (status !== LUA_OK) {
      const message = heap.describe(L, -1);
      if (call.interrupted) throw new LuaTimeoutError(service, { traceback: message });
      if (status === LUA_ERRMEM) throw this.#memoryError(service, message);
      throw new LuaError(clientMessage(message), { traceback: message });
    }
    const t = raw._lua_type(L, -1);
    if (t !== LUA_TFUNCTION) {
      throw new LuaError(
        `Script "${chunkName.slice(1)}" returned a ${TYPE_NAMES[t + 1]}; expected a function`,
      );
    }
    return raw._luaL_ref(L, LUA_REGISTRYINDEX);
  }

  /**
   * Count hook: stops the running call when the interrupt slot aims at it.
   *
   * It yields the call's own coroutine where it can (`pcall` cannot catch that), else
   * raises "interrupted" at every tick until the call is back where it can yield. Both
   * leave the thread's hooks off (Lua resets `allowhook` only where a `pcall` catches), so
   * such a thread must never run Lua again: the call's coroutine is dropped, not reset
   * (#finish), and any other thread the hook raised in is marked in the guard table, so
   * that `coroutine.resume`/`close`/`wrap` (ep.lua) refuse to run its code or its
   * to-be-closed variables. While Lua unwinds from the raise, the one piece of Lua that
   * runs with hooks off is an `xpcall` message handler, which ep.lua skips once
   * `interrupting()` is true.
   *
   * While ep closes a call's coroutine (#finish), it gives the to-be-closed variables a
   * budget instead.
   */
  #hook = (L: number): void => {
    const call = this.#current;
    if (call === null) return; // Lua runs outside a call only in finalizers, which run hookless
    const raw = this.#raw;
    if (call.closing) {
      if (--this.#closeTicks > 0 && Atomics.load(this.#interrupt!, 0) !== INTERRUPT_ANY) return;
      // Budget spent: from now on every instruction ends the __close that runs.
      raw._lua_sethook(L, this.#hookFn, LUA_MASKCOUNT, 1);
      if (L === call.thread) call.cut = true;
      else this.#guard.mark(L, GUARD_CUT);
      raw._lua_pushlstring(L, this.#kInterrupted, 11);
      raw._lua_error(L);
      return;
    }
    if (!call.interrupted) {
      if (this.#sliceMs > 0) {
        // On a thread that also serves sockets nobody else can write the interrupt slot
        // while Lua runs: the hook reads the clock itself.
        const now = performance.now();
        if (now >= call.deadline) {
          call.interrupted = true;
        } else if (now >= this.#sliceEnd && L === call.thread && raw._lua_isyieldable(L)) {
          // A count hook may yield (no values); Lua resumes the coroutine where it was, and
          // its hooks stay on (unlike the raise below, which unwinds from inside the hook).
          this.#hookPreempted = L;
          raw._lua_yieldk(L, 0, 0, 0);
          return;
        }
      }
      if (!call.interrupted) {
        if (!this.#interruptAimsAt(call)) return;
        call.interrupted = true;
      }
    }
    if (L === call.thread) {
      call.cut = true;
      if (raw._lua_isyieldable(L)) {
        // Yielding from a hook unwinds through pcall: the handler cannot catch it.
        this.#hookYielded = L;
        raw._lua_yieldk(L, 0, 0, 0);
        return;
      }
    } else {
      this.#guard.mark(L, GUARD_CUT);
    }
    raw._lua_pushlstring(L, this.#kInterrupted, 11);
    raw._lua_error(L);
  };

  /** Whether the interrupt slot aims at `call`; if so, takes the interrupt (slot → 0). */
  #interruptAimsAt(call: CallState): boolean {
    const flag = this.#interrupt;
    if (flag === undefined) return false;
    const v = Atomics.load(flag, 0);
    if (v === 0) return false;
    if (v !== INTERRUPT_ANY && call.token !== 0 && v !== call.token) return false;
    Atomics.compareExchange(flag, 0, v, 0);
    return true;
  }

  /** `collectgarbage(what)` in a protected call; its number result (0 on error). */
  #collect(what: "collect" | "count"): number {
    const raw = this.#raw;
    const L = this.#L;
    const top = raw._lua_gettop(L);
    raw._lua_rawgeti(L, LUA_REGISTRYINDEX, this.#collectRef);
    this.#heap.pushString(L, what);
    const status = raw._lua_pcallk(L, 1, 1, 0, 0, 0);
    const n = status === LUA_OK ? raw._lua_tonumberx(L, -1, 0) : 0;
    raw._lua_settop(L, top);
    return n;
  }

  #memoryError(service: string, traceback: string): LuaMemoryError {
    this.collectGarbage();
    const usable = this.#memory.usable;
    if (!usable) this.#healthy = false;
    return new LuaMemoryError(service, this.memoryLimitBytes, usable, { traceback });
  }

  /** `message` and the stack traceback of coroutine `co`. */
  #traceback(co: LuaState, message: string): string {
    const raw = this.#raw;
    const L = this.#L;
    const top = raw._lua_gettop(L);
    raw._luaL_traceback(L, co, 0, 0);
    const tb = this.#heap.toString(L, -1) ?? "";
    raw._lua_settop(L, top);
    return `${message}\n${tb}`;
  }

  // ---------------------------------------------------------------------------------
  // coroutine pool

  #takeThread(): LuaState {
    const co = this.#idle.pop();
    if (co !== undefined) return co;
    const raw = this.#raw;
    const L = this.#L;
    const thread = raw._lua_newthread(L);
    // Anchor it in the registry under its own address (popping it from L).
    raw._lua_rawsetp(L, LUA_REGISTRYINDEX, thread);
    this.#guard.mark(thread, GUARD_EP);
    return thread;
  }

  /**
   * Ends `call` and pools its coroutine; `returned` says it ran to its end (its stack is
   * already empty), else the coroutine is reset, which runs its pending to-be-closed
   * variables: under the memory cap and with a budget of hook ticks (#hook), since the
   * call's timeout no longer reaches them. A coroutine the hook cut short is dropped
   * without a reset: its hooks are off, so its to-be-closed variables would run unchecked
   * (they do not run at all; the thread is garbage).
   */
  #finish(call: CallState, returned = false): void {
    const raw = this.#raw;
    const co = call.thread;
    if (call.done) return;
    call.done = true;
    call.suspended = false;
    if (!returned && !call.cut) {
      call.closing = true;
      this.#closeTicks = CLOSE_BUDGET_TICKS;
      this.#current = call;
      if (this.#hookFn !== 0) {
        raw._lua_sethook(co, this.#hookFn, LUA_MASKCOUNT, this.#hookPeriod);
      }
      this.#memory.enforce(true);
      try {
        raw._lua_resetthread(co);
      } finally {
        this.#memory.enforce(false);
        this.#current = null;
        call.closing = false;
      }
      raw._lua_settop(co, 0);
    }
    if (this.#idle.length < MAX_IDLE_THREADS && this.#healthy && !call.cut) {
      this.#idle.push(co);
    } else {
      raw._lua_pushnil(this.#L);
      raw._lua_rawsetp(this.#L, LUA_REGISTRYINDEX, co);
    }
  }

  #own(call: LuaCall<unknown>): CallState {
    if (!(call instanceof CallState) || call.done) {
      throw new TypeError("Not a live Lua call of this engine");
    }
    return call;
  }

  #assertOpen(): void {
    if (this.#closed) throw new TypeError("The Lua engine is closed");
    if (this.#failure !== undefined) {
      throw new LuaError("The Lua engine failed and must be replaced", { cause: this.#failure });
    }
  }

  #assertIdle(): void {
    this.#assertOpen();
    if (this.#current !== null) {
      throw new TypeError("The Lua engine is running a call (re-entrant use)");
    }
  }
}

/** The first line of a Lua error message, with any directories dropped from its location. */
function clientMessage(message: string): string {
  const nl = message.indexOf("\n");
  const line = nl < 0 ? message : message.slice(0, nl);
  return line.replace(/^[^\s:]*[\\/]([^\\/\s:]+:\d+:)/, "$1");
}
