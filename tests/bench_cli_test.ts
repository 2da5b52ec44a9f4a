import assert from "node:assert/strict";
import { benchMain } from "../cli/bench.ts";
import type { JobHandler } from "../core/job.ts";
import { poissonSchedule } from "../cli/loadgen/mod.ts";
import { serve } from "../core/net/server.ts";

/** `sleep` (?ms= or the body) that reports x-slept-us, like the demo service. */
const handler: JobHandler = (job) => {
  const ms =
    Number(new URLSearchParams(job.query).get("ms") ?? new TextDecoder().decode(job.body)) ||
    0;
  const t0 = performance.now();
  const reply = () => ({
    headers: [["x-slept-us", String(Math.round((performance.now() - t0) * 1000))]] as [
      string,
      string,
    ][],
    body: "ok",
  });
  return ms > 0 ? new Promise((r) => setTimeout(() => r(reply()), ms)) : reply();
};

async function bench(args: string[]) {
  const server = serve({ port: 0, handler });
  const out: string[] = [];
  const err: string[] = [];
  try {
    const code = await benchMain([...args, "--addr", `127.0.0.1:${server.addr.port}`], {
      out: (t) => void out.push(t),
      err: (l) => void err.push(l),
      tty: false,
    });
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    await server.close();
  }
}

interface BenchJson {
  sent: number;
  ok: number;
  sentRate: number;
  errors: Record<string, number>;
  latencyUs: { p50: number; p99: number; p999: number; max: number; count: number };
  sendLagUs: { count: number };
  jobOvershootUs: { count: number };
  generator: { cpuPercent: number; stalls: number };
  ideal?: { servers: number; latency: { count: number } };
}

for (const http of [false, true]) {
  Deno.test(`ep bench --json over ${http ? "HTTP" : "EP"} counts every request at the asked rate`, async () => {
    const args = [
      "sleep",
      "--rate",
      "300",
      "--duration",
      "1.5",
      "--mix",
      "0@0.5,1@0.5",
      "--seed",
      "9",
    ];
    const r = await bench([...args, "--json", ...(http ? ["--http"] : [])]);
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as BenchJson;
    const expected = poissonSchedule({ rate: 300, durationMs: 1500, seed: 9 }).at.length;
    assert.equal(j.sent, expected); // the seed fixes the arrival sequence
    assert.equal(j.ok, expected);
    assert.deepEqual(j.errors, {});
    assert.ok(j.sentRate > 300 * 0.7 && j.sentRate < 300 * 1.3, `rate ${j.sentRate}`);
    assert.equal(j.latencyUs.count, expected);
    assert.ok(j.latencyUs.p50 <= j.latencyUs.p99 && j.latencyUs.p99 <= j.latencyUs.max);
    assert.equal(j.sendLagUs.count, expected);
    assert.equal(j.jobOvershootUs.count, expected);
    assert.ok(j.generator.cpuPercent >= 0);
    // Progress lines go to stderr (one per second).
    assert.match(r.err, /sent \d+ .*p99 so far/);
  });
}

Deno.test("ep bench prints a text summary and, with --ideal, the simulated floor", async () => {
  const r = await bench([
    "sleep",
    "--rate",
    "200",
    "--duration",
    "0.5",
    "--mix",
    "1",
    "--ideal",
    "4",
    "--quiet",
  ]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /latency +p50 .* p99 .* p99\.9 .* max/);
  assert.match(r.out, /ideal +p50/);
  assert.match(r.out, /generator cpu .*send lag/);
  assert.equal(r.err, "");
});

Deno.test("ep bench --closed keeps N in flight", async () => {
  const r = await bench(["sleep", "--closed", "4", "--duration", "0.3", "--json", "--quiet"]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as BenchJson & { mode: string; concurrency: number };
  assert.equal(j.mode, "closed");
  assert.equal(j.concurrency, 4);
  assert.ok(j.ok > 20);
});

Deno.test("ep bench --html writes a self-contained report with an SVG plot", async () => {
  const file = await Deno.makeTempFile({ suffix: ".html" });
  try {
    const r = await bench([
      "sleep",
      "--rate",
      "200",
      "--duration",
      "0.5",
      "--mix",
      "1@0.9,5@0.1",
      "--ideal",
      "2",
      "--html",
      file,
      "--quiet",
    ]);
    assert.equal(r.code, 0, r.err);
    const html = await Deno.readTextFile(file);
    assert.ok(html.includes("<svg") && html.includes("<polyline"));
    assert.ok(!/https?:\/\//.test(html), "no external URL");
    assert.ok(!/<script|<link|src=/.test(html));
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("ep bench rejects a bad mix and other bad usage with exit 2", async () => {
  for (
    const args of [
      ["--mix", "1@0.5,2@0.6"],
      ["--mix", "fast"],
      ["--rate", "-1"],
      ["--rate", "10", "--closed", "2"],
      ["--ideal", "4"],
      ["--header", "bad"],
      ["--frobnicate"],
    ]
  ) {
    const err: string[] = [];
    assert.equal(
      await benchMain(args, { err: (l) => void err.push(l), out: () => {} }),
      2,
      `${args}`,
    );
    assert.ok(err.length > 0);
  }
});

Deno.test("ep bench exits 1 when the server cannot be reached", async () => {
  const server = serve({ port: 0, handler });
  const port = server.addr.port;
  await server.close();
  const err: string[] = [];
  const code = await benchMain(["--addr", `127.0.0.1:${port}`, "--duration", "0.2", "--quiet"], {
    err: (l) => void err.push(l),
    out: () => {},
  });
  assert.equal(code, 1);
});
