/**
 * Unknown services over real sockets, through the library (`mod.ts`): a name nobody serves
 * is answered `no_service` at once, even in the balancer's start-up grace (HTTP 503 with
 * the reason and the request id), while a service whose worker served it before waits for
 * the worker to come back. The rules themselves are pinned in `core/balancer/balancer_test.ts`.
 */
import assert from "node:assert/strict";
import { connect, JobError, startNode } from "../mod.ts";

const FIXTURE = new URL("./fixtures/context_services.ts", import.meta.url);

/** Polls the balancer's stats until `pred` holds. */
async function statsUntil(
  client: Awaited<ReturnType<typeof connect>>,
  pred: (s: { providers: unknown[] }) => boolean,
): Promise<void> {
  const end = Date.now() + 10_000;
  while (!pred(await client.stats() as { providers: unknown[] })) {
    if (Date.now() > end) throw new Error("The balancer's stats never matched");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function errorOf(p: Promise<unknown>): Promise<JobError> {
  const e = await p.then(() => null, (err) => err);
  assert.ok(e instanceof JobError, `expected a JobError, got ${e}`);
  return e;
}

for (
  const [mode, handlers] of [
    ["functions", { functions: { look: (req: { text(): string }) => req.text() } }],
    ["a module", { module: FIXTURE, threads: 1 }],
  ] as const
) {
  Deno.test(`unknown service (all-in-one, ${mode}): no_service at once in the start-up grace, over EP and HTTP`, async () => {
    const node = await startNode({
      listen: { port: 0 },
      handlers,
      tuning: { serviceGraceMs: 60_000 }, // the whole test runs in the start-up grace
    });
    const addr = `127.0.0.1:${node.addr!.port}`;
    const client = await connect(addr);
    try {
      // Before: it waited for a worker and answered timeout after 500 ms.
      const e = await errorOf(client.request("nosuch", "x", { timeoutMs: 500 }));
      assert.equal(e.kind, "no_service");
      assert.equal(e.message, 'No service "nosuch"');
      const res = await fetch(`http://${addr}/api/usersX`, { method: "POST", body: "x" });
      assert.equal(res.status, 503);
      assert.equal(await res.text(), 'No service "api"\n');
      assert.match(res.headers.get("x-request-id") ?? "", /^[0-9a-f]{16}$/);
      const ok = await client.request("look", "hi", { timeoutMs: 5000 });
      assert.equal(ok.status, 200);
    } finally {
      client.close();
      await node.close();
    }
  });
}

Deno.test("unknown service: a service its worker served waits for the worker to come back", async () => {
  const balancer = await startNode({ listen: { port: 0 }, tuning: { serviceGraceMs: 10_000 } });
  const addr = `127.0.0.1:${balancer.addr!.port}`;
  const worker = () =>
    startNode({ connect: [addr], handlers: { functions: { echo: (req) => req.text() } } });
  const client = await connect(addr);
  try {
    // Before any worker connected nothing is known to be coming: no_service at once.
    const first = await errorOf(client.request("echo", "x", { timeoutMs: 5000 }));
    assert.equal(first.kind, "no_service");
    let w = await worker();
    await statsUntil(client, (s) => s.providers.length === 1);
    assert.equal((await client.request("echo", "one", { timeoutMs: 5000 })).status, 200);
    await w.close();
    await statsUntil(client, (s) => s.providers.length === 0);
    // Its worker left: the next job waits for it (a restart), up to the service grace.
    const waiting = client.request("echo", "two", { timeoutMs: 8000 });
    await new Promise((r) => setTimeout(r, 200));
    w = await worker();
    const reply = await waiting;
    assert.equal(new TextDecoder().decode(reply.body), "two");
    await w.close();
  } finally {
    client.close();
    await balancer.close();
  }
});
