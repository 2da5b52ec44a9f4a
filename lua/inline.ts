/**
 * Lua handlers on a one-slot worker's main thread: the pool a module worker with one
 * handler thread and one slot uses instead of a handler thread when `EP_INLINE=1`.
 *
 * Why: on a handler thread a job makes two thread hops (main → handler thread → main), and
 * each is a wake-up of a sleeping thread. Measured on this project's 2-core VMs a wake-up
 * costs 37 µs of CPU for a C program and 70–170 µs for a Deno thread (cold caches after
 * each sleep), and waits for a core on a busy machine: the hops were most of a Lua
 * worker's CPU per job at moderate rates. A one-slot worker runs one job at a time anyway,
 * so its main thread can run it.
 *
 * Why it is not the default: a handler thread overlaps the next job's arrival with this
 * one's wait (the main thread reads a prefetched job while the handler thread sleeps, and
 * the handler thread starts it the moment this one ends); on the main thread, blocked in
 * its precise wait, the next job is read only after this one ends. Measured side by side
 * (`tests/bench/compare.ts --variant`, `cpu_bench.ts`, BENCHMARKS.md): 18–45 % less CPU per
 * job and 10–16 % more forwarding throughput with 0 ms jobs, about the same p99 at 50 % load,
 * but a higher p99 near saturation with waiting (`ep.sleep`) handlers (1.1–1.4× at 85 %). For short, CPU-light
 * handlers it is the better choice; for handlers that wait, keep the thread.
 *
 * What it keeps from the handler thread:
 * - Runaway handlers are stopped: the engine's hook reads the clock itself and interrupts a
 *   call past its job's deadline (nobody else can write the interrupt slot while Lua runs
 *   on this thread).
 * - The event loop turns while a handler computes: a call runs in slices of
 *   {@linkcode INLINE_SLICE_MS} ms, after which the hook suspends it and it goes on after
 *   one timer turn of the event loop (≈ 1 ms: a message hop would run before Deno polls its
 *   sockets), so heartbeats, new jobs and cancels are served meanwhile (a
 *   balancer drops a worker silent for three heartbeats).
 * - Precise, free waits: `ep.sleep`, `ep.timer` wake on a `BlockingClock`, a coarse
 *   `setTimeout` and then one blocking futex wait for the last ≤ 3 ms (no spin). The event
 *   loop stands still for those milliseconds; on a one-slot worker that only delays reading
 *   a job that could not start before anyway.
 * - Memory cap, engine replacement, `ep.call`, timeouts and cancels, as on a thread.
 *
 * What differs: everything else this process does (the balancer links, metrics) shares the
 * thread with Lua; a handler's slice (50 ms) is the longest the event loop waits for it.
 *
 * @module
 */
import { InlinePool } from "../core/threads/inline_pool.ts";
import type { PoolCall, PoolCallReply } from "../core/threads/pool_types.ts";
import { INLINE_SLICE_MS } from "./handler_runtime.ts";
import { luaHandlerRuntime, type LuaThreadOptions } from "./thread.ts";

export { INLINE_SLICE_MS };

/**
 * Whether a worker with these handler settings runs its Lua handlers on its main thread:
 * one handler thread, one slot, neither scaling, it does not listen (a balancer's own
 * handlers stay on threads: its thread serves every client), and `EP_INLINE` is `1`.
 *
 * @example
 * ```ts
 * import { runsInline } from "./inline.ts";
 * const on = (_: string) => "1";
 * console.assert(runsInline({ threads: 1, concurrency: 1, scales: false, listens: false }, on));
 * console.assert(!runsInline({ threads: 2, concurrency: 1, scales: false, listens: false }, on));
 * console.assert(!runsInline({ threads: 1, concurrency: 1, scales: false, listens: false }, () => undefined));
 * ```
 */
export function runsInline(
  worker: { threads: number; concurrency: number; scales: boolean; listens: boolean },
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): boolean {
  const setting = env("EP_INLINE")?.trim().toLowerCase();
  if (setting !== "1" && setting !== "true" && setting !== "on") return false;
  return worker.threads === 1 && worker.concurrency === 1 && !worker.scales && !worker.listens;
}

/**
 * Options of {@linkcode startInlineLua}: what a node hands a pool's `start`.
 *
 * @example
 * ```ts
 * import type { InlineLuaPoolOptions } from "./inline.ts";
 * const o: InlineLuaPoolOptions = { concurrency: 1, queue: 1 };
 * console.assert(o.queue === 1);
 * ```
 */
export interface InlineLuaPoolOptions {
  /** Jobs run at once (default 1). */
  concurrency?: number;
  /** Jobs taken beyond them, waiting to start (a worker's prefetch). */
  queue?: number;
  /** Carries out `ep.call`. */
  onCall?: (call: PoolCall) => Promise<PoolCallReply>;
}

/**
 * Starts a pool that runs the Lua services of `options` on this thread.
 *
 * @example
 * ```ts ignore
 * import { startInlineLua } from "./inline.ts";
 * const pool = await startInlineLua(
 *   { services: [{ name: "echo", file: "/srv/scripts/services/echo.lua" }], scriptDir: "/srv/scripts/" },
 *   { queue: 1 },
 * );
 * ```
 */
export function startInlineLua(
  options: LuaThreadOptions,
  pool: InlineLuaPoolOptions = {},
): Promise<InlinePool> {
  return InlinePool.start({
    concurrency: pool.concurrency ?? 1,
    queue: pool.queue ?? 0,
    onCall: pool.onCall,
    runtime: (call) =>
      luaHandlerRuntime(options, {
        interrupt: new Int32Array(new SharedArrayBuffer(4)),
        call,
        clock: "inline",
      }),
  });
}
