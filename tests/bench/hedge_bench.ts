/**
 * Hedged jobs (issue 16, item 1): four one-slot workers, one of which stalls one job in
 * twenty for 200 ms (a GC pause, a slow disk: its Lua handler sleeps on, and runs to its end
 * when cancelled); open-loop load; the latency tail with and without hedging, and the extra
 * work hedging did (copies sent per job).
 *
 *   deno run -A tests/bench/hedge_bench.ts [--seconds 15] [--rounds 2] [--job-ms 5]
 *     [--load 0.5] [--stall-every 20] [--stall-ms 200] [--hedge-ms N]
 *
 * Processes: a balancer (`mod.ts run scripts/balancer.lua`) and four workers
 * (`mod.ts run tests/bench/_lua/fair_worker.lua`: one thread, one slot, service `work`
 * sleeping the job's time with `ep.sleep`); the stalling one is started first, so that it is
 * the first provider on a tie (at this load it is idle, as the others, most of the time).
 * With hedging the workers register `work` with `hedge = true` (hedged after its p95 service
 * time, or after `--hedge-ms` ms: `hedge_ms`; at most 5 % of the last 200 jobs); without,
 * they do not. The load is one `ep bench`
 * process (open loop, Poisson, over EP, seeded): the same arrivals in both configurations,
 * which alternate. Target (issue 16): p99 with hedging ≤ 0.5× without, extra work ≤ 5 %.
 * Nothing is asserted.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { LatencyHistogram, type LoadResultJson } from "../../cli/loadgen/mod.ts";
import { connect } from "../../core/net/client.ts";
import {
  benchResult,
  Child,
  killAll,
  killOnSignal,
  loadAverage,
  waitProviders,
} from "./_bench_procs.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "15" },
    rounds: { type: "string", default: "2" },
    "job-ms": { type: "string", default: "5" },
    load: { type: "string", default: "0.5" },
    "stall-every": { type: "string", default: "20" },
    "stall-ms": { type: "string", default: "200" },
    "hedge-ms": { type: "string", default: "" },
  },
  strict: true,
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const JOB_MS = Number(values["job-ms"]);
const LOAD = Number(values.load);
const STALL_EVERY = Number(values["stall-every"]);
const STALL_MS = Number(values["stall-ms"]);
/** A fixed hedging delay (`hedge_ms`), or "" for the service's recent p95. */
const HEDGE_MS = values["hedge-ms"];
const WORKERS = 4;
const MOD = new URL("../../mod.ts", import.meta.url).pathname;
const BALANCER = new URL("../../scripts/balancer.lua", import.meta.url).pathname;
const WORKER = new URL("./_lua/fair_worker.lua", import.meta.url).pathname;
const RATE = LOAD * WORKERS * 1000 / JOB_MS;

const ms = (us: number) => (us / 1000).toFixed(2);

const ep = (args: string[], name: string, env: Record<string, string> = {}) =>
  new Child(name, Deno.execPath(), ["run", "-A", MOD, ...args], env);

/** One configuration: a balancer, four workers (hedging declared or not), one load run. */
async function run(hedge: boolean, seed: number) {
  const balancer = ep(["run", BALANCER, "--log-level", "warning"], "balancer", { EP_PORT: "0" });
  const port = Number((await balancer.waitFor(/listening on [^:]+:(\d+)/))[1]);
  const addr = `127.0.0.1:${port}`;
  const worker = (i: number, stall: boolean) =>
    ep(["run", WORKER, "--log-level", "warning"], `worker ${i}`, {
      EP_CONNECT: addr,
      EP_BENCH_HEDGE: hedge ? "1" : "0",
      EP_BENCH_STALL: stall ? String(STALL_EVERY) : "0",
      EP_BENCH_STALL_MS: String(STALL_MS),
      EP_BENCH_HEDGE_MS: HEDGE_MS,
    });
  worker(1, true);
  await waitProviders(addr, 1, balancer);
  for (let i = 2; i <= WORKERS; i++) worker(i, false);
  await waitProviders(addr, WORKERS, balancer);
  const load = ep([
    "bench",
    "work",
    "--addr",
    addr,
    "--rate",
    String(RATE),
    "--duration",
    String(SECONDS),
    "--warmup",
    "1",
    "--mix",
    `${JOB_MS}@1`,
    "--seed",
    String(seed),
    "--timeout",
    "10000",
    "--json",
    "--quiet",
  ], "load");
  const r = await benchResult<LoadResultJson>(load);
  const client = await connect(addr);
  const stats = await client.stats() as {
    services: { name: string; counters: Record<string, number> }[];
  };
  client.close();
  await killAll();
  const counters = stats.services.find((s) => s.name === "work")?.counters ?? {};
  const h = LatencyHistogram.fromJSON(r.histograms.latency);
  const jobs = (counters.ok ?? 0) + (counters.error ?? 0) + (counters.timeout ?? 0);
  return {
    p50: h.percentile(50),
    p99: h.percentile(99),
    p999: h.percentile(99.9),
    count: h.count,
    errors: Object.values(r.errors).reduce((a, b) => a + b, 0),
    hedged: counters.hedged ?? 0,
    wins: counters.hedgeWins ?? 0,
    jobs,
    lagP99: r.sendLagUs.p99,
  };
}

const undoSignal = killOnSignal();
try {
  console.log(
    `hedge_bench: ${WORKERS} one-slot workers, ${JOB_MS} ms jobs at ${
      RATE.toFixed(0)
    }/s (load ${LOAD}); worker 1 stalls 1 job in ${STALL_EVERY} for ${STALL_MS} ms; hedged after ${
      HEDGE_MS === "" ? "the p95" : `${HEDGE_MS} ms`
    }; ${SECONDS} s runs`,
  );
  console.log(`load average before: ${loadAverage()} (${navigator.hardwareConcurrency} cores)`);
  const ratios: number[] = [];
  const extras: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const seed = round * 10;
    const off = await run(false, seed);
    const on = await run(true, seed);
    const ratio = on.p99 / off.p99;
    const extra = on.jobs > 0 ? on.hedged / on.jobs : NaN;
    ratios.push(ratio);
    extras.push(extra);
    console.log(`round ${round} (load average ${loadAverage()}):`);
    for (const [name, f] of [["unhedged", off], ["hedged", on]] as const) {
      console.log(
        `  ${name.padEnd(9)} p50 ${ms(f.p50).padStart(7)}  p99 ${ms(f.p99).padStart(7)}  p99.9 ${
          ms(f.p999).padStart(7)
        } ms  (${f.count} jobs, ${f.errors} errors; copies ${f.hedged}, won ${f.wins}; send lag p99 ${
          ms(f.lagP99)
        } ms)`,
      );
    }
    console.log(
      `  p99 ${ratio.toFixed(2)}×, p99.9 ${(on.p999 / off.p999).toFixed(2)}×, extra work ${
        (100 * extra).toFixed(1)
      } % (copies per job)`,
    );
  }
  const worst = (xs: number[]) => Math.max(...xs);
  console.log(
    `hedged vs unhedged p99: ${worst(ratios).toFixed(2)}× (rounds: ${
      ratios.map((r) => r.toFixed(2)).join(", ")
    }; target ≤ 0.5×)`,
  );
  console.log(
    `extra work: ${(100 * worst(extras)).toFixed(1)} % (rounds: ${
      extras.map((e) => (100 * e).toFixed(1)).join(", ")
    }; target ≤ 5 %)`,
  );
} finally {
  await killAll();
  undoSignal();
}
