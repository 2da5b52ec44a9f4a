/**
 * The balancer and its workers as real processes over real sockets: uneven jobs, kill -9,
 * balancer restart, auth, drain, two balancers.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { balancer, type Proc, waitStats, worker } from "./_cluster.ts";

const dec = new TextDecoder();

/** Sends `n` requests keeping `window` in flight; returns the settled results. */
async function load(
  addr: string,
  n: number,
  window: number,
  body: (i: number) => string,
): Promise<{ results: PromiseSettledResult<string>[]; unmatched: number }> {
  const client = await connect(addr);
  const results: PromiseSettledResult<string>[] = new Array(n);
  let next = 0;
  const lane = async () => {
    while (next < n) {
      const i = next++;
      try {
        const r = await client.request("sleep", body(i), { timeoutMs: 20_000 });
        results[i] = { status: "fulfilled", value: dec.decode(r.body) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: window }, lane));
  const unmatched = client.unmatched;
  client.close();
  return { results, unmatched };
}

async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
}

Deno.test("cluster: three worker processes serve uneven jobs, each answered once", async () => {
  const b = await balancer();
  const ws = [worker([b.addr]), worker([b.addr]), worker([b.addr])];
  try {
    await waitStats(b.addr, (s) => s.providers.length === 3);
    const { results, unmatched } = await load(b.addr, 150, 12, (i) => (i % 10 === 0 ? "20" : "1"));
    assert.equal(unmatched, 0);
    assert.ok(results.every((r) => r.status === "fulfilled"), JSON.stringify(results));
    const pids = new Set(results.map((r) => (r as PromiseFulfilledResult<string>).value));
    assert.equal(pids.size, 3, "every worker took jobs");
  } finally {
    await stopAll([b.proc, ...ws]);
  }
});

Deno.test("cluster: kill -9 of a worker holding jobs loses no request and answers none twice", async () => {
  const b = await balancer();
  const ws = [worker([b.addr]), worker([b.addr]), worker([b.addr])];
  try {
    await waitStats(b.addr, (s) => s.providers.length === 3);
    const running = load(b.addr, 120, 9, () => "25");
    // Kill one worker while it holds a job, twice over the run.
    for (const victim of [0, 1]) {
      await new Promise((r) => setTimeout(r, 150));
      ws[victim].kill("SIGKILL");
      ws.push(worker([b.addr]));
    }
    const { results, unmatched } = await running;
    assert.equal(unmatched, 0, "no answer arrived twice");
    assert.equal(results.filter((r) => r !== undefined).length, 120, "every request answered");
    const failed = results.filter((r) => r.status === "rejected");
    assert.deepEqual(failed, [], "all redelivered within the retry budget");
    const stats = await waitStats(b.addr, () => true);
    const sleep = stats.services.find((s) => s.name === "sleep")!;
    assert.ok(sleep.counters.redelivered >= 1, "jobs were redelivered");
    assert.equal(sleep.counters.ok, 120);
  } finally {
    await stopAll([b.proc, ...ws]);
  }
});

Deno.test("cluster: workers reconnect to a restarted balancer; clients get errors, not hangs", async () => {
  let b = await balancer();
  const port = b.port;
  const ws = [worker([b.addr]), worker([b.addr])];
  try {
    await waitStats(b.addr, (s) => s.providers.length === 2);
    const client = await connect(b.addr);
    const inflight = client.request("sleep", "2000", { timeoutMs: 10_000 }).then(
      () => "ok",
      (e) => e,
    );
    await new Promise((r) => setTimeout(r, 100));
    b.proc.kill("SIGKILL");
    const t0 = Date.now();
    const outcome = await inflight;
    assert.ok(outcome instanceof Error, "the in-flight request fails");
    assert.ok(Date.now() - t0 < 2000, "promptly, not at its timeout");
    await assert.rejects(connect(b.addr), "connection refused while down");
    b = await balancer(["--port", String(port)]);
    await waitStats(b.addr, (s) => s.providers.length === 2, 15_000);
    const c2 = await connect(b.addr);
    assert.match(dec.decode((await c2.request("sleep", "1")).body), /^\d+$/);
    c2.close();
  } finally {
    await stopAll([b.proc, ...ws]);
  }
});

Deno.test("cluster: a worker with the wrong token is refused; the right one registers", async () => {
  const b = await balancer(["--token", "s3cret"]);
  const bad = worker([b.addr], ["--token", "wrong"]);
  const good = worker([b.addr], ["--token", "s3cret"]);
  try {
    await bad.waitFor(/refused us: "?Invalid token/);
    const stats = await waitStats(b.addr, (s) => s.providers.length === 1);
    assert.equal(stats.providers.length, 1);
    assert.match(stats.providers[0].name, new RegExp(`ep-worker-${good.child.pid}`));
  } finally {
    await stopAll([b.proc, bad, good]);
  }
});

Deno.test("cluster: SIGTERM drains a worker: its job finishes, it gets no new ones, it exits 0", async () => {
  const b = await balancer();
  const w1 = worker([b.addr]);
  const w2 = worker([b.addr]);
  try {
    await waitStats(b.addr, (s) => s.providers.length === 2);
    const client = await connect(b.addr);
    const slow = client.request("sleep", "600");
    const stats = await waitStats(b.addr, (s) => s.providers.some((p) => p.busy === 1));
    const busyName = stats.providers.find((p) => p.busy === 1)!.name;
    const victim = busyName.includes(`ep-worker-${w1.child.pid}`) ? w1 : w2;
    const other = victim === w1 ? w2 : w1;
    victim.kill("SIGTERM");
    await waitStats(b.addr, (s) => s.providers.some((p) => p.draining));
    const quick = await Promise.all(Array.from({ length: 5 }, () => client.request("sleep", "1")));
    for (const q of quick) assert.equal(dec.decode(q.body), String(other.child.pid));
    assert.equal(dec.decode((await slow).body), String(victim.child.pid));
    const status = await victim.exited;
    assert.equal(status.code, 0);
    await waitStats(b.addr, (s) => s.providers.length === 1);
    client.close();
  } finally {
    await stopAll([b.proc, w1, w2]);
  }
});

Deno.test("cluster: two balancers share two workers; clients on both are served", async () => {
  const b1 = await balancer();
  const b2 = await balancer();
  const ws = [worker([b1.addr, b2.addr]), worker([b1.addr, b2.addr])];
  try {
    await waitStats(b1.addr, (s) => s.providers.length === 2);
    await waitStats(b2.addr, (s) => s.providers.length === 2);
    const [r1, r2] = await Promise.all([
      load(b1.addr, 60, 6, () => "5"),
      load(b2.addr, 60, 6, () => "5"),
    ]);
    for (const r of [r1, r2]) {
      assert.equal(r.unmatched, 0);
      assert.ok(r.results.every((x) => x.status === "fulfilled"), JSON.stringify(r.results));
    }
  } finally {
    await stopAll([b1.proc, b2.proc, ...ws]);
  }
});

Deno.test("cluster: no_service is immediate for a service nobody registered", async () => {
  const b = await balancer(["--port", "0"]);
  const w = worker([b.addr]);
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1);
    const client = await connect(b.addr);
    const t0 = Date.now();
    // Past the start-up grace period a never-seen service fails at once.
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(
      client.request("unknown-service", "", { timeoutMs: 10_000 }),
      (e: unknown) => e instanceof JobError && (e.kind === "no_service"),
    );
    assert.ok(Date.now() - t0 < 6000);
    client.close();
  } finally {
    await stopAll([b.proc, w]);
  }
});
