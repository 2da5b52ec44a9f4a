import assert from "node:assert/strict";
import { parseMix } from "./mix.ts";
import { poissonSchedule } from "./schedule.ts";
import { runLoad } from "./run_load.ts";
import { JobError, type JobHandler } from "../../core/job.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { serve } from "../../core/net/server.ts";

/** A server whose `sleep` takes ?ms= or the body, reports `x-slept-us`, and `fail` fails. */
function testServer() {
  const handler: JobHandler = (job) => {
    if (job.service === "fail") throw new JobError(ErrorCode.OVERLOADED, "Queue is full");
    const q = new URLSearchParams(job.query);
    const ms = Number(q.get("ms") ?? new TextDecoder().decode(job.body)) || 0;
    const t0 = performance.now();
    const done = () => ({
      headers: [["x-slept-us", String(Math.round((performance.now() - t0) * 1000))]] as [
        string,
        string,
      ][],
      body: "ok",
    });
    return ms > 0 ? new Promise((r) => setTimeout(() => r(done()), ms)) : done();
  };
  return serve({ port: 0, handler });
}

for (const protocol of ["ep", "http"] as const) {
  Deno.test(`open loop over ${protocol} sends the schedule and measures every answer`, async () => {
    const server = testServer();
    try {
      const addr = `127.0.0.1:${server.addr.port}`;
      const r = await runLoad({
        target: { protocol, addr, service: "sleep" },
        rate: 400,
        durationMs: 1000,
        seed: 5,
        mix: parseMix("0@0.5,2@0.5"),
        connections: protocol === "http" ? 4 : 1,
      });
      const expected = poissonSchedule({
        rate: 400,
        durationMs: 1000,
        seed: 5,
        mix: parseMix("0@0.5,2@0.5"),
      }).at.length;
      assert.equal(r.sent, expected);
      assert.equal(r.ok, expected);
      assert.deepEqual(r.errors, {});
      assert.equal(r.latency.count, expected);
      assert.equal(r.sendLag.count, expected);
      assert.equal(r.jobOvershoot.count, expected); // x-slept-us came back on every reply
      assert.ok(r.sentRate > 400 * 0.7 && r.sentRate < 400 * 1.3, `rate ${r.sentRate}`);
      assert.ok(r.latency.min > 0);
      assert.ok(r.generator.connections >= 1);
    } finally {
      await server.close();
    }
  });

  Deno.test(`closed loop over ${protocol} keeps N in flight and counts errors by kind`, async () => {
    const server = testServer();
    try {
      const addr = `127.0.0.1:${server.addr.port}`;
      const r = await runLoad({
        target: { protocol, addr, service: "sleep" },
        mode: "closed",
        connections: 3,
        durationMs: 300,
      });
      assert.ok(r.ok > 10);
      assert.equal(r.sent, r.ok);
      assert.ok(r.generator.peakInFlight <= 3);
      const f = await runLoad({
        target: { protocol, addr, service: "fail" },
        mode: "closed",
        connections: 2,
        durationMs: 100,
      });
      assert.equal(f.ok, 0);
      const kind = protocol === "ep" ? "overloaded" : "http_503";
      assert.equal(f.errors[kind], f.sent);
    } finally {
      await server.close();
    }
  });
}

Deno.test("a refused connection fails the run's start", async () => {
  const server = serve({ port: 0, handler: () => ({}) });
  const port = server.addr.port;
  await server.close();
  await assert.rejects(
    runLoad({
      target: { protocol: "http", addr: `127.0.0.1:${port}`, service: "x" },
      durationMs: 100,
    }),
  );
});
