/**
 * Every Prometheus family ep exposes, by where its values come from:
 * {@linkcode writeMonitorMetrics} writes a monitor's whole exposition (the jobs it counted,
 * the balancer's queues and workers, Lua, refused status requests, memory), with the
 * families of the parts a balancer is built from: its server (connections, sniffer, bytes,
 * HTTP: {@linkcode writeServerMetrics}) and the handler-thread pool (threads, slots, rings,
 * wake-ups: {@linkcode writePoolMetrics}). Every family is written even when its source is
 * absent (zeros, or no series), so that dashboards and alerts see the same names on every
 * node. The text format itself is `prometheus.ts`.
 *
 * @module
 */
import type { ServiceStats } from "../balancer/balancer.ts";
import type { ProviderStats } from "../balancer/provider.ts";
import type { BucketHistogram, ExpositionWriter } from "./prometheus.ts";
import type { PoolCounters } from "../threads/pool.ts";
import type { RingStats } from "../threads/ring.ts";
import type { ServerCounters } from "../net/server.ts";
import type { LuaCounters } from "./status_snapshot.ts";
import { OUTCOMES } from "./outcomes.ts";
import { workerLabel } from "./_provider_name.ts";
import { round } from "./_round.ts";

/**
 * What {@linkcode writeMonitorMetrics} writes from: a monitor's counters and what it read
 * from the balancer, the server, the handler-thread pool and the Lua runtime.
 *
 * @example
 * ```ts
 * import type { MonitorMetrics } from "./metrics.ts";
 * const idle: MonitorMetrics = {
 *   version: "unknown",
 *   ready: false,
 *   balancer: { uptimeMs: 0, services: [], providers: [] },
 *   services: new Map(),
 *   workers: new Map(),
 *   server: null,
 *   pool: null,
 *   lua: undefined,
 *   denied: { remote: 0, token: 0 },
 *   memory: Deno.memoryUsage(),
 * };
 * console.assert(!idle.ready);
 * ```
 */
export interface MonitorMetrics {
  /** The `version` label of `ep_build_info`. */
  version: string;
  /** Ready (`ep_up` 1) or not. */
  ready: boolean;
  /** The balancer's stats: uptime, services, providers. */
  balancer: { uptimeMs: number; services: ServiceStats[]; providers: ProviderStats[] };
  /** Counters by service name (the names every per-service family is written for). */
  services: ReadonlyMap<string, ServiceCounts>;
  /** Outcome counters by worker (the balancer's provider name), then by service. */
  workers: ReadonlyMap<string, { readonly services: ReadonlyMap<string, Float64Array> }>;
  /** The server's counters, if there is a server. */
  server: ServerCounters | null;
  /** The handler-thread pool's counters, if there is a pool. */
  pool: PoolCounters | null;
  /** The Lua runtime's counters, if there is one. */
  lua: LuaCounters | undefined;
  /** Requests for `/_ep/` pages refused, by reason. */
  denied: { readonly remote: number; readonly token: number };
  /** This process's memory. */
  memory: Deno.MemoryUsage;
}

/**
 * A monitor's counters of one service: jobs by outcome (indexed like
 * {@linkcode OUTCOMES}), and the queue-wait and service-time histograms (seconds).
 *
 * @example
 * ```ts
 * import type { ServiceCounts } from "./metrics.ts";
 * import { OUTCOMES } from "./outcomes.ts";
 * import { BucketHistogram } from "./prometheus.ts";
 * const none: ServiceCounts = {
 *   outcomes: new Float64Array(OUTCOMES.length),
 *   wait: new BucketHistogram(),
 *   run: new BucketHistogram(),
 * };
 * console.assert(none.wait.count === 0);
 * ```
 */
export interface ServiceCounts {
  /** Jobs by outcome, in the order of {@linkcode OUTCOMES}. */
  readonly outcomes: Float64Array;
  /** Queue wait, seconds. */
  readonly wait: BucketHistogram;
  /** Service time, seconds. */
  readonly run: BucketHistogram;
}

/**
 * Writes every family of a monitor, in this order: `ep_build_info`, `ep_up`,
 * `ep_uptime_seconds`; jobs: `ep_requests_total{service,outcome}`,
 * `ep_worker_requests_total{worker,service,outcome}`, `ep_queue_wait_seconds` and
 * `ep_service_time_seconds` (histograms, by service); the balancer's state:
 * `ep_queue_depth`, `ep_service_workers`, `ep_service_slots{service,state}`,
 * `ep_redeliveries_total`, `ep_workers{state}`, `ep_worker_slots{worker,state}`; the
 * server's ({@linkcode writeServerMetrics}) and the pool's ({@linkcode writePoolMetrics})
 * families; `ep_lua_errors_total`, `ep_lua_interrupts_total`,
 * `ep_status_denied_total{reason}` and `ep_memory_bytes{kind}`. Worker label values are
 * the provider names without their `worker ` prefix.
 *
 * @example
 * ```ts
 * import { ExpositionWriter } from "./prometheus.ts";
 * import { writeMonitorMetrics } from "./metrics.ts";
 * const w = new ExpositionWriter();
 * writeMonitorMetrics(w, {
 *   version: "1.0.0",
 *   ready: true,
 *   balancer: { uptimeMs: 1500, services: [], providers: [] },
 *   services: new Map(),
 *   workers: new Map(),
 *   server: null,
 *   pool: null,
 *   lua: undefined,
 *   denied: { remote: 0, token: 0 },
 *   memory: Deno.memoryUsage(),
 * });
 * console.assert(w.text().includes("ep_uptime_seconds 1.5\n"));
 * ```
 */
export function writeMonitorMetrics(w: ExpositionWriter, data: MonitorMetrics): void {
  const st = data.balancer;
  const services = data.services;
  const names = [...services.keys()].sort();
  const live = new Map(st.services.map((s) => [s.name, s]));

  w.family("ep_build_info", "gauge", "Always 1; the version is a label.");
  w.sample("ep_build_info", [["version", data.version]], 1);
  w.family("ep_up", "gauge", "1 when ready (listening, scripts loaded), else 0.");
  w.sample("ep_up", [], data.ready ? 1 : 0);
  w.family("ep_uptime_seconds", "gauge", "Seconds since the balancer started.");
  w.sample("ep_uptime_seconds", [], round(st.uptimeMs / 1000, 3));

  w.family("ep_requests_total", "counter", "Jobs answered or refused, by service and outcome.");
  for (const name of names) {
    const m = services.get(name)!;
    for (let i = 0; i < OUTCOMES.length; i++) {
      w.sample("ep_requests_total", [["service", name], ["outcome", OUTCOMES[i]]], m.outcomes[i]);
    }
  }
  w.family(
    "ep_worker_requests_total",
    "counter",
    "Jobs run by a worker, by worker, service and outcome.",
  );
  for (const name of [...data.workers.keys()].sort()) {
    const wm = data.workers.get(name)!;
    const worker = workerLabel(name);
    for (const service of [...wm.services.keys()].sort()) {
      const c = wm.services.get(service)!;
      for (let i = 0; i < OUTCOMES.length; i++) {
        if (c[i] === 0 && i !== 0) continue;
        w.sample(
          "ep_worker_requests_total",
          [["worker", worker], ["service", service], ["outcome", OUTCOMES[i]]],
          c[i],
        );
      }
    }
  }
  w.family(
    "ep_queue_wait_seconds",
    "histogram",
    "Time from a job's arrival to its dispatch (or its answer, if never dispatched).",
  );
  for (const name of names) {
    w.histogram("ep_queue_wait_seconds", [["service", name]], services.get(name)!.wait);
  }
  w.family(
    "ep_service_time_seconds",
    "histogram",
    "Time from a job's dispatch to its answer.",
  );
  for (const name of names) {
    w.histogram("ep_service_time_seconds", [["service", name]], services.get(name)!.run);
  }
  w.family("ep_queue_depth", "gauge", "Jobs waiting in the service's queue.");
  for (const s of st.services) w.sample("ep_queue_depth", [["service", s.name]], s.queued);
  w.family("ep_service_workers", "gauge", "Providers (workers, local pool) serving the service.");
  for (const s of st.services) w.sample("ep_service_workers", [["service", s.name]], s.providers);
  w.family("ep_service_slots", "gauge", "Slots of the service's providers, by state.");
  for (const s of st.services) {
    w.sample("ep_service_slots", [["service", s.name], ["state", "busy"]], s.busy);
    w.sample(
      "ep_service_slots",
      [["service", s.name], ["state", "idle"]],
      Math.max(0, s.slots - s.busy),
    );
  }
  w.family(
    "ep_redeliveries_total",
    "counter",
    "Jobs dispatched again after their worker was lost.",
  );
  for (const name of names) {
    w.sample(
      "ep_redeliveries_total",
      [["service", name]],
      live.get(name)?.counters.redelivered ?? 0,
    );
  }
  w.family("ep_workers", "gauge", "Providers attached, by state.");
  const draining = st.providers.filter((p) => p.draining).length;
  w.sample("ep_workers", [["state", "ready"]], st.providers.length - draining);
  w.sample("ep_workers", [["state", "draining"]], draining);
  w.family("ep_worker_slots", "gauge", "A provider's slots, by state.");
  for (const p of [...st.providers].sort((a, b) => a.name.localeCompare(b.name))) {
    const worker = workerLabel(p.name);
    w.sample("ep_worker_slots", [["worker", worker], ["state", "busy"]], p.busy);
    w.sample(
      "ep_worker_slots",
      [["worker", worker], ["state", "idle"]],
      Math.max(0, p.slots - p.busy),
    );
  }
  writeServerMetrics(w, data.server);
  writePoolMetrics(w, data.pool);
  const lua = data.lua;
  w.family("ep_lua_errors_total", "counter", "Lua errors turned into error replies.");
  w.sample("ep_lua_errors_total", [], lua?.errors ?? 0);
  w.family("ep_lua_interrupts_total", "counter", "Lua handlers interrupted.");
  w.sample("ep_lua_interrupts_total", [], lua?.interrupts ?? 0);
  w.family(
    "ep_status_denied_total",
    "counter",
    "Requests for /_ep/ pages refused, by reason (remote: not loopback; token: missing or wrong).",
  );
  w.sample("ep_status_denied_total", [["reason", "remote"]], data.denied.remote);
  w.sample("ep_status_denied_total", [["reason", "token"]], data.denied.token);
  const mem = data.memory;
  w.family(
    "ep_memory_bytes",
    "gauge",
    "This process's memory, bytes: resident (rss), and the main thread's JavaScript heap (heap_used, heap_total, external).",
  );
  w.sample("ep_memory_bytes", [["kind", "rss"]], mem.rss);
  w.sample("ep_memory_bytes", [["kind", "heap_used"]], mem.heapUsed);
  w.sample("ep_memory_bytes", [["kind", "heap_total"]], mem.heapTotal);
  w.sample("ep_memory_bytes", [["kind", "external"]], mem.external);
}

/**
 * Writes the server's families: `ep_connections_total{protocol}`, `ep_connections_open`,
 * `ep_connections_refused_total`,
 * `ep_sniff_rejections_total{reason}`, `ep_received_bytes_total`, `ep_sent_bytes_total`,
 * `ep_stuck_peers_closed_total`, `ep_http_requests_total`, `ep_http_rejected_total`.
 *
 * @example
 * ```ts
 * import { ExpositionWriter } from "./prometheus.ts";
 * import { writeServerMetrics } from "./metrics.ts";
 * const w = new ExpositionWriter();
 * writeServerMetrics(w, null);
 * console.assert(w.text().includes('ep_connections_total{protocol="ep"} 0'));
 * ```
 */
export function writeServerMetrics(w: ExpositionWriter, c: ServerCounters | null): void {
  w.family("ep_connections_total", "counter", "Connections accepted, by protocol once sniffed.");
  w.sample("ep_connections_total", [["protocol", "http"]], c?.connections.http ?? 0);
  w.sample("ep_connections_total", [["protocol", "ep"]], c?.connections.ep ?? 0);
  w.family("ep_connections_open", "gauge", "Connections open now.");
  w.sample("ep_connections_open", [], c?.open ?? 0);
  w.family(
    "ep_connections_refused_total",
    "counter",
    "Connections closed at accept because the connection limit was reached.",
  );
  w.sample("ep_connections_refused_total", [], c?.refused ?? 0);
  w.family(
    "ep_sniff_rejections_total",
    "counter",
    "Connections refused by the protocol sniffer, by reason.",
  );
  for (const reason of ["tls", "h2", "unknown", "timeout"] as const) {
    w.sample("ep_sniff_rejections_total", [["reason", reason]], c?.sniffRejected[reason] ?? 0);
  }
  w.family("ep_received_bytes_total", "counter", "Bytes read from peers.");
  w.sample("ep_received_bytes_total", [], c?.transport.bytesIn ?? 0);
  w.family("ep_sent_bytes_total", "counter", "Bytes handed to the operating system for sending.");
  w.sample("ep_sent_bytes_total", [], c?.transport.bytesOut ?? 0);
  w.family(
    "ep_stuck_peers_closed_total",
    "counter",
    "Connections closed because the peer did not read.",
  );
  w.sample("ep_stuck_peers_closed_total", [], c?.transport.stuckClosed ?? 0);
  w.family("ep_http_requests_total", "counter", "HTTP requests parsed.");
  w.sample("ep_http_requests_total", [], c?.http.requests ?? 0);
  w.family(
    "ep_http_rejected_total",
    "counter",
    "HTTP requests refused by the parser or timeouts.",
  );
  w.sample("ep_http_rejected_total", [], c?.http.rejected ?? 0);
}

/**
 * Writes the handler pool's families: `ep_handler_threads{state}`,
 * `ep_handler_thread_scale_total{direction}` (threads added and retired by scaling),
 * `ep_handler_slots{state}`, `ep_handler_jobs_total{result}`,
 * `ep_handler_threads_lost_total`, `ep_handler_thread_restarts_total{thread}`, ring
 * occupancy `ep_handler_ring_used_bytes{thread,ring}` and capacity, `ep_handler_ring_full_total`,
 * wake-ups `ep_handler_ring_wakeups_total{thread,ring}` (`job`: the handler thread woken;
 * `reply`: the main thread woken), `ep_handler_thread_sleeps_total{thread}`,
 * `ep_handler_main_sleeps_total`.
 *
 * @example
 * ```ts
 * import { ExpositionWriter } from "./prometheus.ts";
 * import { writePoolMetrics } from "./metrics.ts";
 * const w = new ExpositionWriter();
 * writePoolMetrics(w, null);
 * console.assert(w.text().includes('ep_handler_slots{state="idle"} 0'));
 * ```
 */
export function writePoolMetrics(w: ExpositionWriter, pool: PoolCounters | null): void {
  const threads = pool?.threads ?? [];
  w.family("ep_handler_threads", "gauge", "Handler threads, by state.");
  for (
    const state of ["starting", "ready", "restarting", "retiring", "stopping", "stopped"] as const
  ) {
    w.sample(
      "ep_handler_threads",
      [["state", state]],
      threads.filter((t) => t.status === state).length,
    );
  }
  w.family(
    "ep_handler_thread_scale_total",
    "counter",
    "Handler threads added (up) and retired (down) as the load changed.",
  );
  w.sample("ep_handler_thread_scale_total", [["direction", "up"]], pool?.scaling?.up ?? 0);
  w.sample("ep_handler_thread_scale_total", [["direction", "down"]], pool?.scaling?.down ?? 0);
  w.family("ep_handler_slots", "gauge", "Handler-thread slots, by state.");
  w.sample("ep_handler_slots", [["state", "busy"]], pool?.jobsInFlight ?? 0);
  w.sample("ep_handler_slots", [["state", "idle"]], pool?.freeSlots ?? 0);
  w.family("ep_handler_jobs_total", "counter", "Jobs handed to handler threads, by result.");
  w.sample("ep_handler_jobs_total", [["result", "replied"]], pool?.replied ?? 0);
  w.sample("ep_handler_jobs_total", [["result", "failed"]], pool?.failed ?? 0);
  w.family("ep_handler_threads_lost_total", "counter", "Handler threads lost (crashed).");
  w.sample("ep_handler_threads_lost_total", [], pool?.threadsLost ?? 0);
  w.family("ep_handler_thread_restarts_total", "counter", "Restarts, by thread.");
  for (const t of threads) {
    w.sample("ep_handler_thread_restarts_total", [["thread", String(t.thread)]], t.restarts);
  }
  const rings = (
    name: string,
    type: "counter" | "gauge",
    help: string,
    f: (r: RingStats) => number,
  ) => {
    w.family(name, type, help);
    for (const t of threads) {
      w.sample(name, [["thread", String(t.thread)], ["ring", "job"]], f(t.jobRing));
      w.sample(name, [["thread", String(t.thread)], ["ring", "reply"]], f(t.replyRing));
    }
  };
  rings(
    "ep_handler_ring_used_bytes",
    "gauge",
    "Ring bytes published and not yet read (occupancy).",
    (r) => r.usedBytes,
  );
  rings("ep_handler_ring_capacity_bytes", "gauge", "Ring data capacity.", (r) => r.capacity);
  rings(
    "ep_handler_ring_full_total",
    "counter",
    "Messages held because the ring was full.",
    (r) => r.fullEvents,
  );
  rings(
    "ep_handler_ring_wakeups_total",
    "counter",
    "Wake-ups of a sleeping consumer (job ring: the handler thread; reply ring: the main thread).",
    (r) => r.dataWakeups,
  );
  w.family(
    "ep_handler_thread_sleeps_total",
    "counter",
    "Times a handler thread slept waiting for jobs.",
  );
  for (const t of threads) {
    w.sample("ep_handler_thread_sleeps_total", [["thread", String(t.thread)]], t.sleeps);
  }
  w.family(
    "ep_handler_main_sleeps_total",
    "counter",
    "Times the main thread slept waiting for replies.",
  );
  w.sample("ep_handler_main_sleeps_total", [], pool?.mainSleeps ?? 0);
}
