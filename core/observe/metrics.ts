/**
 * The Prometheus families of the parts a balancer is built from: its server (connections,
 * sniffer, bytes, HTTP) and the handler-thread pool (threads, slots, rings, wake-ups).
 * Every family is written even when its source is absent (zeros, or no series), so that
 * dashboards and alerts see the same names on every node.
 *
 * @module
 */
import type { ExpositionWriter } from "./prometheus.ts";
import type { PoolCounters } from "../threads/pool.ts";
import type { RingStats } from "../threads/ring.ts";
import type { ServerCounters } from "../net/server.ts";

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
  for (const state of ["starting", "ready", "restarting", "stopping", "stopped"] as const) {
    w.sample(
      "ep_handler_threads",
      [["state", state]],
      threads.filter((t) => t.status === state).length,
    );
  }
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
