/**
 * The all-in-one mode's provider: the balancer dispatches to this process's own
 * handler-thread pool through the rings, with no TCP hop. To the dispatcher it looks like
 * any worker: slots for some services, credit = the pool's free slots.
 *
 * @module
 */
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import type { Balancer } from "./balancer.ts";
import type { Provider, QueuedJob, ServiceDescription } from "./provider.ts";
import { PoolFullError } from "../errors.ts";
import { jobMeta } from "../job.ts";
import type { JobPool, JobReply } from "../threads/pool_types.ts";
import { poolError, submitError } from "../threads/job_errors.ts";

/**
 * A {@linkcode Provider} over a {@linkcode JobPool}: the handler-thread pool, or the pool
 * that runs a map of functions on this thread.
 *
 * @example
 * ```ts ignore
 * import { LocalPoolProvider } from "./local_provider.ts";
 * balancer.addProvider(new LocalPoolProvider(pool, balancer));
 * ```
 */
export class LocalPoolProvider implements Provider {
  readonly name = "local pool";
  readonly services: ReadonlySet<string>;
  /** Set when the pool is being replaced (reload): it finishes what it holds. */
  draining = false;
  #pool: JobPool;
  #balancer: Balancer;
  #timeouts: ReadonlyMap<string, number>;
  /** What its services say of themselves (`/_ep/services`). */
  readonly descriptions: ReadonlyMap<string, ServiceDescription>;
  /** Whether a handler's own error message reaches its client (development). */
  readonly exposeErrors: boolean;

  /**
   * Wraps `pool`; answers go to `balancer`. `timeouts` caps the run time of some services
   * (their handlers are interrupted past it); `descriptions` describes them; with
   * `exposeErrors` a handler's own error message reaches its client (else a generic one
   * with the request id, `job_errors.ts`).
   */
  constructor(
    pool: JobPool,
    balancer: Balancer,
    timeouts: ReadonlyMap<string, number> = new Map(),
    descriptions: ReadonlyMap<string, ServiceDescription> = new Map(),
    exposeErrors = false,
  ) {
    this.exposeErrors = exposeErrors;
    this.#pool = pool;
    this.#balancer = balancer;
    this.#timeouts = timeouts;
    this.descriptions = descriptions;
    // A slot freed late (after a timeout) must still pull the next waiting job.
    pool.onSlotsAvailable = () => balancer.pull(this);
    this.services = new Set(pool.services);
  }

  /** The pool's slots now (a pool that grows and shrinks changes them). */
  get slots(): number {
    return this.#pool.concurrency;
  }

  /** The pool it dispatches to. */
  get pool(): JobPool {
    return this.#pool;
  }

  /** The pool's free slots. */
  get credit(): number {
    return this.#pool.freeSlots;
  }

  /** The largest job (metadata and body bytes) the handler rings carry. */
  get maxJobBytes(): number {
    return this.#pool.maxMessageBytes;
  }

  /**
   * Submits the job to the pool. What the pool refuses (a job too large for the rings, a
   * metadata entry `encodeMeta` cannot write, a closed pool) throws a {@linkcode JobError}
   * with nothing taken (Provider.dispatch).
   */
  dispatch(qj: QueuedJob): void {
    let accepted: boolean;
    try {
      const meta = jobMeta(qj.job, qj.attempt, qj.hedgeCopy === true);
      accepted = this.#pool.submit({
        id: qj.seq,
        service: qj.service,
        meta: meta.length > 0 ? encodeMeta(meta) : undefined,
        body: qj.job.body,
        deadlineMs: Math.min(
          Math.max(1, Math.round(qj.deadline - performance.now())),
          this.#timeouts.get(qj.service) ?? Infinity,
        ),
      }, (err, reply) => this.#answered(qj, err, reply));
    } catch (err) {
      throw submitError(err, qj.service);
    }
    if (!accepted) throw new PoolFullError();
  }

  #answered(qj: QueuedJob, err: Error | null, reply: JobReply | null): void {
    this.#balancer.finish(
      this,
      qj,
      err
        ? poolError(err, qj.service, { requestId: qj.job.requestId, expose: this.exposeErrors })
        : {
          status: reply!.status,
          headers: decodeMeta(reply!.meta),
          body: reply!.body,
        },
    );
  }

  /**
   * The job's client went away, or its time ran out: the pool answers it `cancelled` (a
   * late answer when the balancer answered already) and tells its handler (a TypeScript
   * handler's `AbortSignal` fires).
   */
  cancel(qj: QueuedJob): void {
    this.#pool.cancel(qj.seq);
  }
}
