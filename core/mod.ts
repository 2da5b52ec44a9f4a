/**
 * ep's core: the transport (the only code that touches sockets), the one-port server with
 * its HTTP/1.1 and EP connections, the EP client, and ep-midas — lock-free
 * SharedArrayBuffer rings and the handler-thread pool.
 *
 * @example
 * ```ts ignore
 * import { HandlerPool, TS_HANDLER_RUNTIME } from "./mod.ts";
 * const pool = await HandlerPool.start({
 *   module: TS_HANDLER_RUNTIME,
 *   moduleOptions: { handlers: new URL("./my_handlers.ts", import.meta.url).href },
 * });
 * const reply = await pool.call({ id: 1, service: "echo", body: new Uint8Array([1]) });
 * await pool.close();
 * ```
 *
 * @module
 */
export * from "./errors.ts";
export * from "./job.ts";
export {
  connect as connectTransport,
  DEFAULT_TRANSPORT_LIMITS,
  listen,
  Listener,
  type ListenOptions,
  newTransportCounters,
  parseAddr,
  TcpTransport,
  type Transport,
  type TransportCounters,
  type TransportHandler,
  type TransportLimits,
} from "./net/transport.ts";
export * from "./net/server.ts";
export * from "./net/client.ts";
export * from "./net/http_conn.ts";
export * from "./net/ep_conn.ts";
export * from "./threads/ring.ts";
export * from "./threads/doorbell.ts";
export * from "./threads/pool.ts";
export * from "./threads/runtime.ts";
export * from "./threads/job_errors.ts";
export type { WelcomeFrame } from "../protocol/ep_frames.ts";
export type { HttpLimits } from "../protocol/http_parser.ts";
export * from "./balancer/balancer.ts";
export * from "./balancer/provider.ts";
export * from "./balancer/router.ts";
export * from "./balancer/worker_link.ts";
export * from "./node/node.ts";
export * from "./node/worker.ts";
export * from "./balancer/local_provider.ts";
export * from "./observe/monitor.ts";
export * from "./observe/outcomes.ts";
export * from "./observe/status_snapshot.ts";
export * from "./observe/prometheus.ts";
export * from "./observe/quantile_window.ts";
export * from "./observe/series.ts";
export * from "./observe/metrics.ts";
