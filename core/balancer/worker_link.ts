/**
 * The balancer's view of a remote module worker: a {@linkcode Provider} on top of the EP
 * connection's {@linkcode WorkerSession}. Credit comes from READY frames, jobs go out as
 * REQUESTs (the HTTP method, path and query travel as `ep-method`, `ep-path`, `ep-query`
 * meta, SPEC.md §10), answers are matched by id.
 *
 * {@linkcode workerHost} is the EP port's {@linkcode WorkerHost} on top of the balancer (or
 * of anything with the balancer's {@linkcode ProviderHost} methods, such as the monitor's
 * `watchWorkers` wrapper): the node wires it as `EpOptions.workers`.
 *
 * @module
 */
import { NOT_APPLICABLE } from "../../protocol/ep_frames.ts";
import { ErrorCode, FrameTooLargeError } from "../../protocol/errors.ts";
import { JobError } from "../errors.ts";
import { jobMeta, type JobResult } from "../job.ts";
import type { WorkerHost, WorkerSession, WorkerSessionHandler } from "../net/ep_conn.ts";
import type { Provider, QueuedJob, ServiceDescription } from "./provider.ts";

/**
 * What worker links need from the balancer: {@linkcode Balancer} has these methods, and the
 * monitor's `watchWorkers` wraps them to see workers come and go.
 */
export interface ProviderHost {
  /** Attaches a registered worker. */
  addProvider(p: Provider): void;
  /** Changes a worker's services or slots (a new REGISTER). */
  updateProvider(p: Provider, services: ReadonlySet<string>, slots: number): void;
  /** Detaches a worker; its jobs are redelivered or failed. */
  removeProvider(p: Provider, reason: string): void;
  /** The worker gained credit, or sent DRAIN (the balancer then arms its sweep for the grace). */
  pull(p: Provider): void;
  /** The worker answered a job. */
  finish(p: Provider, job: QueuedJob, result: JobResult | JobError): void;
  /** Jobs queued for a service. */
  queueDepth(service: string): number;
  /**
   * How long the oldest job queued for any of `services` has waited, ms (0 when none): the
   * status a version-2 REQUEST and HEARTBEAT carry (SPEC.md §9.5).
   */
  oldestWaitMs?(services: Iterable<string>): number;
}

/**
 * The EP port's {@linkcode WorkerHost} for a balancer: each worker that registers becomes
 * a {@linkcode WorkerLink} provider of `balancer`.
 *
 * @example
 * ```ts ignore
 * import { Balancer } from "./balancer.ts";
 * import { workerHost } from "./worker_link.ts";
 * import { serve } from "../net/server.ts";
 * const balancer = new Balancer();
 * serve({ port: 7070, handler: balancer.handler, ep: { workers: workerHost(balancer) } });
 * ```
 */
export function workerHost(balancer: ProviderHost): WorkerHost {
  return {
    attach(session, slots, services, hedge) {
      const link = new WorkerLink(session, balancer, slots, services, hedge);
      balancer.addProvider(link);
      return link;
    },
  };
}

/**
 * A remote worker as a balancer provider: the handler of its EP session's frames.
 *
 * @example
 * ```ts
 * import { WorkerLink } from "./worker_link.ts";
 * import type { Frame } from "../../protocol/ep_frames.ts";
 * const sent: Frame[] = [];
 * const link = new WorkerLink(
 *   { name: "10.0.0.5:40412 (w1)", lastHeard: 0, version: 2, send: (f) => sent.push(f), evict() {} },
 *   {
 *     addProvider() {},
 *     updateProvider() {},
 *     removeProvider() {},
 *     pull() {},
 *     finish() {},
 *     queueDepth: () => 0,
 *   },
 *   2,
 *   new Set(["echo"]),
 * );
 * link.grant(3);
 * console.assert(link.name === "worker 10.0.0.5:40412 (w1)" && link.credit === 3);
 * ```
 */
export class WorkerLink implements Provider, WorkerSessionHandler {
  /** `worker <address> (<name>)`, for logs and the status page. */
  readonly name: string;
  /** The services it registered. */
  services: ReadonlySet<string>;
  /** The slots it registered. */
  slots: number;
  /** The services it lets balancers hedge (REGISTER, version 2), and after how long. */
  hedge: ReadonlyMap<string, number | null>;
  /** Grants (READY) not used yet. */
  credit = 0;
  /** Whether it sent DRAIN. */
  draining = false;
  /** After a DRAIN: when the jobs it still holds count as lost (`performance.now()` ms). */
  drainDeadline: number | undefined = undefined;
  /** The `free_slots` of its last HEARTBEAT or REPLY. */
  reportedFree: number = NOT_APPLICABLE;
  /** What it says of its services (its STATS, SPEC.md §6.7). */
  descriptions: ReadonlyMap<string, ServiceDescription> = new Map();
  #session: WorkerSession;
  #host: ProviderHost;
  #held = new Map<number, QueuedJob>();
  #ids = new Map<QueuedJob, number>();
  #nextId = 1;
  #demandSent = false;
  #beat = 0;

  /** Creates the link of a worker that registered `slots` for `services`. */
  constructor(
    session: WorkerSession,
    host: ProviderHost,
    slots: number,
    services: ReadonlySet<string>,
    hedge: ReadonlyMap<string, number | null> = new Map(),
  ) {
    this.#session = session;
    this.#host = host;
    this.name = `worker ${session.name}`;
    this.slots = slots;
    this.services = services;
    this.hedge = hedge;
  }

  /** When the worker last sent anything (heartbeats included), Unix ms; for the status page. */
  get lastHeard(): number {
    return this.#session.lastHeard;
  }

  /**
   * A later REGISTER: new services, slots or hedging declarations; it takes jobs again if it
   * was draining.
   */
  register(
    slots: number,
    services: ReadonlySet<string>,
    hedge: ReadonlyMap<string, number | null> = new Map(),
  ): void {
    this.hedge = hedge;
    this.#host.updateProvider(this, services, slots);
    this.undrain();
  }

  /** READY: `n` more jobs may be sent. */
  grant(n: number): void {
    this.credit += n;
    this.#demandSent = false;
    this.#host.pull(this);
  }

  /**
   * Sends the job as a REQUEST. The frame is encoded before anything is taken: a job EP
   * cannot carry (a metadata key or value out of §7's limits, a payload over
   * `max_payload`) throws a `bad_request` JobError with the credit, id and held entry
   * untouched.
   */
  dispatch(qj: QueuedJob): void {
    let id = this.#nextId;
    while (this.#held.has(id)) id = (id % 0xffffffff) + 1;
    const job = qj.job;
    try {
      this.#session.send({
        type: "request",
        id,
        deadlineMs: Math.max(1, Math.round(qj.deadline - performance.now())),
        priority: qj.priority,
        attempt: Math.min(255, qj.attempt - 1),
        queueDepth: this.#host.queueDepth(qj.service),
        oldestWaitMs: this.#session.version >= 2 ? Math.min(0xffff, this.oldestWaitMs()) : 0,
        service: qj.service,
        // A hedged copy says so (`ep-hedge: 1`, SPEC.md §9.10); attempt is the field above.
        meta: jobMeta(job, 1, qj.hedgeCopy === true),
        body: job.body,
      });
    } catch (err) {
      // The encoder refuses with RangeError (a field out of range) or FrameTooLargeError.
      if (!(err instanceof RangeError || err instanceof FrameTooLargeError)) throw err;
      throw new JobError(
        ErrorCode.BAD_REQUEST,
        `Request cannot be sent to a worker: ${(err as Error).message}`,
        { cause: err },
      );
    }
    this.#nextId = (id % 0xffffffff) + 1;
    this.credit--;
    this.#held.set(id, qj);
    this.#ids.set(qj, id);
  }

  /** DRAIN: no more jobs; those it holds count as lost `graceMs` from now. */
  drain(graceMs: number): void {
    this.draining = true;
    this.drainDeadline = performance.now() + graceMs;
    // Told through `pull` (which hands a draining provider nothing): the balancer arms its
    // sweep for the grace.
    this.#host.pull(this);
  }

  /** Takes jobs again (a REGISTER after a DRAIN). */
  undrain(): void {
    this.draining = false;
    this.drainDeadline = undefined;
  }

  /** Cuts the worker off (ERROR `limit_exceeded`, close); the balancer then detaches it. */
  evict(reason: string): void {
    this.#session.evict(reason);
  }

  /** Sends CANCEL for a job it holds. */
  cancel(qj: QueuedJob): void {
    const id = this.#ids.get(qj);
    if (id !== undefined) this.#session.send({ type: "cancel", id });
  }

  /** Jobs wait for it and it has no credit: one HEARTBEAT with the depth until it grants. */
  demand(_service: string, depth: number): void {
    if (this.#demandSent) return;
    this.#demandSent = true;
    this.#beat = (this.#beat + 1) >>> 0;
    this.#session.send({
      type: "heartbeat",
      seq: this.#beat,
      freeSlots: NOT_APPLICABLE,
      queueDepth: depth,
      oldestWaitMs: this.oldestWaitMs(),
    });
  }

  /** A REPLY or ERROR for job `id`; one that crossed a CANCEL or a timeout is dropped. */
  answered(id: number, result: JobResult | JobError, freeSlots?: number): void {
    const qj = this.#held.get(id);
    if (qj) {
      this.#held.delete(id);
      this.#ids.delete(qj);
      this.#host.finish(this, qj, result);
    }
    if (freeSlots !== undefined) this.reportedFree = freeSlots;
  }

  /** A HEARTBEAT from the worker. */
  heartbeat(freeSlots: number): void {
    this.reportedFree = freeSlots;
  }

  /** Jobs queued for its services (the `queue_depth` of the heartbeats it is sent). */
  queueDepth(): number {
    let depth = 0;
    for (const s of this.services) depth += this.#host.queueDepth(s);
    return depth;
  }

  /**
   * Its STATS (asked for after each REGISTER): keeps the descriptions of the services it
   * registered (SPEC.md §6.7); anything else in it, or a STATS that is not such JSON, is
   * ignored.
   */
  stats(_id: number, json: string): void {
    this.descriptions = describedServices(json, this.services);
  }

  /**
   * How long the oldest job queued for its services has waited, whole ms (0 when none): the
   * `oldest_wait_ms` of the version-2 REQUESTs and HEARTBEATs it is sent.
   */
  oldestWaitMs(): number {
    return Math.round(this.#host.oldestWaitMs?.(this.services) ?? 0);
  }

  /** Its connection ended: it is detached, its jobs redelivered or failed. */
  closed(reason: string): void {
    this.#host.removeProvider(this, reason);
  }
}

const MAX_DESCRIPTION = 1024;
const MAX_VERSION = 64;

/**
 * The descriptions of `services` in a worker's STATS JSON (`{"services": {"name":
 * {"description": "…", "version": "…"}}}`, SPEC.md §6.7): strings only, cut to 1024 and 64
 * characters; other names and members are ignored, and so is JSON of another shape.
 *
 * @example
 * ```ts
 * import { describedServices } from "./worker_link.ts";
 * const json = '{"services":{"echo":{"version":"1.0","description":7},"other":{"version":"2"}}}';
 * const d = describedServices(json, new Set(["echo"]));
 * console.assert(d.get("echo")?.version === "1.0" && d.get("echo")?.description === undefined);
 * console.assert(!d.has("other"));
 * ```
 */
export function describedServices(
  json: string,
  services: ReadonlySet<string>,
): Map<string, ServiceDescription> {
  const out = new Map<string, ServiceDescription>();
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return out;
  }
  const all = isObject(v) ? v.services : undefined;
  if (!isObject(all)) return out;
  for (const name of services) {
    const d = Object.hasOwn(all, name) ? all[name] : undefined;
    if (!isObject(d)) continue;
    const entry: ServiceDescription = {};
    if (typeof d.description === "string") {
      entry.description = d.description.slice(0, MAX_DESCRIPTION);
    }
    if (typeof d.version === "string") entry.version = d.version.slice(0, MAX_VERSION);
    if (entry.description !== undefined || entry.version !== undefined) out.set(name, entry);
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
