/**
 * The last errors a balancer answered, for operators (`ep errors`, `/_ep/admin/errors`, the
 * status page): a fixed-size ring the monitor fills from `BalancerObserver.failed`, newest
 * read first. Each entry has the request id the client was given (`x-request-id`, the EP
 * error's message for handler errors), so that an error a user reports can be found in the
 * logs of the process that ran it.
 *
 * @module
 */
import type { Outcome } from "../balancer/balancer.ts";

/**
 * One error as kept by {@linkcode RecentErrors}.
 *
 * @example
 * ```ts
 * import type { RecentError } from "./recent_errors.ts";
 * const e: RecentError = {
 *   at: 1_700_000_000_000, service: "user", outcome: "timeout", kind: "timeout", code: 103,
 *   message: "Timed out waiting in the queue", requestId: "52b2768b00000018", worker: null,
 *   detail: null,
 * };
 * console.assert(e.kind === "timeout");
 * ```
 */
export interface RecentError {
  /** When it was answered, Unix ms. */
  at: number;
  /** The service the job was for. */
  service: string;
  /** How the job ended. */
  outcome: Outcome;
  /** The EP error code's name (`handler_error`, `timeout`, …). */
  kind: string;
  /** The EP error code. */
  code: number;
  /** What the client was told. */
  message: string;
  /** The job's request id, when it had one. */
  requestId: string | null;
  /** The balancer's name of the provider that answered it, or null. */
  worker: string | null;
  /**
   * What the client was not told (a handler error's own message, when it ran in this
   * process), or null.
   */
  detail: string | null;
}

/**
 * A ring of the last `capacity` errors.
 *
 * @example
 * ```ts
 * import { RecentErrors } from "./recent_errors.ts";
 * const ring = new RecentErrors(2);
 * for (const id of ["a", "b", "c"]) {
 *   ring.add({
 *     at: 0, service: "s", outcome: "error", kind: "handler_error", code: 105,
 *     message: "Handler failed", requestId: id, worker: null, detail: null,
 *   });
 * }
 * console.assert(ring.list().map((e) => e.requestId).join() === "c,b");
 * ```
 */
export class RecentErrors {
  #ring: (RecentError | undefined)[];
  #next = 0;
  #count = 0;

  /** Keeps the last `capacity` errors (at least 1). */
  constructor(capacity = 100) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) {
      throw new RangeError(`Recent errors capacity must be an integer >= 1: "${capacity}"`);
    }
    this.#ring = new Array(capacity);
  }

  /** How many it keeps. */
  get capacity(): number {
    return this.#ring.length;
  }

  /** Errors added since it was made (those no longer kept included). */
  get total(): number {
    return this.#count;
  }

  /** Adds one, dropping the oldest when full. */
  add(e: RecentError): void {
    this.#ring[this.#next] = e;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#count++;
  }

  /** Up to `limit` errors, newest first. */
  list(limit = this.#ring.length): RecentError[] {
    const n = Math.min(limit, this.#count, this.#ring.length);
    const out: RecentError[] = [];
    for (let i = 1; i <= n; i++) {
      out.push(this.#ring[(this.#next - i + this.#ring.length) % this.#ring.length]!);
    }
    return out;
  }
}
