/**
 * The balancer end to end: real sockets, module workers (WorkerNode) and handler threads.
 * These tests prove the wiring (EP and HTTP jobs reach pulling workers, a closed worker
 * connection is a lost provider, a client going away reaches the queue, the worker's credit
 * policy); the dispatch rules themselves are pinned exactly, without sockets or clocks, in
 * `core/balancer/balancer_test.ts`. Where a test needs jobs to wait, an in-process provider
 * that holds them until told ({@linkcode Gate}) replaces timing with sleeping workers.
 */
import assert from "node:assert/strict";
import { Balancer, type BalancerOptions } from "../core/balancer/balancer.ts";
import type { Provider, QueuedJob } from "../core/balancer/provider.ts";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { LocalPoolProvider } from "../core/balancer/local_provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "../core/threads/pool.ts";
import { serve, type Server } from "../core/net/server.ts";
import { WorkerNode } from "../core/node/worker.ts";
import { connect as tcpConnect, type Transport } from "../core/net/transport.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import { type Frame, NOT_APPLICABLE } from "../protocol/ep_frames.ts";

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

/**
 * An in-process provider that holds what it is handed until the test answers: jobs wait in
 * the balancer's queue for exactly as long as the test wants, with no sleeping worker.
 */
class Gate implements Provider {
  readonly name = "gate";
  readonly services: ReadonlySet<string>;
  readonly slots = 100; // room for every job the test lets through
  credit = 0;
  draining = false;
  readonly held: QueuedJob[] = [];
  /** The jobs it was told to cancel (CANCEL onward). */
  readonly cancelled: QueuedJob[] = [];
  #balancer: Balancer;

  constructor(balancer: Balancer, services: string[]) {
    this.#balancer = balancer;
    this.services = new Set(services);
    balancer.addProvider(this);
  }

  dispatch(qj: QueuedJob): void {
    this.credit--;
    this.held.push(qj);
  }

  cancel(qj: QueuedJob): void {
    this.cancelled.push(qj);
  }

  /** Grants `n` credit: the balancer hands it up to `n` waiting jobs. */
  open(n: number): void {
    this.credit += n;
    this.#balancer.pull(this);
  }

  /** Answers every job it holds with its own body. */
  echoAll(): void {
    for (const qj of this.held.splice(0)) {
      this.credit++;
      this.#balancer.finish(this, qj, { body: qj.job.body });
    }
  }
}

/** A balancer on a real port whose services are served by a {@linkcode Gate}. */
function gated(services: string[], options: BalancerOptions = {}) {
  const balancer = new Balancer({ serviceGraceMs: 0, ...options });
  const gate = new Gate(balancer, services);
  const server = serve({ port: 0, handler: balancer.handler });
  return {
    balancer,
    gate,
    server,
    addr: `127.0.0.1:${server.addr.port}`,
    async close() {
      balancer.close();
      await server.close();
    },
  };
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

Deno.test("balancer: unknown service, full queue and queue deadline give explicit errors", async () => {
  const seen: string[] = [];
  const r = gated(["held"], {
    maxQueue: 2,
    observer: { job: (service, outcome) => seen.push(`${service}:${outcome}`) },
  });
  const client = await connect(r.addr);
  try {
    await assert.rejects(
      client.request("nope"),
      (e: unknown) => e instanceof JobError && e.kind === "no_service",
    );
    const res = await fetch(`http://${r.addr}/nope/x`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'No service "nope"\n');
    // Two queued (the gate takes nothing yet), the third overloaded.
    const q1 = client.request("held", "1");
    const q2 = client.request("held", "2");
    for (const q of [q1, q2]) q.catch(() => {}); // awaited below
    await until(() => r.balancer.queueDepth("held") === 2, 5000, "two queued");
    await assert.rejects(
      client.request("held", "3"),
      (e: unknown) => e instanceof JobError && e.kind === "overloaded",
    );
    const over = await fetch(`http://${r.addr}/held`, { method: "POST", body: "4" });
    assert.equal(over.status, 503);
    assert.equal(await over.text(), 'Queue for "held" is full\n');
    // The gate takes q1; a job whose deadline passes while it waits behind q2 is answered
    // timeout by the balancer's own sweep: 504. (Over HTTP: an EP client gives up at its
    // deadline too, and cancels, racing the balancer's answer.)
    r.gate.open(1);
    const late = await fetch(`http://${r.addr}/held`, {
      method: "POST",
      body: "6",
      headers: { "ep-timeout": "50" },
    });
    assert.equal(late.status, 504);
    assert.equal(await late.text(), "Timed out waiting in the queue\n");
    r.gate.open(1);
    r.gate.echoAll();
    assert.deepEqual([dec.decode((await q1).body), dec.decode((await q2).body)], ["1", "2"]);
    const s = r.balancer.stats().services.find((x) => x.name === "held")!;
    assert.deepEqual([s.counters.ok, s.counters.timeout, s.counters.overloaded], [2, 1, 2]);
    assert.deepEqual(seen.sort(), [
      "held:ok",
      "held:ok",
      "held:overloaded",
      "held:overloaded",
      "held:timeout",
      "nope:no_service",
      "nope:no_service",
    ]);
    assert.deepEqual(r.gate.held, []);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a closed worker connection is a lost provider: its job is redelivered to another worker", async () => {
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
    // The handler's own message stays in the log (tests/handler_errors_test.ts).
    assert.equal(
      await fail.text(),
      `Handler failed (request ${fail.headers.get("x-request-id")})\n`,
    );
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

Deno.test("balancer: EP priority and the ep-priority header order the queue, FIFO within a priority", async () => {
  const r = gated(["echo"]);
  const client = await connect(r.addr);
  try {
    const jobs = [
      ["low-1", 0],
      ["low-2", 0],
      ["high-1", 9],
      ["mid-1", 5],
      ["high-2", 9],
    ] as const;
    const replies: Promise<unknown>[] = [];
    const track = (reply: Promise<unknown>) => {
      reply.catch(() => {}); // awaited below; no dangling rejection if an assertion fails
      replies.push(reply);
    };
    for (const [name, priority] of jobs) {
      track(client.request("echo", name, { priority }));
      await until(() => r.balancer.queueDepth("echo") === replies.length, 5000, name);
    }
    for (const [name, header] of [["http-7", "7"], ["http-none", null]] as const) {
      track(
        fetch(`http://${r.addr}/echo`, {
          method: "POST",
          body: name,
          headers: header === null ? {} : { "ep-priority": header },
        }).then((res) => res.text()),
      );
      await until(() => r.balancer.queueDepth("echo") === replies.length, 5000, name);
    }
    r.gate.open(replies.length);
    assert.deepEqual(r.gate.held.map((qj) => dec.decode(qj.job.body)), [
      "high-1",
      "high-2",
      "http-7",
      "mid-1",
      "low-1",
      "low-2",
      "http-none",
    ]);
    r.gate.echoAll();
    await Promise.all(replies);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a worker's prefetch credit is used under a deep queue: slot + prefetch jobs held", async () => {
  // One single-slot worker offered prefetch 4; 0 ms jobs and a generous budget.
  const r = await rig(1, { prefetchBudgetMs: 1000 }, 1, 4);
  const client = await connect(r.addr);
  try {
    await client.request("echo", "x"); // a first turnaround to judge by
    await Promise.all(Array.from({ length: 12 }, () => client.request("echo", "x")));
    const peak = r.workers[0].node.peakHeld;
    assert.equal(peak, 5, `peak held ${peak}`);
    const stats = r.balancer.stats().services.find((s) => s.name === "echo")!;
    assert.ok(stats.turnaroundMs !== null && stats.turnaroundMs > 0);
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: a queued job whose HTTP client went away is dropped, not run", async () => {
  const r = gated(["echo"]);
  try {
    // A raw HTTP client asks for echo (queued: the gate takes nothing yet), then hangs up.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.server.addr.port });
    await conn.write(
      new TextEncoder().encode("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"),
    );
    await until(() => r.balancer.queueDepth("echo") === 1, 5000, "queued");
    conn.close();
    const echo = () => r.balancer.stats().services.find((s) => s.name === "echo")!.counters;
    await until(() => echo().cancelled === 1, 5000, "dropped by the sweep");
    assert.equal(r.balancer.queueDepth("echo"), 0);
    r.gate.open(1);
    assert.deepEqual(r.gate.held, [], "never dispatched");
    assert.equal(echo().ok, 0);
  } finally {
    await r.close();
  }
});

Deno.test("balancer: a running job whose HTTP or EP client hangs up is cancelled onward, told by the connection", async () => {
  const r = gated(["echo"]);
  const client = await connect(r.addr);
  try {
    r.gate.open(2);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: r.server.addr.port });
    await conn.write(
      new TextEncoder().encode("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"),
    );
    const viaEp = client.request("echo", "y").catch((e) => e);
    await until(() => r.gate.held.length === 2, 5000, "both dispatched");
    const http = r.gate.held.find((qj) => qj.job.protocol === "http")!;
    const ep = r.gate.held.find((qj) => qj.job.protocol === "ep")!;
    assert.equal(typeof http.job.origin?.watch, "function", "the HTTP connection can tell");
    assert.equal(typeof ep.job.origin?.watch, "function", "the EP request can tell");
    conn.close();
    await until(() => r.gate.cancelled.includes(http), 5000, "HTTP job cancelled onward");
    client.close();
    await until(() => r.gate.cancelled.includes(ep), 5000, "EP job cancelled onward");
    assert.ok((await viaEp) instanceof Error);
    r.gate.echoAll();
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: an EP CANCEL drops a queued job and cancels a prefetched one onward", async () => {
  // Prefetch at two queued jobs per worker, so that one job can wait in the queue first.
  const r = await rig(1, { prefetchDepth: 2 }, 1, 1);
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
    await until(() => echo().cancelled === 1, 5000, "cancelled 1");
    // Prefetched: with two queued, the head goes to the worker's local queue; its client
    // cancels, and the worker drops it before it starts.
    const abort2 = new AbortController();
    const pre = c2.request("echo", "b", { signal: abort2.signal }).catch((e) => e);
    const after = c1.request("echo", "c");
    after.catch(() => {});
    await until(() => r.balancer.stats().providers[0].busy === 2, 5000, "busy 2");
    abort2.abort();
    assert.equal(((await pre) as JobError).kind, "cancelled");
    await until(() => echo().cancelled === 2, 5000, "cancelled 2");
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

// --- EP version 2 and hedging, end to end --------------------------------------------------

/** A worker written by hand over a real socket, speaking EP 1..2 (frames it got, decoded). */
class RawWorker {
  readonly frames: Frame[] = [];
  #t: Transport;
  #enc = new EpEncoder();
  #dec: EpDecoder;

  private constructor(t: Transport) {
    this.#t = t;
    this.#dec = new EpDecoder({
      frame: (f) => {
        this.frames.push("body" in f ? { ...f, body: f.body.slice() } : f);
        if (f.type === "welcome") {
          this.#dec.version = f.version;
          this.#enc.version = f.version;
        }
      },
      error: (e) => this.frames.push({ type: "error", id: 0, code: e.code, message: e.message }),
    });
    t.start({ data: (c) => this.#dec.push(c), end: () => {} });
  }

  static async open(addr: string): Promise<RawWorker> {
    return new RawWorker(await tcpConnect(addr));
  }

  send(f: Frame): void {
    this.#t.write(this.#enc.encode(f));
  }

  preface(version: number): void {
    this.#t.write(encodePreface(version));
  }

  async next<T extends Frame["type"]>(type: T): Promise<Extract<Frame, { type: T }>> {
    await until(() => this.frames.some((f) => f.type === type), 5000, `a ${type} frame`);
    const i = this.frames.findIndex((f) => f.type === type);
    return this.frames.splice(i, 1)[0] as Extract<Frame, { type: T }>;
  }

  close(): void {
    this.#t.close();
  }
}

Deno.test("balancer over a real socket, EP version 2: a worker offering 1-2 gets 2; its REGISTER's hedge section marks the service; the demand HEARTBEAT and the REQUEST say how long the oldest queued job has waited", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), prefetch: 0 },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const w = await RawWorker.open(addr);
  try {
    w.preface(2);
    w.send({
      type: "hello",
      role: 2,
      minVersion: 1,
      maxVersion: 2,
      heartbeatMs: 0,
      name: "raw",
      token: "",
    });
    w.send({ type: "register", slots: 1, services: ["svc"] });
    assert.equal((await w.next("welcome")).version, 2);
    w.send({ type: "register", slots: 1, services: ["svc"], hedgeMs: [75] });
    await until(() => balancer.stats().services[0]?.hedgeAfterMs === 75, 5000, "hedge 75");
    const job = (body: string) => ({
      service: "svc",
      protocol: "ep" as const,
      method: "EP",
      path: "/svc",
      query: "",
      headers: [],
      body: new TextEncoder().encode(body),
      deadlineMs: 10_000,
      priority: 0,
      remote: "test",
    });
    // Two jobs, no credit: they wait, and the worker is told at once (the demand).
    const answers = [balancer.submit(job("1")), balancer.submit(job("2"))];
    const beat = await w.next("heartbeat");
    assert.deepEqual([beat.freeSlots, beat.queueDepth], [NOT_APPLICABLE, 1]);
    assert.ok(beat.oldestWaitMs !== undefined && beat.oldestWaitMs < 1000, `${beat.oldestWaitMs}`);
    await new Promise((r) => setTimeout(r, 60));
    w.send({ type: "ready", credit: 1 });
    const req = await w.next("request");
    assert.equal(req.queueDepth, 1, "one job still queued");
    assert.ok(req.oldestWaitMs! >= 55, `the second job waited ${req.oldestWaitMs} ms`);
    w.send({ type: "reply", id: req.id, status: 200, freeSlots: 1, meta: [], body: req.body });
    w.send({ type: "ready", credit: 1 });
    const req2 = await w.next("request");
    assert.deepEqual([req2.queueDepth, req2.oldestWaitMs], [0, 0], "nothing queued any more");
    w.send({ type: "reply", id: req2.id, status: 200, freeSlots: 1, meta: [], body: req2.body });
    const bodies = (await Promise.all(answers)).map((r) => dec.decode(r.body as Uint8Array));
    assert.deepEqual(bodies, ["1", "2"]);
  } finally {
    w.close();
    balancer.close();
    await server.close();
  }
});

Deno.test("balancer hedges a stalled job to another worker: the copy (attempt 2, req.hedge) answers, the original's TypeScript signal fires and its worker lets the slot go", async () => {
  const r = await rig(2, { hedge: { stall: { ms: 100 } }, hedgeBudget: 1 });
  const client = await connect(r.addr);
  try {
    const t0 = performance.now();
    const reply = await client.request("stall", "");
    assert.equal(dec.decode(reply.body), "copy 2");
    assert.ok(performance.now() - t0 < 5000);
    const c = r.balancer.stats().services.find((s) => s.name === "stall")!.counters;
    assert.deepEqual([c.ok, c.hedged, c.hedgeWins], [1, 1, 1]);
    // The original was cancelled: its handler stopped on its signal, long before 10 s.
    await until(() => r.workers.every((w) => w.node.held === 0), 5000, "both workers idle");
    await until(() => r.balancer.stats().providers.every((p) => p.busy === 0), 5000, "held 0");
  } finally {
    client.close();
    await r.close();
  }
});

Deno.test("balancer: an HTTP request with ep-hedge: 0 is never hedged, even for a service marked idempotent", async () => {
  const r = await rig(2, { hedge: { stall: { ms: 50 } }, hedgeBudget: 1 });
  try {
    const res = await fetch(`http://${r.addr}/stall`, {
      method: "POST",
      headers: { "ep-hedge": "0", "ep-timeout": "400" },
      body: "",
    });
    await res.body?.cancel();
    assert.equal(res.status, 504);
    const c = r.balancer.stats().services.find((s) => s.name === "stall")!.counters;
    assert.deepEqual([c.hedged, c.timeout], [0, 1]);
    await until(() => r.workers.every((w) => w.node.held === 0), 5000, "the worker let it go");
  } finally {
    await r.close();
  }
});
