/**
 * Faults with real processes and real sockets: repeated kill -9 under load, a worker that
 * sends junk or stops in the middle of a frame, one of two balancers killed, a stopped
 * (silent) worker, runaway and out-of-memory Lua handlers under load, an EP client that
 * never reads. Each test prints one `FIGURES` line (RELIABILITY.md quotes them).
 *
 * (`tests/cluster_test.ts` has the single kill -9, the balancer restart, auth and drain;
 * `tests/server_http_test.ts` the HTTP client that never reads and the slowloris.)
 */
import assert from "node:assert/strict";
import { type Client, connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { startNode } from "../core/node/node.ts";
import { balancer, type BalancerStats, Proc, waitStats } from "./_cluster.ts";
import { EpPeer, isType } from "./fixtures/faults/_ep_peer.ts";

const dec = new TextDecoder();
const FAULT_SERVICES = new URL("./fixtures/faults/services.ts", import.meta.url).pathname;

/** A worker process of the fault services with one single-job thread. */
function worker(connect: string[], extra: string[] = []): Proc {
  return new Proc([
    "worker",
    "--connect",
    connect.join(","),
    "--handlers",
    FAULT_SERVICES,
    "--threads",
    "1",
    "--concurrency",
    "1",
    ...extra,
  ]);
}

async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function figures(name: string, data: Record<string, unknown>): void {
  console.log(`FIGURES ${name} ${JSON.stringify(data)}`);
}

type Outcome = { ok: true; body: string } | { ok: false; error: Error };

/** Sends `n` requests keeping `window` in flight; every outcome, in request order. */
async function load(
  client: Client,
  n: number,
  window: number,
  service: string,
  body: (i: number) => string,
  timeoutMs = 20_000,
): Promise<Outcome[]> {
  const out: Outcome[] = new Array(n);
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      try {
        const r = await client.request(service, body(i), { timeoutMs });
        out[i] = { ok: true, body: dec.decode(r.body) };
      } catch (error) {
        out[i] = { ok: false, error: error as Error };
      }
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  return out;
}

function kinds(outcomes: Outcome[]): Record<string, number> {
  const k: Record<string, number> = {};
  for (const o of outcomes) {
    const name = o.ok ? "ok" : o.error instanceof JobError ? o.error.kind : o.error.name;
    k[name] = (k[name] ?? 0) + 1;
  }
  return k;
}

function service(stats: BalancerStats, name: string) {
  return stats.services.find((s) => s.name === name)!;
}

Deno.test("faults: repeated kill -9 of workers under load: every request answered exactly once", async () => {
  const b = await balancer();
  const ws = [worker([b.addr]), worker([b.addr]), worker([b.addr])];
  const client = await connect(b.addr);
  try {
    await waitStats(b.addr, (s) => s.providers.length === 3, 20_000);
    const n = 400;
    const t0 = Date.now();
    const running = load(client, n, 9, "sleep", () => "20");
    // Five times: kill -9 a live worker while it holds jobs, and start a replacement.
    const killed = new Set<Proc>();
    for (let k = 0; k < 5; k++) {
      await sleep(350);
      const live = ws.filter((w) => !killed.has(w));
      const victim = live[k % live.length];
      victim.kill("SIGKILL");
      killed.add(victim);
      ws.push(worker([b.addr]));
    }
    const outcomes = await running;
    const took = Date.now() - t0;
    assert.equal(outcomes.filter((o) => o !== undefined).length, n, "every request answered");
    assert.equal(client.unmatched, 0, "no request answered twice");
    const byKind = kinds(outcomes);
    for (const kind of Object.keys(byKind)) {
      assert.ok(kind === "ok" || kind === "worker_lost", `unexpected outcome ${kind}`);
    }
    const stats = await waitStats(b.addr, () => true);
    const sleepStats = service(stats, "sleep");
    // The balancer counted what the client saw: each job settled once.
    assert.equal(sleepStats.counters.ok, byKind.ok ?? 0);
    assert.equal(sleepStats.counters.workerLost, byKind.worker_lost ?? 0);
    assert.ok(sleepStats.counters.redelivered >= 1, "jobs were redelivered");
    figures("kill9", {
      requests: n,
      kills: killed.size,
      ms: took,
      ok: byKind.ok ?? 0,
      workerLost: byKind.worker_lost ?? 0,
      redelivered: sleepStats.counters.redelivered,
    });
  } finally {
    client.close();
    await stopAll([b.proc, ...ws]);
  }
});

for (const junk of ["garbage", "truncated"] as const) {
  Deno.test(`faults: a worker that sends a ${junk} frame mid-stream is dropped; its job is redelivered`, async () => {
    const b = await balancer();
    const real = worker([b.addr]);
    let fake: EpPeer | null = null;
    const clients: Client[] = [];
    try {
      await waitStats(b.addr, (s) => s.providers.length === 1, 20_000);
      // The fake worker registers "sleep" with one slot and grants one credit.
      fake = await EpPeer.open(b.addr);
      await fake.hello(2, "", "fake");
      await fake.send({ type: "register", slots: 1, services: ["sleep"] });
      await fake.send({ type: "ready", credit: 1 });
      await waitStats(b.addr, (s) => s.providers.length === 2);
      const c1 = await connect(b.addr);
      const c2 = await connect(b.addr);
      clients.push(c1, c2);
      // Another client's traffic flows all along: its framing must stay intact.
      let stop = false;
      let witnessOk = 0;
      const witness = (async () => {
        for (let i = 0; stop === false && i < 10_000; i++) {
          const r = await c2.request("echo", `w${i}`, { timeoutMs: 10_000 });
          assert.equal(dec.decode(r.body), `w${i}`);
          witnessOk++;
        }
      })();
      const jobs = Array.from(
        { length: 4 },
        () => c1.request("sleep", "150", { timeoutMs: 15_000 }),
      );
      const req = await fake.waitFor(isType("request"));
      assert.ok(req, "the fake worker was handed a job");
      const t0 = Date.now();
      if (junk === "garbage") {
        // A header with an unknown type, then noise.
        await fake.sendRaw(
          new Uint8Array([0, 0, 0, 4, 0x7f, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]),
        );
      } else {
        // The first half of its REPLY, then the socket closes.
        const reply = fake.encode({
          type: "reply",
          id: req.id,
          status: 200,
          freeSlots: 1,
          meta: [],
          body: new TextEncoder().encode("half of a reply"),
        });
        await fake.sendRaw(reply.subarray(0, Math.floor(reply.length / 2)));
        fake.close();
      }
      const replies = await Promise.all(jobs);
      const recovered = Date.now() - t0;
      stop = true;
      await witness;
      for (const r of replies) assert.equal(dec.decode(r.body), String(real.child.pid));
      assert.equal(c1.unmatched + c2.unmatched, 0, "no answer twice");
      if (junk === "garbage") {
        const err = await fake.waitFor(isType("error"));
        assert.ok(err, "the balancer said why it closed");
        assert.equal(err.id, 0);
        assert.equal(err.code, 5, "unexpected_frame");
        assert.ok(await fake.waitEof(), "and closed the connection");
      }
      const stats = await waitStats(b.addr, (s) => s.providers.length === 1);
      assert.ok(service(stats, "sleep").counters.redelivered >= 1);
      assert.ok(witnessOk > 0);
      figures(`junk_${junk}`, { redeliveredAnsweredMs: recovered, witnessRequests: witnessOk });
    } finally {
      fake?.close();
      for (const c of clients) c.close();
      await stopAll([b.proc, real]);
    }
  });
}

Deno.test("faults: one of two balancers killed: its clients get errors, not hangs; the other's are served", async () => {
  const b1 = await balancer();
  const b2 = await balancer();
  const ws = [worker([b1.addr, b2.addr]), worker([b1.addr, b2.addr])];
  let b1b: Awaited<ReturnType<typeof balancer>> | null = null;
  const clients: Client[] = [];
  try {
    await waitStats(b1.addr, (s) => s.providers.length === 2, 20_000);
    await waitStats(b2.addr, (s) => s.providers.length === 2, 20_000);
    const c1 = await connect(b1.addr);
    const c2 = await connect(b2.addr);
    clients.push(c1, c2);
    let stop = false;
    let killedAt = 0;
    let servedAfterKill = 0;
    const lanes = (c: Client, counter: boolean) =>
      Array.from({ length: 3 }, async () => {
        const out: Outcome[] = [];
        while (!stop && out.length < 5_000) {
          try {
            const r = await c.request("sleep", "10", { timeoutMs: 10_000 });
            out.push({ ok: true, body: dec.decode(r.body) });
            if (counter && killedAt > 0) servedAfterKill++;
          } catch (error) {
            out.push({ ok: false, error: error as Error });
            if (!counter) break; // the connection is gone
          }
        }
        return out;
      });
    const on1 = Promise.all(lanes(c1, false));
    const on2 = Promise.all(lanes(c2, true));
    await sleep(700);
    b1.proc.kill("SIGKILL");
    killedAt = Date.now();
    const r1 = (await on1).flat();
    const failedWithin = Date.now() - killedAt;
    await sleep(1_000);
    stop = true;
    const r2 = (await on2).flat();
    assert.ok(r1.some((o) => !o.ok), "b1's clients see the loss");
    assert.ok(failedWithin < 3_000, `b1's in-flight requests failed after ${failedWithin} ms`);
    const k2 = kinds(r2);
    assert.deepEqual(Object.keys(k2), ["ok"], `b2's clients: ${JSON.stringify(k2)}`);
    assert.ok(servedAfterKill > 10, `b2 served ${servedAfterKill} after the kill`);
    assert.equal(c2.unmatched, 0);
    // b1 comes back on its port; the workers find it again.
    const t0 = Date.now();
    b1b = await balancer(["--port", String(b1.port)]);
    await waitStats(b1b.addr, (s) => s.providers.length === 2, 20_000);
    const reattached = Date.now() - t0;
    const c3 = await connect(b1b.addr);
    clients.push(c3);
    assert.match(dec.decode((await c3.request("sleep", "1")).body), /^\d+$/);
    figures("balancer_kill", {
      b1InFlightFailedMs: failedWithin,
      b2Ok: k2.ok,
      b2ServedAfterKill: servedAfterKill,
      workersReattachedMs: reattached,
    });
  } finally {
    for (const c of clients) c.close();
    await stopAll([b1.proc, b2.proc, ...(b1b ? [b1b.proc] : []), ...ws]);
  }
});

Deno.test("faults: a silent (SIGSTOPped) worker is dropped after ~3 heartbeats; its job is redelivered", async () => {
  const b = await balancer();
  const w1 = worker([b.addr]);
  const w2 = worker([b.addr]);
  const client = await connect(b.addr);
  try {
    await waitStats(b.addr, (s) => s.providers.length === 2, 20_000);
    const a = client.request("sleep", "400", { timeoutMs: 20_000 });
    const c = client.request("sleep", "400", { timeoutMs: 20_000 });
    await waitStats(b.addr, (s) => s.providers.every((p) => p.busy === 1));
    // Its socket stays open (the kernel still ACKs) but it sends nothing more.
    w1.kill("SIGSTOP");
    const t0 = Date.now();
    const stats = await waitStats(b.addr, (s) => s.providers.length === 1, 15_000);
    const detected = Date.now() - t0;
    const [ra, rc] = await Promise.all([a, c]);
    const answered = Date.now() - t0;
    assert.deepEqual(
      [dec.decode(ra.body), dec.decode(rc.body)],
      [String(w2.child.pid), String(w2.child.pid)],
      "both answered by the live worker",
    );
    assert.ok(detected >= 1_000 && detected <= 8_000, `dropped after ${detected} ms`);
    assert.equal(service(stats, "sleep").counters.redelivered, 1);
    // Woken up, it notices the closed connection and registers again.
    w1.kill("SIGCONT");
    const t1 = Date.now();
    await waitStats(b.addr, (s) => s.providers.length === 2, 20_000);
    const rejoined = Date.now() - t1;
    assert.equal(client.unmatched, 0, "its late answer never reached the client");
    figures("sigstop", { detectedMs: detected, answeredMs: answered, rejoinedMs: rejoined });
  } finally {
    w1.kill("SIGCONT");
    client.close();
    await stopAll([b.proc, w1, w2]);
  }
});

Deno.test("faults: runaway and out-of-memory Lua handlers under load are interrupted and answered; the rest served", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ep-faults-" });
  await Deno.writeTextFile(
    `${dir}/main.lua`,
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
ep.threads(2)
ep.service("spin", function() while true do end end, { timeout_ms = 200 })
ep.service("hog", function()
  local t, s = {}, string.rep("x", 4096)
  for i = 1, 1e9 do t[i] = s .. i end
end, { timeout_ms = 10000 })
ep.service("ok", function(req) return "ok " .. req.body end)
`,
  );
  const proc = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
  try {
    const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 20_000);
    const url = `http://127.0.0.1:${m[1]}`;
    const t0 = Date.now();
    const call = async (svc: string, i: number) => {
      const res = await fetch(`${url}/${svc}`, { method: "POST", body: String(i) });
      return { svc, i, status: res.status, text: await res.text() };
    };
    const jobs: Promise<{ svc: string; i: number; status: number; text: string }>[] = [];
    for (let i = 0; i < 80; i++) {
      const svc = i % 10 === 3 ? "spin" : i % 20 === 7 ? "hog" : "ok";
      jobs.push(call(svc, i));
      if (i % 8 === 0) await sleep(20);
    }
    const results = await Promise.all(jobs);
    const took = Date.now() - t0;
    const by = (svc: string) => results.filter((r) => r.svc === svc);
    for (const r of by("ok")) assert.deepEqual([r.status, r.text], [200, `ok ${r.i}`]);
    for (const r of by("spin")) assert.equal(r.status, 504, JSON.stringify(r));
    for (const r of by("hog")) {
      assert.equal(r.status, 500, JSON.stringify(r));
      assert.match(r.text, /memory/i);
    }
    for (const r of results) {
      assert.ok(!r.text.includes(dir) && !/traceback/i.test(r.text), r.text);
    }
    // The threads are all free again.
    const after = await Promise.all([1, 2, 3, 4].map((i) => call("ok", 1000 + i)));
    assert.ok(after.every((r) => r.status === 200));
    figures("lua_runaway_oom", {
      requests: results.length,
      ok: by("ok").length,
      spin504: by("spin").length,
      hog500: by("hog").length,
      ms: took,
    });
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("faults: an EP client that never reads its replies is cut off; others are served", async () => {
  const node = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${node.server!.addr.port}`;
  const w = worker([addr]);
  let stuck: EpPeer | null = null;
  const witness = await connect(addr);
  try {
    await waitStats(addr, (s) => s.providers.length === 1, 20_000);
    const rss0 = Deno.memoryUsage().rss;
    // 160 requests for 256 KiB each (40 MiB of replies), and never a read.
    stuck = await EpPeer.open(addr, { read: false });
    await stuck.hello(1);
    for (let id = 1; id <= 160; id++) {
      await stuck.send({
        type: "request",
        id,
        deadlineMs: 20_000,
        priority: 0,
        attempt: 0,
        queueDepth: 0,
        service: "big",
        meta: [],
        body: new TextEncoder().encode("256"),
      });
    }
    const t0 = Date.now();
    const counters = node.server!.counters;
    while (counters.transport.stuckClosed === 0 && Date.now() - t0 < 15_000) {
      const r = await witness.request("echo", "still here", { timeoutMs: 5_000 });
      assert.equal(dec.decode(r.body), "still here");
      await sleep(50);
    }
    const cut = Date.now() - t0;
    assert.equal(counters.transport.stuckClosed, 1, "the stuck client was closed");
    const big = node.balancer!.stats().services.find((s) => s.name === "big")!;
    assert.ok(big.counters.ok > 8, `replies were produced (${JSON.stringify(big.counters)})`);
    const growth = (Deno.memoryUsage().rss - rss0) / (1 << 20);
    // The balancer buffers for it at most highWater, one write while it kept up, a backlog
    // of DEFAULT_TRANSPORT_LIMITS.maxBuffered (8 MiB) and the write that found it there.
    assert.ok(growth < 256, `RSS grew by ${growth.toFixed(0)} MiB`);
    stuck.startReading();
    assert.ok(await stuck.waitEof(10_000), "its connection ends");
    const r = await witness.request("echo", "after");
    assert.equal(dec.decode(r.body), "after");
    figures("ep_never_reads", { cutAfterMs: cut, rssGrowthMiB: Math.round(growth) });
  } finally {
    stuck?.close();
    witness.close();
    await w.stop();
    await node.close();
  }
});
