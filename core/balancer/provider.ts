/**
 * The provider contract: what the balancer needs from anything with slots for some
 * services, and what it tells about the jobs it hands out.
 *
 * A *provider* is a remote module worker over EP (`worker_link.ts`) or this process's own
 * handler-thread pool (`LocalPoolProvider`); the dispatcher sees both the same way. The
 * conversation, all on the main thread:
 *
 * ```
 * balancer -> provider   dispatch(job)      only while credit > 0 and not draining
 *                        cancel(job)        its client went away, or its deadline passed
 *                        demand(service, n) jobs wait for it while it has no credit
 *                        evict(reason)      it left a job unanswered past the cancel grace
 * provider -> balancer   finish(p, job, r)  it answered a job (once; late answers are fine)
 *                        pull(p)            its credit grew: hand it waiting jobs
 *                        removeProvider(p)  it is gone: what it held is redelivered
 * ```
 *
 * Times in a {@linkcode QueuedJob} and {@linkcode Provider.drainDeadline} are on the
 * balancer's clock: `performance.now()` milliseconds, unless the balancer was given another
 * clock (`BalancerOptions.now`, in tests), which its providers must then read too.
 *
 * @module
 */
import type { Job, JobError, JobResult } from "../job.ts";

/**
 * Something with slots for some services: a remote worker or the local thread pool.
 *
 * @example
 * ```ts
 * import type { Provider } from "./provider.ts";
 * const idle: Provider = {
 *   name: "idle",
 *   services: new Set(["echo"]),
 *   slots: 1,
 *   credit: 0,
 *   draining: false,
 *   dispatch: () => {},
 *   cancel: () => {},
 * };
 * console.assert(idle.credit === 0);
 * ```
 */
export interface Provider {
  /** A name for logs and the status page (`pool`, `worker 10.0.0.5:40412 (name)`). */
  readonly name: string;
  /** The services it serves. */
  readonly services: ReadonlySet<string>;
  /** Its declared concurrent capacity. */
  readonly slots: number;
  /** Jobs it may be handed now without exceeding what it granted. */
  readonly credit: number;
  /** Whether it asked to be given no more jobs. */
  readonly draining: boolean;
  /**
   * Hands it a job; called by the balancer only when `credit > 0`. It takes the job, or
   * throws having taken nothing (no credit spent, no id kept): a {@linkcode JobError} for a
   * job it can never take (the job is answered with it), anything else is unexpected (the
   * job is answered `internal`, and the error logged).
   */
  dispatch(job: QueuedJob): void;
  /** Best-effort cancellation of a job it holds (the balancer has answered it already). */
  cancel(job: QueuedJob): void;
  /** Tells it that jobs are waiting for its services while it has no credit. */
  demand?(service: string, depth: number): void;
  /**
   * The services whose jobs it lets the balancer hedge (a worker's version-2 REGISTER,
   * SPEC.md §9.10), and after how long: ms, or null for the service's recent p95 service
   * time. Absent or empty: none (the balancer's own options may still hedge them).
   */
  readonly hedge?: ReadonlyMap<string, number | null>;
  /**
   * The largest job it can take, as the handler rings count it (metadata and body bytes,
   * as `jobRingBytes` counts them); absent: no limit of its own. A job larger than what every
   * provider of its service takes is refused `bad_request` before it is queued.
   */
  readonly maxJobBytes?: number;
  /**
   * Set while draining after a DRAIN with a grace (balancer-clock ms, see the module doc):
   * jobs it still holds after it are treated as lost (redelivered within the retry budget,
   * else `worker_lost`), SPEC.md §9.7.
   */
  readonly drainDeadline?: number;
  /**
   * What it says of its services, by name (`ep.service(name, file, { description, version })`;
   * a remote worker's arrive in its STATS, SPEC.md §6.7): shown at `/_ep/services`.
   */
  readonly descriptions?: ReadonlyMap<string, ServiceDescription>;
  /**
   * The free slots it last reported for itself, every balancer's jobs counted (EP REPLY and
   * HEARTBEAT `free_slots`); undefined or `0xffffffff`: not reported. Credit alone does not
   * say a slot is free now when several balancers share it: hedging asks this too.
   */
  readonly reportedFree?: number;
  /**
   * Cuts it off: it left a job unanswered `cancelGraceMs` past the job's deadline. The
   * balancer then detaches it (`Balancer.removeProvider`). Providers without it (this
   * process's pool, which answers every job by its deadline) are never cut off.
   */
  evict?(reason: string): void;
}

/**
 * What a service says of itself (NATS micro's `$SRV.INFO` is the model): shown at
 * `/_ep/services` and by `ep services`.
 *
 * @example
 * ```ts
 * import type { ServiceDescription } from "./provider.ts";
 * const d: ServiceDescription = { description: "Users and logins", version: "1.4.0" };
 * console.assert(d.version === "1.4.0");
 * ```
 */
export interface ServiceDescription {
  /** One line on what it does. */
  description?: string;
  /** Its version (any text, such as `1.4.0`). */
  version?: string;
}

/**
 * A job inside the balancer, as providers are handed it.
 *
 * @example
 * ```ts
 * import type { QueuedJob } from "./provider.ts";
 * const timeLeft = (qj: QueuedJob, now: number) => Math.max(0, qj.deadline - now);
 * console.assert(typeof timeLeft === "function");
 * ```
 */
export interface QueuedJob {
  /** Balancer-wide sequence number (FIFO order, ids). */
  readonly seq: number;
  /** The service it is for. */
  readonly service: string;
  /** The job as received. */
  readonly job: Job;
  /** 0–255, higher first. */
  readonly priority: number;
  /** Deliveries so far (0 before the first dispatch). */
  attempt: number;
  /** Absolute deadline, balancer-clock milliseconds (see the module doc). */
  readonly deadline: number;
  /** When it entered the balancer (balancer clock). */
  readonly arrived: number;
  /** When it was last dispatched, or 0. */
  dispatched: number;
  /** The provider holding it, if dispatched. */
  provider: Provider | null;
  /** Set once answered; later answers are ignored. */
  answered: boolean;
  /** @internal Set once its provider was told to cancel it (its client went away). */
  cancelSent?: boolean;
  /**
   * @internal Jobs ahead of it in its provider when dispatched, in units of the provider's
   * slots (0: it started at once in a free slot).
   */
  ahead?: number;
  /** @internal Its size as the handler rings count it, once a provider with a limit asked. */
  bytes?: number;
  /**
   * Set on the copy the balancer sent to hedge a job that ran long (SPEC.md §9.10): it goes
   * out with `ep-hedge: 1`, and its `attempt` is one more than the original's.
   */
  hedgeCopy?: boolean;
  /** @internal The other copy of a hedged job while both may still answer. */
  twin?: QueuedJob;
  /** @internal Set once a copy of it was sent or tried: a job is hedged at most once. */
  hedged?: boolean;
  /** Until when a job for a service with no providers may wait for one. */
  graceUntil: number;
  /** @internal */
  resolve: (r: JobResult) => void;
  /** @internal */
  reject: (e: JobError) => void;
}

/**
 * A snapshot of one provider, for stats.
 *
 * @example
 * ```ts
 * import type { ProviderStats } from "./provider.ts";
 * const s: ProviderStats = {
 *   name: "local pool",
 *   services: ["echo"],
 *   slots: 4,
 *   busy: 1,
 *   credit: 3,
 *   draining: false,
 *   admin: null,
 * };
 * console.assert(s.slots - s.busy === s.credit);
 * ```
 */
export interface ProviderStats {
  /** Its name. */
  name: string;
  /** Services it serves. */
  services: string[];
  /** Declared slots. */
  slots: number;
  /** Jobs it holds. */
  busy: number;
  /** Credit left. */
  credit: number;
  /** Whether it is draining (it sent DRAIN, or is being replaced). */
  draining: boolean;
  /**
   * What an operator set (`Balancer.disable`, `Balancer.drain`): `disabled`, `draining`,
   * `drained` (an operator's drain, nothing held any more), or null.
   */
  admin: "disabled" | "draining" | "drained" | null;
}
