/**
 * The ideal central queue: the latency floor a balancer is compared with for the same
 * arrivals.
 *
 * @module
 */
import { LatencyHistogram } from "./latency_histogram.ts";
import type { Schedule } from "./schedule.ts";

/**
 * The ideal central queue for a schedule: `servers` identical servers fed from one FIFO
 * queue with zero dispatch cost (the M/G/k discipline), each job holding a server for
 * exactly its job time. Returns each job's response time (wait + job) in µs: the floor
 * any real balancer can be compared with for the same arrivals.
 *
 * @example
 * ```ts
 * import { simulateCentralQueue } from "./central_queue.ts";
 * const h = simulateCentralQueue({ at: new Float64Array([0, 0, 0]), jobMs: new Float64Array([2, 2, 2]) }, 2);
 * console.assert(h.max === 4000 && h.min === 2000);
 * ```
 */
export function simulateCentralQueue(schedule: Schedule, servers: number): LatencyHistogram {
  if (!schedule.jobMs) throw new TypeError("The schedule has no job times (no mix)");
  if (!(servers >= 1)) throw new RangeError(`Servers must be at least 1: "${servers}"`);
  const free = new Float64Array(servers);
  const h = new LatencyHistogram();
  const { at, jobMs } = schedule;
  for (let i = 0; i < at.length; i++) {
    let k = 0;
    for (let j = 1; j < servers; j++) if (free[j] < free[k]) k = j;
    const start = Math.max(at[i], free[k]);
    free[k] = start + jobMs[i];
    h.record((free[k] - at[i]) * 1000);
  }
  return h;
}
