/**
 * Open-loop schedules: the intended send time of every request of a run, and its job time,
 * fixed before the run from a seed.
 *
 * @module
 */
import { type MixEntry, mixSampler } from "./mix.ts";
import { createRng } from "./rng.ts";

/** The intended send times of a run, and the job time of each request when there is a mix. */
export interface Schedule {
  /** Intended send times in ms from the start of the run, ascending. */
  at: Float64Array;
  /** Job time of each request in ms, when a mix was given. */
  jobMs: Float64Array | null;
}

/** Options for {@linkcode poissonSchedule}. */
export interface ScheduleOptions {
  /** Mean arrivals per second. */
  rate: number;
  /** Length of the run in ms. */
  durationMs: number;
  /** Seed: the same seed, rate, duration and mix give the same schedule. */
  seed: number;
  /** Job-time mix, drawn per request from its own seeded stream. */
  mix?: readonly MixEntry[];
}

/**
 * A seeded Poisson arrival sequence (exponential gaps) with a job time per request.
 *
 * @example
 * ```ts
 * import { parseMix } from "./mix.ts";
 * import { poissonSchedule } from "./schedule.ts";
 * const s = poissonSchedule({ rate: 1000, durationMs: 1000, seed: 1, mix: parseMix("1@0.5,2@0.5") });
 * console.assert(s.at.length > 900 && s.at.length < 1100 && s.jobMs!.length === s.at.length);
 * ```
 */
export function poissonSchedule(options: ScheduleOptions): Schedule {
  const { rate, durationMs, seed, mix } = options;
  if (!(rate > 0) || !(durationMs > 0)) {
    throw new RangeError(`Rate and duration must be positive: "${rate}", "${durationMs}"`);
  }
  const arrivals = createRng(seed);
  const times: number[] = [];
  const meanGap = 1000 / rate;
  let t = 0;
  for (;;) {
    t += -Math.log(1 - arrivals()) * meanGap;
    if (t >= durationMs) break;
    times.push(t);
  }
  const at = Float64Array.from(times);
  let jobMs: Float64Array | null = null;
  if (mix && mix.length > 0) {
    const draw = mixSampler(mix, seed);
    jobMs = new Float64Array(at.length);
    for (let i = 0; i < at.length; i++) jobMs[i] = draw();
  }
  return { at, jobMs };
}
