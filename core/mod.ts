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
  SlowPeerError,
  TcpTransport,
  type Transport,
  type TransportCounters,
  type TransportHandler,
  type TransportLimits,
} from "./transport.ts";
export * from "./server.ts";
export * from "./client.ts";
export * from "./http_conn.ts";
export * from "./ep_conn.ts";
export * from "./ring.ts";
export * from "./pool.ts";
export type { WelcomeFrame } from "../protocol/ep_frames.ts";
export type { HttpLimits } from "../protocol/http_parser.ts";
export * from "./balancer.ts";
export * from "./node.ts";
export * from "./worker_node.ts";
export * from "./local_provider.ts";
export * from "./observe.ts";
export * from "./status_snapshot.ts";
export * from "./metrics.ts";
export * from "./metrics_sources.ts";
