/**
 * Runs a fuzz target for a duration or a number of cases, case `i` drawing from
 * `caseRng(seed, i)`, and reports throughput and the first failure (seed, case, input).
 *
 * @module
 */
import { caseRng, toHex } from "./_mutate.ts";
import { FuzzFailure, type FuzzTarget } from "./_targets.ts";

/** Options for {@linkcode runTarget}. */
export interface RunOptions {
  /** Seed of the run. */
  seed: number;
  /** Stop after this long (ms). */
  durationMs?: number;
  /** Stop after this many cases. */
  cases?: number;
  /** Run only this case (a replay). */
  only?: number;
  /** A case that takes longer than this is a hang (ms). Default 15 000. */
  hangMs?: number;
  /** Growth of the process's RSS over the run that fails it, in bytes. Default 512 MiB. */
  maxRssGrowth?: number;
}

/** The first failing case. */
export interface FailureReport {
  /** The case index (replay with `--seed <seed> --case <index>`). */
  index: number;
  /** What broke. */
  message: string;
  /** The input, hex; empty when the failure is not tied to one input. */
  inputHex: string;
}

/** What a run did. */
export interface RunReport {
  /** Target name. */
  target: string;
  /** Seed. */
  seed: number;
  /** Cases run. */
  cases: number;
  /** Wall time, ms. */
  elapsedMs: number;
  /** Cases per second. */
  casesPerSecond: number;
  /** RSS at the start and the end of the run, MiB. */
  rssMiB: { start: number; end: number };
  /** The first failure, or null. */
  failure: FailureReport | null;
}

const MIB = 1 << 20;

/** Runs `target` as `options` say; never throws for a failing case (see `failure`). */
export async function runTarget(target: FuzzTarget, options: RunOptions): Promise<RunReport> {
  const start = performance.now();
  const rss0 = Deno.memoryUsage().rss;
  const endAt = start + (options.durationMs ?? Infinity);
  const maxCases = options.only !== undefined ? 1 : options.cases ?? Infinity;
  if (!Number.isFinite(endAt) && !Number.isFinite(maxCases)) {
    throw new RangeError("A fuzz run needs a duration or a number of cases");
  }
  const hangMs = options.hangMs ?? 15_000;
  let cases = 0;
  let batch = 0;
  let failure: FailureReport | null = null;
  const fail = (index: number, err: unknown) => {
    failure ??= {
      index,
      message: err instanceof Error ? err.message : String(err),
      inputHex: err instanceof FuzzFailure ? toHex(err.input) : "",
    };
  };
  await target.setup();
  const timeLeft = () => failure === null && performance.now() < endAt;
  try {
    if (target.concurrency === 1) {
      // In process: batches of 64 synchronous cases, then a turn of the event loop.
      while (timeLeft() && cases < maxCases) {
        const n = Math.min(64, maxCases - cases);
        for (let k = 0; k < n && failure === null; k++) {
          const index = options.only ?? cases + k;
          try {
            await target.run(caseRng(options.seed, index));
          } catch (err) {
            fail(index, err);
          }
        }
        cases += n;
      }
    } else {
      // Over sockets: `concurrency` lanes, each running one case after another; a case
      // that outlives `hangMs` is a hang. Between checks run about once a second.
      let next = 0;
      const lane = async () => {
        while (timeLeft() && next < maxCases) {
          const index = options.only ?? next;
          next++;
          let timer: ReturnType<typeof setTimeout> | undefined;
          const hung = await Promise.race([
            Promise.resolve(target.run(caseRng(options.seed, index))).then(
              () => false,
              (err) => {
                fail(index, err);
                return false;
              },
            ),
            new Promise<boolean>((r) => timer = setTimeout(() => r(true), hangMs)),
          ]);
          clearTimeout(timer);
          if (hung) fail(index, new Error(`case ${index} hung for ${hangMs} ms`));
          cases++;
        }
      };
      const lanes = Promise.all(Array.from({ length: target.concurrency }, lane));
      let done = false;
      lanes.finally(() => done = true);
      while (!done) {
        await Promise.race([lanes, new Promise((r) => setTimeout(r, 1_000))]);
        if (done && failure !== null) break;
        try {
          await target.between(batch++);
        } catch (err) {
          fail(next, new Error(`other connections affected: ${(err as Error).message}`));
        }
      }
    }
  } finally {
    try {
      await target.teardown();
    } catch (err) {
      fail(cases, new Error(`teardown: ${(err as Error).message}`));
    }
  }
  const rss1 = Deno.memoryUsage().rss;
  if (failure === null && rss1 - rss0 > (options.maxRssGrowth ?? 512 * MIB)) {
    fail(cases, new Error(`RSS grew by ${Math.round((rss1 - rss0) / MIB)} MiB`));
  }
  const elapsedMs = performance.now() - start;
  return {
    target: target.name,
    seed: options.seed,
    cases,
    elapsedMs: Math.round(elapsedMs),
    casesPerSecond: Math.round((cases * 1000) / Math.max(1, elapsedMs)),
    rssMiB: { start: Math.round(rss0 / MIB), end: Math.round(rss1 / MIB) },
    failure,
  };
}
