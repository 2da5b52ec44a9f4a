/**
 * The shape of ep's status data: what `/_ep/stats` and EP `STATS_REQUEST` answer, what the
 * status page draws and what `ep status` prints (produced by `Monitor.snapshot()` in
 * `monitor.ts`). It is a superset of `Balancer.stats()`, so readers of the older shape keep
 * working. Times are milliseconds; rates per second; `null` means "not known" or "no data".
 *
 * @module
 */
import type { BalancerLimits, Outcome } from "../balancer/balancer.ts";
import type { PoolCounters } from "../threads/pool.ts";
import type { ServerCounters, ServerLimits } from "../net/server.ts";
import type { RecentError } from "./recent_errors.ts";

/**
 * Lua runtime counters (handler errors, interrupted runaway handlers), summed over threads.
 *
 * @example
 * ```ts
 * import type { LuaCounters } from "./status_snapshot.ts";
 * const none: LuaCounters = { errors: 0, interrupts: 0 };
 * console.assert(none.errors === 0);
 * ```
 */
export interface LuaCounters {
  /** Lua errors turned into error replies. */
  errors: number;
  /** Handlers interrupted (deadline or runaway). */
  interrupts: number;
}

/**
 * A latency summary in milliseconds (over the last minute); null when nothing was seen.
 *
 * @example
 * ```ts
 * import type { Quantiles } from "./status_snapshot.ts";
 * const q: Quantiles = { p50: 0.4, p99: 2.1, count: 1200 };
 * console.assert(q.p99 !== null && q.p99 > 2);
 * ```
 */
export interface Quantiles {
  /** Median, ms. */
  p50: number | null;
  /** 99th percentile, ms. */
  p99: number | null;
  /** Observations in the window. */
  count: number;
}

/**
 * Per-second samples, oldest first; the last one was taken at
 * `StatsSnapshot.sampledAt`. Rates are per second; null is a gap.
 *
 * @example
 * ```ts
 * import type { ServiceSeries } from "./status_snapshot.ts";
 * const s: ServiceSeries = { rate: [3, 4], failed: [0, 0], queued: [0, 1], busy: [1, 2], waitP99Ms: [0.2, null] };
 * console.assert(s.rate.length === 2);
 * ```
 */
export interface ServiceSeries {
  /** Jobs answered per second. */
  rate: (number | null)[];
  /** Jobs answered with anything but ok, per second. */
  failed: (number | null)[];
  /** Queue depth at the sample. */
  queued: (number | null)[];
  /** Slots busy at the sample. */
  busy: (number | null)[];
  /** p99 queue wait of the jobs answered in that second, ms. */
  waitP99Ms: (number | null)[];
}

/**
 * One service in a {@linkcode StatsSnapshot}: the balancer's view plus the monitor's.
 *
 * @example
 * ```ts ignore
 * const echo = snapshot.services.find((s) => s.name === "echo")!;
 * console.log(echo.queued, echo.queueWaitMs.p99);
 * ```
 */
export interface ServiceSnapshot {
  /** Service name. */
  name: string;
  /** Jobs waiting. */
  queued: number;
  /** Providers (workers) serving it. */
  providers: number;
  /** Their total slots (shared with the other services each of them serves). */
  slots: number;
  /** Jobs of this service they run (or hold, prefetched). */
  busy: number;
  /** Jobs they run or hold of any service: how much of `slots` is taken. */
  providersBusy?: number;
  /** Jobs it may queue before new ones are refused `overloaded` (`ep set … max_queue`). */
  maxQueue?: number;
  /** What its providers say it does (`ep.service(…, { description })`), or null. */
  description?: string | null;
  /** Its version, as its providers give it, or null. */
  version?: string | null;
  /** The balancer's counters. */
  counters: Record<string, number>;
  /** Jobs by outcome, as counted by the monitor. */
  outcomes: Record<Outcome, number>;
  /** Jobs answered per second over the last 10 s. */
  rate: number;
  /** Queue wait over the last minute. */
  queueWaitMs: Quantiles;
  /** Service time over the last minute. */
  serviceMs: Quantiles;
  /**
   * Recent dispatch-to-answer time per job, shared among jobs that waited in their worker
   * (the balancer's prefetch budget is judged by it); null before the first answer.
   */
  turnaroundMs?: number | null;
  /** Per-second samples (absent when asked without series). */
  series?: ServiceSeries;
}

/**
 * One provider (module worker or the local pool) in a {@linkcode StatsSnapshot}.
 *
 * @example
 * ```ts ignore
 * for (const p of snapshot.providers) console.log(p.address, p.state, p.busy, p.slots);
 * ```
 */
export interface ProviderSnapshot {
  /** The balancer's name for it. */
  name: string;
  /** `remote` (a worker over EP) or `local` (this process's handler threads). */
  kind: "remote" | "local";
  /** Peer address (`host:port`), or `local`. */
  address: string;
  /** The name the worker gave in HELLO, if any. */
  label: string | null;
  /** Services it serves. */
  services: string[];
  /** Declared slots. */
  slots: number;
  /** Jobs it holds. */
  busy: number;
  /** Credit left. */
  credit: number;
  /** Whether it is draining (it sent DRAIN, or is being replaced). */
  draining: boolean;
  /** What an operator set (`ep disable`, `ep drain`), or null. */
  admin?: "disabled" | "draining" | "drained" | null;
  /** Its state (see {@linkcode WorkerState}). */
  state: WorkerState;
  /** Milliseconds since it was last heard from (frames seen by the balancer); null if unknown. */
  lastSeenMsAgo: number | null;
  /** Milliseconds since it registered; null if unknown. */
  connectedMsAgo: number | null;
  /** Jobs it answered: ok, and anything else (errors, timeouts, lost). */
  jobs?: { ok: number; failed: number };
  /** The last error it answered, or null. */
  lastError?: RecentError | null;
  /** Its states since it attached and when each began (Unix ms), oldest first (the last 8). */
  history?: { state: WorkerState; at: number }[];
}

/**
 * A provider's state: `ready`; `draining` (it sent DRAIN, or an operator drains it and it
 * still holds jobs); `drained` (an operator's drain, nothing held any more); `disabled`
 * (an operator took it out of rotation).
 *
 * @example
 * ```ts
 * import type { WorkerState } from "./status_snapshot.ts";
 * const taken: WorkerState[] = ["disabled", "drained"];
 * console.assert(!taken.includes("ready"));
 * ```
 */
export type WorkerState = "ready" | "draining" | "drained" | "disabled";

/**
 * Jobs for services the balancer does not know (a mistyped path: refused `no_service`),
 * as one summary.
 *
 * @example
 * ```ts
 * import type { UnknownServices } from "./status_snapshot.ts";
 * const u: UnknownServices = {
 *   jobs: 3,
 *   outcomes: { ok: 0, error: 0, timeout: 0, overloaded: 0, no_service: 3, worker_lost: 0, shutting_down: 0, cancelled: 0 },
 *   names: [{ name: "usersx", jobs: 3 }],
 *   more: 0,
 * };
 * console.assert(u.names[0].jobs === u.jobs);
 * ```
 */
export interface UnknownServices {
  /** Jobs in all. */
  jobs: number;
  /** By outcome. */
  outcomes: Record<Outcome, number>;
  /** The names asked for most, with their jobs (`_other`: names past the monitor's bound). */
  names: { name: string; jobs: number }[];
  /** Further names not listed. */
  more: number;
}

/**
 * One service as `/_ep/services` and `ep services` describe it.
 *
 * @example
 * ```ts ignore
 * for (const s of monitor.services()) console.log(s.name, s.version, s.description);
 * ```
 */
export interface ServiceInfo {
  /** Its name. */
  name: string;
  /** What it does, as the first of its providers that says so, or null. */
  description: string | null;
  /** Its version when its providers agree on one, else null (see `versions`). */
  version: string | null;
  /** The versions its providers give, sorted. */
  versions: string[];
  /** Each provider serving it, with what it says of it. */
  instances: {
    worker: string;
    address: string;
    label: string | null;
    description: string | null;
    version: string | null;
  }[];
  /** Jobs waiting. */
  queued: number;
  /** Jobs of it running. */
  busy: number;
  /** Its providers' slots. */
  slots: number;
  /** Its queue bound. */
  maxQueue: number;
}

/**
 * The limits in force: the balancer's and the server's.
 *
 * @example
 * ```ts ignore
 * console.log(snapshot.limits?.balancer.maxQueue);
 * ```
 */
export interface Limits {
  /** The balancer's (queue bound, default deadline, retries, graces, prefetch). */
  balancer: BalancerLimits;
  /** The listening server's (connections, HTTP and EP sizes), when known. */
  server: ServerLimits | null;
}

/**
 * Balancer-wide totals in a {@linkcode StatsSnapshot}.
 *
 * @example
 * ```ts ignore
 * console.log(`${snapshot.totals.rate} jobs/s, ${snapshot.totals.queued} queued`);
 * ```
 */
export interface Totals {
  /** Jobs answered since start, any outcome. */
  jobs: number;
  /** Jobs answered ok. */
  ok: number;
  /** Jobs answered with anything else. */
  failed: number;
  /** Jobs answered per second over the last 10 s. */
  rate: number;
  /** Jobs queued now. */
  queued: number;
  /** Slots busy now. */
  busy: number;
  /** Slots in all. */
  slots: number;
  /** Providers attached. */
  providers: number;
  /** Jobs redelivered after their worker was lost. */
  redelivered: number;
}

/**
 * Balancer-wide per-second samples, oldest first.
 *
 * @example
 * ```ts ignore
 * const last = snapshot.series!.rate.at(-1);
 * ```
 */
export interface TotalSeries {
  /** Jobs answered per second. */
  rate: (number | null)[];
  /** Jobs failed per second. */
  failed: (number | null)[];
  /** Jobs queued. */
  queued: (number | null)[];
  /** Slots busy. */
  busy: (number | null)[];
  /** Bytes received per second. */
  bytesIn: (number | null)[];
  /** Bytes sent per second. */
  bytesOut: (number | null)[];
}

/**
 * Readiness and liveness, as `/_ep/health` answers them.
 *
 * @example
 * ```ts ignore
 * const h = monitor.health();
 * if (!h.ready) console.log(h.checks);
 * ```
 */
export interface HealthReport {
  /** `ok` when ready, `starting` otherwise. */
  status: "ok" | "starting";
  /** The process answers (always true when it can answer at all). */
  live: true;
  /** Every check passes. */
  ready: boolean;
  /** Each readiness check: `listening`, then those added. */
  checks: Record<string, boolean>;
  /** Milliseconds since the balancer started. */
  uptimeMs: number;
  /** The version, when known. */
  version: string | null;
}

/**
 * Everything the status page shows, as `/_ep/stats` and EP `STATS_REQUEST` answer it. A
 * superset of `Balancer.stats()`.
 *
 * @example
 * ```ts ignore
 * const snap = monitor.snapshot();
 * console.log(snap.totals.jobs, snap.services.map((s) => s.name));
 * ```
 */
export interface StatsSnapshot {
  /** Version, when known. */
  version: string | null;
  /** When the snapshot was taken, Unix ms. */
  now: number;
  /** When the balancer started, Unix ms. */
  startedAt: number;
  /** Milliseconds since the balancer started. */
  uptimeMs: number;
  /** Readiness. */
  ready: boolean;
  /** Balancer totals. */
  totals: Totals;
  /** Services the balancer knows, by name. */
  services: ServiceSnapshot[];
  /** Providers, by name. */
  providers: ProviderSnapshot[];
  /** The server's counters, when attached. */
  server: ServerCounters | null;
  /** The handler pool's counters, when attached. */
  pool: PoolCounters | null;
  /** Lua counters, when attached. */
  lua: LuaCounters | null;
  /** This process's memory, bytes (`Deno.memoryUsage()`); absent from older versions. */
  memory?: { rss: number; heapUsed: number; heapTotal: number; external: number };
  /** When the last per-second sample was taken, Unix ms (0 before the first). */
  sampledAt: number;
  /** Milliseconds between samples. */
  intervalMs: number;
  /** Balancer-wide per-second samples (absent when asked without series). */
  series?: TotalSeries;
  /** Jobs for services the balancer does not know, or null when there were none. */
  unknownServices?: UnknownServices | null;
  /** The last errors, newest first (`/_ep/admin/errors` has more). */
  errors?: RecentError[];
  /** The limits in force. */
  limits?: Limits | null;
}
