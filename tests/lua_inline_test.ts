/**
 * A one-slot Lua worker (`ep.threads(1)`, one slot) started with `EP_INLINE=1` runs its
 * handlers on its main thread (`lua/inline.ts`), with real processes: a balancer and the
 * worker script. What a handler thread gave must still hold there: a runaway handler is
 * interrupted at its deadline, a long computation does not silence the worker's heartbeats,
 * a cancelled job frees the slot at once, sleeps never end early, `ep.call` works.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { balancer, Proc, waitStats } from "./_cluster.ts";

const dec = new TextDecoder();

const SCRIPT = `ep.connect(ep.env("EP_CONNECT"))
ep.threads(1)
ep.config { concurrency = 1 } -- one slot for all its services
ep.service("spin", function() while true do end end, { timeout_ms = 300 })
ep.service("compute", function(req)
  local t0, n = ep.now(), 0
  while ep.now() - t0 < tonumber(req.body) do n = n + 1 end
  return "computed"
end, { timeout_ms = 20000 })
ep.service("sleep", function(req)
  local t0 = ep.now()
  ep.sleep(tonumber(req.body))
  return string.format("%.3f", ep.now() - t0)
end, { timeout_ms = 20000 })
ep.service("ok", function(req) return "ok " .. req.body end)
ep.service("relay", function(req)
  local body, status = ep.call("echo2", req.body)
  return tostring(status) .. " " .. tostring(body)
end)
`;

/** A second worker (on a handler thread, the default) that serves `echo2` for `relay`. */
const ECHO2 = `ep.connect(ep.env("EP_CONNECT"))
ep.threads(1)
ep.service("echo2", function(req) return "echo2 " .. req.body end)
`;

async function cluster(): Promise<{
  addr: string;
  worker: Proc;
  echo2: Proc;
  stop: () => Promise<void>;
}> {
  const dir = await Deno.makeTempDir({ prefix: "ep-inline-" });
  await Deno.writeTextFile(`${dir}/worker.lua`, SCRIPT);
  await Deno.writeTextFile(`${dir}/echo2.lua`, ECHO2);
  const b = await balancer();
  const worker = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr, EP_INLINE: "1" });
  const echo2 = new Proc(["run", `${dir}/echo2.lua`], { EP_CONNECT: b.addr });
  await waitStats(b.addr, (s) => s.providers.length === 2, 20_000);
  return {
    addr: b.addr,
    worker,
    echo2,
    stop: async () => {
      await Promise.all([b.proc.stop(), worker.stop(), echo2.stop()]);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("inline Lua worker: with EP_INLINE=1 a one-slot worker runs Lua on its main thread (not without); sleeps never end early; ep.call works", async () => {
  const c = await cluster();
  const client = await connect(c.addr);
  try {
    await c.worker.waitFor(/\(Lua on the main thread\)/);
    // Without EP_INLINE=1 a one-slot worker keeps its Lua on a handler thread.
    await c.echo2.waitFor(/ep worker pulling from/);
    assert.doesNotMatch(c.echo2.output, /main thread/);
    for (const ms of [0.5, 2, 5, 30]) {
      const r = await client.request("sleep", String(ms));
      const slept = Number(dec.decode(r.body));
      assert.ok(slept >= ms, `ep.sleep(${ms}) returned after ${slept} ms`);
    }
    const relayed = await client.request("relay", "hi");
    assert.equal(dec.decode(relayed.body), "200 echo2 hi");
    const ok = await client.request("ok", "1");
    assert.equal(dec.decode(ok.body), "ok 1");
  } finally {
    client.close();
    await c.stop();
  }
});

Deno.test("inline Lua worker: a runaway handler is interrupted at its deadline and answered timeout; the worker serves on", async () => {
  const c = await cluster();
  const client = await connect(c.addr);
  try {
    await assert.rejects(
      client.request("spin", ""),
      (err: unknown) => err instanceof JobError && err.kind === "timeout",
    );
    // Its one slot is free again, and it still is the balancer's worker.
    const r = await client.request("ok", "after");
    assert.equal(dec.decode(r.body), "ok after");
    const stats = await waitStats(c.addr, () => true);
    assert.equal(stats.providers.length, 2);
  } finally {
    client.close();
    await c.stop();
  }
});

Deno.test("inline Lua worker: a handler computing for 4 s (past 3 heartbeats) keeps its worker registered and is answered", async () => {
  const c = await cluster();
  const client = await connect(c.addr);
  try {
    const job = client.request("compute", "4000", { timeoutMs: 20_000 });
    // The event loop turns between the handler's slices: the worker's heartbeats and the
    // balancer's stats keep coming while Lua computes.
    let seen = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 3_500) {
      const s = await waitStats(c.addr, () => true);
      assert.equal(s.providers.length, 2, "the computing worker is still registered");
      seen++;
      await new Promise((r) => setTimeout(r, 250));
    }
    const r = await job;
    assert.equal(dec.decode(r.body), "computed");
    assert.ok(seen >= 5);
    // It read the balancer's heartbeats meanwhile too (else it reconnects after 3 s).
    assert.doesNotMatch(c.worker.output, /silent/);
    const stats = await waitStats(c.addr, () => true);
    const redelivered = stats.services.find((s) => s.name === "compute")?.counters.redelivered;
    assert.equal(redelivered ?? 0, 0, "the job was never taken from the worker");
  } finally {
    client.close();
    await c.stop();
  }
});

Deno.test("inline Lua worker: a sleeping job whose client went away frees the slot at once", async () => {
  const c = await cluster();
  const gone = await connect(c.addr);
  const client = await connect(c.addr);
  try {
    const abandoned = gone.request("sleep", "15000", { timeoutMs: 20_000 }).catch((e) => e);
    await waitStats(c.addr, (s) => s.providers.some((p) => p.busy === 1));
    gone.close();
    await abandoned;
    // With the slot held until the sleep ended, this would wait 15 s.
    const t0 = Date.now();
    const r = await client.request("ok", "next", { timeoutMs: 10_000 });
    assert.equal(dec.decode(r.body), "ok next");
    assert.ok(Date.now() - t0 < 10_000);
  } finally {
    client.close();
    await c.stop();
  }
});
