/**
 * The surviving client against real balancer processes that are killed, stopped and
 * restarted: failover to the other balancer, retries of the requests lost with a balancer,
 * a stopped (silent) balancer found dead by its missing heartbeats.
 */
import assert from "node:assert/strict";
import { type Client, connect } from "../core/net/client.ts";
import { balancer, type Proc, waitStats, worker } from "./_cluster.ts";

const dec = new TextDecoder();

async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
}

/** Requests of 10 ms from `lanes` lanes until `stop()`; each outcome by kind. */
function steadyLoad(client: Client, lanes: number) {
  let stopped = false;
  const kinds: Record<string, number> = {};
  const servedBy: Record<string, number> = {};
  const done = Promise.all(Array.from({ length: lanes }, async () => {
    while (!stopped) {
      try {
        await client.request("sleep", "10", { timeoutMs: 10_000 });
        kinds.ok = (kinds.ok ?? 0) + 1;
        const s = client.server ?? "none";
        servedBy[s] = (servedBy[s] ?? 0) + 1;
      } catch (e) {
        const k = (e as { kind?: string }).kind ?? (e as Error).name;
        kinds[k] = (kinds[k] ?? 0) + 1;
      }
    }
  }));
  return {
    kinds,
    servedBy,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

Deno.test("failover: a balancer killed under load: with retry every request of its clients is answered by the other; the client returns to it once it is restarted and the other dies", async () => {
  const b1 = await balancer();
  const b2 = await balancer();
  const ws = [worker([b1.addr, b2.addr]), worker([b1.addr, b2.addr])];
  let b1b: Awaited<ReturnType<typeof balancer>> | null = null;
  let client: Client | null = null;
  try {
    await waitStats(b1.addr, (s) => s.providers.length === 2, 20_000);
    await waitStats(b2.addr, (s) => s.providers.length === 2, 20_000);
    client = await connect({
      servers: [b1.addr, b2.addr],
      retry: { attempts: 3, backoffMs: 50 },
      reconnect: { minMs: 50, maxMs: 200 },
    });
    assert.equal(client.server, b1.addr);
    const load = steadyLoad(client, 3);
    await new Promise((r) => setTimeout(r, 500));
    b1.proc.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1_000));
    await load.stop();
    assert.deepEqual(Object.keys(load.kinds), ["ok"], JSON.stringify(load.kinds));
    assert.ok((load.servedBy[b2.addr] ?? 0) > 10, JSON.stringify(load.servedBy));
    assert.equal(client.server, b2.addr);
    assert.equal(client.unmatched, 0);

    // b1 comes back on its port; then b2 dies: the client goes back to b1.
    b1b = await balancer(["--port", String(b1.port)]);
    await waitStats(b1b.addr, (s) => s.providers.length === 2, 20_000);
    const again = steadyLoad(client, 3);
    await new Promise((r) => setTimeout(r, 300));
    b2.proc.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1_000));
    await again.stop();
    assert.deepEqual(Object.keys(again.kinds), ["ok"], JSON.stringify(again.kinds));
    assert.equal(client.server, b1b.addr);
    assert.match(dec.decode((await client.request("sleep", "1")).body), /^\d+$/);
  } finally {
    client?.close();
    await stopAll([b1.proc, b2.proc, ...(b1b ? [b1b.proc] : []), ...ws]);
  }
});

Deno.test("failover: a stopped balancer (SIGSTOP: no reset, no bytes) is found dead by its missing heartbeats; the request in flight there is retried on the other", async () => {
  const b1 = await balancer();
  const b2 = await balancer();
  const ws = [worker([b1.addr, b2.addr])];
  let client: Client | null = null;
  try {
    await waitStats(b1.addr, (s) => s.providers.length === 1, 20_000);
    await waitStats(b2.addr, (s) => s.providers.length === 1, 20_000);
    client = await connect({
      servers: [b1.addr, b2.addr],
      heartbeatMs: 100,
      retry: { attempts: 2, backoffMs: 20, on: ["closed"] },
    });
    assert.equal(client.server, b1.addr);
    const inFlight = client.request("sleep", "300", { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 50));
    b1.proc.kill("SIGSTOP");
    const reply = await inFlight;
    assert.equal(reply.status, 200);
    assert.equal(client.server, b2.addr);
    assert.equal(client.retries, 1);
  } finally {
    client?.close();
    b1.proc.kill("SIGCONT");
    await stopAll([b1.proc, b2.proc, ...ws]);
  }
});

Deno.test("failover: without retry, the requests in flight on a killed balancer fail with ConnectionClosedError at once, and the next ones go to the other", async () => {
  const b1 = await balancer();
  const b2 = await balancer();
  const ws = [worker([b1.addr, b2.addr])];
  let client: Client | null = null;
  try {
    await waitStats(b1.addr, (s) => s.providers.length === 1, 20_000);
    await waitStats(b2.addr, (s) => s.providers.length === 1, 20_000);
    client = await connect({ servers: [b1.addr, b2.addr] });
    const inFlight = client.request("sleep", "1500", { timeoutMs: 20_000 }).then(
      () => null,
      (e) => e,
    );
    await new Promise((r) => setTimeout(r, 100));
    b1.proc.kill("SIGKILL");
    const err = await inFlight;
    assert.equal(err?.name, "ConnectionClosedError", String(err));
    assert.match(dec.decode((await client.request("sleep", "1")).body), /^\d+$/);
    assert.equal(client.server, b2.addr);
  } finally {
    client?.close();
    await stopAll([b1.proc, b2.proc, ...ws]);
  }
});
