/**
 * `/_ep/metrics` end to end: a balancer wired with a `Monitor` as `startNode` wires it (the
 * local handler pool and a module worker over EP), real sockets, scripted load; every
 * scrape must pass the strict exposition parser, and the values must move as the load
 * says. Also pins the parser's own strictness.
 */
import assert from "node:assert/strict";
import { Balancer, type BalancerOptions } from "../core/balancer/balancer.ts";
import { type Client, connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { LocalPoolProvider } from "../core/balancer/local_provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { Monitor } from "../core/observe/monitor.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "../core/threads/pool.ts";
import { serve, type Server } from "../core/net/server.ts";
import { WorkerNode } from "../core/node/worker.ts";
import {
  conventionViolations,
  ExpositionError,
  type Family,
  parseExposition,
  valueOf,
} from "./_prometheus_parser.ts";

const SERVICES = new URL("./fixtures/services.ts", import.meta.url).href;

interface Rig {
  monitor: Monitor;
  balancer: Balancer;
  server: Server;
  addr: string;
  nodes: WorkerNode[];
  lua: { errors: number; interrupts: number };
  close(): Promise<void>;
}

async function pool(threads: number, slots: number): Promise<HandlerPool> {
  return await HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: SERVICES },
    threads,
    perThreadConcurrency: slots,
  });
}

/** The wiring proposed for `startNode`, with a local pool and/or remote workers. */
async function rig(
  opts: { localThreads: number; remote: number; balancer?: BalancerOptions },
): Promise<Rig> {
  const monitor = new Monitor({ version: "test" });
  const balancer = new Balancer({
    serviceGraceMs: 0,
    ...opts.balancer,
    observer: monitor,
    internal: monitor.internal,
  });
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(monitor.watchWorkers(balancer)), stats: () => monitor.snapshot() },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  const pools: HandlerPool[] = [];
  let local: HandlerPool | null = null;
  if (opts.localThreads > 0) {
    local = await pool(opts.localThreads, 1);
    pools.push(local);
    balancer.addProvider(new LocalPoolProvider(local, balancer));
  }
  const nodes: WorkerNode[] = [];
  for (let i = 0; i < opts.remote; i++) {
    const p = await pool(1, 1);
    pools.push(p);
    nodes.push(WorkerNode.start({ balancers: [addr], pool: p, name: `w${i}` }));
  }
  const lua = { errors: 0, interrupts: 0 };
  monitor.attach({ balancer, server, pool: local, lua: () => lua });
  await until(() => balancer.stats().providers.length === opts.remote + (local ? 1 : 0));
  return {
    monitor,
    balancer,
    server,
    addr,
    nodes,
    lua,
    async close() {
      for (const n of nodes) n.close();
      monitor.close();
      balancer.close();
      await server.close();
      for (const p of pools) await p.close({ drain: false });
    },
  };
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function scrape(addr: string): Promise<Map<string, Family>> {
  const res = await fetch(`http://${addr}/_ep/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  const families = parseExposition(await res.text());
  assert.deepEqual(conventionViolations(families, "ep_"), []);
  return families;
}

function sum(families: Map<string, Family>, name: string, labels: Record<string, string> = {}) {
  let total = 0;
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) {
        total += s.value;
      }
    }
  }
  return total;
}

async function rawConnection(addr: string, bytes: Uint8Array): Promise<void> {
  const [hostname, port] = addr.split(":");
  const conn = await Deno.connect({ hostname, port: Number(port) });
  await conn.write(bytes);
  const buf = new Uint8Array(256);
  try {
    while ((await conn.read(buf)) !== null) { /* until the server closes */ }
  } catch {
    // reset by the server
  }
  conn.close();
}

const EXPECTED_FAMILIES = [
  "ep_build_info",
  "ep_up",
  "ep_uptime_seconds",
  "ep_requests_total",
  "ep_worker_requests_total",
  "ep_queue_wait_seconds",
  "ep_service_time_seconds",
  "ep_queue_depth",
  "ep_service_workers",
  "ep_service_slots",
  "ep_redeliveries_total",
  "ep_workers",
  "ep_worker_slots",
  "ep_connections_total",
  "ep_connections_open",
  "ep_sniff_rejections_total",
  "ep_received_bytes_total",
  "ep_sent_bytes_total",
  "ep_http_requests_total",
  "ep_http_rejected_total",
  "ep_handler_threads",
  "ep_handler_thread_scale_total",
  "ep_handler_slots",
  "ep_handler_jobs_total",
  "ep_handler_ring_used_bytes",
  "ep_handler_ring_capacity_bytes",
  "ep_handler_ring_full_total",
  "ep_handler_ring_wakeups_total",
  "ep_handler_thread_sleeps_total",
  "ep_lua_errors_total",
  "ep_lua_interrupts_total",
];

Deno.test("metrics: a strict scrape whose values follow a scripted load", async () => {
  const r = await rig({ localThreads: 2, remote: 1, balancer: { maxQueue: 6 } });
  let client: Client | null = null;
  try {
    const a = await scrape(r.addr);
    for (const name of EXPECTED_FAMILIES) assert.ok(a.has(name), `family ${name}`);
    assert.equal(a.get("ep_requests_total")!.type, "counter");
    assert.equal(a.get("ep_queue_wait_seconds")!.type, "histogram");
    assert.equal(valueOf(a, "ep_up"), 1);
    assert.equal(valueOf(a, "ep_service_workers", { service: "echo" }), 2);
    assert.equal(valueOf(a, "ep_service_slots", { service: "echo", state: "idle" }), 3);
    assert.equal(valueOf(a, "ep_workers", { state: "ready" }), 2);
    assert.equal(valueOf(a, "ep_handler_threads", { state: "ready" }), 2);
    assert.equal(valueOf(a, "ep_requests_total", { service: "echo", outcome: "ok" }), 0);

    // The load: 40 echo over EP (5 at a time, within the queue bound) and 10 over HTTP,
    // 5 handler errors, 3 unknown services, a burst past the queue bound, 2 deadlines.
    client = await connect(r.addr);
    const c = client;
    for (let batch = 0; batch < 8; batch++) {
      await Promise.all(Array.from({ length: 5 }, (_, i) => c.request("echo", `ep ${batch}.${i}`)));
    }
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`http://${r.addr}/echo`, { method: "POST", body: `http ${i}` });
      assert.equal(await res.text(), `http ${i}`);
    }
    for (let i = 0; i < 5; i++) await assert.rejects(c.request("fail"), JobError);
    for (let i = 0; i < 3; i++) await assert.rejects(c.request("nope"), JobError);
    // Saturate: 3 slots, a queue of 6; scrape while the queue is full, then some are refused.
    const burst = Array.from(
      { length: 20 },
      () => c.request("sleep", "150").then(() => "ok", (e: JobError) => e.kind),
    );
    await until(() => r.balancer.queueDepth("sleep") >= 6);
    const mid = await scrape(r.addr);
    assert.ok(valueOf(mid, "ep_queue_depth", { service: "sleep" }) >= 6);
    assert.equal(valueOf(mid, "ep_service_slots", { service: "sleep", state: "idle" }), 0);
    assert.ok(valueOf(mid, "ep_service_slots", { service: "sleep", state: "busy" }) >= 3);
    const kinds = await Promise.all(burst);
    const okBurst = kinds.filter((k) => k === "ok").length;
    const overloaded = kinds.filter((k) => k === "overloaded").length;
    assert.equal(okBurst + overloaded, 20, kinds.join());
    assert.ok(overloaded >= 1, "some of the burst was refused");
    // Deadlines passing while the handler runs (after the burst: a TypeScript handler cannot
    // be interrupted, so its slot stays taken while the balancer counts it free).
    await Promise.all([1, 2].map(() =>
      assert.rejects(
        c.request("sleep", "300", { timeoutMs: 50 }),
        (e: unknown) => e instanceof JobError && e.kind === "timeout",
      )
    ));
    // The client's own timer may fire before the balancer's sweep answers the job.
    const sleepCounters = () => r.balancer.stats().services.find((s) => s.name === "sleep")!;
    await until(() => sleepCounters().counters.timeout === 2);
    // Refused connections: a TLS ClientHello and garbage.
    await rawConnection(r.addr, new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
    await rawConnection(r.addr, new Uint8Array([0x00, 0xff, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60]));
    r.lua.errors += 2;
    r.lua.interrupts += 1;

    const b = await scrape(r.addr);
    const d = (name: string, labels: Record<string, string> = {}) =>
      sum(b, name, labels) - sum(a, name, labels);
    assert.equal(d("ep_requests_total", { service: "echo", outcome: "ok" }), 50);
    assert.equal(d("ep_requests_total", { service: "fail", outcome: "error" }), 5);
    assert.equal(d("ep_requests_total", { service: "nope", outcome: "no_service" }), 3);
    assert.equal(d("ep_requests_total", { service: "sleep", outcome: "timeout" }), 2);
    assert.equal(d("ep_requests_total", { service: "sleep", outcome: "ok" }), okBurst);
    assert.equal(d("ep_requests_total", { service: "sleep", outcome: "overloaded" }), overloaded);
    assert.equal(d("ep_requests_total"), 50 + 5 + 3 + 2 + 20);
    // Every job that ran was run by some worker, and both kinds of provider took some.
    assert.equal(d("ep_worker_requests_total", { service: "echo", outcome: "ok" }), 50);
    const byWorker = b.get("ep_worker_requests_total")!.samples
      .filter((s) => s.labels.service === "echo" && s.value > 0).map((s) => s.labels.worker);
    assert.ok(byWorker.includes("local pool"), byWorker.join());
    assert.ok(byWorker.some((w) => /^127\.0\.0\.1:\d+ \(w0\)$/.test(w)), byWorker.join());
    // Histograms: one observation per job that waited / ran.
    assert.equal(d("ep_queue_wait_seconds_count", { service: "echo" }), 50);
    assert.equal(d("ep_service_time_seconds_count", { service: "echo" }), 50);
    assert.equal(d("ep_service_time_seconds_count", { service: "sleep" }), 2 + okBurst);
    const waitedLong = d("ep_queue_wait_seconds_count", { service: "sleep" }) -
      d("ep_queue_wait_seconds_bucket", { service: "sleep", le: "0.1" });
    assert.ok(waitedLong >= 3, `${waitedLong} burst jobs waited over 100 ms in the queue`);
    assert.ok(d("ep_service_time_seconds_sum", { service: "sleep" }) >= 0.15 * okBurst);
    assert.equal(valueOf(b, "ep_queue_depth", { service: "sleep" }), 0);
    // Connections, bytes, sniffer, HTTP, handler threads, Lua.
    assert.ok(d("ep_connections_total", { protocol: "ep" }) >= 1);
    assert.ok(
      valueOf(b, "ep_connections_total", { protocol: "http" }) >= 1,
      "fetch keeps it alive",
    );
    assert.equal(d("ep_sniff_rejections_total", { reason: "tls" }), 1);
    assert.equal(d("ep_sniff_rejections_total", { reason: "unknown" }), 1);
    assert.ok(d("ep_http_requests_total") >= 11, "10 jobs and the scrape");
    assert.ok(d("ep_received_bytes_total") > 500);
    assert.ok(d("ep_sent_bytes_total") > 500);
    assert.ok(d("ep_handler_jobs_total", { result: "replied" }) > 0);
    assert.ok(d("ep_handler_ring_wakeups_total", { ring: "job" }) > 0);
    assert.ok(d("ep_handler_thread_sleeps_total") > 0);
    assert.equal(d("ep_lua_errors_total"), 2);
    assert.equal(d("ep_lua_interrupts_total"), 1);
    assert.ok(valueOf(b, "ep_uptime_seconds") > valueOf(a, "ep_uptime_seconds"));
    // The monitor and the balancer agree.
    const sleep = r.balancer.stats().services.find((s) => s.name === "sleep")!;
    assert.equal(sleep.counters.overloaded, overloaded);
    assert.equal(sleep.counters.ok, okBurst);
  } finally {
    client?.close();
    await r.close();
  }
});

Deno.test("metrics: a lost worker shows as a redelivery and leaves the worker gauges", async () => {
  const r = await rig({ localThreads: 0, remote: 2 });
  const client = await connect(r.addr);
  try {
    const a = await scrape(r.addr);
    assert.equal(valueOf(a, "ep_workers", { state: "ready" }), 2);
    assert.equal(a.get("ep_worker_slots")!.samples.length, 4);
    const jobs = [client.request("sleep", "300"), client.request("sleep", "300")];
    await until(() => r.balancer.stats().providers.every((p) => p.busy === 1));
    r.nodes[0].close();
    await Promise.all(jobs);
    const b = await scrape(r.addr);
    assert.equal(valueOf(b, "ep_redeliveries_total", { service: "sleep" }), 1);
    assert.equal(valueOf(b, "ep_requests_total", { service: "sleep", outcome: "ok" }), 2);
    assert.equal(valueOf(b, "ep_workers", { state: "ready" }), 1);
    assert.equal(b.get("ep_worker_slots")!.samples.length, 2);
    assert.equal(valueOf(b, "ep_service_workers", { service: "sleep" }), 1);
    // No handler pool in this process: its families are there, empty or zero.
    assert.equal(valueOf(b, "ep_handler_slots", { state: "idle" }), 0);
    assert.equal(b.get("ep_handler_ring_used_bytes")!.samples.length, 0);
  } finally {
    client.close();
    await r.close();
  }
});

// ---- The parser itself must be strict, or the tests above prove nothing. ----

const GOOD = `# HELP a_total A counter.
# TYPE a_total counter
a_total{x="1"} 3
a_total{x="2"} 0 1700000000000
# A plain comment.
# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="0.1"} 1
h_seconds_bucket{le="1"} 2
h_seconds_bucket{le="+Inf"} 3
h_seconds_sum 4.5
h_seconds_count 3
# HELP g A gauge.
# TYPE g gauge
g -1.5e3
g{y="a\\"b\\\\c\\nd"} NaN
`;

Deno.test("prometheus parser: reads a valid exposition", () => {
  const f = parseExposition(GOOD);
  assert.deepEqual([...f.keys()], ["a_total", "h_seconds", "g"]);
  assert.equal(valueOf(f, "a_total", { x: "1" }), 3);
  assert.equal(f.get("a_total")!.samples[1].timestamp, 1700000000000);
  const [g1, g2] = f.get("g")!.samples;
  assert.equal(g1.value, -1500);
  assert.ok(Number.isNaN(g2.value));
  assert.equal(g2.labels.y, 'a"b\\c\nd');
  assert.equal(f.get("h_seconds")!.samples.length, 5);
});

Deno.test("prometheus parser: rejects each way an exposition can be wrong", () => {
  const bad: [string, string, RegExp][] = [
    ["no newline at the end", GOOD.trimEnd(), /newline/],
    ["no TYPE", "# HELP x X.\nx 1\n", /no TYPE/],
    ["no HELP", "# TYPE x gauge\nx 1\n", /no HELP/],
    ["no HELP, no samples", "# TYPE x gauge\n", /no HELP/],
    ["second TYPE", "# HELP x X.\n# TYPE x gauge\n# TYPE x gauge\nx 1\n", /Second TYPE/],
    ["second HELP", "# HELP x X.\n# HELP x Y.\n# TYPE x gauge\nx 1\n", /Second HELP/],
    ["unknown type", "# HELP x X.\n# TYPE x meter\nx 1\n", /Unknown type/],
    [
      "TYPE after samples",
      "# HELP x X.\n# TYPE x gauge\nx 1\n# TYPE x gauge\n",
      /after its samples/,
    ],
    [
      "families interleaved",
      '# HELP x X.\n# TYPE x gauge\nx 1\n# HELP y Y.\n# TYPE y gauge\ny 1\nx{a="b"} 2\n',
      /not one group/,
    ],
    ["duplicate series", '# HELP x X.\n# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n', /twice/],
    ["sample without family", "# HELP x X.\n# TYPE x gauge\ny 1\n", /no family/],
    ["bad escape", '# HELP x X.\n# TYPE x gauge\nx{a="\\t"} 1\n', /Invalid escape/],
    ["unterminated value", '# HELP x X.\n# TYPE x gauge\nx{a="1} 1\n', /Unterminated|Expected/],
    ["bad label name", '# HELP x X.\n# TYPE x gauge\nx{1a="1"} 1\n', /label name/],
    ["reserved label", '# HELP x X.\n# TYPE x gauge\nx{__a="1"} 1\n', /Reserved/],
    ["label twice", '# HELP x X.\n# TYPE x gauge\nx{a="1",a="2"} 1\n', /twice/],
    ["bad value", "# HELP x X.\n# TYPE x gauge\nx 1,5\n", /Invalid value/],
    ["bad timestamp", "# HELP x X.\n# TYPE x gauge\nx 1 1.5\n", /timestamp/],
    ["negative counter", "# HELP x_total X.\n# TYPE x_total counter\nx_total -1\n", /Counter/],
    [
      "buckets not cumulative",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      /cumulative/,
    ],
    [
      "no +Inf bucket",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
      /\+Inf/,
    ],
    [
      "le not ascending",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      /ascend/,
    ],
    [
      "count differs from +Inf",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n',
      /_count/,
    ],
    [
      "no _sum",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n',
      /no _sum/,
    ],
    [
      "no _count",
      '# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_sum 1\n',
      /no _count/,
    ],
    [
      "bucket without le",
      "# HELP h H.\n# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",
      /without le/,
    ],
    ["bare histogram sample", "# HELP h H.\n# TYPE h histogram\nh 1\n", /no family/],
  ];
  for (const [what, text, re] of bad) {
    assert.throws(() => parseExposition(text), (e: unknown) => {
      assert.ok(e instanceof ExpositionError, `${what}: ${e}`);
      assert.match(e.message, re, what);
      return true;
    }, what);
  }
});

Deno.test("prometheus conventions: counters end in _total, base units, prefix", () => {
  const f = parseExposition(
    "# HELP ep_a A.\n# TYPE ep_a counter\nep_a 1\n" +
      "# HELP ep_b_total B.\n# TYPE ep_b_total gauge\nep_b_total 1\n" +
      "# HELP ep_wait_ms W.\n# TYPE ep_wait_ms gauge\nep_wait_ms 1\n" +
      "# HELP other O.\n# TYPE other gauge\nother 1\n" +
      '# HELP ep_h H.\n# TYPE ep_h histogram\nep_h_bucket{le="+Inf"} 0\nep_h_sum 0\nep_h_count 0\n',
  );
  assert.deepEqual(conventionViolations(f, "ep_"), [
    "ep_a: counter without _total",
    "ep_b_total: _total on a gauge",
    "ep_wait_ms: not a base unit",
    'other: no "ep_" prefix',
    "ep_h: histogram without a base unit suffix",
  ]);
});
