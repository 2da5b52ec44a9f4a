/**
 * Private: this process's own balancer as one more job source of its module worker, for a
 * node that listens *and* pulls from other balancers. To the balancer it is a provider
 * (slots for the pool's services, credit as the worker grants it); to the worker it is a
 * {@linkcode JobSource} like a remote balancer's link. The worker's credit policy then
 * counts every job and every credit of both in one budget (`held + Σ credit ≤ slots +
 * prefetch`), so a slot is never promised twice; jobs travel with no TCP hop.
 *
 * @module
 */
import { ErrorCode } from "../../protocol/errors.ts";
import { encodeMeta } from "../../protocol/ep_meta.ts";
import type { Balancer } from "../balancer/balancer.ts";
import type { Provider, QueuedJob, ServiceDescription } from "../balancer/provider.ts";
import { JobError } from "../errors.ts";
import { jobMeta } from "../job.ts";
import type { JobSource } from "./_balancer_link.ts";
import type { WorkerNode } from "./worker.ts";

/** The local balancer's provider and the worker's job source, in one. */
export class LocalLink implements Provider, JobSource {
  readonly name = "local pool";
  readonly services: ReadonlySet<string>;
  readonly open = true;
  readonly drained = false;
  readonly gen = 1;
  credit = 0;
  readonly #balancer: Balancer;
  readonly #worker: WorkerNode;
  readonly #jobs = new Map<number, QueuedJob>();
  readonly #maxJobBytes: number | undefined;
  /** What its services say of themselves (`/_ep/services`). */
  descriptions: ReadonlyMap<string, ServiceDescription> = new Map();

  /** Attaches to `balancer` as a provider and to `worker` as a source. */
  constructor(
    balancer: Balancer,
    worker: WorkerNode,
    services: readonly string[],
    maxJobBytes?: number,
  ) {
    this.#balancer = balancer;
    this.#worker = worker;
    this.services = new Set(services);
    this.#maxJobBytes = maxJobBytes;
  }

  /** The worker's slots: shared with the balancers it pulls from. */
  get slots(): number {
    return this.#worker.slots;
  }

  /** Draining with the worker. */
  get draining(): boolean {
    return this.#worker.draining;
  }

  /** The largest job the pool's rings take. */
  get maxJobBytes(): number | undefined {
    return this.#maxJobBytes;
  }

  /** Jobs waiting in the local balancer for these services (what the credit policy reads). */
  get queued(): number {
    let n = 0;
    for (const s of this.services) n += this.#balancer.queueDepth(s);
    return n;
  }

  /** How long the oldest of them has waited, ms (the balancer's own clock, exact). */
  oldestWaitMs(_now: number): number {
    return this.#balancer.oldestWaitMs(this.services);
  }

  // ---- the balancer's provider ----

  dispatch(qj: QueuedJob): void {
    const meta = jobMeta(qj.job, qj.attempt, qj.hedgeCopy === true);
    // Throws before taking anything when the metadata cannot be encoded (Provider.dispatch).
    const encoded = meta.length > 0 ? encodeMeta(meta) : undefined;
    this.credit--;
    this.#jobs.set(qj.seq, qj);
    this.#worker.take(
      this,
      qj.seq,
      qj.service,
      encoded,
      qj.job.body,
      Math.max(1, Math.round(qj.deadline - performance.now())),
      qj.job.requestId,
    );
  }

  cancel(qj: QueuedJob): void {
    this.#worker.cancel(this, qj.seq);
  }

  /** Jobs are waiting and this provider has no credit: the worker may grant some. */
  demand(_service: string, _depth: number): void {
    this.#worker.regrant();
  }

  // ---- the worker's job source ----

  reply(
    id: number,
    status: number,
    meta: [string, string][],
    body: Uint8Array,
  ): void {
    const qj = this.#take(id);
    if (qj) this.#balancer.finish(this, qj, { status, headers: meta, body });
  }

  error(id: number, code: number, message: string): void {
    const qj = this.#take(id);
    if (qj) this.#balancer.finish(this, qj, new JobError(code || ErrorCode.INTERNAL, message));
  }

  grant(_n: number): void {
    // The worker raised `credit` already; let the balancer use it.
    this.#balancer.pull(this);
  }

  #take(id: number): QueuedJob | undefined {
    const qj = this.#jobs.get(id);
    this.#jobs.delete(id);
    return qj;
  }
}
