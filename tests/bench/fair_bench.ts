/**
 * Fair tails across several balancers (issue 16, item 3): two balancers, four one-slot
 * workers attached to both, uneven open-loop load (4:1 by default) at 85 % of the workers'
 * capacity. Prints each balancer's latency percentiles, the p99 ratio between them, and the
 * total p99 against one balancer taking all the traffic (four workers attached to it alone,
 * the same two arrival streams).
 *
 *   deno run -A tests/bench/fair_bench.ts [--seconds 10] [--rounds 2] [--job-ms 5]
 *     [--load 0.85] [--split 4] [--prefetch N]
 *
 * Processes: the balancers are `mod.ts run scripts/balancer.lua`; the workers
 * `mod.ts run tests/bench/_lua/fair_worker.lua` (one thread, one slot, service `work`,
 * which sleeps the job's time with `ep.sleep`; `--prefetch` sets the workers' prefetch,
 * 4 by default); each stream of load is its own `ep bench`
 * process (open loop, Poisson, over EP, seeded), so the two streams do not share a clock
 * thread or an event loop. The rounds alternate: two balancers, then one, with the same
 * seeds. Targets (issue 16): p99 ratio across balancers ≤ 1.2, total p99 ≤ 1.2× one
 * balancer's. Nothing is asserted.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { LatencyHistogram, type LoadResultJson } from "../../cli/loadgen/mod.ts";
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
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "2" },
    "job-ms": { type: "string", default: "5" },
    load: { type: "string", default: "0.85" },
    split: { type: "string", default: "4" },
    prefetch: { type: "string", default: "" },
  },
  strict: true,
});
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const JOB_MS = Number(values["job-ms"]);
const LOAD = Number(values.load);
const SPLIT = Number(values.split);
/** The workers' `prefetch`, or "" for the default. */
const PREFETCH = values.prefetch;
const WORKERS = 4;
const MOD = new URL("../../mod.ts", import.meta.url).pathname;
const BALANCER = new URL("../../scripts/balancer.lua", import.meta.url).pathname;
const WORKER = new URL("./_lua/fair_worker.lua", import.meta.url).pathname;
/** Total arrivals per second: LOAD of four one-slot workers. */
const RATE = LOAD * WORKERS * 1000 / JOB_MS;
const RATE_A = RATE * SPLIT / (SPLIT + 1);
const RATE_B = RATE / (SPLIT + 1);

const ms = (us: number) => (us / 1000).toFixed(2);

/** Starts a balancer; resolves with it and its address. */
async function balancer(name: string): Promise<{ child: Child; addr: string }> {
  const child = new Child(name, Deno.execPath(), [
    "run",
    "-A",
    MOD,
    "run",
    BALANCER,
    "--log-level",
    "warning",
  ], { EP_PORT: "0" });
  const port = Number((await child.waitFor(/listening on [^:]+:(\d+)/))[1]);
  return { child, addr: `127.0.0.1:${port}` };
}

function workers(addrs: string[]): Child[] {
  return Array.from(
    { length: WORKERS },
    (_, i) =>
      new Child(`worker ${i + 1}`, Deno.execPath(), [
        "run",
        "-A",
        MOD,
        "run",
        WORKER,
        "--log-level",
        "warning",
      ], { EP_CONNECT: addrs.join(","), EP_BENCH_PREFETCH: PREFETCH }),
  );
}

/** One `ep bench` process: an open-loop stream at `rate` to `addr`; its JSON result. */
async function stream(addr: string, rate: number, seed: number): Promise<LoadResultJson> {
  const child = new Child(`load ${addr}`, Deno.execPath(), [
    "run",
    "-A",
    MOD,
    "bench",
    "work",
    "--addr",
    addr,
    "--rate",
    String(rate),
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
  ]);
  return await benchResult<LoadResultJson>(child);
}

interface Figures {
  p50: number;
  p99: number;
  p999: number;
  count: number;
  errors: number;
}

function figures(h: LatencyHistogram, errors: number): Figures {
  return {
    p50: h.percentile(50),
    p99: h.percentile(99),
    p999: h.percentile(99.9),
    count: h.count,
    errors,
  };
}

const errorsOf = (r: LoadResultJson) => Object.values(r.errors).reduce((a, b) => a + b, 0);
const line = (name: string, f: Figures) =>
  `  ${name.padEnd(10)} p50 ${ms(f.p50).padStart(7)}  p99 ${ms(f.p99).padStart(7)}  p99.9 ${
    ms(f.p999).padStart(7)
  } ms  (${f.count} jobs, ${f.errors} errors)`;

/** Two streams at once, A's and B's, to `addrA` and `addrB`. */
async function run(addrA: string, addrB: string, seed: number) {
  const [a, b] = await Promise.all([stream(addrA, RATE_A, seed), stream(addrB, RATE_B, seed + 1)]);
  const ha = LatencyHistogram.fromJSON(a.histograms.latency);
  const hb = LatencyHistogram.fromJSON(b.histograms.latency);
  const total = LatencyHistogram.fromJSON(a.histograms.latency).merge(hb);
  return {
    a: figures(ha, errorsOf(a)),
    b: figures(hb, errorsOf(b)),
    total: figures(total, errorsOf(a) + errorsOf(b)),
    lagP99: Math.max(a.sendLagUs.p99, b.sendLagUs.p99),
  };
}

const undoSignal = killOnSignal();
try {
  console.log(
    `fair_bench: ${WORKERS} one-slot workers, ${JOB_MS} ms jobs, load ${LOAD} (${
      RATE.toFixed(0)
    }/s) split ${SPLIT}:1 (A ${RATE_A.toFixed(0)}/s, B ${RATE_B.toFixed(0)}/s), prefetch ${
      PREFETCH || "4 (default)"
    }, ${SECONDS} s runs`,
  );
  console.log(`load average before: ${loadAverage()} (${navigator.hardwareConcurrency} cores)`);
  const ratios: number[] = [];
  const totals: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const seed = round * 10;
    // Two balancers sharing four workers.
    const [a, b] = await Promise.all([balancer("balancer A"), balancer("balancer B")]);
    let ws = workers([a.addr, b.addr]);
    await waitProviders(a.addr, WORKERS, a.child);
    await waitProviders(b.addr, WORKERS, b.child);
    const two = await run(a.addr, b.addr, seed);
    for (const w of ws) w.kill();
    a.child.kill();
    b.child.kill();
    // One balancer taking both streams, four workers attached to it alone.
    const one = await balancer("balancer");
    ws = workers([one.addr]);
    await waitProviders(one.addr, WORKERS, one.child);
    const single = await run(one.addr, one.addr, seed);
    await killAll();
    const ratio = Math.max(two.a.p99, two.b.p99) / Math.min(two.a.p99, two.b.p99);
    const vsOne = two.total.p99 / single.total.p99;
    ratios.push(ratio);
    totals.push(vsOne);
    console.log(`round ${round} (load average ${loadAverage()}):`);
    console.log(line("A (4/5)", two.a));
    console.log(line("B (1/5)", two.b));
    console.log(line("total", two.total));
    console.log(line("one bal.", single.total));
    console.log(
      `  send lag p99 ${ms(Math.max(two.lagP99, single.lagP99))} ms; p99 ratio ${
        ratio.toFixed(2)
      }, total p99 vs one balancer ${vsOne.toFixed(2)}×`,
    );
  }
  const worst = (xs: number[]) => Math.max(...xs);
  console.log(
    `fair p99 ratio across balancers: ${worst(ratios).toFixed(2)} (rounds: ${
      ratios.map((r) => r.toFixed(2)).join(", ")
    }; target ≤ 1.2)`,
  );
  console.log(
    `total p99 vs one balancer: ${worst(totals).toFixed(2)}× (rounds: ${
      totals.map((r) => r.toFixed(2)).join(", ")
    }; target ≤ 1.2×)`,
  );
} finally {
  await killAll();
  undoSignal();
}
