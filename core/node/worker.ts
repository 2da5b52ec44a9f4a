/**
 * A module worker: connects to one or more balancers over EP, registers its services and
 * slots, and *pulls*: a balancer may only send it as many jobs as it has granted with
 * READY frames. Jobs run on this process's handler-thread pool.
 *
 * Credit policy (SPEC.md §9.5, {@linkcode nextCredit}): the worker's capacity is
 * `C = slots + prefetch`. It keeps `held + Σ credit ≤ C`, where `held` counts jobs received
 * and not yet answered (and cancelled jobs whose handler still runs) and `credit` the grants
 * a balancer has not used yet. With one balancer, all of it is granted to that balancer,
 * which decides when to use the prefetch. With several, a freed slot goes to the balancer
 * whose oldest waiting job is oldest (every version-2 REQUEST and HEARTBEAT carries how long
 * it has waited; a version-1 balancer only its queue depth, and then the deepest queue per
 * credit wins), so that their clients see one queue's tail. Credit beyond the free slots is
 * not granted to a balancer whose next job is newer than older work waiting at another that
 * holds credit here and at least `slots` jobs here ({@linkcode olderWorkHeld}): that one
 * counts the worker busy and keeps its credit for its prefetch rule, while the newer job
 * would be sent at once, wait here and start first. When none has work waiting, free slots
 * (not the prefetch) are parked with the balancer holding the least credit, so that the
 * next job anywhere is dispatched without a round trip. A balancer with work waiting and no
 * credit, while all capacity is parked elsewhere, gets one extra grant (not beyond older
 * work held back, as above), so that no balancer waits on another's idle credit: a worker
 * attached to `B` balancers holds at most `slots + prefetch + (B − 1)` jobs.
 *
 * A job cancelled while its handler runs (CANCEL, or its deadline) is answered when its slot
 * is free again (the handler returned, or stopped on its signal; a Lua handler runs to its
 * end; a prefetched job waiting on its thread ends when the thread reaches it): until then
 * it still counts as held, so no balancer is granted a slot still taken, and a balancer's
 * count of the jobs the worker holds stays true (SPEC.md §9.6). The pool says which job's
 * slot was freed (`submit`'s `onFreed`), so each such job is answered exactly once, when its
 * own slot is free, whatever other jobs' handlers do.
 *
 * Its pool may grow and shrink while it runs (`autoscaler.ts`): the worker then registers
 * its new slot count with every balancer (a new REGISTER, as on reload) and grants the new
 * capacity. A thread (or, when the pool scales slots, a slot) is retired only once `held + Σ credit` fits the smaller capacity: credit
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
 * pass a pool whose jobs they finish by hand). Its `submit` must call `onFreed` when the
 * job's slot is free again: a job answered `cancelled` or `timeout` while its handler still
 * runs is answered to its balancer only then.
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
      | "scaleSize"
      | "scaleStep"
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
  /**
   * Services balancers may hedge (their handlers are idempotent), and after how long: ms,
   * or null for the service's recent p95 (REGISTER, SPEC.md §6.3, §9.10).
   */
  hedge?: ReadonlyMap<string, number | null>;
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

/** How a source with work waiting ranks for the extra grant: its oldest wait, else its depth. */
function rank(v: CreditSource): number {
  return Number.isNaN(v.waitMs) ? v.queued : v.waitMs;
}

/** What the credit policy reads of one job source ({@linkcode nextCredit}). */
export interface CreditSource {
  /** Credit it holds: granted and not used yet. */
  readonly credit: number;
  /** Jobs it reported waiting for this worker's services. */
  readonly queued: number;
  /** How long the oldest of them has waited, ms; NaN when it does not say (EP version 1). */
  readonly waitMs: number;
  /** Jobs of it the worker holds (received, not answered); 0 when not given. */
  readonly held?: number;
}

/**
 * Whether a source other than `i` holds credit it keeps for waiting work older than `ageMs`
 * (SPEC.md §9.5): it holds at least `slots` jobs here, so that it counts the worker busy and
 * uses its credit only under its prefetch rule, or once one of its jobs is answered. Credit
 * beyond the free slots to `i` would let `i`'s newer job wait here and start before that
 * older one.
 *
 * @example
 * ```ts
 * import { olderWorkHeld } from "./worker.ts";
 * // A holds the one slot's job and 2 credit for 2 jobs waiting (10 ms); B's job: 2 ms.
 * const a = { credit: 2, queued: 2, waitMs: 10, held: 1 };
 * const b = { credit: 0, queued: 1, waitMs: 2, held: 0 };
 * console.assert(olderWorkHeld([a, b], 1, 1, b.waitMs)); // no credit beyond slots to B
 * ```
 */
export function olderWorkHeld(
  sources: readonly CreditSource[],
  i: number,
  slots: number,
  ageMs: number,
): boolean {
  for (let j = 0; j < sources.length; j++) {
    const y = sources[j];
    if (j === i || y.credit <= 0 || y.queued <= 0 || (y.held ?? 0) < slots) continue;
    if (y.waitMs > ageMs) return true;
  }
  return false;
}

/**
 * The worker's credit policy (SPEC.md §9.5): the index of the source that gets the next
 * credit, or -1 for none, when the worker has `slots` slots, a capacity of `cap` (slots and
 * prefetch) and `used` of it taken (jobs held and credit granted).
 *
 * - One source: it gets everything up to `cap` (the balancer decides when to prefetch).
 * - Several, some with waiting jobs not covered by the credit it holds (`queued > credit`):
 *   the one whose next uncovered job has waited longest, estimated as `waitMs × (1 −
 *   credit / queued)` (its jobs spread evenly in age); ties to the most uncovered jobs.
 *   When one of them does not report waits, all are ranked by `queued / (credit + 1)`.
 *   Beyond the free slots (`used ≥ slots`), with waits reported, not to a source whose next
 *   job is newer than older work another holds back ({@linkcode olderWorkHeld}).
 * - Several, none with work uncovered: a free slot (`used < slots`) is parked with the
 *   source holding the least credit (the first on a tie); the prefetch is not.
 *
 * @example
 * ```ts
 * import { nextCredit } from "./worker.ts";
 * const a = { credit: 0, queued: 8, waitMs: 5 };
 * const b = { credit: 0, queued: 1, waitMs: 12 };
 * console.assert(nextCredit([a, b], 1, 5, 1) === 1); // b's job waited longest
 * ```
 */
export function nextCredit(
  sources: readonly CreditSource[],
  slots: number,
  cap: number,
  used: number,
): number {
  if (used >= cap) return -1;
  if (sources.length === 1) return sources[0].credit < cap ? 0 : -1;
  let ages = true;
  for (const l of sources) if (l.queued > l.credit && Number.isNaN(l.waitMs)) ages = false;
  let best = -1;
  let bestKey = -Infinity;
  let bestUncovered = 0;
  for (let i = 0; i < sources.length; i++) {
    const l = sources[i];
    const uncovered = l.queued - l.credit;
    if (uncovered <= 0 || l.credit >= cap) continue;
    const key = ages ? l.waitMs * (1 - l.credit / l.queued) : l.queued / (l.credit + 1);
    // Beyond the free slots its job would wait here: not ahead of older work held back.
    if (ages && used >= slots && olderWorkHeld(sources, i, slots, key)) continue;
    if (key > bestKey || (key === bestKey && uncovered > bestUncovered)) {
      best = i;
      bestKey = key;
      bestUncovered = uncovered;
    }
  }
  if (best >= 0 || used >= slots) return best;
  for (let i = 0; i < sources.length; i++) {
    if (sources[i].credit >= cap) continue;
    if (best < 0 || sources[i].credit < sources[best].credit) best = i;
  }
  return best;
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
  /** Its pool slot is free again (the pool's `onFreed`); false until it held one. */
  freed: boolean;
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
  /** Jobs in a pool, with the pool (an older one after a reload) and their pool job ids. */
  #inPool = new Map<Held, { pool: WorkerPool; id: number }>();
  /**
   * Cancelled or timed-out jobs answered by the pool while their handler still holds its
   * slot: each answered (and no longer held) when the pool says its slot is free.
   */
  #stopping = new Map<Held, Error>();
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

  /** The services balancers may hedge ({@linkcode WorkerNodeOptions.hedge}). */
  get hedge(): ReadonlyMap<string, number | null> | undefined {
    return this.#opts.hedge;
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

  /**
   * Adds a handler thread, or a slot when the pool scales slots (calling off a retirement
   * still waiting); false when it cannot.
   */
  scaleUp(reason = ""): boolean {
    if (this.#giving > 0) this.cancelScaleDown();
    return this.#pool.grow?.(reason) ?? false;
  }

  /**
   * Retires a handler thread (or a slot) as soon as the jobs held and the credit granted fit the smaller
   * capacity: now (true), or later, granting nothing beyond it meanwhile (false). Asking
   * again while one waits changes nothing.
   */
  scaleDown(reason = ""): boolean {
    const pool = this.#pool;
    const size = pool.scaleSize ?? (pool.threads ?? 0) + (pool.threadsStarting ?? 0);
    if (pool.retire === undefined || size <= 1) return false;
    if (this.#giving === 0) {
      // A thread's slots, or one slot when the pool scales its slot limit.
      this.#giving = Math.min(this.#slots, pool.scaleStep ?? pool.perThreadConcurrency ?? 1);
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
      freed: false,
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
   * @internal The connection of `source`'s current session ended: the jobs it left waiting
   * here (prefetched, not started) are dropped, as the balancer redelivers them; their
   * capacity is granted again. Jobs already in the pool run on; their answers are dropped.
   */
  lost(source: JobSource): void {
    const gone = this.#local.filter((x) => x.h.link === source && x.h.gen === source.gen);
    if (gone.length === 0) return;
    this.#local = this.#local.filter((x) => !gone.includes(x));
    for (const { h } of gone) {
      this.#held--;
      this.#opts.observer?.answered(h.service);
    }
    this.#afterAnswers();
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
    for (const [h, { pool, id: job }] of this.#inPool) {
      // The pool it runs on: after a reload, maybe the old one.
      if (h.link === link && h.id === id && h.gen === link.gen) pool.cancel?.(job);
    }
  }

  /** Slots freed with no reply to report (a thread restarted or added): start queued jobs. */
  #slotsFreed(): void {
    while (this.#local.length > 0 && this.#pool.freeSlots > 0) {
      const next = this.#local.shift()!;
      this.#submit(next.job, next.h);
    }
  }

  /**
   * The pool freed job `h`'s slot. A job it answered `cancelled` or `timeout` while its
   * handler held the slot is answered now; any other is answered by its reply callback.
   */
  #freed(h: Held): void {
    h.freed = true;
    const err = this.#stopping.get(h);
    if (err === undefined) return;
    this.#stopping.delete(h);
    this.#answer(h, err, null);
    this.#afterAnswers();
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
    const pool = this.#pool;
    try {
      ok = pool.submit(job, (err, reply) => this.#done(h, err, reply), () => this.#freed(h));
    } catch (err) {
      // The pool took nothing: answer it (a request too large for the rings: bad_request).
      this.#done(h, null, null, submitError(err, h.service));
      return;
    }
    if (!ok) this.#local.push({ job, h });
    else this.#inPool.set(h, { pool, id: job.id });
  }

  #done(
    h: Held,
    err: Error | null,
    reply: JobReply | null,
    fail?: { code: number; message: string },
  ): void {
    const inPool = this.#inPool.delete(h);
    if (inPool && err !== null && !h.freed) {
      // Answered (cancelled, timed out: a `JobError` or the pool's `JobTimeoutError`) while
      // its handler still holds the slot (a Lua handler runs to its end; a job waiting on
      // its thread ends when the thread reaches it): answer the job when its slot is free,
      // so that nobody is granted a slot still taken (SPEC.md §9.6).
      this.#stopping.set(h, err);
      return;
    }
    this.#answer(h, err, reply, fail);
    this.#afterAnswers();
  }

  /** After answers: the capacity they freed is granted again; a drain may end. */
  #afterAnswers(): void {
    this.regrant();
    if (this.#held === 0) {
      for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** Answers a job it holds through its source, and starts a locally queued one. */
  #answer(
    h: Held,
    err: Error | null,
    reply: JobReply | null,
    fail?: { code: number; message: string },
  ): void {
    this.#held--;
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
  }

  /** @internal Hands out free capacity as credit (see the module doc). */
  regrant(): void {
    if (this.#draining || this.#closed) return;
    if (this.#giving > 0) this.#retireIfFits();
    const open = this.#sources.filter((l) => l.open && !l.drained);
    if (open.length === 0) return;
    const cap = this.capacity;
    // Credit the balancers held before this call: capacity parked with them.
    const parked = open.reduce((n, l) => n + l.credit, 0);
    let used = this.#held + parked;
    const grants = new Map<JobSource, number>();
    const now = performance.now();
    const views = open.map((l) => ({
      credit: l.credit,
      queued: l.queued,
      waitMs: l.queued > 0 ? l.oldestWaitMs(now) : NaN,
      held: 0,
    }));
    // Jobs each source holds here, in its current session (what it counts itself): only
    // several sources need it (SPEC.md §9.5, olderWorkHeld).
    if (open.length > 1) {
      const count = (h: Held) => {
        const i = h.gen === h.link.gen ? open.indexOf(h.link) : -1;
        if (i >= 0) views[i].held++;
      };
      for (const h of this.#inPool.keys()) count(h);
      for (const { h } of this.#local) count(h);
      for (const h of this.#stopping.keys()) count(h);
    }
    const give = (i: number) => {
      const l = open[i];
      l.credit++;
      views[i].credit++;
      used++;
      grants.set(l, (grants.get(l) ?? 0) + 1);
    };
    for (let i; (i = nextCredit(views, this.#slots, cap, used)) >= 0;) give(i);
    // Work waiting at a balancer with no credit while capacity is parked (as credit) at
    // another: one extra grant, oldest work first, so that none waits on credit another
    // may never use. Capacity taken by jobs needs none: their answers free it, for the
    // oldest work. (Credit granted in this call is not parked: it is for work waiting.)
    if (parked > 0) {
      const waiting = views.map((_, i) => i).filter((i) =>
        views[i].queued > 0 && views[i].credit === 0
      );
      for (const i of waiting.sort((x, y) => rank(views[y]) - rank(views[x]))) {
        if (used >= cap + open.length - 1) break;
        if (olderWorkHeld(views, i, this.#slots, views[i].waitMs)) continue;
        give(i);
      }
    }
    for (const [l, n] of grants) l.grant(n);
  }
}
