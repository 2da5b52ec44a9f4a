/**
 * What a Lua worker and a balancer cost in CPU, per job and while they wait: the Lua path
 * users run (`scripts/balancer.lua`, module workers started like `scripts/worker.lua`), each
 * figure from /proc for each process, measured side by side in one run.
 *
 *   deno run -A tests/bench/cpu_bench.ts [--quick] [--seconds s] [--rounds n]
 *
 * Processes: a balancer (`mod.ts run scripts/balancer.lua`) and four Lua workers with one
 * handler thread each (`mod.ts run tests/bench/_lua/cpu_worker.lua`): `main` (services
 * `wait`, `call_wait`, `ticker`; 16 slots), `callee` (the service `call_wait` calls; 16
 * slots), `trivial` (one slot, like `compare.ts`'s workers, started with `EP_INLINE=1` so
 * that its Lua runs on its main thread: `lua/inline.ts`) and `trivial_thread` (the same on a
 * handler thread, the default). The Lua services are in `tests/bench/_lua/`.
 *
 * What it measures (CPU of a process: the time on a CPU of all its threads, from
 * `/proc/<pid>/task/<tid>/schedstat`; loads are open loop, Poisson, over EP):
 *
 * - waiting cost: the `main` worker's CPU per job serving `ep.sleep(2)` jobs against 0 ms
 *   jobs (which do not call `ep.sleep`), at the same rates (300/s and 1 500/s), in
 *   alternating rounds; the ratio is the cost of waiting;
 * - wake-up lateness of `ep.sleep(2)`: the service measures `ep.now()` around the sleep and
 *   reports the time slept in `x-slept-us`; lateness = slept − 2 ms, p50 and p99;
 * - a one-slot worker with its Lua on its main thread against one on a handler thread: CPU
 *   per job of 0 ms and `ep.sleep(2)` jobs at 300/s, the waiting cost and lateness of each;
 * - a handler waiting in `ep.call`: `main`'s CPU per `call_wait` job whose callee (on the
 *   `callee` worker) sleeps 2 ms, against a callee that answers at once;
 * - `ep.every(2)`: `main`'s CPU per timer callback that sleeps 2 ms against one that does
 *   nothing (a long `wait` job keeps the thread in its event loop meanwhile, see the
 *   printed note), and how many callbacks run in 1 s on a thread with no job;
 * - saturation: `wrk -t1 -c8` on `/trivial?ms=0` through the balancer: the balancer's CPU per
 *   forwarded HTTP job and the `trivial` worker's CPU per job, and wrk's own CPU;
 * - idle: every process's CPU over 5 s with nothing to do, after the load.
 *
 * Targets (from issue 14) are printed next to the figures; nothing is asserted. The run takes
 * about 75 s (quick: about 40 s).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect as epConnect } from "../../core/net/client.ts";
import {
  LatencyHistogram,
  type LoadResult,
  percentiles,
  runLoad,
  type Target,
} from "../../cli/loadgen/mod.ts";
import {
  Child,
  CpuMeter,
  ensureInstalled,
  killAll,
  killOnSignal,
  loadAverage,
  runWrk,
  threadCpuNs,
  waitProviders,
} from "./_bench_procs.ts";
import { median } from "./_bench_util.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    seconds: { type: "string" },
    rounds: { type: "string" },
    "idle-seconds": { type: "string", default: "5" },
  },
  strict: false,
});
const QUICK = values.quick === true;
/** Length of each measured load run, s. */
const SECONDS = Number(values.seconds ?? (QUICK ? 2 : 3));
/** Rounds of the alternating comparisons. */
const ROUNDS = Number(values.rounds ?? (QUICK ? 1 : 2));
const IDLE_SECONDS = Number(values["idle-seconds"]);
const MOD = new URL("../../mod.ts", import.meta.url).pathname;
const BALANCER = new URL("../../scripts/balancer.lua", import.meta.url).pathname;
const WORKER = new URL("./_lua/cpu_worker.lua", import.meta.url).pathname;
const RATES = [300, 1500];
/** Rate of the one-slot comparison: 2 ms jobs keep one slot 60 % busy. */
const ONE_SLOT_RATE = 300;
const CALL_RATE = 500;
const TICK_MS = 2;

/** CPU of processes over an interval, from the threads' schedstat. */
class ThreadCpu {
  #t0 = performance.now();
  #ns0: Map<Child, number>;
  constructor(readonly procs: Child[]) {
    this.#ns0 = new Map(procs.map((p) => [p, threadCpuNs(p.pid)]));
  }
  /** CPU seconds of `p` and the wall seconds since the start. */
  read(p: Child): { cpu: number; wall: number } {
    return {
      cpu: (threadCpuNs(p.pid) - this.#ns0.get(p)!) / 1e9,
      wall: (performance.now() - this.#t0) / 1000,
    };
  }
  /** % of one core. */
  percent(p: Child): number {
    const { cpu, wall } = this.read(p);
    return (cpu / wall) * 100;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU (µs) of one wake-up of this thread from a timed `Atomics.wait` of `ms`: median of `n`. */
function threadWakeUs(ms: number, n: number): number {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const cpuNs = () => Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
  const each: number[] = [];
  for (let i = 0; i < n; i++) {
    const c0 = cpuNs();
    Atomics.wait(cell, 0, 0, ms);
    each.push((cpuNs() - c0) / 1000);
  }
  return median(each);
}
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "–");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "–");
const ratio = (a: number, b: number) => (b > 0 ? a / b : NaN);
const verdict = (ok: boolean) => (ok ? "holds" : "MISSES");

/** One open-loop EP run at `rate` of `ms`-millisecond jobs; the worker's CPU per job. */
async function perJob(
  target: Target,
  rate: number,
  ms: number,
  worker: Child,
  seconds: number,
  others: Child[] = [],
): Promise<{ usPerJob: number; othersUsPerJob: number[]; r: LoadResult }> {
  const load = (durationMs: number, seed: number) =>
    runLoad({
      target,
      rate,
      durationMs,
      seed,
      mix: [{ ms, p: 1 }],
      connections: 1,
      timeoutMs: 10_000,
    });
  await load(500, 7); // warm-up at the same rate
  const cpu = new ThreadCpu([worker, ...others]);
  const r = await load(seconds * 1000, 1);
  const errs = Object.values(r.errors).reduce((a, b) => a + b, 0);
  if (errs > 0) {
    throw new Error(`${target.service} at ${rate}/s: errors ${JSON.stringify(r.errors)}`);
  }
  const us = (p: Child) => (cpu.read(p).cpu * 1e6) / r.ok;
  return { usPerJob: us(worker), othersUsPerJob: others.map(us), r };
}

const removeSignalHandlers = killOnSignal();
let exitCode = 0;
const lines: string[] = [];
const out = (s: string) => {
  console.log(s);
  lines.push(s);
};
try {
  await ensureInstalled({ wrk: "wrk" });
  const t0 = Date.now();
  console.log(`load average before: ${loadAverage()} (${navigator.hardwareConcurrency} cores)`);
  // --- processes
  const balancer = new Child("balancer", Deno.execPath(), [
    "run",
    "-A",
    MOD,
    "run",
    BALANCER,
    "--log-level",
    "warning",
  ], { EP_PORT: "0" });
  const port = Number((await balancer.waitFor(/listening on [^:]+:(\d+)/))[1]);
  const addr = `127.0.0.1:${port}`;
  const worker = (role: string, slots: number, env: Record<string, string> = {}) =>
    new Child(role, Deno.execPath(), ["run", "-A", MOD, "run", WORKER, "--log-level", "warning"], {
      EP_CONNECT: addr,
      EP_BENCH_ROLE: role,
      EP_BENCH_SLOTS: String(slots),
      ...env,
    });
  const main = worker("main", 16);
  const callee = worker("callee", 16);
  // One slot: its Lua runs on its main thread (lua/inline.ts); the other on a handler thread.
  const trivial = worker("trivial", 1, { EP_INLINE: "1" });
  const trivialThread = worker("trivial_thread", 1);
  await waitProviders(addr, 4, balancer);
  const ep = (service: string): Target => ({ protocol: "ep", addr, service });

  // --- warm-up: JIT in every process
  for (const [service, ms] of [["wait", 0], ["wait", 2], ["call_wait", 2]] as const) {
    await runLoad({
      target: ep(service),
      rate: 1000,
      durationMs: QUICK ? 500 : 1000,
      mix: [{ ms, p: 1 }],
      timeoutMs: 10_000,
    });
  }
  await runWrk(`http://${addr}/trivial?ms=0`, { threads: 1, connections: 8, seconds: 1 });
  await runWrk(`http://${addr}/trivial_thread?ms=0`, { threads: 1, connections: 8, seconds: 1 });
  // Other people's CPU over the measurements (the machine may be shared).
  const noise = new CpuMeter();

  // --- (a, b) waiting cost of ep.sleep, and its wake-up lateness
  out("");
  out(
    `Lua worker (one handler thread, 16 slots): CPU per job, µs, median of ${ROUNDS} round(s) of ${SECONDS} s; lateness of ep.sleep(2) as the handler saw it`,
  );
  out("");
  out("| rate | 0 ms jobs | ep.sleep(2) jobs | ratio | lateness p50 | lateness p99 |");
  out("| ---: | ---: | ---: | ---: | ---: | ---: |");
  const lateAll = new LatencyHistogram();
  const lateInline = new LatencyHistogram();
  const sleepRatios: { rate: number; ratio: number }[] = [];
  for (const rate of RATES) {
    const zero: number[] = [];
    const two: number[] = [];
    const late = new LatencyHistogram();
    for (let round = 0; round < ROUNDS; round++) {
      zero.push((await perJob(ep("wait"), rate, 0, main, SECONDS)).usPerJob);
      const s = await perJob(ep("wait"), rate, 2, main, SECONDS);
      two.push(s.usPerJob);
      late.merge(s.r.jobOvershoot);
      lateAll.merge(s.r.jobOvershoot);
    }
    const r = ratio(median(two), median(zero));
    sleepRatios.push({ rate, ratio: r });
    const l = percentiles(late);
    out(
      `| ${rate}/s | ${f1(median(zero))} | ${f1(median(two))} | ${f2(r)}× | ${
        f2(l.p50 / 1000)
      } ms | ${f2(l.p99 / 1000)} ms |`,
    );
  }

  // --- (f) a one-slot worker: Lua on its main thread (the default) or on a handler thread
  out("");
  out(
    `One-slot Lua worker (like compare.ts's): Lua on its main thread (inline, EP_INLINE=1) vs on a handler thread (the default); CPU per job at ${ONE_SLOT_RATE}/s, µs, median of ${ROUNDS} round(s); lateness of ep.sleep(2)`,
  );
  out("");
  out("| worker | 0 ms jobs | ep.sleep(2) jobs | waiting cost | lateness p50 | lateness p99 |");
  out("| --- | ---: | ---: | ---: | ---: | ---: |");
  const oneSlot: Record<string, { zero: number; two: number }> = {};
  for (
    const [label, service, proc] of [
      ["inline", "trivial", trivial],
      ["thread", "trivial_thread", trivialThread],
    ] as const
  ) {
    const zero: number[] = [];
    const two: number[] = [];
    const late = new LatencyHistogram();
    for (let round = 0; round < ROUNDS; round++) {
      zero.push((await perJob(ep(service), ONE_SLOT_RATE, 0, proc, SECONDS)).usPerJob);
      const s = await perJob(ep(service), ONE_SLOT_RATE, 2, proc, SECONDS);
      two.push(s.usPerJob);
      late.merge(s.r.jobOvershoot);
      if (label === "inline") lateInline.merge(s.r.jobOvershoot);
    }
    oneSlot[label] = { zero: median(zero), two: median(two) };
    const l = percentiles(late);
    out(
      `| ${label} | ${f1(median(zero))} | ${f1(median(two))} | ${
        f2(ratio(median(two), median(zero)))
      }× | ${f2(l.p50 / 1000)} ms | ${f2(l.p99 / 1000)} ms |`,
    );
  }
  out(
    `inline / thread, CPU per job: 0 ms jobs ${
      f2(ratio(oneSlot.inline.zero, oneSlot.thread.zero))
    }×, ep.sleep(2) jobs ${f2(ratio(oneSlot.inline.two, oneSlot.thread.two))}×`,
  );

  // --- (e) a handler waiting in ep.call
  const c0: number[] = [];
  const c2: number[] = [];
  const callee0: number[] = [];
  const callee2: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const a = await perJob(ep("call_wait"), CALL_RATE, 0, main, SECONDS, [callee]);
    const b = await perJob(ep("call_wait"), CALL_RATE, 2, main, SECONDS, [callee]);
    c0.push(a.usPerJob);
    c2.push(b.usPerJob);
    callee0.push(a.othersUsPerJob[0]);
    callee2.push(b.othersUsPerJob[0]);
  }
  const callRatio = ratio(median(c2), median(c0));
  out("");
  out(
    `ep.call at ${CALL_RATE}/s: the caller's CPU per job ${f1(median(c0))} µs with a 0 ms callee, ${
      f1(median(c2))
    } µs with a callee that sleeps 2 ms (${f2(callRatio)}×); the callee's ${
      f1(median(callee0))
    } / ${f1(median(callee2))} µs`,
  );

  // --- (e) ep.every: on an idle thread, and its cost per callback
  const client = await epConnect(addr);
  const dec = new TextDecoder();
  const ticker = async (body: string) =>
    dec.decode((await client.request("ticker", body, { timeoutMs: 10_000 })).body);
  await ticker(`start ${TICK_MS} 0`);
  await sleep(1000);
  const idleTicks = Number(await ticker("stop"));
  /**
   * With a `wait` job in flight (the thread then waits in its event loop), an ep.every whose
   * callback sleeps `tickSleepMs` (none when null): the worker's CPU (% of a core) and the
   * callbacks per second.
   */
  const tickRun = async (tickSleepMs: number | null): Promise<{ cpu: number; rate: number }> => {
    const holdMs = SECONDS * 1000 + 500;
    const hold = client.request("wait", String(holdMs), { timeoutMs: holdMs + 10_000 });
    await sleep(200);
    if (tickSleepMs !== null) await ticker(`start ${TICK_MS} ${tickSleepMs}`);
    const tStart = performance.now();
    const cpu = new ThreadCpu([main]);
    await sleep(SECONDS * 1000);
    const used = cpu.read(main);
    const ticks = tickSleepMs !== null ? Number(await ticker("stop")) : 0;
    const rate = ticks / ((performance.now() - tStart) / 1000);
    await hold;
    return { cpu: used.cpu / used.wall, rate };
  };
  const held = await tickRun(null);
  const tick0 = await tickRun(0);
  const tick2 = await tickRun(TICK_MS);
  client.close();
  /** CPU per callback, µs, net of the waiting job's own cost. */
  const perTick = (t: { cpu: number; rate: number }) => ((t.cpu - held.cpu) * 1e6) / t.rate;
  const tickRatio = ratio(perTick(tick2), perTick(tick0));
  out("");
  out(
    `A handler waiting in ep.sleep(${SECONDS * 1000 + 500}) alone: ${
      f2(held.cpu * 100)
    } % of a core`,
  );
  out(
    `ep.every(${TICK_MS}) on a handler thread with no job in flight: ${idleTicks} callbacks in 1 s (expected ≈ ${
      1000 / TICK_MS
    })`,
  );
  out(
    `ep.every(${TICK_MS}) with that waiting job in flight, CPU per callback net of the job's: ${
      f1(perTick(tick0))
    } µs for a callback that does nothing (${f1(tick0.rate)}/s), ${
      f1(perTick(tick2))
    } µs for one that sleeps ${TICK_MS} ms (${f1(tick2.rate)}/s)`,
  );

  // --- (d) saturation, wrk-driven
  const satSeconds = QUICK ? 3 : 5;
  const sat = new ThreadCpu([balancer, trivial]);
  const w = await runWrk(`http://${addr}/trivial?ms=0`, {
    threads: 1,
    connections: 8,
    seconds: satSeconds,
  });
  const balUs = (sat.read(balancer).cpu * 1e6) / w.requests;
  const trivialUs = (sat.read(trivial).cpu * 1e6) / w.requests;
  const satThread = new ThreadCpu([balancer, trivialThread]);
  const wt = await runWrk(`http://${addr}/trivial_thread?ms=0`, {
    threads: 1,
    connections: 8,
    seconds: satSeconds,
  });
  const balThreadUs = (satThread.read(balancer).cpu * 1e6) / wt.requests;
  const trivialThreadUs = (satThread.read(trivialThread).cpu * 1e6) / wt.requests;
  const errs = w.non2xx + Object.values(w.socketErrors).reduce((a, b) => a + b, 0);
  out("");
  out(
    `Saturation (wrk -t1 -c8, ${satSeconds} s, /trivial?ms=0 through the balancer to one Lua worker with one slot): ${
      Math.round(w.rps)
    } req/s, errors ${errs}; wrk used ${f1(w.cpuPercent)} % of a core (${
      f1((w.cpuSeconds * 1e6) / w.requests)
    } µs per request); the same to the worker on a handler thread: ${
      Math.round(wt.rps)
    } req/s, balancer ${f1(balThreadUs)} µs and worker ${f1(trivialThreadUs)} µs per job`,
  );

  // --- (c) idle
  await sleep(1000);
  const procs = [balancer, main, callee, trivial, trivialThread];
  const idle = new ThreadCpu(procs);
  await sleep(IDLE_SECONDS * 1000);
  const idlePct = new Map(procs.map((p) => [p.name, idle.percent(p)]));
  out("");
  out(
    `Idle for ${IDLE_SECONDS} s after the load, % of a core: ${
      procs.map((p) => `${p.name} ${f2(idlePct.get(p.name)!)}`).join(", ")
    }`,
  );

  // --- what one wake-up costs here: the unit of every waiting cost above
  const wakeUs = threadWakeUs(2, 300);
  out("");
  out(
    `One timed wait and wake-up of a Deno thread (Atomics.wait, 2 ms) costs ${
      f1(wakeUs)
    } µs of CPU here (median of 300): a job that sleeps needs one more wake-up than a 0 ms job, whatever ep does; it waits without CPU in between`,
  );

  // --- the targets
  out("");
  out(
    `Noise: processes not started here used ${
      f1(noise.foreign(w.cpuSeconds))
    } % of a core over the ${f1(noise.wall)} s of measurements (machine ${
      f1(noise.machinePercent())
    } %)`,
  );
  const lat = percentiles(lateAll);
  const idleWorker = Math.max(
    idlePct.get("main")!,
    idlePct.get("callee")!,
    idlePct.get("trivial")!,
    idlePct.get("trivial_thread")!,
  );
  out("");
  for (const { rate, ratio: r } of sleepRatios) {
    out(
      `waiting cost, ep.sleep(2) vs 0 ms jobs, CPU per job at ${rate}/s: ${
        f2(r)
      }× (target ≤ 1.1×: ${verdict(r <= 1.1)})`,
    );
  }
  const oneSlotRatio = ratio(oneSlot.inline.two, oneSlot.inline.zero);
  out(
    `waiting cost, one-slot worker with Lua on its main thread, ep.sleep(2) vs 0 ms jobs at ${ONE_SLOT_RATE}/s: ${
      f2(oneSlotRatio)
    }× (target ≤ 1.1×: ${verdict(oneSlotRatio <= 1.1)})`,
  );
  out(
    `ep.sleep(2) wake-up lateness on handler threads p50 ${f2(lat.p50 / 1000)} ms, p99 ${
      f2(lat.p99 / 1000)
    } ms (target p99 ≤ 0.2 ms: ${verdict(lat.p99 <= 200)})`,
  );
  const latI = percentiles(lateInline);
  out(
    `ep.sleep(2) wake-up lateness on a one-slot worker's main thread p50 ${
      f2(latI.p50 / 1000)
    } ms, p99 ${f2(latI.p99 / 1000)} ms (target p99 ≤ 0.2 ms: ${verdict(latI.p99 <= 200)})`,
  );
  out(
    `waiting cost, ep.call to a 2 ms callee vs a 0 ms one, caller's CPU per job: ${
      f2(callRatio)
    }× (target ≤ 1.1×: ${verdict(callRatio <= 1.1)})`,
  );
  out(
    `waiting cost, ep.every callback sleeping ${TICK_MS} ms vs doing nothing, CPU per callback: ${
      f2(tickRatio)
    }× (target ≤ 1.1×: ${verdict(tickRatio <= 1.1)})`,
  );
  out(
    `ep.every(${TICK_MS}) on an idle handler thread: ${
      f2(idleTicks / (1000 / TICK_MS))
    }× of the expected callbacks (target ≈ 1×: ${verdict(idleTicks >= 0.9 * (1000 / TICK_MS))})`,
  );
  out(
    `idle Lua worker CPU: ${f2(idleWorker)} % of a core (target ≈ 0: ${
      verdict(idleWorker < 0.5)
    }); idle balancer: ${f2(idlePct.get("balancer")!)} % (${
      verdict(idlePct.get("balancer")! < 0.5)
    })`,
  );
  out(
    `balancer CPU per forwarded HTTP job at saturation: ${f1(balUs)} µs (target ≤ 25 µs: ${
      verdict(balUs <= 25)
    })`,
  );
  out(
    `Lua worker CPU per trivial job at saturation: ${
      f1(trivialThreadUs)
    } µs on a handler thread (the default; target ≤ 40 µs: ${verdict(trivialThreadUs <= 40)}), ${
      f1(trivialUs)
    } µs with Lua on its main thread (EP_INLINE=1: ${verdict(trivialUs <= 40)})`,
  );
  console.log(
    `\ncpu_bench took ${
      ((Date.now() - t0) / 1000).toFixed(0)
    } s; load average after: ${loadAverage()}`,
  );
} catch (err) {
  console.error(`cpu_bench failed: ${(err as Error).stack ?? err}`);
  exitCode = 1;
} finally {
  await killAll();
  removeSignalHandlers();
}
Deno.exit(exitCode);
