/**
 * ep: a Deno runtime for background micro services with a preemptive (pull) load balancer.
 *
 * One TCP port serves HTTP/1.1 and ep's binary protocol (EP), told apart by the first bytes.
 * This module is the public TypeScript API; run it to get the `ep` command line.
 *
 * @example
 * ```ts ignore
 * import { connect, serve } from "./mod.ts";
 * const server = serve({ port: 0, handler: (job) => ({ body: job.body }) });
 * const client = await connect(`127.0.0.1:${server.addr.port}`);
 * console.log(new TextDecoder().decode((await client.request("echo", "hi")).body));
 * client.close();
 * await server.close();
 * ```
 *
 * @module
 */
export { Client, type ClientOptions, connect, ConnectionClosedError } from "./core/client.ts";
export type { Reply, RequestOptions } from "./core/client.ts";
export { serve } from "./core/server.ts";
export type { ServeOptions, Server, ServerCounters } from "./core/server.ts";
export { httpStatusOf, JobError } from "./core/job.ts";
export type { Job, JobHandler, JobResult } from "./core/job.ts";
export type { HttpCounters, HttpOptions } from "./core/http_conn.ts";
export type { TransportCounters, TransportLimits } from "./core/transport.ts";
export type { WelcomeFrame } from "./protocol/ep_frames.ts";
export type { HttpLimits } from "./protocol/http_parser.ts";
export type { EpOptions } from "./core/ep_conn.ts";
export { ErrorCode } from "./protocol/errors.ts";
export { main } from "./core/cli.ts";

/** The version of ep. */
export const VERSION = "0.1.0";

if (import.meta.main) {
  const { main } = await import("./core/cli.ts");
  Deno.exit(await main(Deno.args));
}
