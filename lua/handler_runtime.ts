/**
 * The Lua runtime of one handler thread: one {@linkcode LuaEngine} serving many jobs at
 * once, interleaved where handlers yield (`ep.sleep`, later `ep.call`).
 *
 * ```
 * handle(job) ─► engine.callHandler ─► done ─────────────────────────────► resolve(reply)
 *                                  └─► yielded ("sleep", ms) ─► clock ─► engine.resume ─┘
 * ```
 *
 * - A handler that finishes without yielding is answered in the same turn.
 * - On a handler thread (the `"thread"` clock with the thread's `block`), a job's
 *   `ep.sleep` waits in place, without a yield, when nothing else needs the thread: no
 *   other call suspended, no timer and no deadline of the job's before it wakes, no record
 *   arriving meanwhile that needs the thread (one that does ends the wait early; the job
 *   then yields for the rest). It saves the yield, the resume and the bookkeeping of a
 *   suspended call: 13 µs of the handler thread's ≈ 83 per `ep.sleep(2)` job, 5 of ≈ 30
 *   per `ep.sleep(0)` one (one thread, jobs one at a time; BENCHMARKS.md, "This stop").
 * - `ep.sleep(ms)`, `ep.timer` and `ep.every` run on a {@linkcode PreciseClock} (median
 *   error ≈ 0.01 ms; setTimeout alone is ≈ 1.2 ms late).
 * - Interrupts: a job's interrupt token is its `id`. The pool writes the id (or -1) into
 *   the shared slot; the engine's hook stops a running handler, and a suspended one is
 *   stopped when it would wake or by a poll every {@linkcode SUSPENDED_POLL_MS} ms, so its
 *   slot is freed at once. Either way the job fails with `LuaTimeoutError`.
 * - An engine that must be replaced (not {@linkcode LuaEngine.healthy}) is replaced before
 *   it runs another job: a fresh engine is built with the same services, and jobs that
 *   arrive meanwhile wait for it (the pool's thread then waits in its event loop, where
 *   the build can finish: a thread with only synchronous jobs never turns it). Its timers
 *   stop (the new engine's service files start their own). Counted in
 *   {@linkcode LuaHandlerRuntime.replacements}, logged at warning level.
 *   - Out of memory that a full collection could not undo (a handler keeps memory alive
 *     in a global): the job fails with `LuaMemoryError`; the old engine is still
 *     consistent, so the jobs suspended on it finish there, then it is closed.
 *   - Failed ({@linkcode LuaEngine.failed}: the wasm module trapped while Lua ran): the
 *     job fails with a `LuaError`; the jobs suspended on it cannot go on and fail at once
 *     with a `LuaError` saying so; the engine is closed.
 *
 * Longer than 600 lines, and one file: jobs, their suspension, engine replacement and the
 * `ep.timer` schedule all work on the same engine generations and table of waiting calls.
 *
 * @example
 * ```ts ignore
 * import { LuaHandlerRuntime } from "./handler_runtime.ts";
 * const runtime = await LuaHandlerRuntime.create({
 *   services: [{ name: "echo", source: "return function(req) return req.body end", chunkName: "echo.lua" }],
 * });
 * const reply = await runtime.handle({
 *   id: 1, service: "echo", method: "POST", path: "/echo", query: "", headers: [],
 *   body: new TextEncoder().encode("hi"),
 * });
 * console.log(reply.status, new TextDecoder().decode(reply.body)); // 200 hi
 * runtime.close();
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { JobError } from "../core/job.ts";
import { ErrorCode } from "../protocol/errors.ts";
import {
  BlockingClock,
  type ClockEntry,
  PreciseClock,
  ThreadClock,
  type TimerHeap,
} from "./_precise_clock.ts";
import {
  type LuaCall,
  LuaEngine,
  type LuaEngineOptions,
  type LuaLogger,
  type LuaResponse,
  type LuaStep,
  type LuaTimerHost,
  type LuaValue,
} from "./engine.ts";
import { LuaError, LuaTimeoutError } from "./errors.ts";

/**
 * How often suspended jobs are checked against the interrupt slot, in ms.
 *
 * @example
 * ```ts
 * import { SUSPENDED_POLL_MS } from "./handler_runtime.ts";
 * console.assert(SUSPENDED_POLL_MS > 0);
 * ```
 */
export const SUSPENDED_POLL_MS: number = 5;

/**
 * A service: its name and the source of its file, which returns the handler function.
 *
 * @example
 * ```ts
 * import type { LuaServiceSource } from "./handler_runtime.ts";
 * const svc: LuaServiceSource = {
 *   name: "echo", source: "return function(req) return req.body end", chunkName: "echo.lua",
 * };
 * console.assert(svc.name === "echo");
 * ```
 */
export interface LuaServiceSource {
  /** Service name. */
  name: string;
  /** Lua source; it must `return` the handler function. */
  source: string;
  /** Name of the file in error messages, relative to the script directory. */
  chunkName: string;
}

/**
 * Options of {@linkcode LuaHandlerRuntime.create}.
 *
 * @example
 * ```ts
 * import type { LuaHandlerRuntimeOptions } from "./handler_runtime.ts";
 * const options: LuaHandlerRuntimeOptions = { services: [], memoryLimitBytes: 32 << 20 };
 * console.assert(options.services.length === 0);
 * ```
 */
export interface LuaHandlerRuntimeOptions {
  /** The services this thread serves. */
  services: readonly LuaServiceSource[];
  /** Directory `require` resolves modules in. */
  scriptDir?: string | URL;
  /** The thread's shared interrupt slot (0 = none, -1 = any, else a job id). */
  interrupt?: Int32Array;
  /** Memory cap of the Lua state in bytes (default 64 MiB). */
  memoryLimitBytes?: number;
  /** Base logger (default `["ep", "lua"]`); `ep.log` writes to its child `[service]`. */
  log?: LuaLogger;
  /** Location of `glue.wasm` (default: the local wasmoon package). */
  wasm?: URL | string;
  /** Lua instructions between interrupt checks (default 1000). */
  hookPeriod?: number;
  /**
   * Carries out `ep.call(service, body, { timeout_ms, upstream })`: calls `done` once with
   * the reply or with `{ kind, message }`. Without it `ep.call` fails with "not an ep
   * request". With the `"thread"` clock, `done` must come from the thread's wait loop (the
   * context's `call` does that) unless `callsNeedEventLoop` is set.
   */
  call?: (
    request: { service: string; body: Uint8Array; timeoutMs: number; upstream?: string },
    done: (
      error: { kind: string; message: string } | null,
      reply?: { status: number; body: Uint8Array },
    ) => void,
  ) => void;
  /** `call` answers from a promise (the event loop must turn while a call waits). */
  callsNeedEventLoop?: boolean;
  /**
   * Carries out `ep.exit(code)` from a timer callback or a job (a control script's, whose
   * `ep.exit` yields `("exit", code)`): the call ends at once and quietly (its to-be-closed
   * variables run; a job's reply is empty), then `exit(code)` is called. Without it a call
   * that yields "exit" fails as not an ep request.
   */
  exit?: (code: number) => void;
  /**
   * Hold the timers (`ep.timer`, `ep.every`) until {@linkcode LuaHandlerRuntime.releaseTimers}:
   * a control script's timers start once the process it describes runs. Default false.
   */
  holdTimers?: boolean;
  /** Extra host functions for the engines (see `LuaEngineOptions.hostFunctions`). */
  hostFunctions?: LuaEngineOptions["hostFunctions"];
  /**
   * Who wakes the runtime for its timers: `"self"` (default) arms them on the event loop
   * ({@linkcode PreciseClock}); `"thread"` leaves that to a handler thread's wait loop, which
   * calls {@linkcode LuaHandlerRuntime.tick} and sleeps until the deadline it returns (no
   * timer, no event-loop turn, no CPU while jobs wait). Jobs then end through
   * {@linkcode LuaHandlerRuntime.start}'s callback. `"inline"`: the runtime runs on a
   * thread that also serves sockets (a one-slot worker's main thread, `lua/inline.ts`): a
   * {@linkcode BlockingClock} (no spin), calls sliced every
   * {@linkcode LuaHandlerRuntimeOptions.sliceMs} so that the event loop turns while a handler
   * computes, and each job's deadline enforced by the hook itself.
   */
  clock?: "self" | "thread" | "inline";
  /** With the `"inline"` clock: the time slice, ms (default {@linkcode INLINE_SLICE_MS}). */
  sliceMs?: number;
  /**
   * With the `"thread"` clock: the handler thread's `block` (`HandlerRuntimeContext.block`).
   * A job's `ep.sleep` then waits in place, without a yield, when it is all the runtime has
   * to do: no other call suspended, no timer and no deadline of its own before it wakes.
   */
  block?: (until: number) => boolean;
}

/**
 * Default time slice of a handler on the `"inline"` clock, ms: how long it runs before the
 * event loop gets a turn (heartbeats, new jobs, cancels).
 *
 * @example
 * ```ts
 * import { INLINE_SLICE_MS } from "./handler_runtime.ts";
 * console.assert(INLINE_SLICE_MS > 0);
 * ```
 */
export const INLINE_SLICE_MS = 50;

/**
 * A job for a Lua handler.
 *
 * @example
 * ```ts
 * import type { LuaJob } from "./handler_runtime.ts";
 * const job: LuaJob = {
 *   id: 7, service: "user", method: "GET", path: "/user/7", query: "", headers: [],
 *   body: new Uint8Array(),
 * };
 * console.assert(job.id === 7);
 * ```
 */
export interface LuaJob {
  /** Job id, unique among the jobs in flight on the thread; also its interrupt token. */
  id: number;
  /** Service name. */
  service: string;
  /** HTTP method, or `"EP"`. */
  method: string;
  /** Path without the query. */
  path: string;
  /** Query string without `?`. */
  query: string;
  /** Header fields (names are lower-cased for the handler). */
  headers: [string, string][];
  /** Body bytes. */
  body: Uint8Array;
  /**
   * Whether the header strings are byte strings (an HTTP job): Lua sees their bytes and
   * its reply's header bytes come back as byte strings (see `LuaRequest.headerBytes`).
   */
  headerBytes?: boolean;
  /** Delivery attempt (`req.attempt`): 1, the default, unless the job is redelivered. */
  attempt?: number;
  /** A hedged copy (`req.hedge`): the balancer sent the job here too as it ran long. */
  hedge?: boolean;
  /** The request id (`req.id`), when the job has one. */
  requestId?: string;
  /**
   * When the job's time is up (`performance.now()`); a job still waiting then (in
   * `ep.sleep`, `ep.call`) fails with `LuaTimeoutError`. The handler sees the time left as
   * `req.deadline_ms`. Absent: no deadline of its own (the interrupt slot still stops it).
   */
  deadline?: number;
}

/**
 * A handler's reply.
 *
 * @example
 * ```ts
 * import type { LuaReply } from "./handler_runtime.ts";
 * const reply: LuaReply = { status: 204, headers: [], body: new Uint8Array() };
 * console.assert(reply.status === 204);
 * ```
 */
export interface LuaReply {
  /** Status, 200–599 (no body with 204 and 304). */
  status: number;
  /** Header fields. */
  headers: [string, string][];
  /** Body bytes. */
  body: Uint8Array;
}

/** The `done` callback of {@linkcode LuaHandlerRuntimeOptions.call}. */
type CallDone = Parameters<NonNullable<LuaHandlerRuntimeOptions["call"]>>[1];

interface Settle {
  resolve(reply: LuaResponse | undefined): void;
  reject(err: unknown): void;
  /** The job's deadline (`LuaJob.deadline`), watched while it waits. */
  deadline?: number;
  /** The clock entry at that deadline, set while the job waits. */
  expiry?: ClockEntry;
  /** Where the job waits now. */
  current?: Waiting;
}

interface Waiting {
  gen: Generation;
  call: LuaCall<unknown>;
  settle: Settle;
  entry: ClockEntry | undefined;
  /** A preempted call's turn of the event loop (see `#suspend`). */
  turn?: ReturnType<typeof setTimeout>;
}

interface TimerState {
  id: number;
  ms: number;
  repeat: boolean;
  entry: ClockEntry | undefined;
}

/** An engine with its services loaded, and what it has in flight. */
class Generation {
  readonly engine: LuaEngine;
  readonly refs: Map<string, number>;
  readonly timers = new Map<number, TimerState>();
  inFlight = 0;
  retired = false;
  /** Its replacement was asked for (logged once). */
  condemned = false;

  constructor(engine: LuaEngine, refs: Map<string, number>) {
    this.engine = engine;
    this.refs = refs;
  }
}

const EMPTY: Uint8Array = new Uint8Array(0);
const utf8 = new TextEncoder();

/**
 * Runs Lua handlers for one thread; see the module documentation.
 *
 * @example
 * ```ts ignore
 * import { LuaHandlerRuntime } from "./handler_runtime.ts";
 * const runtime = await LuaHandlerRuntime.create({
 *   services: [{ name: "nap", source: "return function() ep.sleep(5) return 'ok' end", chunkName: "nap.lua" }],
 * });
 * const replies = await Promise.all([1, 2, 3].map((id) =>
 *   runtime.handle({ id, service: "nap", method: "GET", path: "/nap", query: "", headers: [], body: new Uint8Array() })
 * )); // about 5 ms for all three
 * runtime.close();
 * ```
 */
export class LuaHandlerRuntime {
  /** The services served, in the order given. */
  readonly services: readonly string[];

  #options: LuaHandlerRuntimeOptions;
  #log: LuaLogger;
  #clock: TimerHeap;
  #threadClock: boolean;
  /** The "inline" clock: this thread also serves sockets (see the option). */
  #inline: boolean;
  #gen!: Generation;
  #replacing: Promise<void> | null = null;
  /** `ep.call`s whose promise has not settled. */
  #calls = 0;
  #replaceError: unknown = undefined;
  #waiting = new Map<LuaCall<unknown>, Waiting>();
  #byToken = new Map<number, Waiting>();
  #poll: ReturnType<typeof setInterval> | undefined;
  #nextTimerToken = -2;
  #replacements = 0;
  #closed = false;
  /** The job running in Lua now (started or resumed), for `ep.sleep` in place. */
  #running: Settle | undefined;
  /** Timers waiting for {@linkcode LuaHandlerRuntime.releaseTimers}; null: none held. */
  #held: { gen: Generation; t: TimerState; from: number }[] | null;

  /**
   * Creates the engine and loads every service file; a file that fails to load rejects
   * with its {@linkcode LuaError}.
   *
   * @example
   * ```ts ignore
   * const runtime = await LuaHandlerRuntime.create({ services, scriptDir: "./scripts", interrupt });
   * ```
   */
  static async create(options: LuaHandlerRuntimeOptions): Promise<LuaHandlerRuntime> {
    const runtime = new LuaHandlerRuntime(options);
    try {
      runtime.#gen = await runtime.#build();
    } catch (err) {
      runtime.#clock.close();
      throw err;
    }
    return runtime;
  }

  private constructor(options: LuaHandlerRuntimeOptions) {
    this.#options = options;
    this.services = options.services.map((s) => s.name);
    this.#log = options.log ?? getLogger(["ep", "lua"]);
    const onError = (err: unknown) => {
      this.#log.error("Lua runtime callback failed: {error}", { error: err });
    };
    this.#held = options.holdTimers === true ? [] : null;
    this.#threadClock = options.clock === "thread";
    this.#inline = options.clock === "inline";
    this.#clock = this.#threadClock
      ? new ThreadClock(onError)
      : this.#inline
      ? new BlockingClock(onError)
      : new PreciseClock(onError);
  }

  /** Jobs and timer callbacks suspended (waiting to be resumed), over all engines. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  /** The engine taking new jobs (for tests and diagnostics). */
  get engine(): LuaEngine {
    return this.#gen.engine;
  }

  /** How many times the engine was replaced (it ran out of memory for good, or failed). */
  get replacements(): number {
    return this.#replacements;
  }

  /**
   * Runs a job. Resolves with the handler's reply; rejects with {@linkcode LuaError}
   * (handler error), {@linkcode LuaTimeoutError} (interrupted), {@linkcode LuaMemoryError}
   * (out of memory), or a `JobError` with code `NO_SERVICE` for a service this thread
   * does not serve.
   *
   * @example
   * ```ts ignore
   * const reply = await runtime.handle({ id: 1, service: "echo", method: "POST", path: "/echo", query: "", headers: [], body });
   * ```
   */
  handle(job: LuaJob): Promise<LuaReply> {
    try {
      return Promise.resolve(this.handleSync(job));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Like {@linkcode LuaHandlerRuntime.handle}, but a handler that finishes without yielding
   * is answered synchronously (and fails by throwing): the fast path for the pool, which
   * then skips a promise per job. A handler that yields (ep.sleep, ep.call) gets a promise.
   */
  handleSync(job: LuaJob): LuaReply | Promise<LuaReply> {
    let settle: Settle | undefined;
    const waited = new Promise<LuaReply>((resolve, reject) => {
      settle = {
        resolve: (reply) => resolve(reply ?? { status: 204, headers: [], body: EMPTY }),
        reject,
        deadline: job.deadline,
      };
    });
    const reply = this.#start(job, settle!);
    return reply === undefined ? waited : reply;
  }

  /**
   * Runs a job for a handler thread's wait loop (the `"thread"` clock): returns the reply
   * when the handler finishes without waiting; else `undefined`, and `done` is called once,
   * later, from {@linkcode LuaHandlerRuntime.tick} (or, while the engine is being
   * replaced, from a promise). A failure to start throws.
   */
  start(job: LuaJob, done: (error: unknown, reply?: LuaReply) => void): LuaReply | undefined {
    return this.#start(job, {
      resolve: (reply) => done(null, reply ?? { status: 204, headers: [], body: EMPTY }),
      reject: (err) => done(err ?? new LuaError("Handler failed")),
      deadline: job.deadline,
    });
  }

  /**
   * For the `"thread"` clock: runs the timers and wake-ups due at `now`, stops waiting jobs
   * whose interrupt came, and returns when it next must run (`performance.now()` time;
   * Infinity: nothing pending). See also {@linkcode LuaHandlerRuntime.waitsOnEventLoop}.
   */
  tick(now: number): number {
    if (this.#byToken.size > 0) this.#pollInterrupts();
    this.#clock.runDue(now);
    return this.#clock.next();
  }

  /**
   * Stops the waiting job whose interrupt token is `token` (its id): it fails with
   * `LuaTimeoutError` now, its to-be-closed variables run. For the `"inline"` clock, where
   * a job is never running when this is called (its thread is the caller's); a job not
   * waiting (already ended) is left alone. Returns whether one was stopped.
   */
  interrupt(token: number): boolean {
    const w = this.#byToken.get(tokenOf(token));
    if (w === undefined || this.#waiting.get(w.call) !== w) return false;
    this.#stopWaiting(w);
    return true;
  }

  /**
   * Whether something only the event loop can finish is pending: an engine being replaced,
   * or an `ep.call` carried out by the `call` option's promise.
   */
  get waitsOnEventLoop(): boolean {
    return this.#replacing !== null ||
      (this.#calls > 0 && this.#options.callsNeedEventLoop === true);
  }

  #start(job: LuaJob, settle: Settle): LuaReply | undefined {
    if (this.#closed) throw new TypeError("The Lua handler runtime is closed");
    const gen = this.#gen;
    if (!gen.engine.healthy) {
      this.#afterReplacement(job).then(settle.resolve, settle.reject);
      return undefined;
    }
    const ref = gen.refs.get(job.service);
    if (ref === undefined) {
      throw new JobError(ErrorCode.NO_SERVICE, `No Lua service "${job.service}" on this thread`);
    }
    let step: LuaStep<LuaResponse>;
    this.#running = settle;
    try {
      step = gen.engine.callHandler(ref, job, {
        token: tokenOf(job.id),
        deadline: this.#inline ? job.deadline : undefined,
      });
    } catch (err) {
      this.#failed(gen);
      throw err;
    } finally {
      this.#running = undefined;
    }
    if (step.done) return step.value;
    gen.inFlight++;
    this.#suspend(gen, step as LuaStep<unknown>, settle);
    return undefined;
  }

  /**
   * Stops everything: pending jobs reject, timers stop, engines close. Idempotent.
   *
   * @example
   * ```ts ignore
   * runtime.close();
   * ```
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clock.close();
    if (this.#poll !== undefined) clearInterval(this.#poll);
    this.#poll = undefined;
    const closedError = new TypeError("The Lua handler runtime is closed");
    const gens = new Set<Generation>([this.#gen]);
    for (const w of this.#waiting.values()) {
      gens.add(w.gen);
      if (w.turn !== undefined) clearTimeout(w.turn);
      w.settle.reject(closedError);
    }
    this.#waiting.clear();
    this.#byToken.clear();
    for (const gen of gens) gen.engine.close();
  }

  // ---------------------------------------------------------------------------------

  async #build(): Promise<Generation> {
    const o = this.#options;
    // Service files may start timers while they load, before the generation exists.
    let gen: Generation | undefined;
    const early = new Map<number, [number, boolean, number]>();
    const timers: LuaTimerHost = {
      set: (id, ms, repeat) => {
        if (gen === undefined) early.set(id, [ms, repeat, performance.now()]);
        else this.#setTimer(gen, id, ms, repeat);
      },
      clear: (id) => {
        if (gen === undefined) early.delete(id);
        else this.#clearTimer(gen, id);
      },
    };
    const engine = await LuaEngine.create({
      wasm: o.wasm,
      memoryLimitBytes: o.memoryLimitBytes,
      interrupt: o.interrupt,
      hookPeriod: o.hookPeriod,
      sliceMs: this.#inline ? o.sliceMs ?? INLINE_SLICE_MS : 0,
      scriptDir: o.scriptDir,
      log: this.#log,
      timers,
      hostFunctions: o.hostFunctions,
      block: this.#threadClock && o.block !== undefined ? this.#block : undefined,
    });
    try {
      const refs = new Map<string, number>();
      for (const s of o.services) {
        refs.set(s.name, engine.loadHandler(s.source, s.chunkName, s.name));
      }
      gen = new Generation(engine, refs);
      for (const [id, [ms, repeat, from]] of early) this.#setTimer(gen, id, ms, repeat, from);
      return gen;
    } catch (err) {
      engine.close();
      throw err;
    }
  }

  /**
   * `ep.sleep` in place (the engine's `block`): only for a job, when nothing else is
   * suspended and no timer and no deadline of the job's falls before `until`; the thread's
   * `block` then waits (or declines: it has other work, or a record arrived).
   */
  #block = (until: number): boolean => {
    const settle = this.#running;
    if (settle === undefined || this.#waiting.size !== 0 || this.#replacing !== null) return false;
    if (settle.deadline !== undefined && settle.deadline <= until) return false;
    if (this.#clock.next() <= until) return false;
    return this.#options.block!(until);
  };

  /** Handles a yielded call: schedules what it asked for. */
  #suspend(gen: Generation, step: LuaStep<unknown>, settle: Settle): void {
    if (step.done) {
      gen.inFlight--;
      this.#unwatch(settle);
      settle.resolve(step.value as LuaResponse | undefined);
      this.#maybeRetire(gen);
      return;
    }
    const { call, op, args } = step;
    const w: Waiting = { gen, call, settle, entry: undefined };
    // An ep.call answered before the call is registered as waiting (at the end here): it
    // resumes on the clock's next turn, as if it had come from the ring or a socket.
    let registered = false;
    let early: LuaValue[] | undefined;
    if (op === "preempt") {
      // Its time slice is over (the "inline" clock): it goes on after a timer turn of the
      // event loop, the kind that polls sockets and timers (a message hop runs before Deno
      // polls them, and may do so for a long while).
      w.turn = setTimeout(() => {
        w.turn = undefined;
        if (!this.#closed && this.#waiting.get(call) === w) this.#wakeUp(w, []);
      }, 0);
    } else if (op === "sleep") {
      // ("sleep", ms, start): start is ep.now() when ep.sleep was called.
      const ms = typeof args[0] === "number" ? args[0] : 0;
      const start = typeof args[1] === "number" ? args[1] : performance.now();
      w.entry = this.#clock.at(start + ms, () => this.#wakeUp(w, []));
    } else if (op === "call" && this.#options.call) {
      // ("call", service, body, timeout_ms, upstream) → resumes with (ok, status|kind,
      // body|message).
      const [service, body, timeout, upstream] = args;
      this.#calls++;
      let answered = false;
      const done: CallDone = (err, reply) => {
        if (answered) return;
        answered = true;
        this.#calls--;
        const values: LuaValue[] = err
          ? [false, err.kind ?? "unavailable", err.message ?? String(err)]
          : [true, reply!.status, reply!.body];
        if (!registered) early = values;
        else if (this.#waiting.get(call) === w) this.#wakeUp(w, values);
      };
      try {
        this.#options.call({
          service: String(service),
          body: body instanceof Uint8Array ? body : utf8.encode(String(body ?? "")),
          timeoutMs: Number(timeout) || 0,
          upstream: typeof upstream === "string" ? upstream : undefined,
        }, done);
      } catch (err) {
        // A call that cannot even start is answered like one that failed.
        if (!(err instanceof JobError)) {
          this.#log.error("ep.call failed to start: {error}", { error: err });
        }
        done({
          kind: err instanceof JobError ? err.kind : "internal",
          message: err instanceof JobError ? err.message : "Internal error",
        });
      }
    } else if (op === "exit" && this.#options.exit) {
      // ep.exit in a control script's timer: the callback ends here, with no error to log.
      gen.engine.cancel(call);
      gen.inFlight--;
      this.#unwatch(settle);
      settle.resolve(undefined);
      this.#maybeRetire(gen);
      this.#options.exit(typeof args[0] === "number" ? args[0] : 0);
      return;
    } else {
      gen.engine.cancel(call);
      gen.inFlight--;
      this.#unwatch(settle);
      settle.reject(
        new LuaError(
          `Handler of service "${call.service}" yielded "${op}", which is not an ep request`,
        ),
      );
      this.#maybeRetire(gen);
      return;
    }
    this.#waiting.set(call, w);
    settle.current = w;
    registered = true;
    if (early !== undefined) {
      const values = early;
      w.entry = this.#clock.at(performance.now(), () => this.#wakeUp(w, values));
    }
    if (settle.deadline !== undefined && settle.expiry === undefined) {
      settle.expiry = this.#clock.at(settle.deadline, () => this.#expire(settle));
    }
    if (call.token > 0) {
      this.#byToken.set(call.token, w);
      // A thread's wait loop checks the interrupt slot at every tick; on the event loop a
      // poll does.
      if (
        this.#poll === undefined && this.#options.interrupt !== undefined &&
        !this.#threadClock && !this.#inline
      ) {
        this.#poll = setInterval(this.#pollInterrupts, SUSPENDED_POLL_MS);
      }
    }
  }

  /** Stops watching a job's deadline (it ended). */
  #unwatch(settle: Settle): void {
    settle.current = undefined;
    if (settle.expiry !== undefined) {
      this.#clock.cancel(settle.expiry);
      settle.expiry = undefined;
    }
  }

  /** A job's deadline passed while it waited: it fails with `LuaTimeoutError`. */
  #expire(settle: Settle): void {
    settle.expiry = undefined;
    const w = settle.current;
    if (w === undefined || this.#waiting.get(w.call) !== w) return;
    this.#stopWaiting(w);
  }

  /** Ends a waiting job with `LuaTimeoutError` (its time is up or it was interrupted). */
  #stopWaiting(w: Waiting): void {
    if (w.entry !== undefined) this.#clock.cancel(w.entry);
    if (w.turn !== undefined) clearTimeout(w.turn);
    this.#forget(w);
    w.gen.engine.cancel(w.call);
    w.gen.inFlight--;
    this.#unwatch(w.settle);
    w.settle.reject(new LuaTimeoutError(w.call.service));
    this.#maybeRetire(w.gen);
  }

  #wakeUp(w: Waiting, values: LuaValue[]): void {
    this.#forget(w);
    let step: LuaStep<unknown>;
    this.#running = w.call.kind === "timer" ? undefined : w.settle;
    try {
      step = w.gen.engine.resume(w.call, values);
    } catch (err) {
      w.gen.inFlight--;
      this.#unwatch(w.settle);
      w.settle.reject(err);
      this.#failed(w.gen);
      this.#maybeRetire(w.gen);
      return;
    } finally {
      this.#running = undefined;
    }
    this.#suspend(w.gen, step, w.settle);
  }

  #forget(w: Waiting): void {
    this.#waiting.delete(w.call);
    if (w.call.token > 0 && this.#byToken.get(w.call.token) === w) {
      this.#byToken.delete(w.call.token);
    }
    if (this.#byToken.size === 0 && this.#poll !== undefined) {
      clearInterval(this.#poll);
      this.#poll = undefined;
    }
  }

  /** Stops suspended jobs whose interrupt token is in the slot. */
  #pollInterrupts = (): void => {
    const flag = this.#options.interrupt;
    if (flag === undefined) return;
    const v = Atomics.load(flag, 0);
    if (v <= 0) return;
    const w = this.#byToken.get(v);
    if (w === undefined) return;
    Atomics.compareExchange(flag, 0, v, 0);
    this.#stopWaiting(w);
  };

  /** Runs `job` once the engine that must be replaced is (or rejects when it cannot be). */
  #afterReplacement(job: LuaJob): Promise<LuaReply> {
    this.#condemn(this.#gen);
    return this.#replacing!.then(() => {
      if (this.#closed) throw new TypeError("The Lua handler runtime is closed");
      if (!this.#gen.engine.healthy) {
        throw new LuaError("The Lua engine must be replaced and could not be", {
          cause: this.#replaceError,
        });
      }
      return this.handleSync(job);
    });
  }

  /** After an error: replace the engine when it can no longer serve. */
  #failed(gen: Generation): void {
    if (gen.engine.healthy) return;
    this.#condemn(gen);
    // A failed engine cannot resume anything: what waits on it is lost, say so now.
    if (gen.engine.failed && !gen.retired) this.#abandon(gen);
  }

  /** Starts replacing `gen` (once) if it takes new jobs. */
  #condemn(gen: Generation): void {
    if (gen !== this.#gen || this.#closed) return;
    if (!gen.condemned) {
      gen.condemned = true;
      this.#log.warn("The Lua engine must be replaced ({reason})", {
        reason: gen.engine.failed ? "it failed" : "it is out of memory for good",
      });
    }
    this.#replace();
  }

  /** Fails the calls suspended on a failed engine, stops its timers and closes it. */
  #abandon(gen: Generation): void {
    gen.retired = true;
    for (const w of [...this.#waiting.values()]) {
      if (w.gen !== gen) continue;
      if (w.entry !== undefined) this.#clock.cancel(w.entry);
      this.#forget(w);
      gen.inFlight--;
      this.#unwatch(w.settle);
      w.settle.reject(
        new LuaError(
          `The Lua engine failed while a ${
            w.call.kind === "timer" ? "timer callback" : "job"
          } of service "${w.call.service}" waited`,
        ),
      );
    }
    for (const id of [...gen.timers.keys()]) this.#clearTimer(gen, id);
    this.#maybeRetire(gen);
  }

  #replace(): void {
    if (this.#replacing !== null || this.#closed) return;
    const old = this.#gen;
    this.#replaceError = undefined;
    this.#replacing = this.#build().then(
      (gen) => {
        this.#replacing = null;
        if (this.#closed) {
          gen.engine.close();
          return;
        }
        this.#gen = gen;
        this.#replacements++;
        old.retired = true;
        for (const id of [...old.timers.keys()]) this.#clearTimer(old, id);
        this.#maybeRetire(old);
        this.#log.warn("Replaced the Lua engine ({count} so far)", {
          count: this.#replacements,
        });
      },
      (err) => {
        this.#replacing = null;
        this.#replaceError = err;
        this.#log.error("Cannot replace the Lua engine: {error}", { error: err });
      },
    );
  }

  #maybeRetire(gen: Generation): void {
    if (gen.retired && gen.inFlight === 0) gen.engine.close();
  }

  // ---------------------------------------------------------------------------------
  // ep.timer / ep.every

  /** Starts timer `id`, counting from `from` (`performance.now()` time; default now). */
  #setTimer(
    gen: Generation,
    id: number,
    ms: number,
    repeat: boolean,
    from: number = performance.now(),
  ): void {
    if (this.#closed) return;
    const period = repeat ? Math.max(ms, 1) : ms;
    const t: TimerState = { id, ms: period, repeat, entry: undefined };
    gen.timers.set(id, t);
    if (this.#held !== null) this.#held.push({ gen, t, from });
    else this.#armTimer(gen, t, from);
  }

  #armTimer(gen: Generation, t: TimerState, from: number): void {
    t.entry = this.#clock.at(from + t.ms, () => this.#fireTimer(gen, t, performance.now()));
  }

  /**
   * Starts the timers held so far (see {@linkcode LuaHandlerRuntimeOptions.holdTimers}):
   * each counts from when it was set, so one whose time passed meanwhile runs at once.
   * Timers set later start at once. Idempotent.
   *
   * @example
   * ```ts ignore
   * const runtime = await LuaHandlerRuntime.create({ services, holdTimers: true });
   * await startWhatTheScriptAskedFor();
   * runtime.releaseTimers();
   * ```
   */
  releaseTimers(): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    for (const { gen, t, from } of held) {
      if (gen.timers.get(t.id) === t && !gen.retired && !this.#closed) this.#armTimer(gen, t, from);
    }
  }

  #clearTimer(gen: Generation, id: number): void {
    const t = gen.timers.get(id);
    if (t === undefined) return;
    gen.timers.delete(id);
    if (t.entry !== undefined) this.#clock.cancel(t.entry);
  }

  #fireTimer(gen: Generation, t: TimerState, now: number): void {
    if (gen.timers.get(t.id) !== t) return;
    if (!gen.engine.healthy) {
      // Not on an engine that must be replaced; the new one's timers take over.
      this.#clearTimer(gen, t.id);
      return;
    }
    if (t.repeat) {
      // Fixed rate; missed periods are skipped, not caught up.
      let next = t.entry!.deadline + t.ms;
      if (next <= now) next = now + t.ms;
      t.entry = this.#clock.at(next, () => this.#fireTimer(gen, t, performance.now()));
    } else {
      gen.timers.delete(t.id);
    }
    const token = this.#nextTimerToken;
    this.#nextTimerToken = token <= -0x7fff_fff0 ? -2 : token - 1;
    const settle: Settle = {
      resolve: () => {},
      reject: (err) => this.#logTimerError(err),
    };
    let step: LuaStep<undefined>;
    try {
      step = gen.engine.fireTimer(t.id, { token });
    } catch (err) {
      this.#logTimerError(err);
      this.#failed(gen);
      return;
    }
    if (step.done) return;
    gen.inFlight++;
    this.#suspend(gen, step, settle);
  }

  #logTimerError(err: unknown): void {
    if (err instanceof LuaError) {
      this.#log.error("Lua timer callback failed: {message}", {
        message: err.message,
        traceback: err.traceback,
      });
    } else {
      this.#log.error("Lua timer callback failed: {error}", { error: err });
    }
  }
}

/** A job id as an interrupt token: itself when it fits an int32 and is not 0 or -1. */
function tokenOf(id: number): number {
  return Number.isInteger(id) && id > 0 && id <= 0x7fff_ffff ? id : 0;
}
