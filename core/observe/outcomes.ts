/**
 * The outcomes a job can have, in one order: the order of the per-outcome counters the
 * monitor keeps (a `Float64Array` per service and per worker) and writes.
 *
 * @module
 */
import type { Outcome } from "../balancer/balancer.ts";

/**
 * Every outcome, in the order of the counters.
 *
 * @example
 * ```ts
 * import { OUTCOMES } from "./outcomes.ts";
 * console.assert(OUTCOMES[0] === "ok");
 * ```
 */
export const OUTCOMES: readonly Outcome[] = Object.freeze(
  [
    "ok",
    "error",
    "timeout",
    "overloaded",
    "no_service",
    "worker_lost",
    "shutting_down",
    "cancelled",
  ] as const,
);
