/**
 * The preemptive balancer: one bounded FIFO queue per service, served by whoever is free.
 *
 * ```
 * job arrives for service S
 *   a provider serving S has credit (a free slot)  -> dispatch now
 *   otherwise                                      -> append to S's queue (bounded)
 * a provider gains credit (it answered, or granted more)
 *   the oldest waiting job among its services (highest priority first) -> dispatch to it
 * ```
 *
 * A *provider* is anything with slots for some services: a remote module worker over EP
 * (`worker_link.ts`) or this process's own handler-thread pool (`LocalPoolProvider`); its
 * contract is in `provider.ts`. The dispatcher sees both the same way, and runs on the main
 * thread without locks. Which service a job is for (or whether it is for ep itself, under
 * `/_ep/`) the balancer's {@linkcode Router} decides (`router.ts`).
 *
 * Prefetch: a provider may grant more credit than it has slots (the extra jobs wait in the
 * worker, hiding the dispatch round trip). The balancer uses that extra credit only when
 * the service's queue holds `prefetchDepth` (0.5) jobs per provider serving it, so under
 * normal load every job still waits in the one central queue (the M/G/k discipline that
 * gives the low tail) and only under saturation are workers kept busy back to back. Of the
 * extra credit it uses one job's worth always, and more only while the jobs waiting in the
 * worker would take at most `prefetchBudgetMs` (3 ms) by the service's recent turnaround
 * (dispatch to answer, shared among the jobs that waited in the worker): short jobs are
 * batched, long ones stay in the central queue, where the first worker actually free
 * takes them.
 *
 * Hedging (SPEC.md §9.10): a job of a service marked idempotent (the balancer's `hedge`
 * option, a worker's REGISTER) or whose request said `ep-hedge: 1`, still running after the
 * service's recent p95 service time (or its fixed delay), is copied to another provider
 * that has a free slot *now*: the first answer wins, the other copy is cancelled. At most
 * one copy per job, and at most `hedgeBudget` (5 %) of a service's last 200 jobs, so
 * hedging cannot double the load. The copy goes out with `attempt` one more than the
 * original's and `ep-hedge: 1`.
 *
 * Nothing is lost silently: every job is answered exactly once, with its result or an
 * explicit error (overloaded, no_service, timeout, worker_lost). A job whose client went
 * away (its connection ended, or it sent CANCEL) is not dispatched any more: a queued one
 * is dropped (counted `cancelled`), a dispatched one is cancelled onward to its worker.
 *
 * Nothing is kept for nothing either. A step that takes a resource gives it back when it
 * fails: a dispatch the provider refuses (it throws) leaves the job's held entry, the
 * provider's credit and the job's attempt count as they were, and answers the job once
 * (with the provider's {@linkcode JobError}, or `internal` for an unexpected failure, which
 * is logged). A job that times out while a provider runs it is answered at once and its
 * body and headers are let go (the provider's slot stays counted until it answers). A
 * provider that leaves a job unanswered `cancelGraceMs` past its deadline (and the CANCEL
 * sent then) ignores deadlines and CANCEL, which no honest worker does: it is cut off and
 * its other jobs are redelivered. Services no provider ever served exist only while jobs
 * wait for them in the start-up grace, and at most `maxPendingServices` of them at once.
 *
 * Unknown services: a job for a service no provider serves waits for one only when one is
 * known to be coming: a provider served it before (a worker restarting: it waits up to
 * `serviceGraceMs`), or the balancer is in its start-up grace and expects the service (its
 * own handlers' services, which start after it listens, the services of prefix routes, and
 * `expectServices`). Before any worker connected, nothing else is known to be coming: any
 * other name (a mistyped path) is answered `no_service` at once.
 *
 * Time is the balancer's clock (`BalancerOptions.now`, `performance.now()` by default). The
 * sweep that expires deadlines and graces runs only when something can be due, never on a
 * period while the balancer is idle or busy (each timer wake-up costs CPU on a busy
 * machine): at the earliest deadline of a queued or held job, the grace of jobs queued for
 * a service with no provider, a drain or cancel grace; `sweepIntervalMs` (10 ms) after a
 * job's origin tells that its client went away (`JobOrigin.watch`: the HTTP and EP
 * connections do); and, for jobs whose origin cannot tell, every `sweepIntervalMs` while
 * they are queued and every {@linkcode HELD_SWEEP_MS} while they are held. Or when the
 * caller says ({@linkcode Balancer.sweep}): `balancer_test.ts` pins every rule above with a
 * fake provider and a fake clock.
 *
 * Over 600 lines on purpose: the class is one state machine (queues, held jobs, credit,
 * counters) whose rules share every invariant above; its options and report types stay
 * beside it, and so do the admin operations (disable, drain, enable, setMaxQueue), which
 * change the same queues and credit. Hedging's policy (a service's delay, its candidates,
 * which is due or the longest overdue, the budget window) is `_hedging.ts`, pure logic
 * unit-tested there; what of hedging stays here touches the balancer's state: picking a
 * provider with a free slot, sending the copy, the hedge timer, and settling the twin.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "../../protocol/errors.ts";
import { NOT_APPLICABLE } from "../../protocol/ep_frames.ts";
import { Deque } from "./_deque.ts";
import { admitted, statusAccess } from "../net/access.ts";
import { type Job, JobError, type JobHandler, type JobResult, requestIdOf } from "../job.ts";
import { UnknownServiceError, UnknownWorkerError } from "../errors.ts";
import { jobRingBytes, jobRingBytesBound } from "../ep_limits.ts";
import type { Provider, ProviderStats, QueuedJob } from "./provider.ts";
import { HEDGE_WINDOW, ServiceHedging } from "./_hedging.ts";
import { type EndpointHandler, type PrefixRoute, type RouteFunction, Router } from "./router.ts";

const log = getLogger(["ep", "balancer"]);
/**
 * How often the sweep runs while jobs whose origin cannot tell of its abandonment (no
 * `JobOrigin.watch`) are held: it sends CANCEL onward for jobs whose client left (deadlines,
 * drain and cancel graces have their own times).
 */
export const HELD_SWEEP_MS = 100;
/** How deep a provider that limits job sizes looks into a queue for a job it takes. */
const FIT_SCAN = 64;
export { HEDGE_WINDOW };
const EMPTY_BODY = new Uint8Array(0);

/**
 * How a service's jobs are hedged (SPEC.md §9.10): a copy goes to another provider with a
 * free slot once a job has run `ms`, or, without `ms`, the service's recent p95 service
 * time (known after its first 20 answers).
 *
 * @example
 * ```ts
 * import type { HedgeOptions } from "./balancer.ts";
 * const after50: HedgeOptions = { ms: 50 };
 * console.assert(after50.ms === 50);
 * ```
 */
export interface HedgeOptions {
  /** Fixed delay, ms (≥ 1); absent: the service's recent p95 service time. */
  ms?: number;
}

/** Options for {@linkcode Balancer}. */
export interface BalancerOptions {
  /** Queued jobs per service before new ones are refused `overloaded`. Default 10 000. */
  maxQueue?: number;
  /** Deadline of a job whose client gave none, in ms. Default 30 000. */
  defaultTimeoutMs?: number;
  /**
   * Services that no provider has served yet and that jobs wait for (in the start-up
   * grace), at once. A job for one more such service is refused `no_service`. Default 100.
   */
  maxPendingServices?: number;
  /**
   * How long after a running job's deadline (when it is answered `timeout` and its provider
   * is sent CANCEL) the provider may still leave it unanswered. Past it the provider is cut
   * off ({@linkcode Provider.evict}). Default 10 000 ms.
   */
  cancelGraceMs?: number;
  /** Redeliveries of a job whose provider was lost. Default 1. */
  retries?: number;
  /**
   * Services whose jobs may be hedged: their handlers are idempotent (`ep.service(name,
   * file, { hedge = true })`). A worker can say so too (REGISTER, SPEC.md §6.3), and a
   * request (`ep-hedge: 1`, or `0` for never). These options win over a worker's delay.
   */
  hedge?: Readonly<Record<string, HedgeOptions>>;
  /**
   * The share of a service's jobs that may be hedged, over its last {@linkcode HEDGE_WINDOW}
   * jobs. Default 0.05; 0 turns hedging off.
   */
  hedgeBudget?: number;
  /**
   * How long a job may wait for a provider when its service has none but one is known to be
   * coming: a service a provider served before (a worker restarting), or, in the first
   * `serviceGraceMs` after start, an expected one ({@linkcode BalancerOptions.expectServices},
   * the services of prefix routes). Any other name is answered `no_service` at once.
   * Default 5 000 ms; 0 answers `no_service` at once always.
   */
  serviceGraceMs?: number;
  /**
   * Services whose providers are known to be coming although none has attached yet (this
   * process's own handler threads, which start after the balancer listens; a deployment's
   * workers): in the start-up grace, jobs for them wait for their first provider. `"any"`:
   * every name waits in the start-up grace (handlers whose names are not known before they
   * start; narrow it with {@linkcode Balancer.expectServices} once they are). The services
   * of `routes` are always expected. Default: none.
   */
  expectServices?: Iterable<string> | "any";
  /**
   * Extra (prefetch) credit is used only when a service's queue holds at least this many
   * jobs per provider serving it. Default 0.5: measured side by side on four one-slot Lua
   * workers (BENCHMARKS.md), 2 left the constant-job cells' tails ≈ 2× longer (a worker
   * waits a round trip for each next job) and 0.25 hurt the 50 % cells.
   */
  prefetchDepth?: number;
  /**
   * Beyond one prefetched job per provider, more are handed only while they would wait in
   * the provider at most this long, judged by the service's recent turnaround. Default 3;
   * 0 limits prefetch to one job per provider.
   */
  prefetchBudgetMs?: number;
  /**
   * HTTP path prefixes and their services (`ep.route(prefix, service)`): the longest
   * matching prefix wins, before {@linkcode BalancerOptions.route}.
   */
  routes?: readonly PrefixRoute[];
  /** Maps an HTTP job to a service; `undefined` falls back to the default route. */
  route?: RouteFunction;
  /** Told about every job answered or refused (metrics, access log). */
  observer?: BalancerObserver;
  /**
   * The clock, in milliseconds, that arrivals, deadlines, graces, turnaround and drain
   * deadlines are read from. Default `performance.now()`. A balancer given another clock
   * (tests) must be given providers that read the same one (see `provider.ts`), and its
   * readings must stay above 0 (a job's `dispatched` of 0 means "not dispatched").
   */
  now?: () => number;
  /**
   * How soon, in ms, the balancer runs {@linkcode Balancer.sweep} by itself after a job's
   * client went away, and how often while jobs whose origin cannot tell of that are queued
   * (see the module docs for the rest of the time). Default 10; 0: never, the caller runs it
   * (tests with their own clock).
   */
  sweepIntervalMs?: number;
  /**
   * Answers `/_ep/...` requests (health, stats); default: health to everyone, stats to
   * loopback peers only.
   */
  internal?: EndpointHandler;
}

/** How a job ended, as metrics and logs name it. */
export type Outcome =
  | "ok"
  | "error"
  | "timeout"
  | "overloaded"
  | "no_service"
  | "worker_lost"
  | "shutting_down"
  | "cancelled";

/** Receives every job's outcome and timings. */
export interface BalancerObserver {
  /**
   * A job was answered or refused. `queueWaitMs` is the time from arrival to dispatch (or to
   * the answer, for a job never dispatched; NaN when refused at once); `serviceMs` the time
   * from dispatch to answer (NaN when never dispatched); `provider` who ran it; `job` the
   * request and `answer` what it was answered (for the access log: client, method, path,
   * status, bytes, request id).
   */
  job(
    service: string,
    outcome: Outcome,
    queueWaitMs: number,
    serviceMs: number,
    provider: string | null,
    job?: Job,
    answer?: JobResult | JobError,
  ): void;
  /**
   * A job was answered with anything but a result (every outcome but `ok`), after
   * {@linkcode BalancerObserver.job}: what the client was told, for a log of recent errors.
   */
  failed?(job: FailedJob): void;
}

/** A job answered with an error, as {@linkcode BalancerObserver.failed} is told. */
export interface FailedJob {
  /** The service it was for. */
  service: string;
  /** How it ended. */
  outcome: Outcome;
  /** The EP error code the client got. */
  code: number;
  /** The message the client got. */
  message: string;
  /** Its request id, when it had one. */
  requestId: string | null;
  /** The provider that answered it, or null (refused or expired before any ran it). */
  provider: string | null;
  /** The error itself (its `cause` may hold what the client was not told). */
  error: JobError;
}

/**
 * What an operator set on a provider (`ep disable`, `ep drain`): out of rotation until
 * enabled (`disabled`), or leaving (`draining`; the jobs it holds finish, or are taken back
 * after the drain's grace).
 */
export type AdminState = "disabled" | "draining";

/**
 * The limits a balancer runs with (its options, defaults filled in).
 *
 * @example
 * ```ts
 * import { Balancer } from "./balancer.ts";
 * const b = new Balancer({ maxQueue: 50 });
 * console.assert(b.limits().maxQueue === 50 && b.limits().retries === 1);
 * b.close();
 * ```
 */
export interface BalancerLimits {
  /** Queued jobs per service before new ones are refused `overloaded` (services may differ). */
  maxQueue: number;
  /** Deadline of a job whose client gave none, ms. */
  defaultTimeoutMs: number;
  /** Redeliveries of a job whose provider was lost. */
  retries: number;
  /** How long a job waits for a provider known to be coming, ms; also the start-up grace. */
  serviceGraceMs: number;
  /** How long a provider may leave a timed-out job unanswered before it is cut off, ms. */
  cancelGraceMs: number;
  /** Services never served that jobs may wait for at once. */
  maxPendingServices: number;
  /** Jobs queued per provider before prefetch credit is used. */
  prefetchDepth: number;
  /** How long prefetched jobs may wait in a provider beyond the first, ms. */
  prefetchBudgetMs: number;
}

/**
 * The outcome an EP error code stands for.
 *
 * @example
 * ```ts
 * import { outcomeOf } from "./balancer.ts";
 * console.assert(outcomeOf(104) === "worker_lost");
 * ```
 */
export function outcomeOf(code: number): Outcome {
  switch (code) {
    case ErrorCode.TIMEOUT:
      return "timeout";
    case ErrorCode.OVERLOADED:
      return "overloaded";
    case ErrorCode.NO_SERVICE:
      return "no_service";
    case ErrorCode.WORKER_LOST:
      return "worker_lost";
    case ErrorCode.SHUTTING_DOWN:
      return "shutting_down";
    case ErrorCode.CANCELLED:
      return "cancelled";
    default:
      return "error";
  }
}

const COUNTER: Record<Outcome, keyof ServiceCounters> = {
  ok: "ok",
  error: "error",
  timeout: "timeout",
  overloaded: "overloaded",
  no_service: "noService",
  worker_lost: "workerLost",
  shutting_down: "error",
  cancelled: "cancelled",
};

/** Per-service counters. */
export interface ServiceCounters {
  /** Jobs answered with a reply. */
  ok: number;
  /** Jobs answered with a handler or system error. */
  error: number;
  /** Jobs whose deadline passed, queued or running. */
  timeout: number;
  /** Jobs refused because the queue was full. */
  overloaded: number;
  /** Jobs refused because no provider served the service. */
  noService: number;
  /** Jobs failed after their provider was lost and the retry budget was spent. */
  workerLost: number;
  /** Jobs dispatched again after their provider was lost. */
  redelivered: number;
  /**
   * Jobs answered `cancelled` because their client went away or cancelled: dropped from the
   * queue, or taken back from a worker before they started.
   */
  cancelled: number;
  /** Hedged copies sent (one per hedged job at most; SPEC.md §9.10). */
  hedged: number;
  /** Hedged jobs whose copy answered first. */
  hedgeWins: number;
}

interface ServiceState {
  name: string;
  /** Queues by priority, highest first. */
  levels: { priority: number; queue: Deque<QueuedJob> }[];
  size: number;
  providers: Provider[];
  everServed: boolean;
  counters: ServiceCounters;
  /** Recent dispatch-to-answer time per job, ms (EWMA, see `#learnTurnaround`); NaN: none yet. */
  turnaroundMs: number;
  /** Its own queue bound (`setMaxQueue`), or undefined: the balancer's. */
  maxQueue: number | undefined;
  /**
   * Its hedging policy (`_hedging.ts`): its recent service times and delay, its running jobs
   * that are hedge candidates, its budget window.
   */
  hedging: ServiceHedging<QueuedJob>;
}

/** A snapshot of one service, for stats. */
export interface ServiceStats {
  /** Service name. */
  name: string;
  /**
   * Whether a provider serves or served it. A service never served is only a name clients
   * asked for (kept while jobs wait for it in the start-up grace).
   */
  served: boolean;
  /** Jobs waiting. */
  queued: number;
  /** Providers serving it. */
  providers: number;
  /** Their total slots (shared with the other services each of them serves). */
  slots: number;
  /** Jobs of this service they hold. */
  busy: number;
  /** Jobs they hold, of any service (how much of `slots` is taken). */
  providersBusy: number;
  /** Jobs it may queue before new ones are refused `overloaded`. */
  maxQueue: number;
  /** Outcome counters. */
  counters: ServiceCounters;
  /**
   * Recent dispatch-to-answer time per job, ms, shared among jobs that waited in their
   * provider (what the prefetch budget is judged by); null before the first answer.
   */
  turnaroundMs: number | null;
  /**
   * After how long a running job of it is hedged, ms (its fixed delay or its recent p95);
   * null when its jobs are not hedged, or the p95 is not known yet.
   */
  hedgeAfterMs: number | null;
}

/**
 * The balancer. Its {@linkcode Balancer.handler} answers jobs from the server's HTTP and EP
 * connections; providers attach with {@linkcode Balancer.addProvider}.
 *
 * @example
 * ```ts ignore
 * import { Balancer } from "./balancer.ts";
 * import { serve } from "../net/server.ts";
 * const balancer = new Balancer({});
 * serve({ port: 7070, handler: balancer.handler, workers: balancer });
 * ```
 */
export class Balancer {
  #services = new Map<string, ServiceState>();
  /** Services never served (jobs wait for them in the start-up grace). */
  #pending = new Set<ServiceState>();
  #providers = new Set<Provider>();
  /** Jobs dispatched and not yet answered by their provider. */
  #held = new Map<Provider, Set<QueuedJob>>();
  #seq = 0;
  #maxQueue: number;
  #maxPending: number;
  #cancelGrace: number;
  #defaultTimeout: number;
  #retries: number;
  #grace: number;
  /** Services expected to get providers (see BalancerOptions.expectServices). */
  #expected: ReadonlySet<string> | "any";
  /** The services of prefix routes: expected too. */
  #routed: ReadonlySet<string>;
  #hedgeConfig: Readonly<Record<string, HedgeOptions>>;
  #hedgeBudget: number;
  #hedgeTimer: ReturnType<typeof setTimeout> | undefined;
  /** The clock time the armed hedge check is for; Infinity: none armed. */
  #hedgeAt = Infinity;
  #prefetchDepth: number;
  #prefetchBudget: number;
  #router: Router;
  #observer?: BalancerObserver;
  #now: () => number;
  #started: number;
  #sweepEvery: number;
  #sweeper: ReturnType<typeof setTimeout> | undefined;
  /** The clock time the armed sweep is for; Infinity: none armed. */
  #sweepAt = Infinity;
  #closed = false;
  /** Given to the origins that tell of their abandonment (`JobOrigin.watch`). */
  readonly #abandonedSoon = () => this.#sweepBy(this.#now() + this.#sweepEvery);
  /** Providers an operator took out of rotation, and until when a drain waits (ms, clock). */
  #admin = new Map<Provider, { state: AdminState; until: number | undefined }>();

  /** Answers a job: routes it, then queues or dispatches it. Pass it to `serve`. */
  readonly handler: JobHandler;

  /** Creates a balancer. */
  constructor(options: BalancerOptions = {}) {
    this.#maxQueue = options.maxQueue ?? 10_000;
    this.#maxPending = options.maxPendingServices ?? 100;
    this.#cancelGrace = options.cancelGraceMs ?? 10_000;
    this.#defaultTimeout = options.defaultTimeoutMs ?? 30_000;
    this.#retries = options.retries ?? 1;
    this.#grace = options.serviceGraceMs ?? 5_000;
    const expect = options.expectServices;
    this.#expected = expect === "any" ? "any" : new Set(expect ?? []);
    this.#routed = new Set((options.routes ?? []).map((r) => r.service));
    this.#prefetchDepth = options.prefetchDepth ?? 0.5;
    this.#prefetchBudget = options.prefetchBudgetMs ?? 3;
    if (!(this.#prefetchBudget >= 0)) {
      throw new RangeError(`Prefetch budget must be >= 0 ms: "${options.prefetchBudgetMs}"`);
    }
    this.#hedgeConfig = options.hedge ?? {};
    for (const [name, h] of Object.entries(this.#hedgeConfig)) {
      if (h.ms !== undefined && !(Number.isFinite(h.ms) && h.ms >= 1)) {
        throw new RangeError(`Hedge delay of "${name}" must be >= 1 ms: "${h.ms}"`);
      }
    }
    this.#hedgeBudget = options.hedgeBudget ?? 0.05;
    if (!(this.#hedgeBudget >= 0 && this.#hedgeBudget <= 1)) {
      throw new RangeError(`Hedge budget must be from 0 to 1: "${options.hedgeBudget}"`);
    }
    const defaults: EndpointHandler = (job) => this.#defaultInternal(job);
    this.#router = new Router({
      prefixes: options.routes,
      route: options.route,
      endpoints: options.internal ? [options.internal, defaults] : [defaults],
    });
    this.#observer = options.observer;
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
    const every = options.sweepIntervalMs ?? 10;
    if (!(every >= 0 && every < Infinity)) {
      throw new RangeError(`Sweep interval must be >= 0 ms: "${options.sweepIntervalMs}"`);
    }
    this.#sweepEvery = every;
    this.handler = (job) => this.submit(job);
  }

  /** Milliseconds since the balancer started. */
  get uptimeMs(): number {
    return this.#now() - this.#started;
  }

  /** Queues or dispatches a job and resolves with its answer. */
  submit(job: Job): JobResult | Promise<JobResult> {
    if (this.#router.isEndpoint(job)) return this.#router.endpoint(job);
    // Before routing: a routing function sees the request id too.
    job.requestId ??= requestIdOf(job);
    if (this.#closed) {
      throw this.#refuse(null, job, "", ErrorCode.SHUTTING_DOWN, "Balancer is shutting down");
    }
    let service: string | Promise<string>;
    try {
      service = this.#router.service(job);
    } catch (err) {
      throw this.#routeFailed(job, err);
    }
    if (typeof service === "string") return this.#submitTo(job, service);
    return service.then((s) => this.#submitTo(job, s), (err) => {
      throw this.#routeFailed(job, err);
    });
  }

  /** A route function failed: logged with the request id; the client is told only that. */
  #routeFailed(job: Job, err: unknown): JobError {
    if (err instanceof JobError) return this.#refuse(null, job, "", err.code, err.message);
    log.error("Route function failed for {path} (request {requestId}): {error}", {
      path: job.path,
      requestId: job.requestId,
      error: err,
    });
    return this.#refuse(
      null,
      job,
      "",
      ErrorCode.INTERNAL,
      `Routing failed (request ${job.requestId})`,
    );
  }

  #submitTo(job: Job, service: string): JobResult | Promise<JobResult> {
    if (service === "") {
      throw this.#refuse(null, job, "", ErrorCode.NO_SERVICE, "No service named in the path");
    }
    const s = this.#services.get(service);
    const now = this.#now();
    if (!s || s.providers.length === 0) {
      if (!this.#comingBack(s, service, now)) {
        throw this.#refuse(
          s ?? null,
          job,
          service,
          ErrorCode.NO_SERVICE,
          `No service "${service}"`,
        );
      }
      if (!s && this.#pending.size >= this.#maxPending) {
        // A client naming thousands of services in the grace must not make them state.
        throw this.#refuse(
          null,
          job,
          service,
          ErrorCode.NO_SERVICE,
          `No service "${service}" (too many unknown services are waited for)`,
        );
      }
    }
    if ((s?.size ?? 0) >= (s?.maxQueue ?? this.#maxQueue)) {
      throw this.#refuse(
        s ?? null,
        job,
        service,
        ErrorCode.OVERLOADED,
        `Queue for "${service}" is full`,
      );
    }
    const tooLarge = s ? this.#tooLarge(s, job) : null;
    if (tooLarge) throw this.#refuse(s!, job, service, ErrorCode.BAD_REQUEST, tooLarge);
    const state = s ?? this.#state(service, false);
    state.hedging.arrived();
    const origin = job.origin;
    if (origin?.watch && this.#sweepEvery > 0) {
      origin.watch(this.#abandonedSoon);
      if (origin.abandoned) this.#abandonedSoon();
    }
    return new Promise<JobResult>((resolve, reject) => {
      const timeout = job.deadlineMs > 0 ? job.deadlineMs : this.#defaultTimeout;
      const qj: QueuedJob = {
        seq: ++this.#seq,
        service,
        job,
        priority: job.priority,
        attempt: 0,
        deadline: now + timeout,
        arrived: now,
        dispatched: 0,
        provider: null,
        answered: false,
        graceUntil: now + this.#grace,
        resolve,
        reject,
      };
      // Fast path: nothing waiting ahead of it and a provider with a free slot.
      if (state.size === 0) {
        const p = this.#pick(state, qj, 0);
        if (p) {
          this.#dispatch(p, qj);
          return;
        }
      }
      this.#enqueue(state, qj, false);
    });
  }

  /**
   * Whether a provider of `service` (which has none now) is known to be coming, so that a
   * job may wait for it: one served it before (a worker restarting), or the balancer is in
   * its start-up grace and the service is expected (`expectServices`, a prefix route).
   */
  #comingBack(s: ServiceState | undefined, service: string, now: number): boolean {
    if (this.#grace === 0) return false;
    if (s?.everServed) return true;
    return now - this.#started < this.#grace && this.#expects(service);
  }

  #expects(service: string): boolean {
    return this.#expected === "any" || this.#expected.has(service) || this.#routed.has(service);
  }

  /**
   * Replaces the services expected to get providers ({@linkcode BalancerOptions.expectServices}),
   * for example once this process's handlers started and their names are known. Jobs waiting
   * for a name no longer expected, and never served, are answered `no_service` at once.
   */
  expectServices(services: Iterable<string> | "any"): void {
    this.#expected = services === "any" ? "any" : new Set(services);
    for (const s of this.#pending) {
      if (s.providers.length > 0 || this.#expects(s.name)) continue;
      for (const level of s.levels) {
        let qj;
        while ((qj = level.queue.shift())) {
          this.#fail(qj, ErrorCode.NO_SERVICE, `No service "${s.name}"`);
        }
      }
      s.size = 0;
      this.#pending.delete(s);
      this.#services.delete(s.name);
    }
  }

  /** Attaches a provider and hands it waiting jobs. */
  addProvider(p: Provider): void {
    this.#providers.add(p);
    this.#held.set(p, new Set());
    for (const name of p.services) {
      const s = this.#services.get(name) ?? this.#state(name, true);
      s.providers.push(p);
      s.everServed = true;
      this.#pending.delete(s);
      this.#learnHedge(s);
    }
    log.info("Provider {name} serves {services} with {slots} slots", {
      name: p.name,
      services: [...p.services].join(","),
      slots: p.slots,
    });
    this.pull(p);
  }

  /** Changes a provider's services and slots (a worker's new REGISTER); held jobs stay. */
  updateProvider(p: Provider, services: ReadonlySet<string>, slots: number): void {
    if (!this.#providers.has(p)) return;
    const old = p.services;
    for (const name of p.services) {
      const s = this.#services.get(name);
      if (s) {
        s.providers = s.providers.filter((x) => x !== p);
        this.#learnHedge(s);
      }
    }
    Object.assign(p, { services, slots });
    for (const name of old) if (!services.has(name)) this.#checkOrphaned(this.#services.get(name));
    for (const name of services) {
      const s = this.#services.get(name) ?? this.#state(name, true);
      s.providers.push(p);
      s.everServed = true;
      this.#pending.delete(s);
      this.#learnHedge(s);
    }
    this.pull(p);
  }

  /** Detaches a provider. Jobs it held are redelivered (within the retry budget) or failed. */
  removeProvider(p: Provider, reason: string): void {
    if (!this.#providers.delete(p)) return;
    this.#admin.delete(p);
    for (const name of p.services) {
      const s = this.#services.get(name);
      if (s) {
        s.providers = s.providers.filter((x) => x !== p);
        this.#learnHedge(s);
        this.#checkOrphaned(s);
      }
    }
    const held = this.#held.get(p) ?? new Set();
    this.#held.delete(p);
    this.#takeBack(held, reason);
    if (held.size > 0) {
      log.warn("Provider {name} lost with {n} jobs: {reason}", {
        name: p.name,
        n: held.size,
        reason,
      });
    } else {
      log.info("Provider {name} left: {reason}", { name: p.name, reason });
    }
  }

  /**
   * A service just left with no provider: its queued jobs now wait only until their grace,
   * which a sweep soon finds (and arms the next for).
   */
  #checkOrphaned(s: ServiceState | undefined): void {
    if (s && s.providers.length === 0 && s.size > 0) this.#sweepBy(this.#now() + this.#sweepEvery);
  }

  /**
   * Jobs a provider will not answer (it left, or its drain grace passed): each is put back
   * at the head of its queue within the retry budget and its deadline, else answered
   * `worker_lost`. Jobs already answered (timed out) are only let go.
   */
  #takeBack(jobs: Iterable<QueuedJob>, reason: string): void {
    const touched = new Set<ServiceState>();
    // Newest first, each at the head, and nobody pulls until all are back: the queue then
    // holds them in their original (FIFO) order, ahead of the jobs that waited meanwhile.
    const back = [...jobs].sort((a, b) => b.seq - a.seq);
    for (const qj of back) {
      qj.provider = null;
      const s = this.#services.get(qj.service)!;
      s.hedging.delete(qj);
      if (qj.answered) continue;
      const twin = qj.twin;
      if (twin) {
        // A hedged job: the other copy, still running, carries it (and is not hedged again).
        qj.twin = twin.twin = undefined;
        if (twin.provider !== null) continue;
      }
      if (qj.attempt <= this.#retries && this.#now() < qj.deadline) {
        s.counters.redelivered++;
        this.#enqueue(s, qj, true, false);
        touched.add(s);
      } else {
        this.#fail(qj, ErrorCode.WORKER_LOST, `Worker lost while running the job (${reason})`);
      }
    }
    for (const s of touched) this.#offer(s);
  }

  /**
   * Hands a provider that gained credit the oldest waiting jobs it can take; with a free
   * slot left and nothing waiting for it, a copy of a job that runs long elsewhere (hedging).
   * A provider that drained itself calls it too: the sweep is armed for its grace.
   */
  pull(p: Provider): void {
    // A provider that drained itself holds its jobs until its grace: a sweep then.
    if (p.draining) this.#sweepBy(this.#drainDeadline(p));
    while (p.credit > 0 && !this.#out(p) && this.#providers.has(p)) {
      const qj = this.#next(p);
      if (!qj) {
        this.#hedgeTo(p);
        return;
      }
      if (qj.job.origin?.abandoned) {
        this.#fail(qj, ErrorCode.CANCELLED, "The client went away");
        continue;
      }
      this.#dispatch(p, qj);
    }
  }

  /**
   * A provider answered a job. Late answers (after a timeout) only free the provider's slot;
   * an answer from a provider that no longer holds the job (it was taken back and
   * redelivered, SPEC.md §9.3) is dropped.
   */
  finish(p: Provider, qj: QueuedJob, result: JobResult | JobError): void {
    if (!this.#held.get(p)?.delete(qj)) return;
    if (!qj.answered && !qj.cancelSent) {
      this.#learnTurnaround(qj);
      if (!(result instanceof JobError)) this.#learnServiceTime(qj);
    }
    this.#settle(qj, result);
    qj.provider = null;
    this.pull(p);
  }

  /**
   * Updates the service's turnaround estimate from an answered job: its dispatch-to-answer
   * time, shared with the jobs it waited for in its provider (so prefetched jobs count too,
   * and the estimate cannot go stale while prefetch keeps every slot busy).
   */
  #learnTurnaround(qj: QueuedJob): void {
    const s = this.#services.get(qj.service);
    if (!s || qj.dispatched === 0) return;
    const t = (this.#now() - qj.dispatched) / (1 + (qj.ahead ?? 0));
    s.turnaroundMs = Number.isNaN(s.turnaroundMs) ? t : s.turnaroundMs + (t - s.turnaroundMs) / 8;
  }

  /**
   * Records a job's service time for its service's p95 (the hedging delay): from its first
   * dispatch to this answer, for a job that started at once (not prefetched behind others).
   * A hedged job counts from its original's dispatch: how long its client waited on it.
   */
  #learnServiceTime(qj: QueuedJob): void {
    const s = this.#services.get(qj.service);
    const first = qj.hedgeCopy ? qj.twin : qj;
    if (!s || !first || first.dispatched === 0 || (first.ahead ?? 0) > 0) return;
    s.hedging.times.add(this.#now() - first.dispatched);
  }

  /** The jobs a provider holds (dispatched, not answered). */
  heldBy(p: Provider): number {
    return this.#held.get(p)?.size ?? 0;
  }

  /**
   * How long the oldest job queued for any of `services` has waited, ms; 0 when none. What
   * a version-2 REQUEST and HEARTBEAT tell a worker (SPEC.md §9.5), so that a worker shared
   * by several balancers gives its freed slot to the one whose oldest job is oldest.
   */
  oldestWaitMs(services: Iterable<string>): number {
    let oldest = Infinity;
    for (const name of services) {
      const s = this.#services.get(name);
      if (!s || s.size === 0) continue;
      for (const level of s.levels) {
        const head = level.queue.peek();
        if (head && head.arrived < oldest) oldest = head.arrived;
      }
    }
    return oldest === Infinity ? 0 : Math.max(0, this.#now() - oldest);
  }

  /** Jobs queued for `service` (for status fields on dispatch). */
  queueDepth(service: string): number {
    return this.#services.get(service)?.size ?? 0;
  }

  /** A snapshot for stats and the status page. */
  stats(): { uptimeMs: number; services: ServiceStats[]; providers: ProviderStats[] } {
    const services: ServiceStats[] = [];
    // The jobs held, by service (their providers' slots are shared with other services).
    const running = new Map<string, number>();
    for (const held of this.#held.values()) {
      for (const qj of held) running.set(qj.service, (running.get(qj.service) ?? 0) + 1);
    }
    for (const s of this.#services.values()) {
      services.push({
        name: s.name,
        served: s.everServed,
        queued: s.size,
        providers: s.providers.length,
        slots: s.providers.reduce((n, p) => n + p.slots, 0),
        busy: running.get(s.name) ?? 0,
        providersBusy: s.providers.reduce((n, p) => n + this.heldBy(p), 0),
        maxQueue: s.maxQueue ?? this.#maxQueue,
        counters: { ...s.counters },
        turnaroundMs: Number.isNaN(s.turnaroundMs)
          ? null
          : Math.round(s.turnaroundMs * 1000) / 1000,
        hedgeAfterMs: s.hedging.after === undefined ? null : finiteOrNull(s.hedging.delay()),
      });
    }
    const providers: ProviderStats[] = [...this.#providers].map((p) => ({
      name: p.name,
      services: [...p.services],
      slots: p.slots,
      busy: this.heldBy(p),
      credit: p.credit,
      draining: p.draining,
      admin: this.#adminState(p),
    }));
    return { uptimeMs: Math.round(this.uptimeMs), services, providers };
  }

  /** What an operator set on `p`: `drained` once a drained provider holds no job. */
  #adminState(p: Provider): AdminState | "drained" | null {
    const a = this.#admin.get(p);
    if (!a) return null;
    return a.state === "draining" && this.heldBy(p) === 0 ? "drained" : a.state;
  }

  /** The limits in force (the options, defaults filled in; services may differ in `maxQueue`). */
  limits(): BalancerLimits {
    return {
      maxQueue: this.#maxQueue,
      defaultTimeoutMs: this.#defaultTimeout,
      retries: this.#retries,
      serviceGraceMs: this.#grace,
      cancelGraceMs: this.#cancelGrace,
      maxPendingServices: this.#maxPending,
      prefetchDepth: this.#prefetchDepth,
      prefetchBudgetMs: this.#prefetchBudget,
    };
  }

  /** The providers attached, in the order they attached. */
  providerList(): Provider[] {
    return [...this.#providers];
  }

  /**
   * Takes `p` out of rotation (HAProxy's `maint`): nothing more is dispatched to it, the
   * jobs it holds finish as usual, it stays attached. {@linkcode Balancer.enable} undoes it.
   *
   * @throws {UnknownWorkerError} `p` is not attached.
   */
  disable(p: Provider): void {
    this.#attached(p);
    this.#admin.set(p, { state: "disabled", until: undefined });
    log.info("Provider {name} disabled by an operator", { name: p.name });
  }

  /**
   * Drains `p` (HAProxy's `drain`): nothing more is dispatched to it and the jobs it holds
   * finish; with `graceMs`, those it still holds after it are taken back (CANCEL sent,
   * redelivered within the retry budget, else `worker_lost`), as after a worker's own DRAIN.
   * It stays attached, `drained` once it holds nothing. {@linkcode Balancer.enable} undoes it.
   *
   * @throws {UnknownWorkerError} `p` is not attached.
   * @throws {RangeError} `graceMs` is not a number ≥ 0.
   */
  drain(p: Provider, graceMs?: number): void {
    this.#attached(p);
    if (graceMs !== undefined && !(graceMs >= 0)) {
      throw new RangeError(`Drain grace must be >= 0 ms: "${graceMs}"`);
    }
    const until = graceMs === undefined ? undefined : this.#now() + graceMs;
    this.#admin.set(p, { state: "draining", until });
    if (until !== undefined) this.#sweepBy(until);
    log.info("Provider {name} drained by an operator", { name: p.name });
  }

  /**
   * Puts `p` back in rotation after {@linkcode Balancer.disable} or
   * {@linkcode Balancer.drain} and hands it waiting jobs. A provider that sent DRAIN itself
   * stays draining (it takes jobs again when it registers again).
   *
   * @throws {UnknownWorkerError} `p` is not attached.
   */
  enable(p: Provider): void {
    this.#attached(p);
    if (!this.#admin.delete(p)) return;
    log.info("Provider {name} enabled by an operator", { name: p.name });
    this.pull(p);
  }

  /**
   * Sets how many jobs `service` may queue before new ones are refused `overloaded` (0:
   * every new job is refused); `null` gives it the balancer's bound again. Jobs already
   * queued stay.
   *
   * @throws {UnknownServiceError} no provider serves or served `service`.
   * @throws {RangeError} `max` is not an integer from 0 to 2^32 − 1.
   */
  setMaxQueue(service: string, max: number | null): void {
    const s = this.#services.get(service);
    if (!s || !s.everServed) throw new UnknownServiceError(service);
    if (max !== null && !(Number.isInteger(max) && max >= 0 && max <= 0xffff_ffff)) {
      throw new RangeError(`Invalid max_queue "${max}": an integer from 0 to 4294967295`);
    }
    s.maxQueue = max ?? undefined;
    log.info("Queue bound of {service} set to {max} by an operator", {
      service,
      max: max ?? this.#maxQueue,
    });
  }

  #attached(p: Provider): void {
    if (!this.#providers.has(p)) throw new UnknownWorkerError(p.name);
  }

  /** Stops: queued jobs are answered `shutting_down`; held jobs are left to finish. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#sweeper);
    this.#sweepAt = -Infinity; // never again
    if (this.#hedgeTimer !== undefined) clearTimeout(this.#hedgeTimer);
    this.#hedgeAt = -Infinity;
    for (const s of this.#services.values()) {
      for (const level of s.levels) {
        let qj;
        while ((qj = level.queue.shift())) {
          this.#fail(qj, ErrorCode.SHUTTING_DOWN, "Balancer is shutting down");
        }
      }
      s.size = 0;
    }
  }

  /** A new service's state; `served` false: only a name a client asked for (pending). */
  #state(name: string, served: boolean): ServiceState {
    const s: ServiceState = {
      name,
      levels: [],
      size: 0,
      providers: [],
      everServed: served,
      counters: {
        ok: 0,
        error: 0,
        timeout: 0,
        overloaded: 0,
        noService: 0,
        workerLost: 0,
        redelivered: 0,
        cancelled: 0,
        hedged: 0,
        hedgeWins: 0,
      },
      turnaroundMs: NaN,
      maxQueue: undefined,
      hedging: new ServiceHedging(this.#hedgeBudget),
    };
    this.#learnHedge(s);
    this.#services.set(name, s);
    if (!served) this.#pending.add(s);
    return s;
  }

  /** Why `job` is too large for every provider of `s`, or null (it fits one, or no limit). */
  #tooLarge(s: ServiceState, job: Job): string | null {
    if (s.providers.length === 0) return null;
    let limit = 0;
    for (const p of s.providers) {
      const max = p.maxJobBytes;
      if (max === undefined) return null;
      if (max > limit) limit = max;
    }
    if (jobRingBytesBound(job) <= limit) return null;
    const size = jobRingBytes(job);
    if (size <= limit) return null;
    return `Request of ${size} bytes exceeds the limit of ${limit} bytes for the handlers of "${s.name}"`;
  }

  /**
   * May `p` take a job of `s` now? A free slot: yes. Extra (prefetch) credit only when the
   * queue is deep: one job always, more while those waiting in `p` fit the prefetch budget.
   */
  #eligible(p: Provider, s: ServiceState, depth: number): boolean {
    if (p.credit <= 0 || this.#out(p)) return false;
    const held = this.heldBy(p);
    if (held < p.slots) return true;
    if (depth < this.#prefetchDepth * s.providers.length) return false;
    const waiting = held - p.slots + 1; // jobs that would wait in p, this one included
    // Beyond one job, only under a positive budget (0 means one job per provider).
    return waiting === 1 ||
      (this.#prefetchBudget > 0 && waiting * s.turnaroundMs <= this.#prefetchBudget);
  }

  /** Whether `qj` fits what `p` accepts (its `maxJobBytes`); the size is counted once. */
  #fits(p: Provider, qj: QueuedJob): boolean {
    const max = p.maxJobBytes;
    if (max === undefined) return true;
    if (qj.bytes === undefined) {
      if (jobRingBytesBound(qj.job) <= max) return true;
      qj.bytes = jobRingBytes(qj.job);
    }
    return qj.bytes <= max;
  }

  /** The provider of `s` with the most free slots that may take `qj` now. */
  #pick(s: ServiceState, qj: QueuedJob, depth: number): Provider | null {
    let best: Provider | null = null;
    let bestFree = -Infinity;
    for (const p of s.providers) {
      if (!this.#eligible(p, s, depth) || !this.#fits(p, qj)) continue;
      const free = p.slots - this.heldBy(p);
      if (free > bestFree) {
        best = p;
        bestFree = free;
      }
    }
    return best;
  }

  #enqueue(s: ServiceState, qj: QueuedJob, atHead: boolean, offer = true): void {
    let level = s.levels.find((l) => l.priority === qj.priority);
    if (!level) {
      level = { priority: qj.priority, queue: new Deque() };
      s.levels.push(level);
      s.levels.sort((a, b) => b.priority - a.priority);
    }
    if (atHead) level.queue.unshift(qj);
    else level.queue.push(qj);
    s.size++;
    this.#sweepBy(this.#queuedDue(qj, s.providers.length === 0, this.#now()));
    if (offer) this.#offer(s);
  }

  /** Offers a service's queue to its providers: idle ones (a redelivery) or deep-queue prefetch may take jobs at once; the others are told of the demand. */
  #offer(s: ServiceState): void {
    for (const p of s.providers) {
      if (this.#eligible(p, s, s.size)) {
        this.pull(p);
        if (s.size === 0) return;
      }
    }
    // Not to one an operator took out: it would grant credit this balancer does not use.
    for (const p of s.providers) if (p.credit <= 0 && !this.#out(p)) p.demand?.(s.name, s.size);
  }

  /** Whether `p` takes no jobs: it is draining, or an operator took it out of rotation. */
  #out(p: Provider): boolean {
    return p.draining || (this.#admin.size !== 0 && this.#admin.has(p));
  }

  /** The next job for `p`: highest priority first, then oldest, among its services. */
  #next(p: Provider): QueuedJob | null {
    let best: ServiceState | null = null;
    let bestLevel: Deque<QueuedJob> | null = null;
    let bestAt = 0;
    let bestJob: QueuedJob | undefined;
    for (const name of p.services) {
      const s = this.#services.get(name);
      if (!s || s.size === 0 || !this.#eligible(p, s, s.size)) continue;
      for (const level of s.levels) {
        if (level.queue.size === 0) continue;
        const at = this.#firstFit(p, level.queue);
        if (at < 0) continue; // nothing p takes at this priority: look lower
        const head = level.queue.at(at)!;
        if (
          !bestJob || head.priority > bestJob.priority ||
          (head.priority === bestJob.priority && head.seq < bestJob.seq)
        ) {
          best = s;
          bestLevel = level.queue;
          bestAt = at;
          bestJob = head;
        }
        break;
      }
    }
    if (!best || !bestLevel || !bestJob) return null;
    bestLevel.removeAt(bestAt);
    best.size--;
    return bestJob;
  }

  /**
   * Where in `queue` the oldest job `p` takes is: the head, unless `p` limits job sizes
   * (`maxJobBytes`) and the head is over it; then the first that fits among the next
   * {@linkcode FIT_SCAN} (a job too large for `p` waits for a provider that takes it,
   * without holding `p` back). -1 when none does.
   */
  #firstFit(p: Provider, queue: Deque<QueuedJob>): number {
    if (p.maxJobBytes === undefined) return 0;
    const n = Math.min(queue.size, FIT_SCAN);
    for (let i = 0; i < n; i++) if (this.#fits(p, queue.at(i)!)) return i;
    return -1;
  }

  /** Hands `qj` to `p`; false when `p` refused it (then it was answered, unless a copy). */
  #dispatch(p: Provider, qj: QueuedJob): boolean {
    const held = this.#held.get(p)!;
    const dispatched = qj.dispatched;
    qj.attempt++;
    qj.provider = p;
    qj.dispatched = this.#now();
    qj.ahead = Math.max(0, held.size - p.slots + 1) / p.slots;
    held.add(qj);
    this.#sweepBy(this.#heldDue(qj, qj.dispatched));
    try {
      p.dispatch(qj);
    } catch (err) {
      // The provider took nothing (Provider.dispatch); give back what this step took.
      held.delete(qj);
      qj.provider = null;
      qj.attempt--;
      qj.dispatched = dispatched;
      qj.ahead = undefined;
      if (qj.hedgeCopy) {
        // Only a copy: the original still runs and will answer the job.
        log.debug("Provider {name} refused a hedged copy of a job of {service}: {error}", {
          name: p.name,
          service: qj.service,
          error: err,
        });
        return false;
      }
      if (err instanceof JobError) {
        // A job this provider can never take (it cannot be encoded, or is too large).
        log.debug("Provider {name} refused a job of {service}: {message}", {
          name: p.name,
          service: qj.service,
          message: err.message,
        });
        this.#settle(qj, err);
      } else {
        log.error("Dispatch of a job of {service} to {name} failed unexpectedly: {error}", {
          service: qj.service,
          name: p.name,
          error: err,
        });
        this.#fail(qj, ErrorCode.INTERNAL, "Dispatch failed");
      }
      return false;
    }
    if (!qj.hedgeCopy && !qj.hedged) {
      const s = this.#services.get(qj.service)!;
      if (s.hedging.hedgeable(qj.job.hedge)) {
        s.hedging.add(qj);
        this.#armHedge(qj.dispatched + s.hedging.delay());
      }
    }
    return true;
  }

  #fail(qj: QueuedJob, code: number, message: string): void {
    this.#settle(qj, new JobError(code, message));
  }

  /**
   * Answers a job once: counts its outcome, tells the observer, resolves the client. A
   * hedged job is answered by whichever copy answers first; the other is cancelled (its
   * provider's slot stays counted until it answers, as a timed-out job's).
   */
  #settle(qj: QueuedJob, result: JobResult | JobError): void {
    if (qj.answered) return;
    qj.answered = true;
    const outcome = result instanceof JobError ? outcomeOf(result.code) : "ok";
    const s = this.#services.get(qj.service);
    s?.hedging.delete(qj);
    // The client's view: the job was dispatched when its original was.
    let first = qj;
    const twin = qj.twin;
    if (twin) {
      if (qj.hedgeCopy) {
        first = twin;
        if (s) s.counters.hedgeWins++;
      }
      twin.answered = true;
      qj.twin = twin.twin = undefined;
      if (twin.provider !== null && !twin.cancelSent) {
        twin.cancelSent = true;
        twin.provider.cancel(twin);
      }
    }
    if (s) s.counters[COUNTER[outcome]]++;
    if (this.#observer) {
      const now = this.#now();
      // A hedged job's wait and run count from its first copy's dispatch.
      const wait = (first.dispatched || now) - qj.arrived;
      const run = first.dispatched ? now - first.dispatched : NaN;
      const provider = qj.provider?.name ?? null;
      this.#observer.job(qj.service, outcome, wait, run, provider, qj.job, result);
      if (result instanceof JobError) {
        this.#observer.failed?.({
          service: qj.service,
          outcome,
          code: result.code,
          message: result.message,
          requestId: qj.job.requestId ?? null,
          provider,
          error: result,
        });
      }
    }
    if (result instanceof JobError) qj.reject(result);
    else qj.resolve(result);
  }

  /** Counts and reports a job refused before it was queued; returns the error to throw. */
  #refuse(
    s: ServiceState | null,
    job: Job,
    service: string,
    code: number,
    message: string,
  ): JobError {
    const outcome = outcomeOf(code);
    if (s) s.counters[COUNTER[outcome]]++;
    const err = new JobError(code, message);
    if (this.#observer) {
      this.#observer.job(service, outcome, NaN, NaN, null, job, err);
      this.#observer.failed?.({
        service,
        outcome,
        code,
        message,
        requestId: job.requestId ?? null,
        provider: null,
        error: err,
      });
    }
    return err;
  }

  /** Arms the sweep timer for clock time `at`, unless one is armed as early already. */
  #sweepBy(at: number): void {
    if (this.#sweepEvery === 0 || at >= this.#sweepAt) return;
    clearTimeout(this.#sweeper);
    this.#sweepAt = at;
    this.#sweeper = setTimeout(() => {
      this.#sweeper = undefined;
      this.#sweepAt = Infinity;
      this.sweep();
    }, Math.max(0, Math.ceil(at - this.#now())));
  }

  /**
   * One sweep, at the clock's time now; the balancer runs it when something can be due. It
   * expires queued jobs past their deadline or grace, and running jobs past their deadline
   * (answered at once, their payload let go, CANCEL sent); drops queued jobs whose client
   * went away and sends CANCEL for dispatched ones; forgets services never served whose
   * queue emptied; takes back what draining providers hold past their grace; cuts off
   * providers that leave a job unanswered `cancelGraceMs` past its deadline.
   */
  sweep(): void {
    const now = this.#now();
    for (const s of this.#services.values()) {
      if (s.size === 0) continue;
      const noProviders = s.providers.length === 0;
      for (const level of s.levels) {
        s.size -= level.queue.filter((qj) => {
          if (qj.answered) return false;
          if (now >= qj.deadline) {
            this.#fail(qj, ErrorCode.TIMEOUT, "Timed out waiting in the queue");
            return false;
          }
          if (noProviders && now >= qj.graceUntil) {
            this.#fail(qj, ErrorCode.NO_SERVICE, `No service "${s.name}"`);
            return false;
          }
          if (qj.job.origin?.abandoned) {
            this.#fail(qj, ErrorCode.CANCELLED, "The client went away");
            return false;
          }
          return true;
        });
      }
    }
    for (const s of this.#pending) {
      if (s.size === 0 && s.providers.length === 0) {
        this.#pending.delete(s);
        this.#services.delete(s.name);
      }
    }
    let overdue: Provider[] | null = null;
    let drained: Provider[] | null = null;
    for (const [p, held] of this.#held) {
      for (const qj of held) {
        if (qj.answered) {
          // Timed out and sent CANCEL: an honest provider answers within moments.
          if (p.evict && now >= qj.deadline + this.#cancelGrace) (overdue ??= []).push(p);
          continue;
        }
        if (now >= qj.deadline) {
          this.#fail(qj, ErrorCode.TIMEOUT, "Timed out while running");
          p.cancel(qj);
          // Answered: only the provider's slot stays counted; the payload is not needed.
          qj.job.body = EMPTY_BODY;
          qj.job.headers = [];
        } else if (!qj.cancelSent && qj.job.origin?.abandoned) {
          // Its client went away: a worker drops it if it has not started (its answer,
          // CANCELLED or a late result, then settles it).
          qj.cancelSent = true;
          p.cancel(qj);
        }
      }
      if (now >= this.#drainDeadline(p)) (drained ??= []).push(p);
    }
    for (const p of drained ?? []) {
      const held = this.#held.get(p);
      if (!held) continue;
      const lost = [...held].filter((qj) => !qj.answered);
      if (lost.length === 0) continue;
      for (const qj of lost) {
        held.delete(qj);
        p.cancel(qj);
      }
      log.warn("Provider {name} still held {n} jobs after its drain grace: taken back", {
        name: p.name,
        n: lost.length,
      });
      this.#takeBack(lost, "drain grace passed");
    }
    this.#hedgeScan(now);
    for (const p of overdue ?? []) {
      if (!this.#providers.has(p)) continue;
      const reason = `A job was not answered ${this.#cancelGrace} ms after its deadline and CANCEL`;
      log.warn("Cutting off provider {name}: {reason}", { name: p.name, reason });
      p.evict!(reason);
      this.removeProvider(p, reason);
    }
    this.#sweepBy(this.#nextSweep(now));
  }

  // --- hedging (SPEC.md §9.10; the policy is `_hedging.ts`) -----------------------------

  /**
   * When `s`'s jobs are hedged: the balancer's options win; else the first of its providers
   * that declared it (REGISTER); else never.
   */
  #learnHedge(s: ServiceState): void {
    s.hedging.learn(this.#hedgeConfig[s.name], s.providers.map((p) => p.hedge?.get(s.name)));
  }

  /** Arms the hedge check for clock time `at`, unless one is armed as early already. */
  #armHedge(at: number): void {
    if (this.#sweepEvery === 0 || !(at < this.#hedgeAt)) return;
    clearTimeout(this.#hedgeTimer);
    this.#hedgeAt = at;
    this.#hedgeTimer = setTimeout(() => {
      this.#hedgeTimer = undefined;
      this.#hedgeAt = Infinity;
      this.#hedgeScan(this.#now());
    }, Math.max(0, Math.ceil(at - this.#now())));
  }

  /**
   * Hedges every job that has run past its delay and finds a provider with a free slot now
   * (within the budget); arms the check for the next job to reach its delay. Jobs past it
   * that find none wait for a provider to free a slot (`pull`).
   */
  #hedgeScan(now: number): void {
    let next = Infinity;
    for (const s of this.#services.values()) {
      if (s.hedging.size === 0) continue;
      const at = s.hedging.scan(now, (qj) => {
        const p = this.#hedgeTarget(s, qj);
        if (p && s.hedging.allows()) this.#sendCopy(p, s, qj);
      });
      next = Math.min(next, at);
    }
    if (next < Infinity) this.#armHedge(next);
  }

  /**
   * The provider a copy of `qj` goes to: another provider of its service with a free slot
   * now (credit, not draining, fewer jobs than slots; the most free slots first), or, when
   * the service has one provider only (the all-in-one pool), another slot of that one.
   */
  #hedgeTarget(s: ServiceState, qj: QueuedJob): Provider | null {
    let best: Provider | null = null;
    let bestFree = 0;
    for (const p of s.providers) {
      if (p === qj.provider && s.providers.length > 1) continue;
      if (!this.#freeNow(p) || !this.#fits(p, qj)) continue;
      const free = p.slots - this.heldBy(p);
      if (free > bestFree) {
        best = p;
        bestFree = free;
      }
    }
    return best;
  }

  /** Whether `p` has a slot free now: credit, not draining, fewer jobs than its slots. */
  #freeNow(p: Provider): boolean {
    return p.credit > 0 && !p.draining && this.heldBy(p) < p.slots;
  }

  /**
   * `p` has a free slot and nothing waits for it: it takes a copy of the job of its
   * services that has run longest past its delay on another provider, if any.
   */
  #hedgeTo(p: Provider): void {
    if (!this.#freeNow(p)) return;
    // With several balancers, a slot this one holds no job in may run another's job: a copy
    // would wait there. The worker's own count says (NOT_APPLICABLE: it did not say).
    const reported = p.reportedFree;
    if (reported !== undefined && reported !== NOT_APPLICABLE && reported <= 0) return;
    const now = this.#now();
    let best: QueuedJob | null = null;
    let bestOver = 0;
    let bestService: ServiceState | null = null;
    for (const name of p.services) {
      const s = this.#services.get(name);
      if (!s || s.hedging.size === 0) continue;
      const qj = s.hedging.pick(
        now,
        bestOver,
        (qj) =>
          !(qj.provider === p && s.providers.length > 1) && this.#fits(p, qj) &&
          s.hedging.allows(),
      );
      if (!qj) continue;
      best = qj;
      bestOver = s.hedging.pickedOver;
      bestService = s;
    }
    if (best && bestService) this.#sendCopy(p, bestService, best);
  }

  /** Sends `qj`'s one copy to `p` (SPEC.md §9.10): `attempt` + 1, `ep-hedge: 1`. */
  #sendCopy(p: Provider, s: ServiceState, qj: QueuedJob): void {
    s.hedging.delete(qj);
    qj.hedged = true;
    const copy: QueuedJob = {
      seq: ++this.#seq,
      service: qj.service,
      job: qj.job,
      priority: qj.priority,
      attempt: qj.attempt,
      deadline: qj.deadline,
      arrived: qj.arrived,
      dispatched: 0,
      provider: null,
      answered: false,
      graceUntil: qj.graceUntil,
      resolve: qj.resolve,
      reject: qj.reject,
      hedgeCopy: true,
      twin: qj,
    };
    qj.twin = copy;
    if (!this.#dispatch(p, copy)) {
      qj.twin = undefined;
      return;
    }
    s.hedging.record();
    s.counters.hedged++;
    log.debug("Hedged job {seq} of {service} on {name} after {ms} ms", {
      seq: qj.seq,
      service: s.name,
      name: p.name,
      ms: Math.round(copy.dispatched - qj.dispatched),
    });
  }

  /** When the next sweep is needed: the earliest time a queued or held job falls due. */
  #nextSweep(now: number): number {
    let next = Infinity;
    for (const s of this.#services.values()) {
      if (s.size === 0) continue;
      const noProviders = s.providers.length === 0;
      for (const level of s.levels) {
        for (const qj of level.queue) next = Math.min(next, this.#queuedDue(qj, noProviders, now));
      }
    }
    for (const [p, held] of this.#held) {
      if (held.size === 0) continue;
      for (const qj of held) next = Math.min(next, this.#heldDue(qj, now));
      next = Math.min(next, this.#drainDeadline(p));
    }
    return next;
  }

  /**
   * When a queued job needs a sweep: its deadline; its grace while its service has no
   * provider; `sweepIntervalMs` from `now` while its origin cannot tell of its abandonment.
   */
  #queuedDue(qj: QueuedJob, noProviders: boolean, now: number): number {
    let due = noProviders ? Math.min(qj.deadline, qj.graceUntil) : qj.deadline;
    const origin = qj.job.origin;
    if (origin && !origin.watch) due = Math.min(due, now + this.#sweepEvery);
    return due;
  }

  /**
   * When a held job needs a sweep: its deadline (answered: the cancel grace after it);
   * {@linkcode HELD_SWEEP_MS} from `from` while its origin cannot tell of its abandonment.
   */
  #heldDue(qj: QueuedJob, from: number): number {
    if (qj.answered) return qj.deadline + this.#cancelGrace;
    const origin = qj.job.origin;
    if (origin && !origin.watch && !qj.cancelSent) {
      return Math.min(qj.deadline, from + HELD_SWEEP_MS);
    }
    return qj.deadline;
  }

  /**
   * When the jobs `p` still holds count as lost: its own DRAIN's grace, or an operator's
   * drain's (the earlier); Infinity: never.
   */
  #drainDeadline(p: Provider): number {
    let at = p.draining && p.drainDeadline !== undefined ? p.drainDeadline : Infinity;
    const a = this.#admin.size !== 0 ? this.#admin.get(p) : undefined;
    if (a?.state === "draining" && a.until !== undefined && a.until < at) at = a.until;
    return at;
  }

  #defaultInternal(job: Job): JobResult | undefined {
    if (job.path === "/_ep/health") {
      return {
        status: 200,
        headers: [["content-type", "application/json"]],
        body: JSON.stringify({ status: "ok", uptimeMs: Math.round(this.uptimeMs) }),
      };
    }
    if (job.path === "/_ep/stats") {
      // The status access rule's default (loopback only), as with a monitor.
      if (!admitted(statusAccess({}, job.remote, null))) {
        return {
          status: 403,
          headers: [["content-type", "text/plain; charset=utf-8"]],
          body: "ep status pages are served to loopback peers only\n",
        };
      }
      return {
        status: 200,
        headers: [["content-type", "application/json"]],
        body: JSON.stringify(this.stats()),
      };
    }
    return undefined;
  }
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? Math.round(x * 1000) / 1000 : null;
}
