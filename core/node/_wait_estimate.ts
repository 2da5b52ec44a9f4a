/**
 * Private: how a module worker that runs no balancer of its own estimates the queue wait its
 * services' jobs have, for the autoscaler (`autoscaler.ts`).
 *
 * A worker sees no balancer's queue, only what every REQUEST carries: how many jobs of the
 * service are still queued at that balancer (`queue_depth`, SPEC.md §6.8). By Little's law the
 * newest of them waits about `depth ÷ the rate the queue empties`; the worker knows the rate
 * at which it finishes the service's jobs itself (over the last three seconds), so the
 * estimate is `depth ÷ own rate`. It is exact for the service's only worker, and longer by
 * about the number of like workers otherwise: workers sharing one queue grow sooner than one
 * alone would (each up to its own `max`, and idle ones shrink back). A job sent with depth 0
 * waited for nothing; with jobs queued and none finished in three seconds, the estimate is
 * `depth × 3 s`.
 *
 * @module
 */
import type { WorkerObserver } from "./worker.ts";

const WINDOW_S = 3;

interface Rate {
  /** The second (`floor(ms / 1000)`) of `counts[0]`. */
  second: number;
  /** Jobs finished: this second, then the ones before it. */
  counts: Float64Array;
}

/**
 * A worker's queue-wait estimate: each REQUEST becomes one wait, `depth ÷ own rate`, handed
 * to `sink`.
 *
 * @example
 * ```ts ignore
 * const estimate = new QueueWaitEstimate((service, ms) => waits.observe(service, ms));
 * WorkerNode.start({ balancers, pool, observer: estimate });
 * ```
 */
export class QueueWaitEstimate implements WorkerObserver {
  readonly #sink: (service: string, waitMs: number) => void;
  readonly #now: () => number;
  readonly #rates = new Map<string, Rate>();

  /** Hands each estimate to `sink`; `now` is the clock in ms. */
  constructor(
    sink: (service: string, waitMs: number) => void,
    now: () => number = () => performance.now(),
  ) {
    this.#sink = sink;
    this.#now = now;
  }

  /** A REQUEST for `service` with `queueDepth` jobs still queued behind it. */
  request(service: string, queueDepth: number): void {
    if (queueDepth <= 0) {
      this.#sink(service, 0);
      return;
    }
    const now = this.#now();
    const r = this.#rate(service, now);
    let done = 0;
    for (let i = 0; i <= WINDOW_S; i++) done += r.counts[i];
    // The current second counts for the part of it that passed.
    const spanMs = WINDOW_S * 1000 + (now - r.second * 1000);
    this.#sink(service, done === 0 ? queueDepth * WINDOW_S * 1000 : queueDepth * spanMs / done);
  }

  /** A job of `service` was answered. */
  answered(service: string): void {
    this.#rate(service, this.#now()).counts[0]++;
  }

  #rate(service: string, now: number): Rate {
    const second = Math.floor(now / 1000);
    let r = this.#rates.get(service);
    if (r === undefined) {
      r = { second, counts: new Float64Array(WINDOW_S + 1) };
      this.#rates.set(service, r);
    }
    const shift = second - r.second;
    if (shift > 0) {
      const c = r.counts;
      for (let i = c.length - 1; i >= 0; i--) c[i] = i - shift >= 0 ? c[i - shift] : 0;
      r.second = second;
    }
    return r;
  }
}
