import assert from "node:assert/strict";
import { Balancer } from "../core/balancer/balancer.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { Monitor } from "../core/observe/monitor.ts";
import { serve } from "../core/net/server.ts";
import { renderStatus, statusMain } from "./status.ts";

/** Runs `fn` with console.log/error captured. */
async function captured(
  fn: () => Promise<number>,
): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  console.error = (...a: unknown[]) => void err.push(a.join(" "));
  try {
    const code = await fn();
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const SNAPSHOT = {
  version: "0.1.0",
  uptimeMs: 3_723_000,
  ready: true,
  totals: {
    jobs: 12345,
    ok: 12000,
    failed: 345,
    rate: 41.5,
    queued: 3,
    busy: 4,
    slots: 6,
    redelivered: 1,
  },
  services: [
    {
      name: "echo",
      queued: 3,
      providers: 2,
      slots: 6,
      busy: 4,
      rate: 41.5,
      outcomes: { ok: 12000, error: 300, timeout: 45, overloaded: 0 },
      queueWaitMs: { p50: 0.25, p99: 12.5, count: 100 },
      serviceMs: { p50: 1.5, p99: 1500, count: 100 },
    },
  ],
  providers: [
    {
      name: "worker 10.0.0.5:40412 (billing-1)",
      kind: "remote",
      address: "10.0.0.5:40412",
      label: "billing-1",
      services: ["echo", "sleep"],
      slots: 4,
      busy: 3,
      state: "draining",
      lastSeenMsAgo: 400,
    },
    {
      name: "local pool",
      kind: "local",
      address: "local",
      services: ["echo"],
      slots: 2,
      busy: 1,
      state: "ready",
    },
  ],
};

Deno.test("status: renders the summary, services and workers as aligned tables", () => {
  const text = renderStatus(SNAPSHOT, "127.0.0.1:7070");
  const lines = text.split("\n");
  assert.equal(
    lines[0],
    "ep 0.1.0 at 127.0.0.1:7070 · up 1h 02m · ready · 2 workers · 41.5 jobs/s · 3 queued · 4/6 slots busy",
  );
  assert.equal(lines[1], "jobs 12,345 (12,000 ok, 345 failed) · 1 redelivered");
  const header = lines.findIndex((l) => l.startsWith("SERVICE"));
  assert.match(
    lines[header],
    /^SERVICE\s+QUEUE\s+WAIT P50\s+WAIT P99\s+RUN P50\s+RUN P99\s+JOBS\/S/,
  );
  const echo = lines[header + 1];
  assert.match(
    echo,
    /^echo\s+3\s+250 µs\s+13 ms\s+1\.50 ms\s+1\.50 s\s+41\.5\s+4\/6\s+2\s+12,000\s+345$/,
  );
  // Numbers are right-aligned under their header.
  assert.equal(lines[header].indexOf("QUEUE") + "QUEUE".length, echo.indexOf("3") + 1);
  const workers = lines.findIndex((l) => l.startsWith("WORKER"));
  assert.match(
    lines[workers + 1],
    /^billing-1\s+10\.0\.0\.5:40412\s+echo,sleep\s+3\/4\s+0\.4s ago\s+draining$/,
  );
  assert.match(lines[workers + 2], /^local pool\s+local\s+echo\s+1\/2\s+in process\s+ready$/);
});

Deno.test("status: renders a bare Balancer.stats() answer, missing fields as -", () => {
  const text = renderStatus({
    uptimeMs: 500,
    services: [{
      name: "echo",
      queued: 0,
      providers: 1,
      slots: 2,
      busy: 0,
      counters: { ok: 5, error: 1, redelivered: 2 },
    }],
    providers: [],
  }, "h:1");
  assert.match(text, /^ep at h:1 · up 0\.5s · 0 workers$/m);
  assert.match(
    text,
    /^echo\s+0\s+-\s+-\s+-\s+-\s+-\s+0\/2\s+1\s+5\s+1$/m,
    "redelivered is not a failure",
  );
  assert.match(text, /^\(no workers\)$/m);
});

Deno.test("status: ep status reads a live balancer over EP; --json; errors and usage", async () => {
  const monitor = new Monitor({ version: "0.1.0" });
  const balancer = new Balancer({ observer: monitor, internal: monitor.internal });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: {
      workers: workerHost(monitor.watchWorkers(balancer)),
      stats: () => monitor.snapshot(),
      clientToken: "ct",
    },
  });
  monitor.attach({ balancer, server });
  const addr = `127.0.0.1:${server.addr.port}`;
  try {
    const table = await captured(() => statusMain(["--addr", addr, "--token", "ct"]));
    assert.equal(table.code, 0, table.err);
    assert.match(
      table.out,
      new RegExp(`^ep 0\\.1\\.0 at ${addr} · up \\d+(\\.\\d)?s · ready · 0 workers`),
    );
    assert.match(table.out, /^\(no services\)$/m);

    const json = await captured(() => statusMain(["--addr", addr, "--token", "ct", "--json"]));
    assert.equal(json.code, 0);
    const parsed = JSON.parse(json.out);
    assert.equal(parsed.version, "0.1.0");
    assert.deepEqual(parsed.services, []);
    assert.ok(Array.isArray(parsed.series.rate));

    // --status-token, as the balancer's own flag is named, is the same token.
    const named = await captured(() => statusMain(["--addr", addr, "--status-token", "ct"]));
    assert.equal(named.code, 0, named.err);

    const noToken = await captured(() => statusMain(["--addr", addr, "--timeout", "2000"]));
    assert.equal(noToken.code, 1);
    assert.match(noToken.err, /^ep status: cannot read stats from /);
  } finally {
    monitor.close();
    balancer.close();
    await server.close();
  }
  // Nobody listening.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const refused = await captured(() => statusMain(["--addr", `127.0.0.1:${port}`]));
  assert.equal(refused.code, 1);
  const usage = await captured(() => statusMain(["--bogus"]));
  assert.equal(usage.code, 2);
  assert.equal(usage.err, 'ep status: Unknown option "--bogus" (see ep status --help)');
  const help = await captured(() => statusMain(["--help"]));
  assert.equal(help.code, 0);
  assert.match(help.out, /--addr <host:port>/);
});
