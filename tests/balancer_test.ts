import assert from "node:assert/strict";
import { Balancer, type BalancerOptions } from "../core/balancer/balancer.ts";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { LocalPoolProvider } from "../core/balancer/local_provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "../core/threads/pool.ts";
import { serve, type Server } from "../core/net/server.ts";
import { WorkerNode } from "../core/node/worker.ts";

const SERVICES = new URL("./fixtures/services.ts", import.meta.url).href;
const dec = new TextDecoder();

interface Rig {
  balancer: Balancer;
  server: Server;
  addr: string;
  workers: { node: WorkerNode; pool: HandlerPool }[];
  close(): Promise<void>;
}

async function pool(slots = 1): Promise<HandlerPool> {
  return await HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: SERVICES },
    threads: 1,
    perThreadConcurrency: slots,
  });
}

async function rig(
  nWorkers: number,
  options: BalancerOptions = {},
  slots = 1,
  prefetch = 1,
): Promise<Rig> {
  const balancer = new Balancer({ serviceGraceMs: 0, ...options });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), prefetch },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const workers: { node: WorkerNode; pool: HandlerPool }[] = [];
  for (let i = 0; i < nWorkers; i++) {
    const p = await pool(slots);
    workers.push({ node: WorkerNode.start({ balancers: [addr], pool: p }), pool: p });
  }
  await until(() => balancer.stats().providers.length === nWorkers);
  return {
    balancer,
    server,
    addr,
    workers,
    async close() {
      for (const w of workers) w.node.close();
      balancer.close();
      await server.close();
      for (const w of workers) await w.pool.close({ drain: false });
    },
  };
}

async function until(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met in time`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("balancer: jobs over HTTP and EP reach pulling workers and come back", async () => {
  const r = await rig(2);
  const client = await connect(r.addr);
  try {
    const res = await fetch(`http://${r.addr}/echo`, { method: "POST", body: "via http" });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "via http");
    const reply = await client.request("echo", "via ep");
    assert.equal(dec.decode(reply.body), "via ep");
    // Uneven jobs: 40 jobs on 2 single-slot workers, every one answered once.
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, i) => client.request("sleep", String(i % 5 === 0 ? 20 : 1))),
    );
    assert.equal(replies.length, 40);
    const pids = new Set(replies.map((x) => dec.decode(x.body)));
    assert.equal(pids.size, 1, "both workers live in this process");
    const stats = r.balancer.stats();
    const sleep = stats.services.find((s) => s.name === "sleep")!;
    assert.equal(sleep.counters.ok, 40);
    assert.equal(sleep.queued, 0);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a free worker takes the next job; no job waits behind a slow one", async () => {
  const r = await rig(2);
  const client = await connect(r.addr);
  try {
    const slow = client.request("sleep", "300");
    await new Promise((res) => setTimeout(res, 20));
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) await client.request("sleep", "1");
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 250, `short jobs waited ${elapsed} ms behind the slow one`);
    await slow;
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: unknown service, full queue and queue deadline give explicit errors", async () => {
  const seen: string[] = [];
  const r = await rig(
    1,
    {
      maxQueue: 2,
      observer: { job: (service, outcome) => seen.push(`${service}:${outcome}`) },
    },
    1,
    0,
  );
  const client = await connect(r.addr);
  try {
    await assert.rejects(
      client.request("nope"),
      (e: unknown) => e instanceof JobError && e.kind === "no_service",
    );
    const res = await fetch(`http://${r.addr}/nope/x`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'No service "nope"\n');
    // One running, two queued, the fourth overloaded.
    const running = client.request("sleep", "300");
    await new Promise((res) => setTimeout(res, 20));
    const q1 = client.request("sleep", "1");
    const q2 = client.request("sleep", "1", { timeoutMs: 50 }).then(() => null, (e) => e);
    await assert.rejects(
      client.request("sleep", "1"),
      (e: unknown) => e instanceof JobError && e.kind === "overloaded",
    );
    const over = await fetch(`http://${r.addr}/sleep`, { method: "POST", body: "1" });
    assert.equal(over.status, 503);
    assert.equal(await over.text(), 'Queue for "sleep" is full\n');
    // q2's deadline passes while it waits: answered timeout, never dispatched.
    const e2 = await q2;
    assert.ok(e2 instanceof JobError && e2.kind === "timeout", String(e2));
    await running;
    await q1;
    const s = r.balancer.stats().services.find((x) => x.name === "sleep")!;
    assert.equal(s.counters.ok, 2);
    assert.equal(s.counters.timeout, 1);
    assert.equal(s.counters.overloaded, 2);
    assert.deepEqual(seen.sort(), [
      "nope:no_service",
      "nope:no_service",
      "sleep:ok",
      "sleep:ok",
      "sleep:overloaded",
      "sleep:overloaded",
      "sleep:timeout",
    ]);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a lost worker's jobs are redelivered once, then worker_lost", async () => {
  const r = await rig(2);
  const client = await connect(r.addr);
  try {
    // Both workers busy with long jobs; kill one worker's connection.
    const a = client.request("sleep", "400");
    const b = client.request("sleep", "400");
    await until(() => r.balancer.stats().providers.every((p) => p.busy === 1));
    r.workers[0].node.close();
    // Its job goes back to the queue and runs on the other worker after b.
    const results = await Promise.allSettled([a, b]);
    assert.deepEqual(results.map((x) => x.status), ["fulfilled", "fulfilled"]);
    const s = r.balancer.stats().services.find((x) => x.name === "sleep")!;
    assert.equal(s.counters.redelivered, 1);
    // Now lose the last worker twice with the same job: the retry budget (1) is spent.
    const c = client.request("sleep", "400");
    await until(() => r.balancer.stats().providers[0]?.busy === 1);
    const p2 = await pool();
    const w2 = WorkerNode.start({ balancers: [r.addr], pool: p2 });
    await until(() => r.balancer.stats().providers.length === 2);
    r.workers[1].node.close();
    await until(() =>
      r.balancer.stats().providers.length === 1 && r.balancer.stats().providers[0].busy === 1
    );
    w2.close();
    await assert.rejects(c, (e: unknown) => e instanceof JobError && e.kind === "worker_lost");
    await p2.close({ drain: false });
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a draining worker finishes its job and gets no new ones", async () => {
  const r = await rig(2);
  const client = await connect(r.addr);
  try {
    const first = client.request("sleep", "200");
    await until(() => r.balancer.stats().providers.some((p) => p.busy === 1));
    const busy = r.workers.find((w) => w.node.held === 1)!;
    const drained = busy.node.drain(5000);
    await until(() => r.balancer.stats().providers.some((p) => p.draining));
    const others = await Promise.all(Array.from({ length: 5 }, () => client.request("sleep", "1")));
    assert.equal(others.length, 5);
    await first;
    await drained;
    await until(() => r.balancer.stats().providers.length === 1);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: all-in-one dispatches to its own thread pool without a TCP hop", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const p = await pool(4);
  balancer.addProvider(new LocalPoolProvider(p, balancer));
  const server = serve({ port: 0, handler: balancer.handler });
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}/echo`, {
      method: "POST",
      body: "local",
    });
    assert.equal(await res.text(), "local");
    const fail = await fetch(`http://127.0.0.1:${server.addr.port}/fail`);
    assert.equal(fail.status, 500);
    assert.equal(await fail.text(), "boom\n");
    const many = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) =>
          fetch(`http://127.0.0.1:${server.addr.port}/echo`, { method: "POST", body: `n${i}` })
            .then((x) => x.text()),
      ),
    );
    assert.deepEqual(many, Array.from({ length: 50 }, (_, i) => `n${i}`));
  } finally {
    balancer.close();
    await server.close();
    await p.close();
  }
});

Deno.test("balancer: a worker on two balancers holds at most slots + prefetch + 1 jobs", async () => {
  const b1 = new Balancer({ serviceGraceMs: 0 });
  const b2 = new Balancer({ serviceGraceMs: 0 });
  const s1 = serve({ port: 0, handler: b1.handler, ep: { workers: workerHost(b1), prefetch: 1 } });
  const s2 = serve({ port: 0, handler: b2.handler, ep: { workers: workerHost(b2), prefetch: 1 } });
  const a1 = `127.0.0.1:${s1.addr.port}`;
  const a2 = `127.0.0.1:${s2.addr.port}`;
  const p = await pool(2);
  const node = WorkerNode.start({ balancers: [a1, a2], pool: p });
  const c1 = await connect(a1);
  const c2 = await connect(a2);
  try {
    await until(() => b1.stats().providers.length === 1 && b2.stats().providers.length === 1);
    const jobs = [];
    for (let i = 0; i < 60; i++) {
      jobs.push(c1.request("sleep", "3"), c2.request("sleep", "3"));
    }
    const replies = await Promise.all(jobs);
    const peak = node.peakHeld;
    assert.equal(replies.length, 120);
    assert.ok(peak >= 2, `the worker was used (peak ${peak})`);
    assert.ok(peak <= 2 + 1 + 1, `held ${peak} jobs, bound is slots 2 + prefetch 1 + 1`);
  } finally {
    c1.close();
    c2.close();
    node.close();
    b1.close();
    b2.close();
    await s1.close();
    await s2.close();
    await p.close({ drain: false });
  }
});

Deno.test("balancer: higher priority jobs leave the queue first, FIFO within a priority", async () => {
  const r = await rig(1, {}, 1, 0);
  const client = await connect(r.addr);
  try {
    const order: string[] = [];
    const blocker = client.request("sleep", "150");
    await until(() => r.balancer.stats().providers[0].busy === 1);
    const jobs = [
      ["low-1", 0],
      ["low-2", 0],
      ["high-1", 9],
      ["mid-1", 5],
      ["high-2", 9],
    ] as const;
    const done = jobs.map(([name, priority]) =>
      client.request("echo", name, { priority }).then((x) => order.push(dec.decode(x.body)))
    );
    // The same over HTTP: the ep-priority header.
    await until(() => r.balancer.queueDepth("echo") === 5);
    await blocker;
    await Promise.all(done);
    assert.deepEqual(order, ["high-1", "high-2", "mid-1", "low-1", "low-2"]);
    const res = await fetch(`http://${r.addr}/echo`, {
      method: "POST",
      body: "p",
      headers: { "ep-priority": "7" },
    });
    assert.equal(await res.text(), "p");
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: prefetch beyond one job only for jobs short enough to batch", async (t) => {
  // One single-slot worker offered prefetch 4; every job is queued behind a deep queue.
  for (
    const [name, service, body, budget, expectPeak] of [
      // 0 ms jobs: a generous budget lets the worker fill slot + 4 prefetched.
      ["short jobs fill the prefetch", "echo", "x", 1000, 5],
      // 60 ms jobs: two waiting would be 120 ms of work, over a 50 ms budget.
      ["long jobs take one prefetched job at most", "sleep", "60", 50, 2],
    ] as const
  ) {
    await t.step(name, async () => {
      const r = await rig(1, { prefetchBudgetMs: budget }, 1, 4);
      const client = await connect(r.addr);
      try {
        await client.request(service, body); // a first turnaround to judge by
        await Promise.all(Array.from({ length: 12 }, () => client.request(service, body)));
        const peak = r.workers[0].node.peakHeld;
        if (expectPeak === 5) assert.equal(peak, 5, `peak held ${peak}`);
        else assert.ok(peak <= expectPeak, `peak held ${peak}, want <= ${expectPeak}`);
        const sleepStats = r.balancer.stats().services.find((s) => s.name === service)!;
        assert.ok(sleepStats.turnaroundMs !== null && sleepStats.turnaroundMs > 0);
      } finally {
        client.close();
        await r.close();
      }
    });
  }
});

Deno.test("balancer: a queued job whose HTTP client went away is dropped, not run", async () => {
  const r = await rig(1, {}, 1, 0);
  const client = await connect(r.addr);
  try {
    const blocker = client.request("sleep", "400");
    await until(() => r.balancer.stats().providers[0].busy === 1);
    // A raw HTTP client asks for echo (queued behind the blocker), then hangs up.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.server.addr.port });
    await conn.write(
      new TextEncoder().encode("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"),
    );
    await until(() => r.balancer.queueDepth("echo") === 1);
    conn.close();
    const echo = () => r.balancer.stats().services.find((s) => s.name === "echo")!.counters;
    // Dropped by the sweep while the blocker still runs, without reaching the worker.
    await until(() => echo().cancelled === 1, 300);
    assert.equal(r.balancer.stats().providers[0].busy, 1);
    await blocker;
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(echo().ok, 0);
    assert.equal(r.balancer.queueDepth("echo"), 0);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: an EP CANCEL drops a queued job and cancels a prefetched one onward", async () => {
  const r = await rig(1, {}, 1, 1);
  const c1 = await connect(r.addr);
  const c2 = await connect(r.addr);
  try {
    const echo = () => r.balancer.stats().services.find((s) => s.name === "echo")!.counters;
    const blocker = c1.request("sleep", "500");
    blocker.catch(() => {}); // awaited below; no dangling rejection if an assertion fails
    await until(() => r.balancer.stats().providers[0].busy === 1);
    // Queued: c2 aborts, its client sends CANCEL.
    const abort1 = new AbortController();
    const queued = c2.request("echo", "a", { signal: abort1.signal }).catch((e) => e);
    await until(() => r.balancer.queueDepth("echo") === 1, 5000, "queued 1");
    abort1.abort();
    assert.equal(((await queued) as JobError).kind, "cancelled");
    await until(() => echo().cancelled === 1, 300, "cancelled 1");
    // Prefetched: with two queued, the head goes to the worker's local queue; its client
    // cancels, and the worker drops it before it starts.
    const abort2 = new AbortController();
    const pre = c2.request("echo", "b", { signal: abort2.signal }).catch((e) => e);
    const after = c1.request("echo", "c");
    after.catch(() => {});
    await until(() => r.balancer.stats().providers[0].busy === 2, 5000, "busy 2");
    abort2.abort();
    assert.equal(((await pre) as JobError).kind, "cancelled");
    await until(() => echo().cancelled === 2, 300, "cancelled 2");
    assert.equal(r.balancer.stats().providers[0].busy, 1, "the worker let the job go");
    await blocker;
    assert.equal(dec.decode((await after).body), "c");
    assert.equal(echo().ok, 1);
  } finally {
    c1.close();
    c2.close();
    await r.close();
  }
});
