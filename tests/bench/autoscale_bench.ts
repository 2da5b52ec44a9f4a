/**
 * Services that scale themselves, measured: an all-in-one ep process (`mod.ts run
 * tests/bench/_lua/autoscale.lua`) whose `sleep` service runs one job at a time per handler
 * thread, on threads that scale between 1 and 4 on its queue wait (target 50 ms), under an
 * open-loop load (Poisson, over EP) that steps from 20 % of one thread's capacity to 150 %,
 * then back to 20 %.
 *
 *   deno run -A tests/bench/autoscale_bench.ts [--job-ms 10] [--low 8] [--high 20] [--tail 24]
 *     [--max-threads 4] [--target-ms 50]
 *
 * One thread's capacity is `1000 / job-ms` jobs per second (each job holds its thread for
 * `job-ms` with `ep.sleep`, which costs no CPU, so the 2 shared cores of the test machine
 * limit little). Once a second it prints the balancer's queue-wait p99 of that second (the
 * status data's per-second series) and the thread count, then the line
 *
 *   autoscale: threads 1→N, wait p99 before/after: X ms / Y ms
 *
 * where "before" is the highest per-second p99 from the step until the first thread added
 * after it was ready, and "after" the median per-second p99 over the last 10 s of the high
 * phase ("threads 1→N": the count at the step, and the most it reached). The tail at 20 %
 * shows the threads retired again (ten quiet seconds each). A warm-up (3 s at 20 %, not
 * shown) comes first: the first jobs of a fresh process are slow (the Lua engine compiles),
 * and their waits would scale it up before the step.
 * The run takes about a minute. Nothing is asserted.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type LoadResult, parseMix, poissonSchedule, runLoad } from "../../cli/loadgen/mod.ts";
import { Child, freePort, killAll, killOnSignal, waitPort } from "./_bench_procs.ts";
import { median } from "./_bench_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "job-ms": { type: "string", default: "10" },
    low: { type: "string", default: "8" },
    high: { type: "string", default: "20" },
    tail: { type: "string", default: "24" },
    "max-threads": { type: "string", default: "4" },
    "target-ms": { type: "string", default: "50" },
  },
});
const jobMs = Number(values["job-ms"]);
const lowS = Number(values.low);
const highS = Number(values.high);
const tailS = Number(values.tail);
const capacity = 1000 / jobMs; // one thread, jobs per second
const MOD = new URL("../../mod.ts", import.meta.url).pathname;
const SCRIPT = new URL("./_lua/autoscale.lua", import.meta.url).pathname;

/** Open-loop phases, one after the other: Poisson arrivals at `rate` for `seconds` each. */
function phases(list: { rate: number; seconds: number }[]) {
  const at: number[] = [];
  const job: number[] = [];
  let offset = 0;
  for (const [i, p] of list.entries()) {
    const s = poissonSchedule({
      rate: p.rate,
      durationMs: p.seconds * 1000,
      seed: 7 + i,
      mix: parseMix(`${jobMs}@1`),
    });
    for (let k = 0; k < s.at.length; k++) {
      at.push(offset + s.at[k]);
      job.push(s.jobMs![k]);
    }
    offset += p.seconds * 1000;
  }
  return { at: Float64Array.from(at), jobMs: Float64Array.from(job) };
}

interface Sample {
  t: number;
  rate: number;
  waitP99: number | null;
  threads: number;
  starting: number;
}

const undo = killOnSignal();
const port = freePort();
const ep = new Child("ep", Deno.execPath(), ["run", "-A", MOD, "run", SCRIPT], {
  EP_PORT: String(port),
  EP_MAX_THREADS: String(values["max-threads"]),
  EP_TARGET_MS: String(values["target-ms"]),
});
try {
  await waitPort(port, ep);
  await ep.waitFor(/listening on/);
  const low = 0.2 * capacity;
  const high = 1.5 * capacity;
  console.log(
    `one thread: ${capacity.toFixed(0)} jobs/s (${jobMs} ms jobs); load ${low.toFixed(0)}/s for ` +
      `${lowS} s, ${high.toFixed(0)}/s for ${highS} s, ${low.toFixed(0)}/s for ${tailS} s`,
  );
  // Warm-up, then back to one thread if it grew meanwhile.
  await runLoad({
    target: { protocol: "ep", addr: `127.0.0.1:${port}`, service: "sleep" },
    rate: low,
    durationMs: 3_000,
    mix: parseMix(`${jobMs}@1`),
    connections: 4,
  });
  const threadsNow = async () =>
    (await (await fetch(`http://127.0.0.1:${port}/_ep/stats`)).json()).pool.scaling.threads;
  for (let i = 0; i < 30 && (await threadsNow()) > 1; i++) {
    await new Promise((r) => setTimeout(r, 1000));
  }
  console.log("   t  rate/s  wait p99  threads");
  const schedule = phases([
    { rate: low, seconds: lowS },
    { rate: high, seconds: highS },
    { rate: low, seconds: tailS },
  ]);
  const samples: Sample[] = [];
  const t0 = performance.now();
  let stop = false;
  const poll = (async () => {
    while (!stop) {
      await new Promise((r) => setTimeout(r, 1000));
      try {
        const res = await fetch(`http://127.0.0.1:${port}/_ep/stats`);
        const s = await res.json();
        const svc = s.services.find((x: { name: string }) => x.name === "sleep");
        const series = svc?.series;
        const sample: Sample = {
          t: Math.round((performance.now() - t0) / 1000),
          rate: series ? series.rate.at(-1) ?? 0 : 0,
          waitP99: series ? series.waitP99Ms.at(-1) ?? null : null,
          threads: s.pool.scaling?.threads ?? s.pool.threads.length,
          starting: s.pool.scaling?.starting ?? 0,
        };
        samples.push(sample);
        console.log(
          `${String(sample.t).padStart(4)}  ${sample.rate.toFixed(0).padStart(6)}  ` +
            `${(sample.waitP99 === null ? "–" : sample.waitP99.toFixed(1) + " ms").padStart(8)}  ` +
            `${sample.threads}${sample.starting ? ` (+${sample.starting} starting)` : ""}`,
        );
      } catch (err) {
        console.error(`stats: ${(err as Error).message}`);
      }
    }
  })();
  const result: LoadResult = await runLoad({
    target: { protocol: "ep", addr: `127.0.0.1:${port}`, service: "sleep" },
    schedule,
    connections: 4,
  });
  stop = true;
  await poll;
  const stepAt = lowS;
  const highEnd = lowS + highS;
  const high1 = samples.filter((s) => s.t > stepAt && s.t <= highEnd);
  const atStep = samples.filter((s) => s.t <= stepAt).at(-1)?.threads ?? 1;
  const firstUp = high1.find((s) => s.threads > atStep && s.starting === 0)?.t ?? highEnd;
  const before = Math.max(
    ...high1.filter((s) => s.t <= firstUp && s.waitP99 !== null).map((s) => s.waitP99!),
  );
  const after = median(
    high1.filter((s) => s.t > highEnd - 10 && s.waitP99 !== null).map((s) => s.waitP99!),
  );
  const peak = Math.max(...samples.map((s) => s.threads));
  const end = samples.at(-1)?.threads ?? 1;
  const errors = Object.entries(result.errors).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
  console.log(
    `sent ${result.sent}, ok ${result.ok}, errors: ${errors}; threads at the end: ${end}`,
  );
  console.log(
    `autoscale: threads ${atStep}→${peak}, wait p99 before/after: ${before.toFixed(1)} ms / ${
      after.toFixed(1)
    } ms`,
  );
} finally {
  undo();
  await killAll();
}
