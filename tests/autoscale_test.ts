/**
 * Services that scale themselves, end to end over real sockets and handler threads: a node
 * grows its handler threads while its jobs wait longer than the target and retires them
 * when idle, with no job lost; a module worker does the same and registers each new slot
 * count with its balancer. The rule itself is pinned step by step in
 * `core/node/autoscaler_test.ts`; here only what follows from it is checked, with generous
 * limits (no timing is asserted).
 */
import assert from "node:assert/strict";
import { startNode } from "../core/node/node.ts";
import type { HandlerPool } from "../core/threads/pool.ts";

// `sleep` holds a job for the milliseconds in its body.
const HANDLERS = new URL("./fixtures/services.ts", import.meta.url).href;

async function until(cond: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`Gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Sends `sleep 40` jobs, `n` at a time and `pauseMs` apart, until `stop()`; resolves with
 * every status seen.
 */
async function load(
  port: number,
  n: number,
  stop: () => boolean,
  pauseMs = 0,
): Promise<number[]> {
  const statuses: number[] = [];
  while (!stop()) {
    if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    const batch = await Promise.all(
      Array.from({ length: n }, async () => {
        const res = await fetch(`http://127.0.0.1:${port}/sleep`, { method: "POST", body: "40" });
        await res.text();
        return res.status;
      }),
    );
    statuses.push(...batch);
  }
  return statuses;
}

Deno.test("a node grows its handler threads while jobs wait past the target and retires them when idle; no job is lost", async () => {
  const node = await startNode({
    listen: { port: 0 },
    handlers: {
      options: { handlers: HANDLERS },
      concurrency: 1,
      scale: { min: 1, max: 3, targetWaitMs: 20, idleMs: 2_000 },
    },
  });
  try {
    const pool = node.pool as HandlerPool;
    assert.equal(pool.threads, 1, "starts at min");
    const port = node.server!.addr.port;
    // 8 jobs of 40 ms at once on one thread: the last waits about 280 ms.
    const statuses = await load(port, 8, () => pool.threads >= 2);
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    const up = pool.counters().scaling!;
    assert.ok(up.up >= 1 && up.changes[0].reason.startsWith("wait p99 "), up.changes[0].reason);
    // Idle: back to one thread.
    await until(() => pool.threads === 1, "the pool to shrink back to one thread");
    const down = pool.counters().scaling!;
    assert.equal(down.changes.at(-1)!.direction, "down");
    assert.match(down.changes.at(-1)!.reason, /^idle: /);
    assert.equal(pool.counters().failed, 0);
    const metrics = node.monitor!.metricsText();
    assert.match(metrics, /ep_handler_thread_scale_total\{direction="up"\} [1-9]/);
    assert.match(metrics, /ep_handler_thread_scale_total\{direction="down"\} [1-9]/);
  } finally {
    await node.close();
  }
});

Deno.test("a node with slots { min, max } offers one more slot on its one thread while jobs wait past the target and one fewer when idle; no job is lost", async () => {
  const node = await startNode({
    listen: { port: 0 },
    handlers: {
      options: { handlers: HANDLERS },
      threads: 1,
      concurrency: 4,
      scale: { unit: "slots", min: 1, max: 4, targetWaitMs: 20, idleMs: 2_000 },
    },
  });
  try {
    const pool = node.pool as HandlerPool;
    assert.deepEqual([pool.threads, pool.concurrency], [1, 1], "starts at min slots");
    const port = node.server!.addr.port;
    let peak = 0;
    const watch = setInterval(() => peak = Math.max(peak, pool.jobsInFlight), 5);
    const statuses = await load(port, 8, () => pool.concurrency >= 2);
    clearInterval(watch);
    assert.ok(statuses.every((s) => s === 200), `statuses ${[...new Set(statuses)]}`);
    assert.ok(peak <= 2, `never more jobs at once than the slots offered: ${peak}`);
    const up = pool.counters().scaling!;
    assert.equal(up.threads, 1, "no thread added");
    assert.ok(up.up >= 1 && up.changes[0].reason.startsWith("wait p99 "), up.changes[0].reason);
    assert.equal(up.changes[0].slots, 2);
    await until(() => pool.concurrency === 1, "the slots to shrink back to one");
    const down = pool.counters().scaling!;
    assert.equal(down.changes.at(-1)!.direction, "down");
    assert.match(down.changes.at(-1)!.reason, /^idle: /);
    assert.deepEqual([pool.threads, pool.counters().failed], [1, 0]);
  } finally {
    await node.close();
  }
});

Deno.test("a module worker with slots { min, max } registers each new slot count with its balancer, and gives a slot back once the credit it granted fits", async () => {
  const balancer = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${balancer.server!.addr.port}`;
  const worker = await startNode({
    connect: [addr],
    prefetch: 1,
    handlers: {
      options: { handlers: HANDLERS },
      threads: 1,
      concurrency: 2,
      scale: { unit: "slots", min: 1, max: 2, targetWaitMs: 20, idleMs: 2_000 },
    },
  });
  try {
    const slots = () => balancer.balancer!.stats().providers.map((p) => p.slots);
    await until(() => slots().length === 1, "the worker to register");
    assert.deepEqual(slots(), [1]);
    const port = balancer.server!.addr.port;
    const statuses = await load(port, 8, () => slots()[0] === 2);
    assert.ok(statuses.every((s) => s === 200));
    assert.deepEqual([worker.worker!.slots, (worker.pool as HandlerPool).threads], [2, 1]);
    const trickle = await load(port, 1, () => slots()[0] === 1, 200);
    assert.ok(trickle.every((s) => s === 200));
    assert.equal(worker.worker!.slots, 1);
    assert.ok(worker.worker!.peakHeld <= 2 + 1, "never more than slots + prefetch");
  } finally {
    await worker.close();
    await balancer.close();
  }
});

Deno.test("a module worker grows on the queue depth its balancer reports, registers each new slot count, and shrinks once jobs use up the credit it had granted", async () => {
  const balancer = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${balancer.server!.addr.port}`;
  const worker = await startNode({
    connect: [addr],
    prefetch: 1,
    handlers: {
      options: { handlers: HANDLERS },
      concurrency: 1,
      scale: { min: 1, max: 2, targetWaitMs: 20, idleMs: 2_000 },
    },
  });
  try {
    const slots = () => balancer.balancer!.stats().providers.map((p) => p.slots);
    await until(() => slots().length === 1, "the worker to register");
    assert.deepEqual(slots(), [1]);
    const port = balancer.server!.addr.port;
    const statuses = await load(port, 8, () => slots()[0] === 2);
    assert.ok(statuses.every((s) => s === 200));
    assert.equal(worker.worker!.slots, 2);
    // A trickle of jobs uses up the credit granted while busy; the thread then retires and
    // the balancer is told the smaller slot count.
    const trickle = await load(port, 1, () => slots()[0] === 1, 200);
    assert.ok(trickle.every((s) => s === 200));
    assert.equal(worker.worker!.slots, 1);
    assert.ok(worker.worker!.peakHeld <= 2 + 1, "never more than slots + prefetch");
  } finally {
    await worker.close();
    await balancer.close();
  }
});

Deno.test("mod.ts: threads { min, max } starts the pool at min and reports its scaling in the stats; bad bounds and a target without bounds are refused", async () => {
  const { startNode: start } = await import("../mod.ts");
  const node = await start({
    listen: { port: 0 },
    handlers: { module: HANDLERS, threads: { min: 1, max: 4 }, targetWaitMs: 30 },
  });
  try {
    const res = await fetch(`http://127.0.0.1:${node.addr!.port}/_ep/stats`);
    const stats = await res.json();
    assert.deepEqual([stats.pool.threads.length, stats.pool.scaling.threads], [1, 1]);
  } finally {
    await node.close();
  }
  await assert.rejects(
    start({ listen: { port: 0 }, handlers: { module: HANDLERS, threads: { min: 2, max: 1 } } }),
    { name: "RangeError", message: 'Thread bounds must be integers with 1 <= min <= max: "2–1"' },
  );
  await assert.rejects(
    start({ listen: { port: 0 }, handlers: { module: HANDLERS, threads: 2, targetWaitMs: 30 } }),
    {
      name: "TypeError",
      message: 'targetWaitMs needs threads: { min, max } or slots: { min, max }: "30"',
    },
  );
});

Deno.test("mod.ts: slots { min, max } starts the pool at min slots on fixed threads with room for max; bounds beyond the threads' slots and slots with threads { min, max } are refused", async () => {
  const { startNode: start } = await import("../mod.ts");
  const node = await start({
    listen: { port: 0 },
    handlers: { module: HANDLERS, threads: 2, slots: { min: 2, max: 7 }, targetWaitMs: 30 },
  });
  try {
    const res = await fetch(`http://127.0.0.1:${node.addr!.port}/_ep/stats`);
    const stats = await res.json();
    assert.deepEqual([stats.pool.threads.length, stats.pool.scaling.slots], [2, 2]);
  } finally {
    await node.close();
  }
  await assert.rejects(
    start({
      listen: { port: 0 },
      handlers: { module: HANDLERS, threads: 1, concurrency: 2, slots: { min: 1, max: 3 } },
    }),
    { name: "RangeError", message: 'Slot bounds must stay within the threads\' slots (2): "3"' },
  );
  await assert.rejects(
    start({
      listen: { port: 0 },
      handlers: { module: HANDLERS, threads: { min: 1, max: 2 }, slots: { min: 1, max: 2 } },
    }),
    { name: "TypeError", message: 'Threads and slots cannot both scale: "threads: { min, max }"' },
  );
});

Deno.test("a node scaling slots keeps its slot count across a reload", async () => {
  const node = await startNode({
    listen: { port: 0 },
    handlers: {
      options: { handlers: HANDLERS },
      threads: 1,
      concurrency: 4,
      scale: { unit: "slots", min: 1, max: 4, targetWaitMs: 1_000 },
    },
  });
  try {
    const before = node.pool as HandlerPool;
    assert.ok(before.grow("test") && before.grow("test"));
    assert.equal(before.concurrency, 3);
    await node.reload();
    const after = node.pool as HandlerPool;
    assert.notEqual(after, before);
    assert.deepEqual([after.scaleUnit, after.concurrency, after.threads], ["slots", 3, 1]);
    const res = await fetch(`http://127.0.0.1:${node.server!.addr.port}/sleep`, {
      method: "POST",
      body: "1",
    });
    assert.equal(res.status, 200);
    await res.text();
  } finally {
    await node.close();
  }
});
