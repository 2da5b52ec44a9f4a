/**
 * The all-in-one mode's provider: the balancer dispatches to this process's own
 * handler-thread pool through the rings, with no TCP hop. To the dispatcher it looks like
 * any worker: slots for some services, credit = the pool's free slots.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "../../protocol/errors.ts";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import type { Balancer, Provider, QueuedJob } from "./balancer.ts";
import {
  HandlerError,
  HandlerThreadLostError,
  JobTimeoutError,
  PoolClosedError,
  PoolFullError,
  RingMessageTooLargeError,
} from "../errors.ts";
import { JobError, jobMeta } from "../job.ts";
import type { HandlerPool, JobReply } from "../threads/pool.ts";

const log = getLogger(["ep", "handler"]);

/**
 * Handler failures seen by this process: Lua errors turned into error replies, and jobs
 * interrupted at their deadline (the Lua hook stops them; metrics `ep_lua_*`).
 *
 * @example
 * ```ts
 * import { handlerCounters } from "./local_provider.ts";
 * console.assert(handlerCounters.errors >= 0);
 * ```
 */
export const handlerCounters: { errors: number; interrupts: number } = {
  errors: 0,
  interrupts: 0,
};

/**
 * Maps a pool failure reported for a job (through its reply callback) to the job error a
 * client sees. A {@linkcode RingMessageTooLargeError} there is the handler's *reply* that
 * did not fit (`reply_too_large`); a request that does not fit is refused by `submit`
 * itself (see {@linkcode submitError}).
 *
 * @example
 * ```ts
 * import { poolError } from "./local_provider.ts";
 * import { PoolClosedError } from "../errors.ts";
 * console.assert(poolError(new PoolClosedError("closed")).kind === "shutting_down");
 * ```
 */
export function poolError(err: Error, service = ""): JobError {
  if (err instanceof JobError) return err;
  if (err instanceof JobTimeoutError) handlerCounters.interrupts++;
  if (err instanceof HandlerError) {
    if (err.handlerErrorName.startsWith("Lua")) handlerCounters.errors++;
    // The client gets the first line; the log gets the whole story (a Lua traceback).
    log.warn("Handler of {service} failed: {stack}", { service, stack: err.stack ?? err.message });
  }
  if (err instanceof JobTimeoutError) {
    return new JobError(ErrorCode.TIMEOUT, "Handler timed out", { cause: err });
  }
  if (err instanceof HandlerError) {
    const line = err.message.split("\n")[0];
    return new JobError(ErrorCode.HANDLER_ERROR, line || "Handler failed", { cause: err });
  }
  if (err instanceof HandlerThreadLostError) {
    return new JobError(ErrorCode.WORKER_LOST, "Handler thread lost", { cause: err });
  }
  if (err instanceof PoolClosedError) {
    return new JobError(ErrorCode.SHUTTING_DOWN, "Shutting down", { cause: err });
  }
  if (err instanceof RingMessageTooLargeError) {
    return new JobError(
      ErrorCode.REPLY_TOO_LARGE,
      `Reply of ${err.size} bytes exceeds the limit of ${err.limit} bytes of the handler rings`,
      { cause: err },
    );
  }
  log.error("Unexpected handler pool failure for {service}: {error}", { service, error: err });
  return new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
}

/**
 * Maps what {@linkcode HandlerPool.submit} (or the metadata encoding before it) threw to
 * the job error a client sees. The pool takes nothing when it throws.
 *
 * @example
 * ```ts
 * import { submitError } from "./local_provider.ts";
 * import { RingMessageTooLargeError } from "../errors.ts";
 * const err = submitError(new RingMessageTooLargeError(40_000, 32_752), "echo");
 * console.assert(err.kind === "bad_request" && err.message.includes("32752"));
 * ```
 */
export function submitError(err: unknown, service: string): JobError {
  if (err instanceof RingMessageTooLargeError) {
    return new JobError(
      ErrorCode.BAD_REQUEST,
      `Request of ${err.size} bytes exceeds the limit of ${err.limit} bytes for the handlers of "${service}"`,
      { cause: err },
    );
  }
  if (err instanceof PoolClosedError) {
    return new JobError(ErrorCode.SHUTTING_DOWN, "Shutting down", { cause: err });
  }
  if (err instanceof RangeError) {
    // encodeMeta: a key over 255 bytes or a value over 65 535 (a library caller's job).
    return new JobError(ErrorCode.BAD_REQUEST, `Invalid request: ${err.message}`, { cause: err });
  }
  log.error("Cannot hand a job of {service} to the handler pool: {error}", {
    service,
    error: err,
  });
  return new JobError(ErrorCode.INTERNAL, "Internal error", { cause: err });
}

/**
 * A {@linkcode Provider} over a {@linkcode HandlerPool}.
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
  readonly slots: number;
  /** Set when the pool is being replaced (reload): it finishes what it holds. */
  draining = false;
  #pool: HandlerPool;
  #balancer: Balancer;
  #timeouts: ReadonlyMap<string, number>;

  /**
   * Wraps `pool`; answers go to `balancer`. `timeouts` caps the run time of some services
   * (their handlers are interrupted past it).
   */
  constructor(
    pool: HandlerPool,
    balancer: Balancer,
    timeouts: ReadonlyMap<string, number> = new Map(),
  ) {
    this.#pool = pool;
    this.#balancer = balancer;
    this.#timeouts = timeouts;
    // A slot freed late (after a timeout) must still pull the next waiting job.
    pool.onSlotsAvailable = () => balancer.pull(this);
    this.services = new Set(pool.services);
    this.slots = pool.freeSlots + pool.jobsInFlight;
  }

  /** The pool it dispatches to. */
  get pool(): HandlerPool {
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
      const meta = jobMeta(qj.job);
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
      err ? poolError(err, qj.service) : {
        status: reply!.status,
        headers: decodeMeta(reply!.meta),
        body: reply!.body,
      },
    );
  }

  cancel(_qj: QueuedJob): void {
    // The pool's own deadline interrupts the handler; nothing more to do.
  }
}
