/**
 * Seeing inside a balancer: the {@linkcode Monitor} counts every job the balancer settles
 * (it is the balancer's {@linkcode BalancerObserver}) by service, outcome and worker, with
 * its queue wait and service time; samples the balancer, the server and the handler-thread
 * pool once a second for the sparklines; and answers from what it knows: the status data
 * ({@linkcode Monitor.snapshot}, shaped in `status_snapshot.ts`), the health report and the
 * Prometheus text (families in `metrics.ts`). {@linkcode Monitor.internal} serves them on
 * the balancer's own port under `/_ep/` (see `endpoints.ts` for the paths and the access
 * rule); EP `STATS_REQUEST` gets the same JSON under the same rule (pass
 * {@linkcode Monitor.access} as `EpOptions.statsAccess`).
 *
 * With `accessLog`, each job is logged at info level in category `["ep", "access"]`:
 * service, outcome, queue wait, service time and worker (`access_log.ts`).
 *
 * A worker's "last seen" is the last frame the balancer saw from it: credit grants and
 * answers (seen through {@linkcode Monitor.watchWorkers}), and every frame, heartbeats
 * included, when its provider exposes `lastHeard` (Unix ms).
 *
 * Label cardinality is bounded: services a provider serves or served always get their own
 * series; other names (refused `no_service` requests, names jobs wait for in the start-up
 * grace) get their own only up to `maxServices`, then share `service="_other"`. A worker's
 * series are dropped ten minutes after it left.
 *
 * Why one file of some 650 lines: counting, the once-a-second sampling, the health report
 * and the snapshot all read the same private counters; cut apart, they would have to
 * expose them.
 *
 * @example
 * ```ts ignore
 * import { Balancer } from "../balancer/balancer.ts";
 * import { Monitor } from "./monitor.ts";
 * import { serve } from "../net/server.ts";
 * const monitor = new Monitor({ accessLog: true });
 * const balancer = new Balancer({ observer: monitor, internal: monitor.internal });
 * const server = serve({
 *   port: 7070,
 *   handler: balancer.handler,
 *   ep: {
 *     workers: monitor.watchWorkers(balancer),
 *     stats: () => monitor.snapshot(),
 *     statsAccess: monitor.access,
 *   },
 * });
 * monitor.attach({ balancer, server });
 * ```
 *
 * @module
 */
import type { Balancer, BalancerObserver, FailedJob, Outcome } from "../balancer/balancer.ts";
import type { Provider, ProviderStats, QueuedJob } from "../balancer/provider.ts";
import type { ProviderHost as WorkerHost } from "../balancer/worker_link.ts";
import type { Job, JobError, JobResult } from "../job.ts";
import { BucketHistogram, ExpositionWriter } from "./prometheus.ts";
import { QuantileWindow } from "./quantile_window.ts";
import { Series } from "./series.ts";
import { writeMonitorMetrics } from "./metrics.ts";
import { OUTCOMES } from "./outcomes.ts";
import { parseProviderName } from "./_provider_name.ts";
import { round } from "./_round.ts";
import type { JobPool } from "../threads/pool_types.ts";
import type { Server } from "../net/server.ts";
import type {
  HealthReport,
  LuaCounters,
  ProviderSnapshot,
  Quantiles,
  ServiceInfo,
  ServiceSnapshot,
  StatsSnapshot,
  UnknownServices,
  WorkerState,
} from "./status_snapshot.ts";
import { type RecentError, RecentErrors } from "./recent_errors.ts";
import { errorCodeName } from "../../protocol/errors.ts";
import type { AccessOptions } from "../net/access.ts";
import { StatusEndpoints } from "./endpoints.ts";
import { Admin, type AdminOutcome } from "./admin.ts";
import { logAccess } from "./access_log.ts";
import { escapeControls } from "../escape.ts";

export type { AccessOptions } from "../net/access.ts";
export { isLoopback } from "../net/access.ts";

const OUTCOME_INDEX: Readonly<Record<Outcome, number>> = Object.freeze(
  Object.fromEntries(OUTCOMES.map((o, i) => [o, i])) as Record<Outcome, number>,
);

/**
 * Options for {@linkcode Monitor}.
 *
 * @example
 * ```ts
 * import type { MonitorOptions } from "./monitor.ts";
 * const options: MonitorOptions = { accessLog: true, access: { token: "t" } };
 * console.assert(options.accessLog);
 * ```
 */
export interface MonitorOptions {
  /** Log one line per job in category `["ep", "access"]` (info). Default false. */
  accessLog?: boolean;
  /** Access rules of the page, stats and metrics. Default: loopback only. */
  access?: AccessOptions;
  /** The version shown on the page, in stats and in `ep_build_info`. */
  version?: string;
  /**
   * Service names no provider serves or served (asked for by clients) that get series of
   * their own; the rest share `service="_other"`. Default 200.
   */
  maxServices?: number;
  /** Seconds of per-second samples kept for the sparklines. Default 300. */
  historySeconds?: number;
  /** Extra readiness checks by name (for example `scripts`: the Lua scripts loaded). */
  checks?: Record<string, () => boolean>;
  /** Errors kept for `ep errors` and the page (the last ones). Default 100. */
  recentErrors?: number;
}

/**
 * What a {@linkcode Monitor} reads from: the balancer, and optionally its server, the
 * handler-thread pool and the Lua runtime's counters.
 *
 * @example
 * ```ts ignore
 * monitor.attach({ balancer, server, pool, lua: () => ({ errors: 0, interrupts: 0 }) });
 * ```
 */
export interface MonitorSources {
  /** The balancer whose stats are sampled. */
  balancer: Balancer;
  /** Its listening server (connections, bytes, sniff refusals; readiness `listening`). */
  server?: Server | null;
  /**
   * This process's handler threads (ring occupancy, wake-ups), or a function returning the
   * current ones (a reload replaces the pool).
   */
  pool?: JobPool | null | (() => JobPool | null);
  /** Lua counters, once the Lua runtime provides them. */
  lua?: () => LuaCounters;
}

interface ServiceMon {
  name: string;
  outcomes: Float64Array;
  wait: BucketHistogram;
  run: BucketHistogram;
  waitQ: QuantileWindow;
  runQ: QuantileWindow;
  lastTotal: number;
  lastOk: number;
  rate: Series;
  failed: Series;
  queued: Series;
  busy: Series;
  waitP99: Series;
}

interface WorkerMon {
  /** Outcome counters by service. */
  services: Map<string, Float64Array>;
  /** Last time it was attached (Date.now). */
  present: number;
  /** The last error it answered, or null. */
  lastError: RecentError | null;
}

/** A provider's state changes, oldest first (at most {@linkcode HISTORY_STATES}). */
interface StateTrail {
  state: WorkerState;
  history: { state: WorkerState; at: number }[];
}

interface LinkInfo {
  connected: number;
  lastSeen: number;
}

/** A provider that reports when it last heard from its peer (Unix ms), if it does. */
interface HeardProvider extends Provider {
  readonly lastHeard?: number;
}

const INTERVAL_MS = 1_000;
const WORKER_RETENTION_MS = 10 * 60_000;
const OTHER = "_other";
const RATE_WINDOW = 10;
const HISTORY_STATES = 8;
/** Names of unknown services listed in the snapshot (the rest are only counted). */
const UNKNOWN_NAMES = 10;
/** Errors the snapshot carries for the page (`/_ep/admin/errors` has them all). */
const SNAPSHOT_ERRORS = 10;

/**
 * Watches a balancer: implements {@linkcode BalancerObserver}, samples once a second, and
 * produces the Prometheus exposition, the stats JSON, the status page and the health
 * report, served by {@linkcode Monitor.internal} under `/_ep/`. See `endpoints.ts` for the
 * endpoints and access rules.
 *
 * @example
 * ```ts ignore
 * import { Balancer } from "../balancer/balancer.ts";
 * import { Monitor } from "./monitor.ts";
 * const monitor = new Monitor();
 * const balancer = new Balancer({ observer: monitor, internal: monitor.internal });
 * monitor.attach({ balancer });
 * console.log(monitor.metricsText());
 * monitor.close();
 * ```
 */
export class Monitor implements BalancerObserver {
  #opts: MonitorOptions;
  #accessLog: boolean;
  #history: number;
  #maxServices: number;
  #services = new Map<string, ServiceMon>();
  #unknownServices = 0;
  /** By the balancer's provider name (the label is derived when written). */
  #workers = new Map<string, WorkerMon>();
  #links = new Map<Provider, LinkInfo>();
  #errors: RecentErrors;
  /** By provider name: its state and when it changed. */
  #states = new Map<string, StateTrail>();
  #checks = new Map<string, () => boolean>();
  #src: MonitorSources | null = null;
  #lua: (() => LuaCounters) | undefined;
  #listening = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #lastSample = 0;
  #lastSampleAt = 0;
  #lastBytesIn = 0;
  #lastBytesOut = 0;
  #endpoints: StatusEndpoints;
  #admin: Admin;
  #total: {
    rate: Series;
    failed: Series;
    queued: Series;
    busy: Series;
    bytesIn: Series;
    bytesOut: Series;
  };
  #allOk = 0;
  #allJobs = 0;
  #lastAllJobs = 0;
  #lastAllOk = 0;

  /**
   * Answers `/_ep/...` HTTP requests; pass it as `BalancerOptions.internal`. Always answers
   * (404 for unknown paths), so the balancer's own defaults never serve unguarded stats.
   */
  readonly internal: (job: Job) => JobResult;

  /** Creates a monitor; it reads nothing until {@linkcode Monitor.attach}. */
  constructor(options: MonitorOptions = {}) {
    this.#opts = options;
    this.#accessLog = options.accessLog ?? false;
    this.#history = Math.max(10, Math.round(options.historySeconds ?? 300));
    this.#maxServices = options.maxServices ?? 200;
    this.#errors = new RecentErrors(options.recentErrors ?? 100);
    for (const [name, fn] of Object.entries(options.checks ?? {})) this.#checks.set(name, fn);
    const n = this.#history;
    this.#total = {
      rate: new Series(n),
      failed: new Series(n),
      queued: new Series(n),
      busy: new Series(n),
      bytesIn: new Series(n),
      bytesOut: new Series(n),
    };
    this.#admin = new Admin(this);
    this.#endpoints = new StatusEndpoints(this);
    this.internal = (job) => this.#endpoints.answer(job);
  }

  /**
   * Starts reading from the balancer (and server, pool, Lua counters) and sampling once a
   * second. The timer does not keep the process alive; {@linkcode Monitor.close} stops it.
   */
  attach(sources: MonitorSources): void {
    this.#src = sources;
    this.#lua = sources.lua ?? this.#lua;
    if (sources.server) {
      this.#listening = true;
      sources.server.finished.then(
        () => this.#listening = false,
        () => this.#listening = false,
      );
    }
    this.#lastSample = performance.now();
    const t = sources.server?.counters.transport;
    this.#lastBytesIn = t?.bytesIn ?? 0;
    this.#lastBytesOut = t?.bytesOut ?? 0;
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.sample(), INTERVAL_MS);
      Deno.unrefTimer(this.#timer);
    }
  }

  /**
   * Sets (or replaces) where the Lua counters come from, for a Lua runtime that starts after
   * {@linkcode Monitor.attach}.
   */
  setLuaCounters(counters: () => LuaCounters): void {
    this.#lua = counters;
  }

  /** Adds (or replaces) a readiness check, such as `scripts` for the Lua control scripts. */
  check(name: string, ready: () => boolean): void {
    this.#checks.set(name, ready);
  }

  /**
   * The access rule of the page, stats and metrics; give it to the EP port as
   * `EpOptions.statsAccess` so that `STATS_REQUEST` follows it too.
   */
  get access(): AccessOptions {
    return this.#opts.access ?? {};
  }

  /** Stops sampling. */
  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** {@linkcode BalancerObserver}: counts a settled job and logs it when asked to. */
  job(
    service: string,
    outcome: Outcome,
    queueWaitMs: number,
    serviceMs: number,
    provider: string | null,
    job?: Job,
    answer?: JobResult | JobError,
  ): void {
    const s = this.#service(service, false);
    const i = OUTCOME_INDEX[outcome] ?? 1;
    s.outcomes[i]++;
    this.#allJobs++;
    if (i === 0) this.#allOk++;
    if (queueWaitMs === queueWaitMs) {
      const sec = queueWaitMs / 1000;
      s.wait.observe(sec);
      s.waitQ.observe(sec);
    }
    if (serviceMs === serviceMs) {
      const sec = serviceMs / 1000;
      s.run.observe(sec);
      s.runQ.observe(sec);
    }
    if (provider !== null) {
      let w = this.#workers.get(provider);
      if (!w) {
        w = { services: new Map(), present: Date.now(), lastError: null };
        this.#workers.set(provider, w);
      }
      let c = w.services.get(s.name);
      if (!c) {
        c = new Float64Array(OUTCOMES.length);
        w.services.set(s.name, c);
      }
      c[i]++;
    }
    if (this.#accessLog) {
      logAccess(service, outcome, queueWaitMs, serviceMs, provider, job, answer);
    }
  }

  /**
   * {@linkcode BalancerObserver}: keeps a failed job (any outcome but `ok` and `cancelled`,
   * a client's own doing) in the ring of recent errors, and as its worker's last error.
   */
  failed(f: FailedJob): void {
    if (f.outcome === "cancelled") return;
    const cause = f.error.cause;
    const detail = cause instanceof Error && cause.message !== f.message
      ? cause.message.split("\n")[0].slice(0, 1024)
      : null;
    const e: RecentError = {
      at: Date.now(),
      service: f.service,
      outcome: f.outcome,
      kind: errorCodeName[f.code] ?? "internal",
      code: f.code,
      message: f.message,
      requestId: f.requestId,
      worker: f.provider,
      detail,
    };
    this.#errors.add(e);
    if (f.provider !== null) {
      const w = this.#workers.get(f.provider);
      if (w) w.lastError = e;
    }
  }

  /** The last `limit` errors (default 20), newest first. */
  recentErrors(limit = 20): RecentError[] {
    return this.#errors.list(limit);
  }

  /**
   * The services the balancer serves, described as their providers describe them (NATS
   * micro's `$SRV.INFO`): `/_ep/services` and `ep services`.
   */
  services(): ServiceInfo[] {
    const src = this.#src;
    if (!src) return [];
    const st = src.balancer.stats();
    const providers = src.balancer.providerList();
    const out: ServiceInfo[] = [];
    for (const s of [...st.services].sort((a, b) => a.name.localeCompare(b.name))) {
      if (!s.served) continue;
      const instances: ServiceInfo["instances"] = [];
      for (const p of providers) {
        if (!p.services.has(s.name)) continue;
        const d = p.descriptions?.get(s.name);
        const remote = this.#links.has(p) || p.name.startsWith("worker ");
        const { address, label } = parseProviderName(p.name, remote);
        instances.push({
          worker: p.name,
          address,
          label,
          description: d?.description ?? null,
          version: d?.version ?? null,
        });
      }
      const versions = [...new Set(instances.map((i) => i.version).filter((v) => v !== null))];
      out.push({
        name: s.name,
        description: instances.find((i) => i.description !== null)?.description ?? null,
        version: versions.length === 1 ? versions[0] : null,
        versions: versions.sort(),
        instances,
        queued: s.queued,
        busy: s.busy,
        slots: s.slots,
        maxQueue: s.maxQueue,
      });
    }
    return out;
  }

  /** The balancer watched, once attached (the admin operations act on it). */
  get balancer(): Balancer | null {
    return this.#src?.balancer ?? null;
  }

  /**
   * Carries out a runtime admin request (`{"op": "drain", "worker": "w1"}`, see `admin.ts`):
   * what `/_ep/admin/…` and EP ADMIN answer (pass `(json) => monitor.adminJson(json)` as
   * `EpOptions.admin`).
   */
  admin(request: unknown): AdminOutcome {
    return this.#admin.answer(request);
  }

  /** {@linkcode Monitor.admin} for a request's JSON text (EP ADMIN). */
  adminJson(json: string): AdminOutcome {
    return this.#admin.answerJson(json);
  }

  /** An admin operation changed a worker's state: its history shows it at once. */
  changed(): void {
    const src = this.#src;
    if (src) this.#noteStates(src.balancer.stats().providers, Date.now());
  }

  /**
   * Wraps the balancer as the EP port's worker host (`EpOptions.workers`) to learn when
   * each worker registered and was last heard from (credit grants and answers; a provider
   * that exposes `lastHeard`, Unix ms, is read directly).
   */
  watchWorkers(host: WorkerHost): WorkerHost {
    const seen = (p: Provider) => {
      const l = this.#links.get(p);
      if (l) l.lastSeen = Date.now();
    };
    return {
      addProvider: (p) => {
        const now = Date.now();
        this.#links.set(p, { connected: now, lastSeen: now });
        host.addProvider(p);
      },
      updateProvider: (p, services, slots) => {
        seen(p);
        host.updateProvider(p, services, slots);
      },
      removeProvider: (p, reason) => {
        this.#links.delete(p);
        host.removeProvider(p, reason);
      },
      pull: (p) => {
        seen(p);
        host.pull(p);
      },
      finish: (p: Provider, job: QueuedJob, result: JobResult | JobError) => {
        seen(p);
        host.finish(p, job, result);
      },
      queueDepth: (service) => host.queueDepth(service),
      oldestWaitMs: (services) => host.oldestWaitMs?.(services) ?? 0,
    };
  }

  /**
   * Takes a per-second sample now (the timer calls it every second): rates, queue depths,
   * busy slots, the second's p99 queue wait; rotates the quantile windows.
   */
  sample(): void {
    const src = this.#src;
    if (!src) return;
    const nowPerf = performance.now();
    const dt = Math.max(0.001, (nowPerf - this.#lastSample) / 1000);
    this.#lastSample = nowPerf;
    this.#lastSampleAt = Date.now();
    const st = src.balancer.stats();
    const live = new Map<string, { queued: number; busy: number }>();
    for (const s of st.services) {
      this.#service(s.name, s.served);
      live.set(s.name, { queued: s.queued, busy: s.busy });
    }
    let queued = 0;
    let busy = 0;
    for (const m of this.#services.values()) {
      let total = 0;
      for (let i = 0; i < m.outcomes.length; i++) total += m.outcomes[i];
      const ok = m.outcomes[0];
      m.rate.push((total - m.lastTotal) / dt);
      m.failed.push((total - ok - (m.lastTotal - m.lastOk)) / dt);
      m.lastTotal = total;
      m.lastOk = ok;
      const l = live.get(m.name);
      m.queued.push(l ? l.queued : NaN);
      m.busy.push(l ? l.busy : NaN);
      m.waitP99.push(m.waitQ.tick(0.99) * 1000);
      m.runQ.tick(0.99);
      queued += l?.queued ?? 0;
    }
    for (const p of st.providers) busy += p.busy;
    this.#total.rate.push((this.#allJobs - this.#lastAllJobs) / dt);
    this.#total.failed.push(
      (this.#allJobs - this.#allOk - (this.#lastAllJobs - this.#lastAllOk)) / dt,
    );
    this.#lastAllJobs = this.#allJobs;
    this.#lastAllOk = this.#allOk;
    this.#total.queued.push(queued);
    this.#total.busy.push(busy);
    const t = src.server?.counters.transport;
    if (t) {
      this.#total.bytesIn.push((t.bytesIn - this.#lastBytesIn) / dt);
      this.#total.bytesOut.push((t.bytesOut - this.#lastBytesOut) / dt);
      this.#lastBytesIn = t.bytesIn;
      this.#lastBytesOut = t.bytesOut;
    }
    // Forget workers gone for a while (their counters would otherwise pile up).
    const now = Date.now();
    this.#noteStates(st.providers, now);
    const present = new Set(st.providers.map((p) => p.name));
    for (const [name, w] of this.#workers) {
      if (present.has(name)) w.present = now;
      else if (now - w.present > WORKER_RETENTION_MS) this.#workers.delete(name);
    }
  }

  /** Records each provider's state when it changed; forgets those that left. */
  #noteStates(providers: readonly ProviderStats[], now: number): void {
    const seen = new Set<string>();
    for (const p of providers) {
      seen.add(p.name);
      const state = stateOf(p);
      const t = this.#states.get(p.name);
      if (!t) {
        const l = [...this.#links].find(([q]) => q.name === p.name)?.[1];
        this.#states.set(p.name, { state, history: [{ state, at: l?.connected ?? now }] });
      } else if (t.state !== state) {
        t.state = state;
        t.history.push({ state, at: now });
        if (t.history.length > HISTORY_STATES) t.history.shift();
      }
    }
    for (const name of this.#states.keys()) if (!seen.has(name)) this.#states.delete(name);
  }

  /** Liveness and readiness: ready when listening and every added check passes. */
  health(): HealthReport {
    const checks: Record<string, boolean> = {};
    checks.listening = this.#src !== null && (this.#src.server ? this.#listening : true);
    for (const [name, fn] of this.#checks) {
      try {
        checks[name] = fn() === true;
      } catch {
        checks[name] = false;
      }
    }
    const ready = Object.values(checks).every(Boolean);
    return {
      status: ready ? "ok" : "starting",
      live: true,
      ready,
      checks,
      uptimeMs: Math.round(this.#src?.balancer.uptimeMs ?? 0),
      version: this.#opts.version ?? null,
    };
  }

  /**
   * The status data: what `/_ep/stats` and EP `STATS_REQUEST` answer and the page shows.
   * `series: false` leaves out the per-second samples.
   */
  snapshot(options: { series?: boolean } = {}): StatsSnapshot {
    const withSeries = options.series ?? true;
    const src = this.#src;
    const now = Date.now();
    const st = src?.balancer.stats() ?? { uptimeMs: 0, services: [], providers: [] };
    const services: ServiceSnapshot[] = [];
    let redelivered = 0;
    let queued = 0;
    const described = this.#descriptions();
    for (const s of [...st.services].sort((a, b) => a.name.localeCompare(b.name))) {
      const m = this.#services.get(s.name);
      redelivered += s.counters.redelivered;
      queued += s.queued;
      const d = described.get(s.name);
      const out: ServiceSnapshot = {
        name: s.name,
        queued: s.queued,
        providers: s.providers,
        slots: s.slots,
        busy: s.busy,
        providersBusy: s.providersBusy,
        maxQueue: s.maxQueue,
        description: d?.description ?? null,
        version: d?.version ?? null,
        counters: { ...s.counters },
        outcomes: outcomeRecord(m?.outcomes),
        rate: round(m ? nz(m.rate.mean(RATE_WINDOW)) : 0, 3),
        queueWaitMs: quantiles(m?.waitQ),
        serviceMs: quantiles(m?.runQ),
        turnaroundMs: s.turnaroundMs ?? null,
      };
      if (withSeries && m) {
        out.series = {
          rate: m.rate.toArray(),
          failed: m.failed.toArray(),
          queued: m.queued.toArray(0),
          busy: m.busy.toArray(0),
          waitP99Ms: m.waitP99.toArray(3),
        };
      }
      services.push(out);
    }
    const heard = new Map<string, LinkInfo & { lastHeard?: number }>();
    for (const [p, l] of this.#links) {
      heard.set(p.name, { ...l, lastHeard: (p as HeardProvider).lastHeard });
    }
    let busy = 0;
    let slots = 0;
    this.#noteStates(st.providers, now);
    const providers = [...st.providers].sort((a, b) => a.name.localeCompare(b.name)).map(
      (p): ProviderSnapshot => {
        busy += p.busy;
        slots += p.slots;
        const l = heard.get(p.name);
        // Remote: attached through the EP port (watchWorkers), or named so by ep_conn when
        // the port's host is the bare balancer. A peer's name cannot start the string.
        const remote = l !== undefined || p.name.startsWith("worker ");
        const { address, label, kind } = parseProviderName(p.name, remote);
        const last = l ? Math.max(l.lastSeen, l.lastHeard ?? 0) : NaN;
        const w = this.#workers.get(p.name);
        let ok = 0;
        let failed = 0;
        for (const c of w?.services.values() ?? []) {
          for (let i = 0; i < c.length; i++) {
            if (i === 0) ok += c[i];
            else failed += c[i];
          }
        }
        return {
          name: p.name,
          kind,
          address,
          label,
          services: [...p.services].sort(),
          slots: p.slots,
          busy: p.busy,
          credit: p.credit,
          draining: p.draining,
          admin: p.admin ?? null,
          state: stateOf(p),
          lastSeenMsAgo: last === last ? Math.max(0, now - last) : null,
          connectedMsAgo: l ? now - l.connected : null,
          jobs: { ok, failed },
          lastError: w?.lastError ?? null,
          history: [...(this.#states.get(p.name)?.history ?? [])],
        };
      },
    );
    const snap: StatsSnapshot = {
      version: this.#opts.version ?? null,
      now,
      startedAt: Math.round(now - st.uptimeMs),
      uptimeMs: st.uptimeMs,
      ready: this.health().ready,
      totals: {
        jobs: this.#allJobs,
        ok: this.#allOk,
        failed: this.#allJobs - this.#allOk,
        rate: round(nz(this.#total.rate.mean(RATE_WINDOW)), 3),
        queued,
        busy,
        slots,
        providers: providers.length,
        redelivered,
      },
      services,
      providers,
      server: src?.server ? structuredClone(src.server.counters) : null,
      pool: this.#pool()?.counters() ?? null,
      lua: this.#lua ? { ...this.#lua() } : null,
      memory: Deno.memoryUsage(),
      sampledAt: this.#lastSampleAt,
      intervalMs: INTERVAL_MS,
      unknownServices: this.#unknown(new Set(st.services.map((s) => s.name))),
      errors: this.#errors.list(SNAPSHOT_ERRORS),
      limits: src ? { balancer: src.balancer.limits(), server: src.server?.limits ?? null } : null,
    };
    if (withSeries) {
      const t = this.#total;
      snap.series = {
        rate: t.rate.toArray(),
        failed: t.failed.toArray(),
        queued: t.queued.toArray(0),
        busy: t.busy.toArray(0),
        bytesIn: t.bytesIn.toArray(0),
        bytesOut: t.bytesOut.toArray(0),
      };
    }
    return snap;
  }

  /** {@linkcode Monitor.snapshot} as JSON text. */
  statsJson(options: { series?: boolean } = {}): string {
    return JSON.stringify(this.snapshot(options));
  }

  /** The Prometheus text exposition (format 0.0.4) of everything the monitor knows. */
  metricsText(): string {
    // Label values are shown through escapeControls: worker names are peers'.
    const w = new ExpositionWriter({ labelValue: escapeControls });
    const src = this.#src;
    const st = src?.balancer.stats() ?? { uptimeMs: 0, services: [], providers: [] };
    for (const s of st.services) this.#service(s.name, s.served);
    writeMonitorMetrics(w, {
      version: this.#opts.version ?? "unknown",
      ready: this.health().ready,
      balancer: st,
      services: this.#services,
      workers: this.#workers,
      server: src?.server?.counters ?? null,
      pool: this.#pool()?.counters() ?? null,
      lua: this.#lua?.(),
      denied: this.#endpoints.denied,
      memory: Deno.memoryUsage(),
    });
    return w.text();
  }

  /**
   * Jobs for services the balancer does not know (refused `no_service`, or waited for in
   * the start-up grace and forgotten), as one summary; null when there were none.
   */
  #unknown(known: ReadonlySet<string>): UnknownServices | null {
    let jobs = 0;
    const outcomes = new Float64Array(OUTCOMES.length);
    const names: { name: string; jobs: number }[] = [];
    for (const m of this.#services.values()) {
      if (known.has(m.name)) continue;
      let n = 0;
      for (let i = 0; i < m.outcomes.length; i++) {
        outcomes[i] += m.outcomes[i];
        n += m.outcomes[i];
      }
      if (n === 0) continue;
      jobs += n;
      names.push({ name: m.name, jobs: n });
    }
    if (jobs === 0) return null;
    names.sort((a, b) => b.jobs - a.jobs || a.name.localeCompare(b.name));
    return {
      jobs,
      outcomes: outcomeRecord(outcomes),
      names: names.slice(0, UNKNOWN_NAMES),
      more: Math.max(0, names.length - UNKNOWN_NAMES),
    };
  }

  /** Each service's description and version, as the first provider that gives them. */
  #descriptions(): Map<string, { description: string | null; version: string | null }> {
    const out = new Map<string, { description: string | null; version: string | null }>();
    for (const p of this.#src?.balancer.providerList() ?? []) {
      for (const [name, d] of p.descriptions ?? []) {
        const had = out.get(name);
        out.set(name, {
          description: had?.description ?? d.description ?? null,
          version: had?.version ?? d.version ?? null,
        });
      }
    }
    return out;
  }

  #pool(): JobPool | null {
    const p = this.#src?.pool;
    return typeof p === "function" ? p() : p ?? null;
  }

  #service(name: string, known: boolean): ServiceMon {
    let s = this.#services.get(name);
    if (s) return s;
    if (!known) {
      if (this.#unknownServices >= this.#maxServices) {
        s = this.#services.get(OTHER);
        if (s) return s;
        name = OTHER;
      } else {
        this.#unknownServices++;
      }
    }
    const n = this.#history;
    s = {
      name,
      outcomes: new Float64Array(OUTCOMES.length),
      wait: new BucketHistogram(),
      run: new BucketHistogram(),
      waitQ: new QuantileWindow(),
      runQ: new QuantileWindow(),
      lastTotal: 0,
      lastOk: 0,
      rate: new Series(n),
      failed: new Series(n),
      queued: new Series(n),
      busy: new Series(n),
      waitP99: new Series(n),
    };
    this.#services.set(name, s);
    return s;
  }
}

/** A provider's state as the page and `ep workers` show it. */
function stateOf(p: ProviderStats): WorkerState {
  if (p.admin === "disabled") return "disabled";
  if (p.admin === "drained" && !p.draining) return "drained";
  if (p.admin === "draining" || p.draining) return "draining";
  return "ready";
}

function outcomeRecord(c: Float64Array | undefined): Record<Outcome, number> {
  const out = {} as Record<Outcome, number>;
  for (let i = 0; i < OUTCOMES.length; i++) out[OUTCOMES[i]] = c ? c[i] : 0;
  return out;
}

function quantiles(w: QuantileWindow | undefined): Quantiles {
  if (!w || w.count === 0) return { p50: null, p99: null, count: 0 };
  return {
    p50: round(w.quantile(0.5) * 1000, 3),
    p99: round(w.quantile(0.99) * 1000, 3),
    count: w.count,
  };
}

function nz(v: number): number {
  return v === v ? v : 0;
}
