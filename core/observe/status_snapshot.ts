/**
 * The shape of ep's status data: what `/_ep/stats` and EP `STATS_REQUEST` answer, what the
 * status page draws and what `ep status` prints (produced by `Monitor.snapshot()` in
 * `monitor.ts`). It is a superset of `Balancer.stats()`, so readers of the older shape keep
 * working. Times are milliseconds; rates per second; `null` means "not known" or "no data".
 *
 * @module
 */
import type { Outcome } from "../balancer/balancer.ts";
import type { PoolCounters } from "../threads/pool.ts";
import type { ServerCounters } from "../net/server.ts";

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
  /** Their total slots. */
  slots: number;
  /** Slots busy. */
  busy: number;
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
  /** Whether it is draining. */
  draining: boolean;
  /** `ready` or `draining`. */
  state: "ready" | "draining";
  /** Milliseconds since it was last heard from (frames seen by the balancer); null if unknown. */
  lastSeenMsAgo: number | null;
  /** Milliseconds since it registered; null if unknown. */
  connectedMsAgo: number | null;
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
}
