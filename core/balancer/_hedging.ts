/**
 * Private: hedging's policy for one service (SPEC.md §9.10), kept apart from the balancer's
 * state. A {@linkcode ServiceHedging} knows when the service's jobs are hedged (a fixed
 * delay, or the recent p95 service time from `_service_times.ts`), which of its running jobs
 * are candidates, which of them is due or has run longest past its delay, and whether one
 * more copy keeps the service within its budget (at most a share of its last
 * {@linkcode HEDGE_WINDOW} jobs). It sees jobs only as their dispatch times, and providers
 * and clocks only as arguments: the balancer sends the copy, arms the timers and settles
 * the twin (`balancer.ts`).
 *
 * @module
 */
import { ServiceTimes } from "./_service_times.ts";

/** The hedging budget's window: a service's last this many jobs (SPEC.md §9.10). */
export const HEDGE_WINDOW = 200;

/** What the policy reads of a running job: when it was dispatched (the balancer's clock). */
export interface HedgeCandidate {
  /** Clock time of its dispatch, ms. */
  dispatched: number;
}

/**
 * One service's hedging policy: its delay, its candidates and its budget window.
 *
 * @example
 * ```ts
 * import { ServiceHedging } from "./_hedging.ts";
 * const h = new ServiceHedging<{ dispatched: number }>(0.05);
 * h.learn({ ms: 50 }, []);
 * for (let i = 0; i < 20; i++) h.arrived();
 * const job = { dispatched: 0 };
 * h.add(job);
 * const due: { dispatched: number }[] = [];
 * console.assert(h.scan(10, (j) => due.push(j)) === 50 && due.length === 0);
 * console.assert(h.scan(50, (j) => due.push(j)) === Infinity && due[0] === job);
 * console.assert(h.allows());
 * ```
 */
export class ServiceHedging<J extends HedgeCandidate> {
  /** Its recent service times (their p95 is the default delay). */
  readonly times: ServiceTimes = new ServiceTimes();
  /**
   * When its jobs are hedged: a delay in ms, null for the recent p95, undefined for never
   * (unless a request asks). Set by {@linkcode ServiceHedging.learn}.
   */
  after: number | null | undefined = undefined;
  #budget: number;
  /** Jobs submitted for it (the budget's clock). */
  #arrivals = 0;
  /** The `#arrivals` count at each copy sent within the last {@linkcode HEDGE_WINDOW} jobs. */
  #stamps: number[] = [];
  /** Candidates: its jobs running, hedgeable, and not hedged yet. */
  #running = new Set<J>();
  #pickedOver = 0;

  /** `budget`: the share of its last {@linkcode HEDGE_WINDOW} jobs that may be hedged. */
  constructor(budget: number) {
    this.#budget = budget;
  }

  /**
   * Learns when its jobs are hedged: the balancer's own option (`own`) wins; else the first
   * delay its providers declared (REGISTER; null: the p95); else never.
   */
  learn(
    own: { readonly ms?: number } | undefined,
    declared: Iterable<number | null | undefined>,
  ): void {
    if (own) {
      this.after = own.ms ?? null;
      return;
    }
    this.after = undefined;
    for (const h of declared) {
      if (h !== undefined) {
        this.after = h;
        return;
      }
    }
  }

  /** Whether a job may be hedged: its request asked (`asked`), or the service is marked. */
  hedgeable(asked: boolean | undefined): boolean {
    return this.#budget > 0 &&
      (asked === true || (asked !== false && this.after !== undefined));
  }

  /**
   * After how long a running job is hedged, ms: the fixed delay, else (also for a job that
   * asked to be hedged of a service not marked) the recent p95 service time; Infinity while
   * that is unknown.
   */
  delay(): number {
    const fixed = this.after;
    if (typeof fixed === "number") return fixed;
    const p95 = this.times.p95();
    return Number.isNaN(p95) ? Infinity : p95;
  }

  /** Counts one job submitted for the service (the budget's clock). */
  arrived(): void {
    this.#arrivals++;
  }

  /**
   * Whether one more copy keeps the service within its budget: at most `budget` of its last
   * {@linkcode HEDGE_WINDOW} jobs hedged (of all its jobs, while fewer have come).
   */
  allows(): boolean {
    const stamps = this.#stamps;
    while (stamps.length > 0 && stamps[0] <= this.#arrivals - HEDGE_WINDOW) stamps.shift();
    return stamps.length + 1 <= this.#budget * Math.min(HEDGE_WINDOW, this.#arrivals);
  }

  /** Counts one copy sent, against the budget. */
  record(): void {
    this.#stamps.push(this.#arrivals);
  }

  /** Candidates: jobs running, hedgeable, not hedged yet. */
  get size(): number {
    return this.#running.size;
  }

  /** Makes a running job a candidate. */
  add(job: J): void {
    this.#running.add(job);
  }

  /** Drops a job from the candidates (answered, lost, or hedged). */
  delete(job: J): void {
    this.#running.delete(job);
  }

  /**
   * Calls `hedge` for every candidate that has run past the delay at clock time `now` (it
   * may {@linkcode ServiceHedging.delete} it); returns when the next other candidate
   * reaches it (Infinity: none).
   */
  scan(now: number, hedge: (job: J) => void): number {
    let next = Infinity;
    const delay = this.delay();
    for (const job of this.#running) {
      const at = job.dispatched + delay;
      if (now < at) {
        next = Math.min(next, at);
        continue;
      }
      hedge(job);
    }
    return next;
  }

  /**
   * Of the candidates past the delay at `now` by at least `atLeast` ms and that `accept`
   * takes (asked in that order, the budget last if it asks), the one past it longest (of
   * equals, the last); null when none. {@linkcode ServiceHedging.pickedOver} then says by
   * how much.
   */
  pick(now: number, atLeast: number, accept: (job: J) => boolean): J | null {
    const delay = this.delay();
    let best: J | null = null;
    let bestOver = atLeast;
    for (const job of this.#running) {
      const over = now - job.dispatched - delay;
      if (over < bestOver) continue;
      if (!accept(job)) continue;
      best = job;
      bestOver = over;
    }
    this.#pickedOver = bestOver;
    return best;
  }

  /** How far past the delay the last {@linkcode ServiceHedging.pick} was, ms. */
  get pickedOver(): number {
    return this.#pickedOver;
  }
}
