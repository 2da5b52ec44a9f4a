/**
 * Handler-pool benchmarks, each against `postMessage` in the same run:
 *
 * 1. Round trip main → handler → main, one job at a time (64-byte body, an echo handler),
 *    against a `postMessage` round trip to a worker that echoes the same bytes.
 * 2. Jobs per second through the pool on 2 threads with a trivial TypeScript handler,
 *    every slot kept busy, against the same thing built on `postMessage` (2 workers, the
 *    same number of jobs outstanding per worker).
 *
 * Run: `deno run -A tests/bench/pool_bench.ts [--quick]`. Rounds are interleaved and the
 * figures are medians. The last line is the round-trip latency ratio.
 *
 * @module
 */

import { HandlerPool, type JobReply, TS_HANDLER_RUNTIME } from "../../core/threads/pool.ts";

const HANDLERS = new URL("../fixtures/pool_handlers.ts", import.meta.url).href;
const BODY = new Uint8Array(64).fill(1);

interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const inWorker = typeof g.WorkerGlobalScope !== "undefined" &&
  globalThis instanceof g.WorkerGlobalScope;

if (inWorker) {
  // The postMessage side: a "handler thread" that echoes each job's body.
  const scope = globalThis as unknown as WorkerScope;
  scope.onmessage = (e: MessageEvent<{ id: number; service: string; body: Uint8Array }>) => {
    scope.postMessage({ id: e.data.id, status: 200, body: e.data.body });
  };
} else {
  await main();
}

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

async function main(): Promise<void> {
  const quick = Deno.args.includes("--quick");
  const rounds = quick ? 1 : 3;
  const rttCount = quick ? 3_000 : 20_000;
  const jobCount = quick ? 50_000 : 300_000;
  const concurrency = 64;

  // The default (sleep in Atomics.waitAsync at once), and the opt-in polling variant.
  const pool1 = await HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: HANDLERS },
    threads: 1,
  });
  const pool0 = await HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: HANDLERS },
    threads: 1,
    pollMicros: 50,
  });
  const pool2 = await HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: HANDLERS },
    threads: 2,
    perThreadConcurrency: concurrency,
  });
  const workers = [0, 1].map(() => new Worker(import.meta.url, { type: "module" }));

  /** Sequential round trips through the pool; microseconds per round trip. */
  function poolRtt(count: number, pool = pool1): Promise<number> {
    return new Promise((resolve, reject) => {
      let n = 0;
      const t0 = performance.now();
      const onReply = (err: Error | null, reply: JobReply | null) => {
        if (err) return reject(err);
        if (reply!.body.length !== 64) return reject(new Error("Bad echo"));
        if (++n === count) return resolve((performance.now() - t0) / count * 1000);
        pool.submit({ id: n, service: "echo", body: BODY }, onReply);
      };
      pool.submit({ id: 0, service: "echo", body: BODY }, onReply);
    });
  }

  /** Sequential round trips through postMessage; microseconds per round trip. */
  function pmRtt(count: number): Promise<number> {
    const w = workers[0];
    return new Promise((resolve, reject) => {
      let n = 0;
      const t0 = performance.now();
      w.onmessage = (e: MessageEvent<{ body: Uint8Array }>) => {
        if (e.data.body.length !== 64) return reject(new Error("Bad echo"));
        if (++n === count) return resolve((performance.now() - t0) / count * 1000);
        w.postMessage({ id: n, service: "echo", body: BODY });
      };
      w.postMessage({ id: 0, service: "echo", body: BODY });
    });
  }

  /** Jobs per second through the 2-thread pool, every slot busy. */
  function poolJobs(count: number): Promise<number> {
    return new Promise((resolve, reject) => {
      let sent = 0;
      let done = 0;
      const t0 = performance.now();
      const onReply = (err: Error | null) => {
        if (err) return reject(err);
        if (++done === count) return resolve(count / (performance.now() - t0) * 1000);
        if (sent < count) pool2.submit({ id: sent++, service: "echo", body: BODY }, onReply);
      };
      while (sent < count && pool2.freeSlots > 0) {
        pool2.submit({ id: sent++, service: "echo", body: BODY }, onReply);
      }
    });
  }

  /** Jobs per second through 2 postMessage workers, `concurrency` jobs outstanding each. */
  function pmJobs(count: number): Promise<number> {
    return new Promise((resolve) => {
      let sent = 0;
      let done = 0;
      const t0 = performance.now();
      for (const w of workers) {
        w.onmessage = () => {
          if (++done === count) return resolve(count / (performance.now() - t0) * 1000);
          if (sent < count) w.postMessage({ id: sent++, service: "echo", body: BODY });
        };
        for (let k = 0; k < concurrency && sent < count; k++) {
          w.postMessage({ id: sent++, service: "echo", body: BODY });
        }
      }
    });
  }

  // Warm-up.
  await poolRtt(2_000);
  await poolRtt(1_000, pool0);
  await pmRtt(2_000);
  await poolJobs(20_000);
  await pmJobs(20_000);

  const r = {
    poolRtt: [] as number[],
    pool0Rtt: [] as number[],
    pmRtt: [] as number[],
    poolJobs: [] as number[],
    pmJobs: [] as number[],
  };
  for (let i = 0; i < rounds; i++) {
    r.poolRtt.push(await poolRtt(rttCount));
    r.pool0Rtt.push(await poolRtt(rttCount / 4, pool0));
    r.pmRtt.push(await pmRtt(rttCount));
    r.poolJobs.push(await poolJobs(jobCount));
    r.pmJobs.push(await pmJobs(jobCount));
  }
  const c = pool2.counters();
  await pool1.close();
  await pool0.close();
  await pool2.close();
  for (const w of workers) w.terminate();

  const poolRtt_ = median(r.poolRtt);
  const pmRtt_ = median(r.pmRtt);
  const poolJobs_ = median(r.poolJobs);
  const pmJobs_ = median(r.pmJobs);
  const k = (n: number) => `${(n / 1000).toFixed(0)} k`;
  console.log(`${rounds} interleaved round(s), medians; 64-byte bodies, echo handler`);
  console.log(
    `round trip: pool ${poolRtt_.toFixed(1)} µs, postMessage ${pmRtt_.toFixed(1)} µs ` +
      `(pool polling for 50 µs before it sleeps, pollMicros 50: ${
        median(r.pool0Rtt).toFixed(1)
      } µs)`,
  );
  console.log(
    `jobs/s on 2 threads (${concurrency} slots each): pool ${k(poolJobs_)}, postMessage ${
      k(pmJobs_)
    } (${(poolJobs_ / pmJobs_).toFixed(1)}x)`,
  );
  console.log(
    `2-thread pool counters: main sleeps ${c.mainSleeps}, thread sleeps ${
      c.threads.map((t) => t.sleeps).join("/")
    }, job-ring wake-ups ${c.threads.map((t) => t.jobRing.dataWakeups).join("/")}, ` +
      `reply-ring wake-ups ${c.threads.map((t) => t.replyRing.dataWakeups).join("/")}`,
  );
  console.log(`pool round trip vs postMessage latency: ${(poolRtt_ / pmRtt_).toFixed(2)}x`);
}
