import assert from "node:assert/strict";
import {
  createRng,
  Histogram,
  mixMean,
  mixSampler,
  parseMix,
  percentiles,
  poissonSchedule,
  runLoad,
  simulateCentralQueue,
} from "./loadgen.ts";
import { JobError, type JobHandler } from "../../core/job.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { serve } from "../../core/net/server.ts";

const enc = new TextEncoder();

Deno.test("histogram percentiles are exact below 256 µs and within 0.8 % above", () => {
  const h = new Histogram();
  for (let v = 1; v <= 100; v++) h.record(v);
  assert.equal(h.percentile(50), 50);
  assert.equal(h.percentile(99), 99);
  assert.equal(h.percentile(100), 100);
  assert.equal(h.percentile(0), 1);
  assert.equal(h.percentile(0.5), 1); // nearest rank: ceil(0.005 · 100) = 1

  const big = new Histogram();
  const values: number[] = [];
  const rng = createRng(3);
  for (let i = 0; i < 20_000; i++) {
    const v = Math.round(100 + rng() * 5_000_000);
    values.push(v);
    big.record(v);
  }
  values.sort((a, b) => a - b);
  for (const p of [50, 90, 99, 99.9]) {
    const exact = values[Math.ceil((p / 100) * values.length) - 1];
    const got = big.percentile(p);
    assert.ok(got >= exact, `p${p}: ${got} below the exact ${exact}`);
    assert.ok((got - exact) / exact < 0.008, `p${p}: ${got} vs ${exact}`);
  }
  assert.equal(big.max, values[values.length - 1]);
  assert.equal(big.min, values[0]);
  assert.equal(big.count, 20_000);
});

Deno.test("histogram percentile of a single value and of an empty histogram", () => {
  const h = new Histogram();
  assert.equal(h.percentile(99), 0);
  assert.deepEqual(percentiles(h).max, 0);
  h.record(123_456);
  assert.equal(h.percentile(1), 123_456); // clamped to the exact min and max
  assert.equal(h.percentile(99.9), 123_456);
  h.record(-5); // negative counts as 0
  assert.equal(h.min, 0);
});

Deno.test("histograms merge by adding counts and survive JSON", () => {
  const a = new Histogram();
  const b = new Histogram();
  const all = new Histogram();
  for (let i = 0; i < 1000; i++) {
    a.record(i * 37);
    b.record(i * 91 + 5);
    all.record(i * 37);
    all.record(i * 91 + 5);
  }
  a.merge(b);
  for (const p of [10, 50, 90, 99, 99.9]) assert.equal(a.percentile(p), all.percentile(p));
  assert.equal(a.count, 2000);
  assert.equal(a.max, all.max);
  const back = Histogram.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  for (const p of [10, 50, 90, 99, 99.9]) assert.equal(back.percentile(p), a.percentile(p));
  assert.equal(back.count, a.count);
  assert.equal(back.min, a.min);
  assert.equal(back.max, a.max);
  assert.ok(Math.abs(back.mean - a.mean) < 1e-9);
});

Deno.test("parseMix reads ms@probability lists and rejects bad ones", () => {
  assert.deepEqual(parseMix("1@0.9,20@0.1"), [{ ms: 1, p: 0.9 }, { ms: 20, p: 0.1 }]);
  assert.deepEqual(parseMix("2"), [{ ms: 2, p: 1 }]);
  assert.deepEqual(parseMix(" 0.5@.5, 1.5@.5 "), [{ ms: 0.5, p: 0.5 }, { ms: 1.5, p: 0.5 }]);
  assert.ok(Math.abs(mixMean(parseMix("1@0.9,20@0.1")) - 2.9) < 1e-12);
  for (const bad of ["", "1@0.5", "1@0.9,20@0.2", "x@1", "1@", "1@2", "1,2", "-1@1"]) {
    assert.throws(() => parseMix(bad), RangeError, bad);
  }
});

Deno.test("schedules are reproducible from their seed and follow rate and mix", () => {
  const mix = parseMix("1@0.9,20@0.1");
  const a = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 11, mix });
  const b = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 11, mix });
  const c = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 12, mix });
  assert.deepEqual(a.at, b.at);
  assert.deepEqual(a.jobMs, b.jobMs);
  assert.notDeepEqual(a.at, c.at);
  const n = a.at.length;
  assert.ok(n > 9_500 && n < 10_500, `${n} arrivals for 10 000 expected`);
  for (let i = 1; i < n; i++) assert.ok(a.at[i] >= a.at[i - 1]);
  const slow = a.jobMs!.filter((ms) => ms === 20).length / n;
  assert.ok(slow > 0.085 && slow < 0.115, `share of 20 ms jobs ${slow}`);
  // The closed loop draws job times from the same stream.
  const draw = mixSampler(mix, 11);
  for (let i = 0; i < 100; i++) assert.equal(draw(), a.jobMs![i]);
  // Gaps are exponential: their coefficient of variation is about 1.
  const gaps = Array.from({ length: n - 1 }, (_, i) => a.at[i + 1] - a.at[i]);
  const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
  const sd = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length);
  assert.ok(Math.abs(sd / mean - 1) < 0.05, `cv ${sd / mean}`);
});

Deno.test("the ideal central queue simulation on a known tiny case", () => {
  // Two servers, one FIFO queue. Arrivals 0, 0, 0, 1, 10 with jobs 4, 2, 2, 1, 1 ms:
  // job 0 on s0 [0,4]; job 1 on s1 [0,2]; job 2 waits for s1 [2,4]; job 3 waits for the
  // first free server (s0 and s1 both free at 4) [4,5]; job 4 finds both free [10,11].
  const h = simulateCentralQueue({
    at: Float64Array.from([0, 0, 0, 1, 10]),
    jobMs: Float64Array.from([4, 2, 2, 1, 1]),
  }, 2);
  const values = (x: Histogram) => [...x.buckets()].flatMap(([v, n]) => Array(n).fill(v));
  const near = (got: number[], want: number[]) => {
    assert.equal(got.length, want.length);
    // Buckets report their upper edge: within 0.8 % above the value.
    got.forEach((g, i) => assert.ok(g >= want[i] && g <= want[i] * 1.008, `${got} vs ${want}`));
  };
  near(values(h), [1000, 2000, 4000, 4000, 4000]);
  assert.equal(h.min, 1000);
  assert.equal(h.max, 4000);
  // One server is a plain FIFO: jobs end at 4, 6, 8, 9, 11: responses 4, 6, 8, 8, 1.
  const one = simulateCentralQueue({
    at: Float64Array.from([0, 0, 0, 1, 10]),
    jobMs: Float64Array.from([4, 2, 2, 1, 1]),
  }, 1);
  assert.equal(one.max, 8000);
  near(values(one), [1000, 4000, 6000, 8000, 8000]);
  assert.throws(() => simulateCentralQueue({ at: new Float64Array(1), jobMs: null }, 2));
});

/**
 * A raw HTTP server answering every request on a connection with `answer(path)`, closing
 * after it when it says so.
 */
function rawServer(answer: (path: string) => { bytes: string; close?: boolean }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            let end;
            while ((end = text.indexOf("\r\n\r\n")) >= 0) {
              const path = text.slice(text.indexOf(" ") + 1, text.indexOf(" HTTP/"));
              text = text.slice(end + 4);
              const a = answer(path);
              await conn.write(enc.encode(a.bytes));
              if (a.close) throw new Error("closing");
            }
          }
        } catch {
          // closed
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    addr: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("the HTTP load generator reads chunked, close-delimited and error responses, and refuses garbage", async () => {
  const server = rawServer((path) => {
    if (path === "/chunked") {
      return {
        bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Slept-Us: 2004\r\n\r\n" +
          "3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
      };
    }
    if (path === "/close") return { bytes: "HTTP/1.1 200 OK\r\n\r\nbody until close", close: true };
    if (path === "/busy") {
      return {
        bytes: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n" +
          "Connection: close\r\n\r\nbusy\n",
        close: true,
      };
    }
    if (path === "/twice") { // one request, two responses: the second was never asked for
      const one = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      return { bytes: one + one };
    }
    return { bytes: "SSH-2.0-OpenSSH_9.2\r\n\r\n" };
  });
  try {
    const run = (path: string) =>
      runLoad({
        target: { protocol: "http", addr: server.addr, service: "x", path },
        mode: "closed",
        connections: 2,
        durationMs: 150,
      });
    const chunked = await run("/chunked");
    assert.ok(chunked.ok > 0 && chunked.ok === chunked.sent, JSON.stringify(chunked.errors));
    const close = await run("/close");
    assert.ok(close.ok > 0 && close.ok === close.sent, JSON.stringify(close.errors));
    const busy = await run("/busy");
    assert.ok(busy.sent > 0);
    assert.equal(busy.errors["http_503"], busy.sent);
    const twice = await run("/twice");
    assert.ok(twice.ok > 0 && (twice.errors["bad_response"] ?? 0) === 0);
    assert.equal(
      twice.ok,
      twice.sent,
      "each request answered once; the extra bytes drop the connection",
    );
    const garbage = await run("/garbage");
    assert.ok(garbage.sent > 0);
    assert.equal(garbage.errors["bad_response"], garbage.sent);
  } finally {
    server.close();
  }
});

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
