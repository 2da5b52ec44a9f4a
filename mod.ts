/**
 * ep: a Deno runtime for background micro services with a preemptive (pull) load balancer.
 *
 * One TCP port serves HTTP/1.1 and ep's binary protocol (EP), told apart by the first bytes.
 * Workers pull jobs from the balancer when they have a free slot, so a job never waits behind
 * a slow one while another worker sits idle.
 *
 * This module is the public TypeScript API: start a node ({@linkcode startNode}), call
 * services ({@linkcode connect}), write handlers ({@linkcode Handler}: an
 * {@linkcode EpRequest} and a {@linkcode HandlerContext} in, a {@linkcode HandlerResult}
 * out), and the errors a caller handles ({@linkcode JobError},
 * {@linkcode ConnectionClosedError}, {@linkcode ErrorCode}). Everything else in the package
 * is internal and may change. Run the module to get the `ep` command line.
 *
 * @example A balancer whose own handler threads run TypeScript services, called over EP
 * ```ts
 * import { connect, startNode } from "./mod.ts";
 * // cli/demo_services.ts exports `echo`, `json` and `sleep` handlers.
 * const node = await startNode({
 *   listen: { port: 0 },
 *   handlers: { module: new URL("./cli/demo_services.ts", import.meta.url), threads: 1 },
 * });
 * const client = await connect(`127.0.0.1:${node.addr!.port}`);
 * const reply = await client.request("echo", "hi");
 * console.assert(reply.status === 200 && new TextDecoder().decode(reply.body) === "hi");
 * client.close();
 * await node.close();
 * ```
 *
 * @example Handlers as functions: the whole request, a deadline, a call of another service
 * ```ts
 * import { type EpRequest, type HandlerContext, startNode } from "./mod.ts";
 * const node = await startNode({
 *   listen: { port: 0 },
 *   handlers: {
 *     functions: {
 *       price: (req: EpRequest) => String(Number(req.searchParams.get("qty") ?? req.text()) * 3),
 *       order: async (req: EpRequest, ctx: HandlerContext) => {
 *         const qty = req.searchParams.get("qty") ?? "1";
 *         const price = await ctx.call("price", qty, { timeoutMs: req.deadlineMs });
 *         return {
 *           headers: { "content-type": "application/json", "x-attempt": String(req.attempt) },
 *           body: JSON.stringify({ id: req.id, qty, price: new TextDecoder().decode(price.body) }),
 *         };
 *       },
 *     },
 *     concurrency: 4,
 *   },
 * });
 * const res = await fetch(`http://127.0.0.1:${node.addr!.port}/order?qty=2`, {
 *   headers: { "x-request-id": "o-1" },
 * });
 * console.assert(res.headers.get("x-attempt") === "1");
 * const order = await res.json();
 * console.assert(order.id === "o-1" && order.price === "6");
 * await node.close();
 * ```
 *
 * @example A module worker pulling from balancers elsewhere
 * ```ts ignore
 * import { startNode } from "./mod.ts";
 * const worker = await startNode({
 *   connect: ["10.0.0.1:7070", "10.0.0.2:7070"],
 *   handlers: { module: new URL("./services.ts", import.meta.url) },
 *   token: Deno.env.get("EP_TOKEN"),
 * });
 * Deno.addSignalListener("SIGTERM", () => worker.drain());
 * ```
 *
 * @module
 */
import { startNode as startNodeImpl, type ThreadScale } from "./core/node/node.ts";
import { TS_HANDLER_RUNTIME } from "./core/threads/pool.ts";
import { InlinePool } from "./core/threads/inline_pool.ts";
import type { Handlers } from "./core/threads/handler_context.ts";
import type { HandlerRequest as RuntimeRequest } from "./core/threads/runtime.ts";

export {
  Client,
  type ClientOptions,
  connect,
  type ConnectOptions,
  DEFAULT_RETRY_ON,
  type ReconnectOptions,
  type RetryKind,
  type RetryOptions,
} from "./core/net/client.ts";
export type { Reply, RequestOptions } from "./core/net/client.ts";
export type { Transport, TransportHandler } from "./core/net/transport.ts";
export type { WelcomeFrame } from "./protocol/ep_frames.ts";
export type { FieldsInit, HandlerReply, HandlerResult } from "./core/threads/runtime.ts";
export {
  createRequest,
  type EpRequest,
  type EpRequestInit,
  type RequestHeaders,
} from "./core/threads/ep_request.ts";
export type {
  CallOptions,
  Handler,
  HandlerContext,
  Handlers,
} from "./core/threads/handler_context.ts";
export { ConnectionClosedError, JobError, ServerUnreachableError } from "./core/errors.ts";
export { ErrorCode } from "./protocol/errors.ts";

/**
 * The version of ep.
 *
 * @example
 * ```ts
 * import { VERSION } from "./mod.ts";
 * console.assert(/^\d+\.\d+\.\d+$/.test(VERSION));
 * ```
 */
export const VERSION = "0.1.0";

/**
 * The job as a handler runtime receives it: bytes as they travel.
 *
 * @deprecated TypeScript handlers receive an {@linkcode EpRequest}, which still has
 * `service`, `meta` and `body` (its `id` is now the request id, a string).
 *
 * @example
 * ```ts
 * import type { HandlerRequest } from "./mod.ts";
 * const req: HandlerRequest = { id: 1, service: "echo", meta: new Uint8Array(), body: new Uint8Array() };
 * console.assert(req.service === "echo");
 * ```
 */
export type HandlerRequest = RuntimeRequest;

/**
 * Where a node's TypeScript services come from: a module on handler threads
 * ({@linkcode ModuleHandlers}), or functions on the main thread
 * ({@linkcode FunctionHandlers}).
 *
 * @example
 * ```ts
 * import type { NodeHandlers } from "./mod.ts";
 * const onThreads: NodeHandlers = { module: new URL("./services.ts", import.meta.url), threads: 2 };
 * const scaled: NodeHandlers = {
 *   module: new URL("./services.ts", import.meta.url),
 *   threads: { min: 1, max: 8 },
 *   targetWaitMs: 20,
 * };
 * const inline: NodeHandlers = { functions: { ping: () => "pong" }, concurrency: 8 };
 * console.assert("module" in onThreads && "functions" in inline);
 * ```
 */
export type NodeHandlers = ModuleHandlers | FunctionHandlers;

/**
 * Services from a module, run on handler threads (Web Workers): the module exports one
 * {@linkcode Handler} per service, by service name.
 *
 * @example
 * ```ts
 * import type { ModuleHandlers } from "./mod.ts";
 * const handlers: ModuleHandlers = { module: new URL("./services.ts", import.meta.url), threads: 2 };
 * console.assert(handlers.module instanceof URL);
 * ```
 */
export interface ModuleHandlers {
  /**
   * The module: a `URL`, or a string that is an absolute URL (`file:///srv/services.ts`) or
   * a path, resolved against the current directory (`Deno.cwd()`), not against your module.
   * Pass `new URL("./services.ts", import.meta.url)` to name a file next to your module.
   */
  module: string | URL;
  /**
   * Handler threads: a number, or bounds the pool grows and shrinks between as the load
   * changes: one more thread while a service's queue-wait p99 stays above `targetWaitMs`
   * (two seconds running), one fewer after ten seconds idle. It starts at `min`. Default:
   * the number of cores.
   */
  threads?: number | { min: number; max: number };
  /**
   * Bounds the jobs the threads run at once grow and shrink between, on the same rule as
   * `threads: { min, max }` (one slot more, or one fewer) without adding threads: for
   * handlers that mostly wait. It starts at `min`; `max` is at most `threads × concurrency`
   * (the default concurrency is then enough for `max`). Not with `threads: { min, max }`.
   */
  slots?: { min: number; max: number };
  /**
   * With `threads: { min, max }` or `slots`: the queue-wait p99 target of every service, ms.
   * Default 50.
   */
  targetWaitMs?: number;
  /** Jobs one thread runs at once (for async handlers). Default 1, or enough for `slots.max`. */
  concurrency?: number;
  /** Run-time caps of some services, in ms: their jobs are answered `timeout` past them. */
  timeoutsMs?: Readonly<Record<string, number>>;
  /**
   * Services whose handlers are idempotent, so that a balancer may hedge their jobs: send a
   * copy of one that runs long to another worker with a free slot now, the first answer
   * winning. `true`: after the service's recent p95 service time; a number: after that many
   * ms (1 to 4 294 967 294). The handler of a copy sees `req.attempt` 2.
   */
  hedge?: Readonly<Record<string, true | number>>;
  /** Not with `module`. */
  functions?: never;
}

/**
 * Services as functions, by service name, run on the main thread (a function cannot cross
 * to a Web Worker): the same {@linkcode EpRequest}, {@linkcode HandlerContext}, deadlines and
 * signals as on handler threads. The main thread also serves the sockets, so a function
 * that computes for long holds everything up: use them for handlers that mostly wait, and a
 * {@linkcode ModuleHandlers} module for work that computes.
 *
 * @example
 * ```ts
 * import { createRequest, type FunctionHandlers } from "./mod.ts";
 * const handlers: FunctionHandlers = {
 *   functions: { hello: (req) => `hello ${req.text()}` },
 *   concurrency: 16,
 * };
 * const ctx = { call: () => Promise.reject(new Error("unused")) };
 * console.assert(handlers.functions.hello(createRequest({ service: "hello", body: "ada" }), ctx) === "hello ada");
 * ```
 */
export interface FunctionHandlers {
  /** The handlers, by service name. */
  functions: Handlers;
  /** Jobs run at once (async handlers overlap their waits). Default 1. */
  concurrency?: number;
  /** Run-time caps of some services, in ms: their jobs are answered `timeout` past them. */
  timeoutsMs?: Readonly<Record<string, number>>;
  /**
   * Services whose handlers are idempotent, so that a balancer may hedge their jobs: send a
   * copy of one that runs long to another worker with a free slot now, the first answer
   * winning. `true`: after the service's recent p95 service time; a number: after that many
   * ms (1 to 4 294 967 294). The handler of a copy sees `req.attempt` 2.
   */
  hedge?: Readonly<Record<string, true | number>>;
  /** Not with `functions`. */
  module?: never;
  /** Not with `functions`: they run on the main thread. */
  threads?: never;
  /** Not with `functions`: they do not scale. */
  targetWaitMs?: never;
  /** Not with `functions`: they do not scale. */
  slots?: never;
}

/**
 * Another cluster's balancers, which handlers call by name:
 * `ctx.call(service, body, { upstream: "billing" })`.
 *
 * @example
 * ```ts
 * import type { Upstream } from "./mod.ts";
 * const billing: Upstream = { servers: ["10.0.0.5:7070", "10.0.0.6:7070"], token: "s3cret" };
 * console.assert(billing.servers.length === 2);
 * ```
 */
export interface Upstream {
  /** Its balancers (`host:port`): calls go to the first reachable, then fail over. */
  servers: string[];
  /** The client token its balancers require. */
  token?: string;
}

/**
 * Options of {@linkcode startNode}: listen (a balancer), connect (a module worker), or both.
 *
 * @example
 * ```ts
 * import type { NodeOptions } from "./mod.ts";
 * const balancer: NodeOptions = { listen: { port: 7070, hostname: "0.0.0.0" }, token: "s3cret" };
 * console.assert(balancer.listen?.port === 7070);
 * ```
 */
export interface NodeOptions {
  /** Become a balancer on this port (HTTP/1.1 and EP on one port; 0 picks a free one). */
  listen?: { port: number; hostname?: string };
  /** Become a module worker of these balancers (`host:port`). */
  connect?: string[];
  /** Services to run: a module on handler threads, or functions on the main thread. */
  handlers?: NodeHandlers;
  /** Other clusters handlers may call by name (`ctx.call(s, body, { upstream: name })`). */
  upstreams?: Readonly<Record<string, Upstream>>;
  /** The token workers present to balancers, and a balancer requires from workers. */
  token?: string;
  /** A token clients must present to this balancer. Default: none. */
  clientToken?: string;
  /** This worker's name in balancers' logs. */
  name?: string;
  /** Balancer tuning (see README's limits). */
  tuning?: {
    /** Jobs queued per service before new ones are refused `overloaded`. Default 10 000. */
    maxQueue?: number;
    /** Deadline of a job whose client gave none, in ms. Default 30 000. */
    defaultTimeoutMs?: number;
    /** Redeliveries of a job whose worker was lost. Default 1. */
    retries?: number;
    /** How long a job waits for a service's first worker, in ms. Default 5 000. */
    serviceGraceMs?: number;
    /** Jobs beyond its slots a worker may be handed. Default 4. */
    prefetch?: number;
  };
  /** Who may read `/_ep/` (status, metrics, stats): loopback only unless a token or public. */
  status?: { token?: string; public?: boolean };
  /**
   * What its services say of themselves, by name, shown at the balancer's `/_ep/services`
   * and by `ep services` (NATS micro's `$SRV.INFO` is the model); a module worker sends them
   * to its balancers.
   *
   * @example
   * ```ts ignore
   * await startNode({
   *   connect: ["127.0.0.1:7070"],
   *   handlers: { functions: { user: (req) => req.text() } },
   *   descriptions: { user: { description: "Users and logins", version: "1.4.0" } },
   * });
   * ```
   */
  descriptions?: Readonly<Record<string, { description?: string; version?: string }>>;
  /**
   * Send handlers' own error messages (a throw's message) to clients, for development.
   * Default false: a client gets `Handler failed (request <id>)` (HTTP 500 with
   * `x-request-id`, EP `handler_error`) and the message goes to the log with the request id.
   */
  exposeErrors?: boolean;
}

/**
 * A running node.
 *
 * @example
 * ```ts
 * import { startNode } from "./mod.ts";
 * const node = await startNode({ listen: { port: 0 } });
 * console.assert(node.addr !== null && node.addr.port > 0);
 * const health = await fetch(`http://127.0.0.1:${node.addr!.port}/_ep/health`);
 * console.assert(health.status === 200 && (await health.json()).status === "ok");
 * await node.close();
 * ```
 */
export interface Node {
  /** The balancer's bound address, when listening. */
  readonly addr: { hostname: string; port: number } | null;
  /** Stops taking work, finishes what is held (at most `graceMs`), then stops. */
  drain(graceMs?: number): Promise<void>;
  /** Reloads service code: new jobs go to new handler threads, no job fails. */
  reload(): Promise<void>;
  /** Stops at once. */
  close(): Promise<void>;
}

/**
 * Starts a balancer (`listen`), a module worker (`connect`), or a balancer whose own handler
 * threads serve services (`listen` with `handlers`, all-in-one).
 *
 * @example
 * ```ts
 * import { startNode } from "./mod.ts";
 * const node = await startNode({
 *   listen: { port: 0 },
 *   handlers: { module: new URL("./cli/demo_services.ts", import.meta.url), threads: 1 },
 * });
 * const res = await fetch(`http://127.0.0.1:${node.addr!.port}/echo`, { method: "POST", body: "hi" });
 * console.assert(res.status === 200 && await res.text() === "hi");
 * await node.close();
 * ```
 */
export async function startNode(options: NodeOptions): Promise<Node> {
  const h = options.handlers;
  const t = options.tuning ?? {};
  const functions = h && handlerFunctions(h);
  const scale = h && threadScale(h);
  const threads = h && typeof h.threads === "number" ? h.threads : undefined;
  const node = await startNodeImpl({
    listen: options.listen,
    connect: options.connect,
    token: options.token,
    clientToken: options.clientToken,
    name: options.name,
    prefetch: t.prefetch,
    balancer: {
      maxQueue: t.maxQueue,
      defaultTimeoutMs: t.defaultTimeoutMs,
      retries: t.retries,
      serviceGraceMs: t.serviceGraceMs,
    },
    observe: { access: { token: options.status?.token, public: options.status?.public } },
    upstreams: options.upstreams,
    descriptions: options.descriptions,
    exposeErrors: options.exposeErrors,
    handlers: h && {
      runtime: TS_HANDLER_RUNTIME,
      options: functions ? undefined : { handlers: moduleUrl(h.module!) },
      threads,
      scale,
      concurrency: h.concurrency ??
        (scale?.unit === "slots"
          ? Math.ceil(scale.max / (threads ?? navigator.hardwareConcurrency ?? 1))
          : undefined),
      timeouts: h.timeoutsMs && new Map(Object.entries(h.timeoutsMs)),
      hedge: h.hedge && hedgeMap(h.hedge),
      services: functions && Object.keys(functions),
      start: functions && ((o) =>
        InlinePool.start({
          handlers: functions,
          concurrency: o.perThreadConcurrency,
          queue: o.perThreadQueue,
          onCall: o.onCall,
        })),
    },
  });
  const addr = node.server?.addr;
  return {
    addr: addr ? { hostname: addr.hostname, port: addr.port } : null,
    drain: (graceMs) => node.drain(graceMs),
    reload: () => node.reload(),
    close: () => node.close(),
  };
}

/** The functions of `h`, or undefined for a module; a TypeError when it is neither or both. */
function handlerFunctions(h: NodeHandlers): Handlers | undefined {
  const hasModule = h.module !== undefined;
  const hasFunctions = h.functions !== undefined;
  if (hasModule === hasFunctions) {
    throw new TypeError(
      `Handlers need either a module or functions: "${hasModule ? "both" : "neither"}"`,
    );
  }
  const functions: unknown = h.functions;
  if (hasFunctions && (typeof functions !== "object" || functions === null)) {
    throw new TypeError(`Handler functions must be an object by service name: "${functions}"`);
  }
  return h.functions;
}

/**
 * The bounds and target of `threads: { min, max }` or `slots: { min, max }`, or undefined
 * for fixed counts.
 */
function threadScale(h: NodeHandlers): ThreadScale | undefined {
  const t = h.threads as unknown;
  const slots = h.slots as unknown;
  if (slots !== undefined) {
    if (typeof t === "object" && t !== null) {
      throw new TypeError(`Threads and slots cannot both scale: "threads: { min, max }"`);
    }
    if (typeof slots !== "object" || slots === null) {
      throw new TypeError(`Slots must be { min, max }: "${slots}"`);
    }
    const { min, max } = slots as { min: number; max: number };
    return { unit: "slots", min, max, targetWaitMs: h.targetWaitMs ?? 50 };
  }
  if (t === undefined || typeof t === "number") {
    if (h.targetWaitMs !== undefined) {
      throw new TypeError(
        `targetWaitMs needs threads: { min, max } or slots: { min, max }: "${h.targetWaitMs}"`,
      );
    }
    return undefined;
  }
  if (typeof t !== "object" || t === null) {
    throw new TypeError(`Threads must be a number or { min, max }: "${t}"`);
  }
  const { min, max } = t as { min: number; max: number };
  return { min, max, targetWaitMs: h.targetWaitMs ?? 50 };
}

/** `hedge` as the node takes it: ms, or null for the service's recent p95. */
function hedgeMap(hedge: Readonly<Record<string, true | number>>): Map<string, number | null> {
  const out = new Map<string, number | null>();
  for (const [service, v] of Object.entries(hedge)) {
    if (v === true) out.set(service, null);
    else if (Number.isInteger(v) && v >= 1 && v <= 0xffff_fffe) out.set(service, v);
    else {
      throw new TypeError(
        `Hedge of "${service}" must be true or whole milliseconds from 1 to 4294967294: "${v}"`,
      );
    }
  }
  return out;
}

function moduleUrl(m: string | URL): string {
  if (m instanceof URL) return m.href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(m)) return m; // already a URL
  const base = new URL(`file://${Deno.cwd().replace(/\/?$/, "/")}`);
  return new URL(m, base).href;
}

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
