/**
 * ep: a Deno runtime for background micro services with a preemptive (pull) load balancer.
 *
 * One TCP port serves HTTP/1.1 and ep's binary protocol (EP), told apart by the first bytes.
 * This module is the public TypeScript API; run it to get the `ep` command line.
 *
 * Start a balancer whose own handler threads run TypeScript services (all-in-one), then call it:
 *
 * @example
 * ```ts ignore
 * import { connect, startNode } from "./mod.ts";
 * // services.ts: export function echo(req) { return req.body; }
 * const node = await startNode({
 *   listen: { port: 7070 },
 *   handlers: { options: { handlers: new URL("./services.ts", import.meta.url).href } },
 * });
 * const client = await connect("127.0.0.1:7070");
 * console.log(new TextDecoder().decode((await client.request("echo", "hi")).body));
 * client.close();
 * await node.close();
 * ```
 *
 * A module worker pulling from balancers elsewhere:
 *
 * @example
 * ```ts ignore
 * import { startNode } from "./mod.ts";
 * const worker = await startNode({
 *   connect: ["10.0.0.1:7070", "10.0.0.2:7070"],
 *   handlers: { options: { handlers: new URL("./services.ts", import.meta.url).href } },
 *   token: Deno.env.get("EP_TOKEN"),
 * });
 * Deno.addSignalListener("SIGTERM", () => worker.drain());
 * ```
 *
 * @module
 */
export { Client, type ClientOptions, connect, ConnectionClosedError } from "./core/net/client.ts";
export type { Reply, RequestOptions } from "./core/net/client.ts";
export { serve } from "./core/net/server.ts";
export { type HandlerSource, type Node, type NodeOptions, startNode } from "./core/node/node.ts";
export {
  Balancer,
  type BalancerOptions,
  type ServiceCounters,
  type ServiceStats,
} from "./core/balancer/balancer.ts";
export type { Provider, ProviderStats, QueuedJob } from "./core/balancer/provider.ts";
export { WorkerNode, type WorkerNodeOptions } from "./core/node/worker.ts";
export { LocalPoolProvider } from "./core/balancer/local_provider.ts";
export {
  type CloseOptions,
  HandlerPool,
  type HandlerPoolOptions,
  type JobReply,
  type PoolCounters,
  type PoolJob,
  type ReplyCallback,
  type ThreadCounters,
  type ThreadLostEvent,
  type ThreadStatus,
  TS_HANDLER_RUNTIME,
} from "./core/threads/pool.ts";
export type { HandlerReply, HandlerRequest, HandlerResult } from "./core/threads/runtime.ts";
export type { ServeOptions, Server, ServerCounters } from "./core/net/server.ts";
export { httpStatusOf, JobError } from "./core/job.ts";
export type { Job, JobHandler, JobOrigin, JobResult } from "./core/job.ts";
export type { HttpCounters, HttpOptions } from "./core/net/http_conn.ts";
export type { TransportCounters, TransportLimits } from "./core/net/transport.ts";
export type { WelcomeFrame } from "./protocol/ep_frames.ts";
export type { HttpLimits } from "./protocol/http_parser.ts";
export type { EpOptions, WorkerHost } from "./core/net/ep_conn.ts";
export { ErrorCode } from "./protocol/errors.ts";
export { main } from "./cli/main.ts";

/** The version of ep. */
export const VERSION = "0.1.0";

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
