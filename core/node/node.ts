/**
 * The roles a process plays, as functions: a balancer (listen), a module worker (connect),
 * or both at once (all-in-one: a balancer whose own handler threads serve services without
 * a TCP hop). The CLI, the Lua control scripts and library users all start roles here.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { Balancer, type BalancerObserver, type BalancerOptions } from "../balancer/balancer.ts";
import type { EpOptions } from "../net/ep_conn.ts";
import type { HttpOptions } from "../net/http_conn.ts";
import { LocalPoolProvider } from "../balancer/local_provider.ts";
import { workerHost } from "../balancer/worker_link.ts";
import { Monitor, type MonitorOptions } from "../observe/monitor.ts";
import { HandlerPool, type HandlerPoolOptions, TS_HANDLER_RUNTIME } from "../threads/pool.ts";
import { serve, type Server } from "../net/server.ts";
import { WorkerNode } from "./worker.ts";
import { LocalLink } from "./_local_link.ts";
import { Caller, type CallTarget } from "./_caller.ts";
import type { JobPool, PoolCall, PoolCallReply, ScalablePool } from "../threads/pool_types.ts";
import type { ServiceDescription } from "../balancer/provider.ts";
import { DEFAULT_PREFETCH } from "../../protocol/ep_frames.ts";
import {
  AutoscaleLoop,
  Autoscaler,
  type ScalePolicy,
  type ScaleTarget,
  type ServiceTarget,
  type WaitWindow,
} from "./autoscaler.ts";
import { QueueWaitEstimate } from "./_wait_estimate.ts";

const log = getLogger(["ep", "node"]);

/** Where handlers come from: a runtime module for the pool and its options. */
export interface HandlerSource {
  /** URL of the handler runtime module. Default: the TypeScript runtime. */
  runtime?: string;
  /**
   * Options for the runtime; for the TypeScript runtime `{ handlers: "<module URL>" }`. A
   * function gets the balancer's bound address (when listening) and returns them.
   */
  options: unknown | ((listening: Deno.NetAddr | null) => unknown);
  /**
   * Handler threads (with `scale` of threads: where it starts, within its bounds). Default:
   * the number of cores, or `scale.min`.
   */
  threads?: number;
  /**
   * Grow and shrink the handler threads between `min` and `max` on the queue wait of the
   * services' jobs (the rule is in `autoscaler.ts`).
   */
  scale?: ThreadScale;
  /** Jobs one thread runs at once (async handlers). Default 1. */
  concurrency?: number;
  /** Run-time caps of some services in ms: their handlers are interrupted past it. */
  timeouts?: ReadonlyMap<string, number>;
  /**
   * The services these handlers serve, when known before they start (a control script's
   * `ep.service` names, a map of functions' keys): in the start-up grace a balancer lets
   * jobs for them wait while its handler threads start, and refuses other names at once.
   * Absent: every name waits in the start-up grace until the handlers have started.
   */
  services?: readonly string[];
  /**
   * Services whose handlers are idempotent, so that a balancer may hedge their jobs (send a
   * copy of one that runs long to another worker; SPEC.md §9.10): after that many ms, or
   * (null) after the service's recent p95 service time. Told to the balancers this node
   * pulls from (REGISTER), and to its own balancer when it listens (unless
   * `balancer.hedge` names the service: that wins).
   */
  hedge?: ReadonlyMap<string, number | null>;
  /**
   * Starts the pool instead of `HandlerPool.start`, given the same options: `InlinePool`
   * runs a map of functions on this thread.
   */
  start?: (options: HandlerPoolOptions) => Promise<JobPool>;
}

/**
 * Handler threads that follow the load: between `min` and `max`, one more when a service's
 * queue-wait p99 stays above its target, one fewer when they sit idle (`autoscaler.ts`).
 *
 * Where the waits come from: a node that listens measures them in its balancer (arrival to
 * dispatch, each job); a module worker estimates them from the queue depth every REQUEST
 * carries (`_wait_estimate.ts`); a node that does both uses both.
 */
export interface ThreadScale {
  /**
   * What grows and shrinks: handler threads (the default), or the slots the pool offers
   * (the jobs it runs at once) on a fixed number of threads, one slot at a time: its
   * `threads × concurrency` slots are the most, `min` of them are offered at start.
   */
  unit?: "threads" | "slots";
  /** Fewest threads, or slots (≥ 1). */
  min: number;
  /** Most threads, or slots (at most `threads × concurrency`). */
  max: number;
  /**
   * Queue-wait p99 target in ms for every service, or by service with the most threads each
   * may ask for (services not named do not drive scaling).
   */
  targetWaitMs: number | ReadonlyMap<string, ServiceTarget>;
  /** Time after a change before the next growth. Default 2 000 ms. */
  upCooldownMs?: number;
  /** Quiet time before a thread is retired. Default 10 000 ms. */
  idleMs?: number;
}

/** Options for {@linkcode startNode}. */
export interface NodeOptions {
  /** Become a balancer listening here. */
  listen?: { port: number; hostname?: string };
  /** Become a worker of these balancers (`host:port`). */
  connect?: string[];
  /** Services to run on this process's handler threads. */
  handlers?: HandlerSource;
  /** Token workers present (and a balancer requires from workers). */
  token?: string;
  /** Token clients must present to this balancer. */
  clientToken?: string;
  /** Balancer tuning. */
  balancer?: BalancerOptions;
  /** Jobs beyond its slots a worker may be handed. Default 4. */
  prefetch?: number;
  /** HTTP options of the balancer's port. */
  http?: HttpOptions;
  /** EP options of the balancer's port (token options above take precedence). */
  ep?: EpOptions;
  /** The worker's name in balancer logs. */
  name?: string;
  /** The balancer's status page, metrics, health and access log (see `core/observe/monitor.ts`). */
  observe?: MonitorOptions;
  /** Other clusters handlers may call by name (`ep.call(s, body, { upstream = name })`). */
  upstreams?: Readonly<Record<string, CallTarget>>;
  /**
   * What its services say of themselves, by name (`{ echo: { description, version } }`):
   * shown at the balancer's `/_ep/services` and by `ep services` (a worker sends them to
   * its balancers in its STATS, SPEC.md §6.7).
   */
  descriptions?: Readonly<Record<string, ServiceDescription>>;
  /**
   * Send handlers' own error messages to clients (development). Default false: a client gets
   * `Handler failed (request <id>)` and the message goes to the log with the request id.
   */
  exposeErrors?: boolean;
  /**
   * Also fed each job's queue wait, as the autoscaler is (a child worker process reports
   * them to the parent that scales it, `children.ts`).
   */
  waits?: Pick<WaitWindow, "observe">;
}

/** A running process role. */
export interface Node {
  /** The balancer, when listening. */
  readonly balancer: Balancer | null;
  /** The listening server, when a balancer. */
  readonly server: Server | null;
  /** The worker, when connected to balancers. */
  readonly worker: WorkerNode | null;
  /** The handler threads (or the pool of functions), when running services. */
  readonly pool: JobPool | null;
  /** The balancer's monitor (metrics, stats, health, access log), when listening. */
  readonly monitor: Monitor | null;
  /** What grows and shrinks the handler threads, with `handlers.scale`. */
  readonly autoscaler: AutoscaleLoop | null;
  /**
   * Stops taking work, finishes what is held, and stops, within `graceMs` (default 30 s):
   * a balancer stops accepting, tells its clients to go elsewhere (EP DRAIN, HTTP
   * `connection: close`) and answers what they sent; a worker tells its balancers (DRAIN)
   * and answers the jobs it holds.
   */
  drain(graceMs?: number): Promise<void>;
  /**
   * Reloads service code: new handler threads take new jobs while jobs in flight finish on
   * the old ones, which then stop. No job fails.
   */
  reload(): Promise<void>;
  /** Stops at once. */
  close(): Promise<void>;
  /**
   * Calls a service the way handlers' `ep.call` does: through this node's balancer when it
   * listens, else the balancers it pulls from, or the named `upstream`. Rejects with a
   * `JobError`.
   */
  call(call: PoolCall): Promise<PoolCallReply>;
}

/**
 * Starts a balancer, a worker, or both (all-in-one), with the handler threads when there
 * are handlers to run.
 *
 * @example
 * ```ts ignore
 * import { startNode } from "./node.ts";
 * const node = await startNode({
 *   listen: { port: 7070 },
 *   handlers: { options: { handlers: new URL("./my_services.ts", import.meta.url).href } },
 * });
 * ```
 */
export async function startNode(options: NodeOptions): Promise<Node> {
  let server: Server | null = null;
  // Handlers' calls: through this node's balancer when it listens (set below), else through
  // the balancers it pulls from; upstreams by name.
  let caller: Caller | null = null;
  const calls = () =>
    caller ??= new Caller(
      balancer,
      options.connect?.length
        ? { servers: options.connect, token: options.clientToken ?? options.token }
        : null,
      options.upstreams,
    );
  const scale = options.handlers?.scale;
  // Checked before anything starts.
  const policy = scale ? scalePolicy(scale) : null;
  let scaling: AutoscaleLoop | null = null;
  // Where each job's queue wait goes: the autoscaler, and `options.waits`.
  const waits = policy || options.waits
    ? (service: string, waitMs: number) => {
      scaling?.waits.observe(service, waitMs);
      options.waits?.observe(service, waitMs);
    }
    : null;
  const startPool = (
    h: HandlerSource,
    threads = startThreads(h),
    slotLimit = h.scale?.unit === "slots" ? h.scale.min : undefined,
  ): Promise<JobPool> =>
    (h.start ?? HandlerPool.start)({
      slotLimit,
      onCall: (call) => calls().call(call),
      module: h.runtime ?? TS_HANDLER_RUNTIME,
      moduleOptions: typeof h.options === "function" ? h.options(server?.addr ?? null) : h.options,
      threads,
      perThreadConcurrency: h.concurrency ?? 1,
      // A module worker's prefetched jobs wait on the handler threads, which start the next
      // one the moment a job ends (no round trip through this thread).
      perThreadQueue: options.listen ? 0 : options.prefetch ?? DEFAULT_PREFETCH,
      // Room for the largest HTTP body (1 MiB) with headers: a message may take half a ring.
      ringBytes: 4 << 20,
    });
  const timeouts = options.handlers?.timeouts ?? new Map<string, number>();
  const described = new Map(Object.entries(options.descriptions ?? {}));
  let pool: JobPool | null = null;
  let local: LocalPoolProvider | null = null;
  let balancer: Balancer | null = null;
  let monitor: Monitor | null = null;
  if (options.listen) {
    const m = monitor = new Monitor(options.observe);
    const own = options.balancer;
    // Its own handlers' services are coming (the threads start after it listens).
    const declared = options.handlers ? options.handlers.services ?? "any" : [];
    const hedge: Record<string, { ms?: number }> = {};
    for (const [name, ms] of options.handlers?.hedge ?? []) hedge[name] = ms === null ? {} : { ms };
    // The monitor sees every job; a caller's observer and internal pages still run; the
    // autoscaler learns each job's queue wait.
    const observers: BalancerObserver[] = [m];
    if (own?.observer) observers.push(own.observer);
    if (waits) observers.push({ job: (s, _o, waitMs) => waits(s, waitMs) });
    balancer = new Balancer({
      ...own,
      expectServices: expected(own?.expectServices, declared),
      hedge: { ...hedge, ...own?.hedge },
      observer: observers.length === 1 ? m : {
        job: (...a) => {
          for (const o of observers) o.job(...a);
        },
        failed: (f) => {
          for (const o of observers) o.failed?.(f);
        },
      },
      internal: own?.internal ? (job) => own.internal!(job) ?? m.internal(job) : m.internal,
    });
    server = serve({
      port: options.listen.port,
      hostname: options.listen.hostname,
      handler: balancer.handler,
      http: options.http,
      ep: {
        ...options.ep,
        workers: workerHost(m.watchWorkers(balancer)),
        token: options.token ?? options.ep?.token,
        clientToken: options.clientToken ?? options.ep?.clientToken,
        prefetch: options.prefetch ?? options.ep?.prefetch,
        stats: () => m.snapshot(),
        // STATS_REQUEST and ADMIN follow the access rule of /_ep/stats.
        statsAccess: options.ep?.statsAccess ?? m.access,
        admin: options.ep?.admin ?? ((json) => m.adminJson(json)),
      },
    });
    try {
      if (options.handlers) pool = await startPool(options.handlers);
    } catch (err) {
      balancer.close();
      await server.close();
      throw err;
    }
    if (pool && !options.connect?.length) {
      local = new LocalPoolProvider(pool, balancer, timeouts, described, options.exposeErrors);
      balancer.addProvider(local);
      // Their names are known now: other names wait no longer.
      balancer.expectServices(expected(own?.expectServices, pool.services));
    }
    m.attach({ balancer, server, pool: () => pool });
    // Ready once the handler threads (and the scripts they load) have started.
    m.check("handlers", () => !options.handlers || pool !== null);
    log.info("Balancer listening on {host}:{port}", {
      host: options.listen.hostname ?? "127.0.0.1",
      port: server.addr.port,
    });
  }
  if (!options.listen && options.handlers) pool = await startPool(options.handlers);
  let worker: WorkerNode | null = null;
  const close = async () => {
    scaling?.stop();
    caller?.close();
    monitor?.close();
    worker?.close();
    balancer?.close();
    await server?.close();
    await pool?.close({ drain: false });
  };
  if (options.connect?.length) {
    if (!pool) throw new TypeError("A worker needs handlers to run");
    worker = WorkerNode.start({
      balancers: options.connect,
      pool,
      token: options.token,
      name: options.name,
      prefetch: options.prefetch,
      timeouts,
      descriptions: options.descriptions,
      exposeErrors: options.exposeErrors,
      hedge: options.handlers?.hedge,
      observer: waits ? new QueueWaitEstimate(waits) : undefined,
    });
    if (balancer) {
      // Listen and connect: this balancer is one more source of the worker's jobs, in the
      // same slot budget as the balancers it pulls from (no slot promised twice).
      const link = new LocalLink(balancer, worker, pool.services, pool.maxMessageBytes);
      link.descriptions = described;
      balancer.addProvider(link);
      worker.attach(link);
      balancer.expectServices(expected(options.balancer?.expectServices, pool.services));
    }
  }
  if (policy && pool) {
    if (!isScalable(pool)) {
      await close();
      throw new TypeError("Scaling needs handler threads, not functions on the main thread");
    }
    const most = pool.threads * pool.perThreadConcurrency;
    if (scale!.unit === "slots" && scale!.max > most) {
      await close();
      throw new RangeError(
        `Slot bounds must stay within the threads' slots (${most}): "${scale!.max}"`,
      );
    }
    const w = worker;
    const threads = () => pool as JobPool & ScalablePool;
    const target: ScaleTarget = {
      get size() {
        return threads().scaleSize;
      },
      get starting() {
        return threads().threadsStarting;
      },
      get unitSlots() {
        return threads().scaleStep;
      },
      get busy() {
        return threads().jobsInFlight;
      },
      // A worker registers its new slots with its balancers, and retires a thread (or a slot)
      // only once the credit it granted fits without it.
      grow: (reason) => void (w ? w.scaleUp(reason) : threads().grow(reason)),
      shrink: (reason) => void (w ? w.scaleDown(reason) : threads().retire(reason)),
      cancelShrink: () => w?.cancelScaleDown(),
    };
    scaling = new AutoscaleLoop(new Autoscaler(target, policy), target, {
      accept: (s) => policy.target(s) !== undefined,
    });
    scaling.start();
  }
  const reload = async () => {
    if (!options.handlers || !pool) return;
    // A scaled pool starts again with the threads (or the slot limit) it has now.
    const scaled = scale && isScalable(pool) ? pool : null;
    const fresh = await startPool(
      options.handlers,
      scaled && scaled.scaleUnit === "threads" ? scaled.threads : startThreads(options.handlers),
      scaled && scaled.scaleUnit === "slots" ? scaled.scaleSize : undefined,
    );
    const old = pool;
    pool = fresh;
    if (worker) await worker.replacePool(fresh);
    if (balancer && local) {
      const retiring = local;
      local = new LocalPoolProvider(fresh, balancer, timeouts, described, options.exposeErrors);
      balancer.addProvider(local);
      retiring.draining = true;
      while (balancer.heldBy(retiring) > 0) await new Promise((r) => setTimeout(r, 10));
      balancer.removeProvider(retiring, "reloaded");
      await old.close({ drain: true });
    }
    log.info("Service code reloaded");
  };
  return {
    balancer,
    server,
    worker,
    get pool() {
      return pool;
    },
    reload,
    monitor,
    autoscaler: scaling,
    async drain(graceMs = 30_000) {
      scaling?.stop();
      const end = Date.now() + graceMs;
      const left = () => Math.max(0, end - Date.now());
      // The balancer's clients first: what they sent is still dispatched and answered.
      await server?.drain(graceMs);
      monitor?.close();
      if (worker) await worker.drain(left());
      caller?.close();
      balancer?.close();
      await server?.close();
      await pool?.close({ drain: true, timeoutMs: left() });
    },
    close,
    call: (c) => calls().call(c),
  };
}

/** The union of two `expectServices` values ("any" wins). */
function expected(
  a: Iterable<string> | "any" | undefined,
  b: Iterable<string> | "any",
): Iterable<string> | "any" {
  if (a === "any" || b === "any") return "any";
  return new Set([...(a ?? []), ...b]);
}

/** The threads a pool starts with: `threads`, within the scale bounds when scaling. */
function startThreads(h: HandlerSource): number | undefined {
  const s = h.scale;
  if (!s || s.unit === "slots") return h.threads;
  return Math.min(s.max, Math.max(s.min, h.threads ?? s.min));
}

function isScalable(pool: JobPool): pool is JobPool & ScalablePool {
  return typeof (pool as Partial<ScalablePool>).grow === "function";
}

function scalePolicy(s: ThreadScale): ScalePolicy {
  const what = s.unit === "slots" ? "Slot" : "Thread";
  if (!(Number.isInteger(s.min) && Number.isInteger(s.max) && s.min >= 1 && s.max >= s.min)) {
    throw new RangeError(
      `${what} bounds must be integers with 1 <= min <= max: "${s.min}–${s.max}"`,
    );
  }
  const most = s.unit === "slots" ? 0xffff : 1024;
  if (s.max > most) throw new RangeError(`${what} bounds must stay within ${most}: "${s.max}"`);
  const targets = s.targetWaitMs;
  if (typeof targets === "number" && !(targets > 0)) {
    throw new RangeError(`Target wait must be a positive number of ms: "${targets}"`);
  }
  const all: ServiceTarget | undefined = typeof targets === "number"
    ? { waitMs: targets, max: s.max }
    : undefined;
  return {
    min: s.min,
    max: s.max,
    target: (service) => all ?? (targets as ReadonlyMap<string, ServiceTarget>).get(service),
    upCooldownMs: s.upCooldownMs,
    idleMs: s.idleMs,
  };
}
