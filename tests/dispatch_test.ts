/**
 * Dispatch and balancer state under hostile input: a dispatch that fails gives back what it
 * took; requests EP cannot carry are refused before dispatch; ep's reserved `ep-` metadata
 * cannot be spoofed; unknown services cannot grow state or metrics without bound; a worker
 * that ignores deadlines and CANCEL is dropped; DRAIN's grace is honoured; oversized jobs
 * and replies get distinct, clear errors.
 */
import assert from "node:assert/strict";
import { Balancer, type BalancerOptions } from "../core/balancer/balancer.ts";
import type { Provider } from "../core/balancer/provider.ts";
import { type Client, connect } from "../core/net/client.ts";
import { type Job, JobError, type JobResult } from "../core/job.ts";
import { LocalPoolProvider } from "../core/balancer/local_provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { Monitor } from "../core/observe/monitor.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "../core/threads/pool.ts";
import { serve, type Server } from "../core/net/server.ts";
import { WorkerNode } from "../core/node/worker.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { EpPeer, isType } from "./fixtures/faults/_ep_peer.ts";

const HANDLERS = new URL("./fixtures/dispatch_services.ts", import.meta.url).href;
const dec = new TextDecoder();
const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 5000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met in time`);
    await sleep(10);
  }
}

function pool(slots = 1, ringBytes?: number): Promise<HandlerPool> {
  return HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: HANDLERS },
    threads: 1,
    perThreadConcurrency: slots,
    ringBytes,
  });
}

/** A job as the balancer's library callers build it. */
function job(service: string, over: Partial<Job> = {}): Job {
  return {
    service,
    protocol: "ep",
    method: "EP",
    path: "/" + service,
    query: "",
    headers: [],
    body: new Uint8Array(0),
    deadlineMs: 0,
    priority: 0,
    remote: "test",
    ...over,
  };
}

interface Rig {
  balancer: Balancer;
  server: Server;
  addr: string;
  close(): Promise<void>;
}

/** A balancer with one remote worker (a real WorkerNode over TCP) or its own pool. */
async function rig(
  mode: "worker" | "local",
  options: BalancerOptions = {},
  { slots = 1, prefetch = 1, ringBytes, exposeErrors }: {
    slots?: number;
    prefetch?: number;
    ringBytes?: number;
    /** The worker sends handlers' own error messages (by default a generic one). */
    exposeErrors?: boolean;
  } = {},
): Promise<Rig> {
  const balancer = new Balancer({ serviceGraceMs: 0, ...options });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), prefetch },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const p = await pool(slots, ringBytes);
  let node: WorkerNode | null = null;
  if (mode === "worker") node = WorkerNode.start({ balancers: [addr], pool: p, exposeErrors });
  else balancer.addProvider(new LocalPoolProvider(p, balancer));
  await until(() => balancer.stats().providers.length === 1);
  return {
    balancer,
    server,
    addr,
    async close() {
      node?.close();
      balancer.close();
      await server.close();
      await p.close({ drain: false });
    },
  };
}

/** A fake worker over a real socket: registers, grants credit, answers only when told. */
async function fakeWorker(
  addr: string,
  services: string[],
  { slots = 1, credit = 1 }: { slots?: number; credit?: number } = {},
): Promise<EpPeer> {
  const peer = await EpPeer.open(addr);
  await peer.hello(2, "", "fake");
  await peer.send({ type: "register", slots, services });
  await peer.send({ type: "ready", credit });
  return peer;
}

/** Fake workers send no heartbeats: agree on none, so that none is dropped for silence. */
const QUIET = { workerHeartbeatMs: 0 };

const requests = (peer: EpPeer) =>
  peer.frames.filter(isType("request")) as Extract<EpPeer["frames"][number], { type: "request" }>[];

// --- item 2: a failed dispatch gives back what it took ---------------------------------

Deno.test("dispatch: 100 requests with a header name EP cannot carry get 431, and the remote worker still serves", async () => {
  const r = await rig("worker", { defaultTimeoutMs: 3000 });
  try {
    await until(() => r.balancer.stats().providers[0].credit === 2, 5000, "initial credit");
    const longName = "x-" + "a".repeat(298);
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`http://${r.addr}/echo`, {
        method: "POST",
        body: "bad",
        headers: { [longName]: "1" },
      });
      assert.equal(res.status, 431, `request ${i}`);
      assert.match(await res.text(), /Header field name "x-a+\.\.\." is longer than 255 bytes/);
    }
    const ok = await fetch(`http://${r.addr}/echo`, { method: "POST", body: "good" });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "good");
    await until(() => r.balancer.stats().providers[0].credit === 2, 5000, "credit back");
    assert.equal(r.balancer.stats().providers[0].busy, 0);
  } finally {
    await r.close();
  }
});

Deno.test("dispatch: a job the worker link cannot encode is refused bad_request and gives back the credit and held entry it took", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), ...QUIET },
  });
  const peer = await fakeWorker(`127.0.0.1:${server.addr.port}`, ["svc"], { credit: 2 });
  try {
    await until(() => balancer.stats().providers[0]?.credit === 2, 5000, "credit");
    for (let i = 0; i < 10; i++) {
      // A library caller's job with a metadata key EP cannot carry (upper case).
      await assert.rejects(
        Promise.resolve().then(() => balancer.submit(job("svc", { headers: [["X-Upper", "v"]] }))),
        (e: unknown) =>
          e instanceof JobError && e.kind === "bad_request" && /X-Upper/.test(e.message),
      );
    }
    const p = balancer.stats().providers[0];
    assert.equal(p.credit, 2);
    assert.equal(p.busy, 0);
    assert.equal(requests(peer).length, 0);
    const good = balancer.submit(job("svc", { body: enc.encode("hi") })) as Promise<JobResult>;
    const req = await peer.waitFor(isType("request"));
    assert.ok(req);
    await peer.send({
      type: "reply",
      id: req.id,
      status: 200,
      freeSlots: 1,
      meta: [],
      body: enc.encode("ok"),
    });
    assert.equal(dec.decode((await good).body as Uint8Array), "ok");
  } finally {
    peer.close();
    balancer.close();
    await server.close();
  }
});

Deno.test("dispatch: a handler reply or error EP cannot carry is answered handler_error by the worker, which keeps serving", async () => {
  // exposeErrors: the handler's own (long) message is sent, so that its cut shows.
  const r = await rig("worker", { defaultTimeoutMs: 2000 }, { exposeErrors: true });
  try {
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`http://${r.addr}/badmeta`);
      assert.equal(res.status, 500, `request ${i}`);
      assert.match(await res.text(), /^Invalid reply from the handler: .*X-Upper/);
      // An error message longer than an EP ERROR carries is cut, not lost.
      const long = await fetch(`http://${r.addr}/longerror`);
      assert.equal(long.status, 500, `request ${i}`);
      assert.match(await long.text(), /^e+\.\.\.$/m);
    }
    const ok = await fetch(`http://${r.addr}/echo`, { method: "POST", body: "good" });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), "good");
  } finally {
    await r.close();
  }
});

// --- item 3: reserved ep- metadata cannot be spoofed ---------------------------------

const SPOOF = {
  "ep-method": "DELETE",
  "ep-path": "/evil",
  "ep-query": "evil=1",
  "ep-timeout": "5000",
  "ep-priority": "9",
  "ep-whatever": "x",
  "x-ok": "1",
};

Deno.test("dispatch: client ep- headers and meta never reach a handler that is called directly (HTTP and EP)", async () => {
  const seen: [string, string][][] = [];
  const server = serve({
    port: 0,
    handler: (j) => {
      seen.push(j.headers);
      return { body: "ok" };
    },
  });
  let client: Client | null = null;
  try {
    const res = await fetch(`http://127.0.0.1:${server.addr.port}/svc`, { headers: SPOOF });
    assert.equal(await res.text(), "ok");
    client = await connect(`127.0.0.1:${server.addr.port}`);
    await client.request("svc", "", { meta: Object.entries(SPOOF) });
    assert.equal(seen.length, 2);
    for (const headers of seen) {
      assert.deepEqual(headers.filter(([k]) => k.startsWith("ep-")), []);
      assert.deepEqual(headers.filter(([k]) => k === "x-ok"), [["x-ok", "1"]]);
    }
  } finally {
    client?.close();
    await server.close();
  }
});

for (const mode of ["worker", "local"] as const) {
  Deno.test(`dispatch: client ep- headers and meta never reach a handler behind the balancer (${mode}, HTTP and EP)`, async () => {
    const r = await rig(mode);
    const client = await connect(r.addr);
    try {
      const res = await fetch(`http://${r.addr}/meta/real?q=1`, { headers: SPOOF });
      const http = JSON.parse(await res.text()) as [string, string][];
      // ep's own keys only: the request line and the request id the balancer gave it.
      const ep = http.filter(([k]) => k.startsWith("ep-"));
      assert.deepEqual(ep.slice(0, 3), [
        ["ep-method", "GET"],
        ["ep-path", "/meta/real"],
        ["ep-query", "q=1"],
      ]);
      assert.deepEqual(ep.slice(3).map(([k]) => k), ["ep-request-id"]);
      assert.match(ep[3][1], /^[0-9a-f]{16}$/);
      assert.deepEqual(http.filter(([k]) => k === "x-ok"), [["x-ok", "1"]]);
      const reply = await client.request("meta", "", { meta: Object.entries(SPOOF) });
      const meta = JSON.parse(dec.decode(reply.body)) as [string, string][];
      assert.deepEqual(meta.map(([k]) => k), ["ep-request-id", "x-ok"]);
      assert.deepEqual(meta[1], ["x-ok", "1"]);
    } finally {
      client.close();
      await r.close();
    }
  });
}

Deno.test("dispatch: ep-timeout is still read by ep although handlers do not see it", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), ...QUIET },
  });
  const peer = await fakeWorker(`127.0.0.1:${server.addr.port}`, ["svc"]);
  try {
    await until(() => balancer.stats().providers[0]?.credit === 1, 5000, "credit");
    const status = fetch(`http://127.0.0.1:${server.addr.port}/svc`, {
      headers: { "ep-timeout": "150" },
    }).then(async (res) => {
      await res.body?.cancel();
      return res.status;
    }, (e) => e);
    const req = await peer.waitFor(isType("request"));
    assert.ok(req);
    assert.ok(req.deadlineMs <= 150, `deadline ${req.deadlineMs}`);
    assert.deepEqual(req.meta.filter(([k]) => k === "ep-timeout"), []);
    assert.equal(await status, 504);
  } finally {
    peer.close();
    balancer.close();
    await server.close();
  }
});

// --- item 8: unknown services during the start-up grace --------------------------------

Deno.test("dispatch: thousands of unknown service names in the start-up grace leave bounded state and metrics", async () => {
  const monitor = new Monitor({ maxServices: 5 });
  const balancer = new Balancer({
    serviceGraceMs: 10_000,
    // Every name waits in the start-up grace (handlers whose names are not known yet).
    expectServices: "any",
    maxPendingServices: 10,
    observer: monitor,
    internal: monitor.internal,
  });
  monitor.attach({ balancer });
  const labels = () =>
    new Set([...monitor.metricsText().matchAll(/service="([^"]*)"/g)].map((m) => m[1]));
  try {
    const pending: Promise<string>[] = [];
    for (let i = 0; i < 2000; i++) {
      pending.push(
        Promise.resolve()
          .then(() => balancer.submit(job(`name${i}`, { deadlineMs: 300 })))
          .then(() => "ok", (e: JobError) => e.kind),
      );
    }
    await sleep(50);
    assert.ok(
      balancer.stats().services.length <= 10,
      `${balancer.stats().services.length} services`,
    );
    monitor.sample();
    assert.ok(labels().size <= 10 + 5 + 1, `${labels().size} service labels`);
    const kinds = await Promise.all(pending);
    assert.equal(kinds.filter((k) => k === "timeout").length, 10);
    assert.equal(kinds.filter((k) => k === "no_service").length, 1990);
    // Answered: nothing of them is left in the balancer, and the metrics stay bounded.
    await until(() => balancer.stats().services.length === 0, 2000, "services forgotten");
    monitor.sample();
    assert.ok(labels().size <= 5 + 1, `${[...labels()]}`);
  } finally {
    balancer.close();
    monitor.close();
  }
});

// --- item 9: a worker that never answers --------------------------------------------

Deno.test("dispatch: a running job that times out is answered and its payload freed while its provider still holds it", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const held: Parameters<Provider["dispatch"]>[0][] = [];
  const provider: Provider = {
    name: "fake",
    services: new Set(["svc"]),
    slots: 1,
    get credit() {
      return 1 - held.length;
    },
    draining: false,
    dispatch: (qj) => void held.push(qj),
    cancel: () => {},
  };
  balancer.addProvider(provider);
  try {
    const res = balancer.submit(
      job("svc", { body: new Uint8Array(64 << 10), headers: [["x-a", "1"]], deadlineMs: 50 }),
    );
    await assert.rejects(
      Promise.resolve(res),
      (e: unknown) => e instanceof JobError && e.kind === "timeout",
    );
    assert.equal(balancer.heldBy(provider), 1, "the provider still runs it");
    assert.equal(held[0].job.body.length, 0);
    assert.deepEqual(held[0].job.headers, []);
    // Its late answer frees the provider's slot.
    balancer.finish(provider, held[0], { body: "late" });
    assert.equal(balancer.heldBy(provider), 0);
  } finally {
    balancer.close();
  }
});

Deno.test("dispatch: a worker that never answers is dropped once a job is overdue past the cancel grace; every job got its 504", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0, cancelGraceMs: 300 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), ...QUIET },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const peer = await fakeWorker(addr, ["svc"], { slots: 50, credit: 50 });
  try {
    await until(() => balancer.stats().providers[0]?.credit === 50, 5000, "credit");
    const body = new Uint8Array(64 << 10);
    const statuses = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          fetch(`http://${addr}/svc`, { method: "POST", body, headers: { "ep-timeout": "200" } })
            .then(async (res) => {
              await res.body?.cancel();
              return res.status;
            }),
      ),
    );
    assert.deepEqual(statuses, Array(20).fill(504));
    assert.equal(requests(peer).length, 20);
    await until(() => peer.frames.filter(isType("cancel")).length === 20, 2000, "CANCELs");
    assert.ok(await peer.waitEof(5000), "the worker is cut off");
    const err = peer.frames.find((f) => f.type === "error" && f.id === 0);
    assert.ok(err && err.type === "error" && err.code === ErrorCode.LIMIT_EXCEEDED, String(err));
    await until(() => balancer.stats().providers.length === 0, 2000, "provider removed");
  } finally {
    peer.close();
    balancer.close();
    await server.close();
  }
});

// --- item 10: DRAIN grace_ms ------------------------------------------------------

Deno.test("dispatch: a job a draining worker still holds after DRAIN grace_ms is redelivered, and its late answer dropped", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), ...QUIET },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const a = await fakeWorker(addr, ["svc"]);
  let b: EpPeer | null = null;
  try {
    await until(() => balancer.stats().providers[0]?.credit === 1, 5000, "credit");
    const res = Promise.resolve(balancer.submit(job("svc", { deadlineMs: 10_000 })));
    res.catch(() => {}); // awaited below; no unhandled rejection if an assertion fails first
    const ra = await a.waitFor(isType("request"));
    assert.ok(ra);
    await a.send({ type: "drain", graceMs: 200 });
    b = await fakeWorker(addr, ["svc"]);
    const rb = await b.waitFor(isType("request"), 3000);
    assert.ok(rb, "redelivered to the other worker after the grace");
    assert.equal(rb.attempt, 1);
    await a.send({
      type: "reply",
      id: ra.id,
      status: 200,
      freeSlots: 1,
      meta: [],
      body: enc.encode("a"),
    });
    await sleep(50);
    await b.send({
      type: "reply",
      id: rb.id,
      status: 200,
      freeSlots: 1,
      meta: [],
      body: enc.encode("b"),
    });
    assert.equal(dec.decode((await res).body as Uint8Array), "b");
    const s = balancer.stats().services.find((x) => x.name === "svc")!;
    assert.equal(s.counters.redelivered, 1);
    assert.equal(s.counters.ok, 1);
  } finally {
    a.close();
    b?.close();
    balancer.close();
    await server.close();
  }
});

Deno.test("dispatch: without retries left, a job held past DRAIN grace_ms is answered worker_lost", async () => {
  const balancer = new Balancer({ serviceGraceMs: 0, retries: 0 });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), ...QUIET },
  });
  const a = await fakeWorker(`127.0.0.1:${server.addr.port}`, ["svc"]);
  try {
    await until(() => balancer.stats().providers[0]?.credit === 1, 5000, "credit");
    const res = Promise.resolve(balancer.submit(job("svc", { deadlineMs: 5_000 })));
    res.catch(() => {}); // awaited below; no unhandled rejection if an assertion fails first
    assert.ok(await a.waitFor(isType("request")));
    await a.send({ type: "drain", graceMs: 100 });
    await assert.rejects(res, (e: unknown) => e instanceof JobError && e.kind === "worker_lost");
    assert.equal(balancer.stats().providers[0].busy, 0);
  } finally {
    a.close();
    balancer.close();
    await server.close();
  }
});

// --- item 13: clear errors for oversized jobs and replies ---------------------------

for (const mode of ["worker", "local"] as const) {
  Deno.test(`dispatch: a job larger than the handler rings is refused bad_request giving the limit (${mode})`, async () => {
    const r = await rig(mode, {}, { ringBytes: 1 << 16 }); // 32 752 bytes per message
    const client = await connect(r.addr);
    try {
      await assert.rejects(
        client.request("echo", new Uint8Array(40_000)),
        (e: unknown) =>
          e instanceof JobError && e.kind === "bad_request" &&
          /400\d\d bytes exceeds the limit of 32752 bytes/.test(e.message),
      );
      const res = await fetch(`http://${r.addr}/echo`, {
        method: "POST",
        body: new Uint8Array(40_000),
      });
      assert.equal(res.status, 400);
      assert.match(await res.text(), /exceeds the limit of 32752 bytes/);
      const ok = await client.request("echo", "fits");
      assert.equal(dec.decode(ok.body), "fits");
    } finally {
      client.close();
      await r.close();
    }
  });

  Deno.test(`dispatch: a handler reply larger than the rings is reply_too_large, HTTP 502 (${mode})`, async () => {
    const r = await rig(mode, {}, { ringBytes: 1 << 16 });
    const client = await connect(r.addr);
    try {
      await assert.rejects(
        client.request("big", "40000"),
        (e: unknown) =>
          e instanceof JobError && e.code === ErrorCode.REPLY_TOO_LARGE &&
          e.kind === "reply_too_large" && /limit of 32752 bytes/.test(e.message),
      );
      const res = await fetch(`http://${r.addr}/big`, { method: "POST", body: "40000" });
      assert.equal(res.status, 502);
      assert.match(await res.text(), /^Reply of \d+ bytes exceeds the limit of 32752 bytes/);
    } finally {
      client.close();
      await r.close();
    }
  });
}

// --- the worker's side: an honest worker answers every job by its deadline -----------

/** A fake balancer over a real socket, for a real WorkerNode to connect to. */
class FakeBalancer {
  readonly frames: Frame[] = [];
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  #conn: Deno.TcpConn | null = null;
  #enc = new EpEncoder();

  get addr(): string {
    return `127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
  }

  async accept(): Promise<void> {
    const conn = this.#conn = await this.listener.accept();
    let preface = 4; // the decoder does not read the preface
    const decoder = new EpDecoder({
      frame: (f) => this.frames.push("body" in f ? { ...f, body: f.body.slice() } : f),
      error: (e) => assert.fail(e.message),
    });
    (async () => {
      const buf = new Uint8Array(1 << 16);
      while (true) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) return;
        const skip = Math.min(preface, n);
        preface -= skip;
        decoder.push(buf.subarray(skip, n));
      }
    })();
  }

  async send(f: Frame): Promise<void> {
    const bytes = this.#enc.encodeCopy(f);
    let off = 0;
    while (off < bytes.length) off += await this.#conn!.write(bytes.subarray(off));
  }

  credit(): number {
    return this.frames.reduce((n, f) => n + (f.type === "ready" ? f.credit : 0), 0);
  }

  close(): void {
    try {
      this.#conn?.close();
    } catch {
      // closed
    }
    this.listener.close();
  }
}

Deno.test("dispatch: a job prefetched by a worker whose deadline passes while it waits is answered timeout, not run", async () => {
  const p = await pool(1);
  const fake = new FakeBalancer();
  const node = WorkerNode.start({ balancers: [fake.addr], pool: p, prefetch: 1 });
  try {
    await fake.accept();
    await until(() => fake.frames.some((f) => f.type === "register"), 5000, "REGISTER");
    await fake.send({
      type: "welcome",
      version: 1,
      maxPayload: 1 << 24,
      heartbeatMs: 0,
      prefetch: 1,
      serverName: "fake",
    });
    await until(() => fake.credit() >= 2, 5000, "credit for slot + prefetch");
    const request = (id: number, service: string, body: string, deadlineMs: number) =>
      fake.send({
        type: "request",
        id,
        deadlineMs,
        priority: 0,
        attempt: 0,
        queueDepth: 0,
        service,
        meta: [],
        body: enc.encode(body),
      });
    await request(1, "sleep", "400", 5000);
    // Waits in the worker behind job 1; its 150 ms are over long before job 1 ends, and no
    // CANCEL comes (one lost, or crossed): it must not run with a fresh 150 ms then.
    await request(2, "echo", "late", 150);
    const answer = (id: number) =>
      fake.frames.find((f) => (f.type === "reply" || f.type === "error") && f.id === id);
    await until(() => answer(1) !== undefined && answer(2) !== undefined, 5000, "answers");
    const a2 = answer(2)!;
    assert.ok(a2.type === "error" && a2.code === ErrorCode.TIMEOUT, JSON.stringify(a2));
    assert.equal(answer(1)!.type, "reply");
  } finally {
    node.close();
    fake.close();
    await p.close({ drain: false });
  }
});
