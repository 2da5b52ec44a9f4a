/**
 * A module worker: connects to one or more balancers over EP, registers its services and
 * slots, and *pulls*: a balancer may only send it as many jobs as it has granted with
 * READY frames. Jobs run on this process's handler-thread pool.
 *
 * Credit policy (SPEC.md §9.5): the worker's capacity is `C = slots + prefetch`. It keeps
 * `held + Σ credit ≤ C`, where `held` counts jobs received and not yet answered and
 * `credit` the grants a balancer has not used yet. A freed slot is granted to the balancer
 * reporting the deepest queue (every REQUEST and HEARTBEAT carries `queue_depth`), or,
 * when none has work waiting, to the one holding the least credit. A balancer with work
 * waiting and no credit, while all capacity is parked elsewhere, gets one extra grant, so
 * that no balancer waits on another's idle credit: a worker attached to `B` balancers holds
 * at most `slots + prefetch + (B − 1)` jobs.
 *
 * Its pool may grow and shrink while it runs (`autoscaler.ts`): the worker then registers
 * its new slot count with every balancer (a new REGISTER, as on reload) and grants the new
 * capacity. A thread is retired only once `held + Σ credit` fits the smaller capacity: credit
 * is never taken back (SPEC.md §6.4), so until then the worker grants nothing beyond it and
 * the retirement waits ({@linkcode WorkerNode.scaleDown}); the bound above holds throughout,
 * for the slots registered at each moment.
 *
 * Each balancer connection is a {@linkcode BalancerLink} (`_balancer_link.ts`). Connections
 * are dialled through {@linkcode WorkerNodeOptions.dial} (TCP by default), so the worker
 * runs as well over in-memory transports.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { DEFAULT_PREFETCH, type Frame, NOT_APPLICABLE } from "../../protocol/ep_frames.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import { oneLine } from "../escape.ts";
import { poolError, submitError } from "../threads/job_errors.ts";
import { JobError } from "../errors.ts";
import { replyProblem } from "../job.ts";
import type { HandlerPool, JobReply, PoolJob } from "../threads/pool.ts";
import { unsendableReply } from "../ep_limits.ts";
import { BalancerLink, type BalancerLinkOptions, type JobSource } from "./_balancer_link.ts";

const log = getLogger(["ep", "worker"]);

/**
 * What the worker uses of its handler-thread pool: a {@linkcode HandlerPool} has it (tests
 * pass a pool whose jobs they finish by hand).
 */
export type WorkerPool =
  & Pick<
    HandlerPool,
    "services" | "freeSlots" | "jobsInFlight" | "onSlotsAvailable" | "serves" | "submit" | "close"
  >
  & Partial<
    Pick<
      HandlerPool,
      | "concurrency"
      | "cancel"
      | "onResize"
      | "grow"
      | "retire"
      | "threads"
      | "threadsStarting"
      | "perThreadConcurrency"
    >
  >;

/** The slots a worker registers: what its pool runs at once (its queue is prefetch room). */
function slotsOf(pool: WorkerPool): number {
  return pool.concurrency ?? pool.freeSlots + pool.jobsInFlight;
}

/** Options for {@linkcode WorkerNode.start}. */
export interface WorkerNodeOptions extends BalancerLinkOptions {
  /** Balancers to pull from, as `host:port`. */
  balancers: string[];
  /** Runs the jobs. Its services are registered; its slots are the worker's slots. */
  pool: WorkerPool;
  /** Run-time caps of some services, in ms (their handlers are interrupted past it). */
  timeouts?: ReadonlyMap<string, number>;
  /**
   * Send a handler's own error message to the balancer (development); default: a generic
   * one with the request id, the message going to this process's log (`job_errors.ts`).
   */
  exposeErrors?: boolean;
  /** Told of every job from a balancer and every answer (the autoscaler's wait estimate). */
  observer?: WorkerObserver;
}

/** What a worker tells about its jobs: enough to estimate how long they wait at balancers. */
export interface WorkerObserver {
  /** A REQUEST arrived; `queueDepth` is the balancer's count of jobs still queued for it. */
  request(service: string, queueDepth: number): void;
  /** A job was answered. */
  answered(service: string): void;
}

interface Held {
  link: JobSource;
  /** The link's session the job came on: answers to an older session are dropped. */
  gen: number;
  id: number;
  service: string;
  /** Its `ep-request-id`, for error messages and the log. */
  requestId: string | undefined;
  cancelled: boolean;
  /**
   * When the job's time is up (`performance.now()` ms, from the REQUEST's `deadline_ms` and
   * the service's cap, counted from receipt); Infinity: none. A prefetched job that waited
   * here is run with what is left, not with its whole deadline again.
   */
  deadline: number;
}

/** A running module worker. */
export class WorkerNode {
  #opts: WorkerNodeOptions;
  #links: BalancerLink[] = [];
  /** Every job source: the balancer links, and this process's own balancer when attached. */
  #sources: JobSource[] = [];
  #pool: WorkerPool;
  #slots: number;
  #held = 0;
  #local: { job: PoolJob; h: Held }[] = [];
  /** Jobs in the pool, and their pool job ids (for CANCEL). */
  #inPool = new Map<Held, number>();
  #draining = false;
  #closed = false;
  #idleWaiters: (() => void)[] = [];
  #seq = 0;
  #peakHeld = 0;
  /** Slots a retirement waits to give up: not granted again (see the module doc). */
  #giving = 0;
  #givingReason = "";

  private constructor(opts: WorkerNodeOptions) {
    this.#opts = opts;
    this.#pool = opts.pool;
    this.#slots = slotsOf(opts.pool);
    this.#watch(opts.pool);
  }

  #watch(pool: WorkerPool): void {
    pool.onSlotsAvailable = () => this.#slotsFreed();
    if ("onResize" in pool) pool.onResize = () => this.#resized(pool);
  }

  /**
   * Starts the worker: connects to every balancer (retrying in the background).
   *
   * @example
   * ```ts ignore
   * import { WorkerNode } from "./worker.ts";
   * const node = WorkerNode.start({ balancers: ["127.0.0.1:7070"], pool });
   * Deno.addSignalListener("SIGTERM", () => node.drain().then(() => Deno.exit(0)));
   * ```
   */
  static start(opts: WorkerNodeOptions): WorkerNode {
    const node = new WorkerNode(opts);
    for (const addr of opts.balancers) {
      const link = new BalancerLink(node, addr, opts);
      node.#links.push(link);
      node.#sources.push(link);
      link.run();
    }
    return node;
  }

  /**
   * Adds a job source other than a remote balancer (this process's own balancer, which then
   * shares the worker's slots with the balancers it pulls from), and grants it credit.
   */
  attach(source: JobSource): void {
    this.#sources.push(source);
    this.regrant();
  }

  /** Status only (SPEC.md §6.9): the slots not taken by jobs this worker holds. */
  get freeSlots(): number {
    return Math.max(0, this.#slots - this.#held);
  }

  /** The slots registered with balancers. */
  get slots(): number {
    return this.#slots;
  }

  /** Jobs received and not yet answered. */
  get held(): number {
    return this.#held;
  }

  /** The most jobs held at once since start (to check the bound in SPEC.md §9.5). */
  get peakHeld(): number {
    return this.#peakHeld;
  }

  /** Balancers currently connected and welcomed. */
  get connected(): number {
    return this.#links.filter((l) => l.open).length;
  }

  /** @internal Capacity including prefetch. */
  get capacity(): number {
    const prefetch = Math.min(
      this.#opts.prefetch ?? DEFAULT_PREFETCH,
      ...this.#links.filter((l) => l.open).map((l) => l.prefetch),
    );
    return this.#slots - this.#giving + Math.max(0, prefetch);
  }

  /** Slots held back for a retirement that waits for credit to come back. */
  get withheld(): number {
    return this.#giving;
  }

  /** Adds a handler thread (calling off a retirement still waiting); false when it cannot. */
  scaleUp(reason = ""): boolean {
    if (this.#giving > 0) this.cancelScaleDown();
    return this.#pool.grow?.(reason) ?? false;
  }

  /**
   * Retires a handler thread as soon as the jobs held and the credit granted fit the smaller
   * capacity: now (true), or later, granting nothing beyond it meanwhile (false). Asking
   * again while one waits changes nothing.
   */
  scaleDown(reason = ""): boolean {
    const pool = this.#pool;
    if (pool.retire === undefined || (pool.threads ?? 0) + (pool.threadsStarting ?? 0) <= 1) {
      return false;
    }
    if (this.#giving === 0) {
      this.#giving = Math.min(this.#slots, pool.perThreadConcurrency ?? 1);
      this.#givingReason = reason;
    }
    return this.#retireIfFits();
  }

  /** Calls off a retirement still waiting for credit, and grants what it held back. */
  cancelScaleDown(): void {
    if (this.#giving === 0) return;
    this.#giving = 0;
    this.regrant();
  }

  /** Retires a thread when what is promised fits without it. */
  #retireIfFits(): boolean {
    if (this.#giving === 0) return false;
    const promised = this.#held +
      this.#sources.reduce((n, l) => n + (l.open && !l.drained ? l.credit : 0), 0);
    if (promised > this.capacity) return false;
    this.#giving = 0;
    // The pool's onResize registers the smaller slot count.
    return this.#pool.retire?.(this.#givingReason) ?? false;
  }

  /** The pool's slots changed (a thread added is ready, or one retires): register them. */
  #resized(pool: WorkerPool): void {
    if (pool !== this.#pool) return; // an old pool (reload)
    const slots = slotsOf(pool);
    if (slots === this.#slots) return;
    log.info("Slots now {slots} (were {was}): registering", { slots, was: this.#slots });
    this.#slots = slots;
    for (const l of this.#links) l.register();
    this.#slotsFreed();
    this.regrant();
  }

  /**
   * Replaces the pool (reload): new jobs go to `pool`, jobs in flight finish on the old
   * one, which is closed once idle. Balancers get a new REGISTER.
   */
  async replacePool(pool: WorkerPool): Promise<void> {
    const old = this.#pool;
    this.#pool = pool;
    this.#opts = { ...this.#opts, pool };
    this.#watch(pool);
    this.#giving = 0;
    this.#slots = slotsOf(pool);
    for (const l of this.#links) l.register();
    this.regrant();
    while (old.jobsInFlight > 0) await new Promise((r) => setTimeout(r, 10));
    await old.close({ drain: true });
  }

  /** Stops taking jobs: tells every balancer at once, finishes held jobs, then closes. */
  async drain(graceMs = 30_000): Promise<void> {
    this.#draining = true;
    for (const l of this.#links) l.sendDrain(graceMs);
    if (this.#held > 0) {
      await Promise.race([
        new Promise<void>((r) => this.#idleWaiters.push(r)),
        new Promise((r) => setTimeout(r, graceMs)),
      ]);
    }
    this.close();
  }

  /** Closes every connection at once. */
  close(): void {
    this.#closed = true;
    for (const l of this.#links) l.close();
  }

  /** @internal The pool new jobs go to. */
  get pool(): WorkerPool {
    return this.#pool;
  }

  /** @internal */
  get closed(): boolean {
    return this.#closed;
  }

  /** @internal */
  get draining(): boolean {
    return this.#draining;
  }

  /** @internal A job arrived from a balancer. */
  run(link: BalancerLink, f: Extract<Frame, { type: "request" }>): void {
    this.#opts.observer?.request(f.service, f.queueDepth === NOT_APPLICABLE ? 0 : f.queueDepth);
    // A redelivery says so to its handler (`ep-attempt`, SPEC.md §10): 2, 3, …
    const meta = f.attempt > 0
      ? encodeMeta([...f.meta, ["ep-attempt", String(f.attempt + 1)]])
      : f.meta.length > 0
      ? encodeMeta(f.meta)
      : undefined;
    let requestId: string | undefined;
    for (const [k, v] of f.meta) if (k === "ep-request-id") requestId = v;
    this.take(link, f.id, f.service, meta, f.body.slice(), f.deadlineMs || Infinity, requestId);
  }

  /**
   * @internal A job arrived from a source (`deadlineMs` from now; Infinity: none): counted
   * as held, run on the pool when a slot is free, answered through its source.
   */
  take(
    source: JobSource,
    id: number,
    service: string,
    meta: Uint8Array | undefined,
    body: Uint8Array,
    deadlineMs: number,
    requestId?: string,
  ): void {
    // Build the job first: nothing is counted as held until it can be answered.
    const limit = Math.min(deadlineMs, this.#opts.timeouts?.get(service) ?? Infinity);
    const h: Held = {
      link: source,
      gen: source.gen,
      id,
      service,
      requestId,
      cancelled: false,
      deadline: performance.now() + limit,
    };
    const job: PoolJob = { id: ++this.#seq, service, meta, body };
    this.#held++;
    if (this.#held > this.#peakHeld) this.#peakHeld = this.#held;
    if (!this.#pool.serves(service)) {
      this.#done(h, null, null, {
        code: ErrorCode.NO_SERVICE,
        message: `No service "${service}" here`,
      });
      return;
    }
    this.#submit(job, h);
  }

  /**
   * @internal A balancer cancelled a job: drop it if it has not started, else cancel it in
   * the pool (answered `cancelled` through its callback; its handler is told).
   */
  cancel(link: JobSource, id: number): void {
    const i = this.#local.findIndex((x) => x.h.link === link && x.h.id === id);
    if (i >= 0) {
      const [{ h }] = this.#local.splice(i, 1);
      this.#done(h, null, null, { code: ErrorCode.CANCELLED, message: "Cancelled" });
    }
    for (const [h, job] of this.#inPool) {
      if (h.link === link && h.id === id && h.gen === link.gen) this.#pool.cancel?.(job);
    }
  }

  /** Slots freed with no reply to report (a timed-out job let go): start queued jobs. */
  #slotsFreed(): void {
    while (this.#local.length > 0 && this.#pool.freeSlots > 0) {
      const next = this.#local.shift()!;
      this.#submit(next.job, next.h);
    }
  }

  #submit(job: PoolJob, h: Held): void {
    if (h.deadline !== Infinity) {
      const left = Math.round(h.deadline - performance.now());
      if (left <= 0) {
        // Its time ran out while it waited here (prefetched): not worth starting.
        this.#done(h, null, null, { code: ErrorCode.TIMEOUT, message: "Handler timed out" });
        return;
      }
      job.deadlineMs = left;
    }
    let ok: boolean;
    try {
      ok = this.#pool.submit(job, (err, reply) => this.#done(h, err, reply));
    } catch (err) {
      // The pool took nothing: answer it (a request too large for the rings: bad_request).
      this.#done(h, null, null, submitError(err, h.service));
      return;
    }
    if (!ok) this.#local.push({ job, h });
    else this.#inPool.set(h, job.id);
  }

  #done(
    h: Held,
    err: Error | null,
    reply: JobReply | null,
    fail?: { code: number; message: string },
  ): void {
    this.#held--;
    this.#inPool.delete(h);
    this.#opts.observer?.answered(h.service);
    // Start a locally queued (prefetched) job in the slot just freed.
    while (this.#local.length > 0 && this.#pool.freeSlots > 0) {
      const next = this.#local.shift()!;
      this.#submit(next.job, next.h);
    }
    const free = this.freeSlots;
    if (h.gen !== h.link.gen) {
      // The balancer connection it came on is gone; the balancer redelivered it.
    } else if (err || fail) {
      const e = fail ??
        poolError(err!, h.service, {
          requestId: h.requestId,
          expose: this.#opts.exposeErrors,
        });
      // One line of bounded bytes: an ERROR frame cannot carry more (SPEC.md §6.10).
      h.link.error(h.id, e.code, oneLine(e.message));
    } else {
      try {
        // Never a REPLY that EP cannot carry (the pool already refuses such replies).
        const problem = replyProblem(reply!.status, reply!.body.length);
        if (problem !== null) throw new JobError(ErrorCode.HANDLER_ERROR, problem);
        h.link.reply(h.id, reply!.status, decodeMeta(reply!.meta), reply!.body, free);
      } catch (e) {
        // A reply EP cannot carry (a metadata key EP does not allow, over max_payload):
        // the balancer still gets an answer, and the slot is granted again below.
        const je = unsendableReply(e);
        log.warn("Cannot send the reply of {service}: {message}", {
          service: h.service,
          message: je.message,
        });
        h.link.error(h.id, je.code, oneLine(je.message));
      }
    }
    this.regrant();
    if (this.#held === 0) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** @internal Hands out free capacity as credit (see the module doc). */
  regrant(): void {
    if (this.#draining || this.#closed) return;
    if (this.#giving > 0) this.#retireIfFits();
    const open = this.#sources.filter((l) => l.open && !l.drained);
    if (open.length === 0) return;
    const cap = this.capacity;
    let used = this.#held + open.reduce((n, l) => n + l.credit, 0);
    const grants = new Map<JobSource, number>();
    const give = (l: JobSource) => {
      l.credit++;
      used++;
      grants.set(l, (grants.get(l) ?? 0) + 1);
    };
    while (used < cap) {
      let best: JobSource | null = null;
      for (const l of open) {
        if (l.credit >= cap) continue;
        if (
          !best ||
          (l.queued > 0 && (best.queued === 0 || l.queued / (l.credit + 1) >
              best.queued / (best.credit + 1))) ||
          (l.queued === 0 && best.queued === 0 && l.credit < best.credit)
        ) {
          best = l;
        }
      }
      if (!best) break;
      give(best);
    }
    // Work waiting at a balancer with no credit while capacity is parked elsewhere.
    for (const l of open) {
      if (l.queued > 0 && l.credit === 0 && used < cap + open.length - 1) give(l);
    }
    for (const [l, n] of grants) l.grant(n);
  }
}
