/**
 * Ring throughput: 64-byte messages main → worker and worker → main through a
 * SharedArrayBuffer ring, against `postMessage` of the same messages, in the same run.
 *
 * Run: `deno run -A tests/bench/ring_bench.ts [--quick]`. Rounds are interleaved (ring,
 * postMessage, ring, …) so that drift on a shared machine hits both alike; the figures are
 * medians. The last line is the lower of the two directions' ratios.
 *
 * The ring side does what the pool does: the producer writes records and publishes every
 * 256 messages (`flush`), the consumer copies each body into its own buffer and releases
 * every 256 messages; an empty consumer sleeps (`Atomics.wait` in the worker,
 * `Atomics.waitAsync` on the main thread), a full producer likewise. The postMessage side
 * posts one `Uint8Array(64)` per message.
 *
 * @module
 */

import { createRing, RingConsumer, RingProducer, RingRecord } from "../../core/threads/ring.ts";

const MSG = 64;
const BATCH = 256;
const RING_BYTES = 1 << 20;

interface Cmd {
  test: "ring-in" | "ring-out" | "pm-in" | "pm-out";
  count: number;
  ring?: SharedArrayBuffer;
}

interface WorkerScope {
  onmessage: ((e: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}

// deno-lint-ignore no-explicit-any
const g = globalThis as any;
const inWorker = typeof g.WorkerGlobalScope !== "undefined" &&
  globalThis instanceof g.WorkerGlobalScope;

if (inWorker) {
  const scope = globalThis as unknown as WorkerScope;
  let pmLeft = 0;
  let pmSum = 0;
  scope.onmessage = (e: MessageEvent) => {
    if (e.data instanceof Uint8Array) {
      pmSum += e.data[5];
      if (--pmLeft === 0) scope.postMessage({ done: true, sum: pmSum });
      return;
    }
    const cmd = e.data as Cmd;
    if (cmd.test === "ring-in") {
      const c = new RingConsumer(cmd.ring!);
      const rec = new RingRecord();
      const dst = new Uint8Array(MSG);
      let sum = 0;
      for (let n = 0; n < cmd.count;) {
        let k = 0;
        while (k < BATCH && c.read(rec)) {
          c.copyBody(rec, dst);
          sum += dst[5];
          k++;
        }
        n += k;
        c.release();
        if (k === 0) c.waitForDataSync();
      }
      scope.postMessage({ done: true, sum });
    } else if (cmd.test === "ring-out") {
      const p = new RingProducer(cmd.ring!);
      const src = new Uint8Array(MSG).fill(1);
      for (let i = 0; i < cmd.count; i++) {
        src[5] = i & 255;
        while (!p.tryWrite(i, 1, 0, null, src)) p.waitForSpaceSync(MSG);
        if (i % BATCH === BATCH - 1) p.flush();
      }
      p.flush();
      scope.postMessage({ done: true });
    } else if (cmd.test === "pm-in") {
      pmLeft = cmd.count;
      pmSum = 0;
      scope.postMessage({ ready: true });
    } else if (cmd.test === "pm-out") {
      const src = new Uint8Array(MSG).fill(1);
      for (let i = 0; i < cmd.count; i++) {
        src[5] = i & 255;
        scope.postMessage(src);
      }
    }
  };
} else {
  await main();
}

function expectedSum(count: number): number {
  let s = 0;
  for (let i = 0; i < count; i++) s += i & 255;
  return s;
}

async function main(): Promise<void> {
  const quick = Deno.args.includes("--quick");
  const ringCount = quick ? 2_000_000 : 10_000_000;
  const pmCount = quick ? 50_000 : 200_000;
  const rounds = quick ? 1 : 3;
  const worker = new Worker(import.meta.url, { type: "module" });
  let onMsg: (data: unknown) => void = () => {};
  worker.onmessage = (e) => onMsg(e.data);
  const next = () => new Promise<unknown>((resolve) => (onMsg = resolve));

  async function ringIn(count: number): Promise<number> {
    const ring = createRing(RING_BYTES);
    const p = new RingProducer(ring);
    const src = new Uint8Array(MSG).fill(1);
    const done = next();
    worker.postMessage({ test: "ring-in", count, ring } satisfies Cmd);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      src[5] = i & 255;
      while (!p.tryWrite(i, 1, 0, null, src)) {
        const wait = p.waitForSpaceAsync(MSG);
        if (wait) await wait;
      }
      if (i % BATCH === BATCH - 1) p.flush();
    }
    p.flush();
    const r = await done as { sum: number };
    const dt = performance.now() - t0;
    if (r.sum !== expectedSum(count)) throw new Error("Ring main → worker lost messages");
    return count / dt * 1000;
  }

  async function ringOut(count: number): Promise<number> {
    const ring = createRing(RING_BYTES);
    const c = new RingConsumer(ring);
    const rec = new RingRecord();
    const dst = new Uint8Array(MSG);
    const done = next();
    const t0 = performance.now();
    worker.postMessage({ test: "ring-out", count, ring } satisfies Cmd);
    let sum = 0;
    for (let n = 0; n < count;) {
      let k = 0;
      while (k < BATCH && c.read(rec)) {
        c.copyBody(rec, dst);
        sum += dst[5];
        k++;
      }
      n += k;
      c.release();
      if (k === 0 && n < count) {
        const wait = c.waitForDataAsync();
        if (wait) await wait;
      }
    }
    const dt = performance.now() - t0;
    await done;
    if (sum !== expectedSum(count)) throw new Error("Ring worker → main lost messages");
    return count / dt * 1000;
  }

  async function pmIn(count: number): Promise<number> {
    let ready = next();
    worker.postMessage({ test: "pm-in", count } satisfies Cmd);
    await ready;
    ready = next();
    const src = new Uint8Array(MSG).fill(1);
    const t0 = performance.now();
    for (let i = 0; i < count; i++) {
      src[5] = i & 255;
      worker.postMessage(src);
    }
    const r = await ready as { sum: number };
    const dt = performance.now() - t0;
    if (r.sum !== expectedSum(count)) throw new Error("postMessage main → worker lost messages");
    return count / dt * 1000;
  }

  async function pmOut(count: number): Promise<number> {
    let left = count;
    let sum = 0;
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    onMsg = (data) => {
      sum += (data as Uint8Array)[5];
      if (--left === 0) resolve();
    };
    const t0 = performance.now();
    worker.postMessage({ test: "pm-out", count } satisfies Cmd);
    await done;
    const dt = performance.now() - t0;
    if (sum !== expectedSum(count)) throw new Error("postMessage worker → main lost messages");
    return count / dt * 1000;
  }

  // Warm-up, so that both sides are compiled before timing.
  await ringIn(200_000);
  await ringOut(200_000);
  await pmIn(10_000);
  await pmOut(10_000);

  const results: Record<string, number[]> = { ringIn: [], pmIn: [], ringOut: [], pmOut: [] };
  for (let r = 0; r < rounds; r++) {
    results.ringIn.push(await ringIn(ringCount));
    results.pmIn.push(await pmIn(pmCount));
    results.ringOut.push(await ringOut(ringCount));
    results.pmOut.push(await pmOut(pmCount));
  }
  worker.terminate();

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const m = (n: number) => (n / 1e6).toFixed(2);
  const ringIn_ = median(results.ringIn);
  const pmIn_ = median(results.pmIn);
  const ringOut_ = median(results.ringOut);
  const pmOut_ = median(results.pmOut);
  const ratioIn = ringIn_ / pmIn_;
  const ratioOut = ringOut_ / pmOut_;
  console.log(`64-byte messages, ${rounds} interleaved round(s), medians`);
  console.log(
    `main → worker: ring ${m(ringIn_)} M msg/s, postMessage ${m(pmIn_)} M msg/s (${
      ratioIn.toFixed(1)
    }x)`,
  );
  console.log(
    `worker → main: ring ${m(ringOut_)} M msg/s, postMessage ${m(pmOut_)} M msg/s (${
      ratioOut.toFixed(1)
    }x)`,
  );
  console.log(`ring vs postMessage throughput: ${Math.min(ratioIn, ratioOut).toFixed(1)}x`);
}
