/**
 * Job-time mixes for the `sleep` service (`1@0.9,20@0.1`): parsing, mean, and a seeded
 * sampler.
 *
 * @module
 */
import { createRng } from "./rng.ts";

/** One entry of a job-time mix: `ms` milliseconds with probability `p`. */
export interface MixEntry {
  /** Job time in milliseconds. */
  ms: number;
  /** Probability, 0–1. */
  p: number;
}

/**
 * Parses a job-time mix `ms@probability,…` such as `1@0.9,20@0.1`. A single `ms` (no `@`)
 * means that time always. Probabilities must sum to 1 (± 0.001).
 *
 * @throws {RangeError} on a malformed entry or probabilities that do not sum to 1.
 *
 * @example
 * ```ts
 * import { parseMix } from "./mix.ts";
 * console.assert(parseMix("1@0.9,20@0.1")[1].ms === 20);
 * console.assert(parseMix("2")[0].p === 1);
 * ```
 */
export function parseMix(text: string): MixEntry[] {
  const parts = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) throw new RangeError(`Empty job-time mix "${text}"`);
  const out: MixEntry[] = [];
  for (const part of parts) {
    const m = /^(\d+(?:\.\d+)?)(?:@(\d*(?:\.\d+)?))?$/.exec(part);
    if (!m || (m[2] !== undefined && m[2] === "")) {
      throw new RangeError(`Invalid mix entry "${part}": expected ms@probability`);
    }
    const ms = Number(m[1]);
    const p = m[2] === undefined ? (parts.length === 1 ? 1 : NaN) : Number(m[2]);
    if (!(p >= 0 && p <= 1)) throw new RangeError(`Invalid probability in mix entry "${part}"`);
    out.push({ ms, p });
  }
  const sum = out.reduce((n, e) => n + e.p, 0);
  if (Math.abs(sum - 1) > 0.001) {
    throw new RangeError(`Mix probabilities sum to ${sum}, not 1: "${text}"`);
  }
  return out;
}

/**
 * The mean job time of a mix, in milliseconds.
 *
 * @example
 * ```ts
 * import { mixMean, parseMix } from "./mix.ts";
 * console.assert(Math.abs(mixMean(parseMix("1@0.9,20@0.1")) - 2.9) < 1e-9);
 * ```
 */
export function mixMean(mix: readonly MixEntry[]): number {
  return mix.reduce((n, e) => n + e.ms * e.p, 0);
}

/**
 * Draws job times from a mix with its own seeded stream (the one {@linkcode poissonSchedule}
 * uses for the same seed).
 *
 * @example
 * ```ts
 * import { mixSampler, parseMix } from "./mix.ts";
 * const draw = mixSampler(parseMix("1@0.5,3@0.5"), 7);
 * console.assert([1, 3].includes(draw()));
 * ```
 */
export function mixSampler(mix: readonly MixEntry[], seed: number): () => number {
  const draw = createRng((seed ^ 0x5bd1e995) >>> 0);
  return () => {
    let u = draw();
    for (const e of mix) {
      if (u < e.p) return e.ms;
      u -= e.p;
    }
    return mix[mix.length - 1].ms;
  };
}
