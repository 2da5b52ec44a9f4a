import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { Balancer } from "../balancer/balancer.ts";
import type { Provider, QueuedJob } from "../balancer/provider.ts";
import type { ProviderHost as WorkerHost } from "../balancer/worker_link.ts";
import { type Job, JobError, type JobResult } from "../job.ts";
import { Monitor } from "./monitor.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import { conventionViolations, parseExposition, valueOf } from "../../tests/_prometheus_parser.ts";

const dec = new TextDecoder();

function httpJob(path: string, init: Partial<Job> = {}): Job {
  const q = path.indexOf("?");
  return {
    service: "",
    protocol: "http",
    method: "GET",
    path: q < 0 ? path : path.slice(0, q),
    query: q < 0 ? "" : path.slice(q + 1),
    headers: [],
    body: new Uint8Array(0),
    deadlineMs: 0,
    priority: 0,
    remote: "127.0.0.1:50000",
    ...init,
  };
}

function epJob(service: string, deadlineMs = 0): Job {
  return {
    service,
    protocol: "ep",
    method: "EP",
    path: `/${service}`,
    query: "",
    headers: [],
    body: new Uint8Array(0),
    deadlineMs,
    priority: 0,
    remote: "127.0.0.1:50001",
  };
}

function bodyText(r: JobResult): string {
  return typeof r.body === "string" ? r.body : dec.decode(r.body ?? new Uint8Array(0));
}

/** A worker held in memory: takes jobs while it has credit; the test answers them. */
class FakeWorker implements Provider {
  readonly name: string;
  readonly services: ReadonlySet<string>;
  readonly slots: number;
  credit: number;
  draining = false;
  held: QueuedJob[] = [];
  #host: WorkerHost;

  constructor(host: WorkerHost, name: string, services: string[], slots: number) {
    this.#host = host;
    this.name = name;
    this.services = new Set(services);
    this.slots = slots;
    this.credit = slots;
  }
  dispatch(qj: QueuedJob): void {
    this.credit--;
    this.held.push(qj);
  }
  cancel(): void {}
  answer(result: JobResult | JobError): void {
    const qj = this.held.shift()!;
    this.credit++;
    this.#host.finish(this, qj, result);
  }
}

function setup(options: ConstructorParameters<typeof Monitor>[0] = {}) {
  const monitor = new Monitor({ version: "9.9.9", ...options });
  const balancer = new Balancer({
    serviceGraceMs: 0,
    maxQueue: 2,
    observer: monitor,
    internal: monitor.internal,
  });
  const host = monitor.watchWorkers(balancer);
  return {
    monitor,
    balancer,
    host,
    close() {
      monitor.close();
      balancer.close();
    },
  };
}

Deno.test("monitor: health is 503 until attached and while a check fails", async () => {
  let scripts = false;
  const { monitor, balancer, close } = setup({ checks: { scripts: () => scripts } });
  try {
    assert.equal(monitor.health().ready, false);
    const early = await balancer.submit(httpJob("/_ep/health"));
    assert.equal(early.status, 503);
    monitor.attach({ balancer });
    assert.deepEqual(monitor.health().checks, { listening: true, scripts: false });
    assert.equal((await balancer.submit(httpJob("/_ep/health"))).status, 503);
    scripts = true;
    const ok = await balancer.submit(httpJob("/_ep/health"));
    assert.equal(ok.status, 200);
    const h = JSON.parse(bodyText(ok));
    assert.equal(h.status, "ok");
    assert.equal(h.live, true);
    assert.equal(h.version, "9.9.9");
    monitor.check("broken", () => {
      throw new Error("boom");
    });
    assert.equal(monitor.health().checks.broken, false);
  } finally {
    close();
  }
});

Deno.test("monitor: counts outcomes, waits and workers of jobs the balancer settles", async () => {
  const { monitor, balancer, host, close } = setup();
  monitor.attach({ balancer, lua: () => ({ errors: 3, interrupts: 1 }) });
  const w = new FakeWorker(host, "worker 127.0.0.1:6000 (w1)", ["svc"], 1);
  host.addProvider(w);
  try {
    const first = balancer.submit(epJob("svc")) as Promise<JobResult>;
    const second = balancer.submit(epJob("svc")) as Promise<JobResult>;
    const third = balancer.submit(epJob("svc")) as Promise<JobResult>;
    const overloaded = Promise.resolve().then(() => balancer.submit(epJob("svc")));
    await assert.rejects(
      overloaded,
      (e: unknown) => e instanceof JobError && e.kind === "overloaded",
    );
    assert.equal(monitor.snapshot().services[0].queued, 2);
    await new Promise((r) => setTimeout(r, 20));
    w.answer({ body: "1" });
    await first;
    w.answer(new JobError(ErrorCode.HANDLER_ERROR, "bad"));
    await assert.rejects(second);
    w.answer({ body: "3" });
    await third;
    assert.throws(() => balancer.submit(epJob("nope")), (e: unknown) => e instanceof JobError);

    const snap = monitor.snapshot();
    const svc = snap.services.find((s) => s.name === "svc")!;
    assert.equal(svc.outcomes.ok, 2);
    assert.equal(svc.outcomes.error, 1);
    assert.equal(svc.outcomes.overloaded, 1);
    assert.equal(svc.counters.ok, 2, "the balancer's own counters are kept");
    assert.equal(svc.queueWaitMs.count, 3);
    assert.ok(svc.queueWaitMs.p99! >= 15, `the queued jobs waited ${svc.queueWaitMs.p99} ms`);
    assert.equal(svc.serviceMs.count, 3);
    assert.equal(snap.totals.jobs, 5, "2 ok, 1 error, 1 overloaded, 1 no_service");
    assert.equal(snap.totals.ok, 2);
    assert.equal(snap.totals.failed, 3);
    assert.equal(snap.lua?.errors, 3);
    assert.ok(!snap.services.some((s) => s.name === "nope"), "only services the balancer knows");
    const p = snap.providers[0];
    assert.equal(p.kind, "remote");
    assert.equal(p.address, "127.0.0.1:6000");
    assert.equal(p.label, "w1");
    assert.equal(p.state, "ready");
    assert.ok(p.lastSeenMsAgo !== null && p.lastSeenMsAgo < 1000);
    assert.ok(p.connectedMsAgo !== null && p.connectedMsAgo >= p.lastSeenMsAgo);

    const m = parseExposition(monitor.metricsText());
    assert.equal(valueOf(m, "ep_requests_total", { service: "svc", outcome: "ok" }), 2);
    assert.equal(valueOf(m, "ep_requests_total", { service: "svc", outcome: "error" }), 1);
    assert.equal(valueOf(m, "ep_requests_total", { service: "svc", outcome: "overloaded" }), 1);
    assert.equal(valueOf(m, "ep_requests_total", { service: "nope", outcome: "no_service" }), 1);
    assert.equal(
      valueOf(m, "ep_worker_requests_total", {
        worker: "127.0.0.1:6000 (w1)",
        service: "svc",
        outcome: "ok",
      }),
      2,
    );
    assert.equal(valueOf(m, "ep_queue_wait_seconds_count", { service: "svc" }), 3);
    assert.equal(valueOf(m, "ep_service_time_seconds_count", { service: "svc" }), 3);
    assert.equal(valueOf(m, "ep_lua_errors_total"), 3);
    assert.equal(valueOf(m, "ep_lua_interrupts_total"), 1);
    assert.equal(valueOf(m, "ep_worker_slots", { state: "idle" }), 1);
    assert.deepEqual(conventionViolations(m, "ep_"), []);

    monitor.setLuaCounters(() => ({ errors: 7, interrupts: 0 }));
    assert.equal(valueOf(parseExposition(monitor.metricsText()), "ep_lua_errors_total"), 7);
    assert.equal(monitor.snapshot().lua?.errors, 7);

    host.removeProvider(w, "test");
    assert.equal(monitor.snapshot().providers.length, 0);
  } finally {
    close();
  }
});

Deno.test("monitor: unknown service names beyond maxServices share service=_other", () => {
  const { monitor, balancer, close } = setup({ maxServices: 2 });
  monitor.attach({ balancer });
  try {
    for (const name of ["a", "b", "c", "d", "a"]) {
      assert.throws(() => balancer.submit(epJob(name)));
    }
    const m = parseExposition(monitor.metricsText());
    const services = new Set(
      m.get("ep_requests_total")!.samples.map((s) => s.labels.service),
    );
    assert.deepEqual([...services].sort(), ["_other", "a", "b"]);
    assert.equal(valueOf(m, "ep_requests_total", { service: "a", outcome: "no_service" }), 2);
    assert.equal(valueOf(m, "ep_requests_total", { service: "_other", outcome: "no_service" }), 2);
  } finally {
    close();
  }
});

Deno.test("monitor: the access log writes one info line per job in category ep.access", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { buffer: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["ep", "access"], lowestLevel: "info", sinks: ["buffer"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  const { monitor, balancer, host, close } = setup({ accessLog: true });
  monitor.attach({ balancer });
  const w = new FakeWorker(host, "worker 127.0.0.1:6001", ["svc"], 1);
  host.addProvider(w);
  try {
    const job = balancer.submit(epJob("svc")) as Promise<JobResult>;
    w.answer({ body: "x" });
    await job;
    assert.throws(() => balancer.submit(epJob("nope")));
    assert.equal(records.length, 2);
    const [ok, refused] = records;
    assert.deepEqual(ok.category, ["ep", "access"]);
    assert.equal(ok.level, "info");
    assert.equal(ok.properties.service, "svc");
    assert.equal(ok.properties.outcome, "ok");
    assert.equal(ok.properties.worker, "127.0.0.1:6001");
    assert.equal(typeof ok.properties.queueWaitMs, "number");
    assert.equal(typeof ok.properties.serviceMs, "number");
    assert.equal(refused.properties.outcome, "no_service");
    assert.equal(refused.properties.serviceMs, null);
    assert.equal(refused.properties.worker, null);
    assert.equal(refused.properties.status, 503);
    assert.equal(refused.properties.client, "127.0.0.1:50001");
    assert.match(
      refused.message.join(""),
      /^127\.0\.0\.1:50001 "EP \/nope" 503 17 nope no_service wait - service - worker - id \S+$/,
    );
    assert.equal(ok.properties.bytes, 1);
    assert.equal(ok.properties.requestId, ok.message.join("").split(" id ")[1]);
    const line = ok.message.join("");
    assert.match(
      line,
      /^127\.0\.0\.1:50001 "EP \/svc" 200 1 svc ok wait [\d.]+ms service [\d.]+ms worker 127\.0\.0\.1:6001 id \S+$/,
    );
  } finally {
    close();
    await reset();
  }
});

Deno.test("monitor: the access log shows a hostile request's path as one inert field", async () => {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { buffer: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["ep", "access"], lowestLevel: "info", sinks: ["buffer"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  const { balancer, close } = setup({ accessLog: true });
  try {
    const job: Job = {
      ...epJob("nope"),
      protocol: "http",
      method: "GET",
      path: '/nope/a" 200 0 x\n{b}\\',
      remote: "10.0.0.1:\u202e1",
    };
    assert.throws(() => balancer.submit(job));
    const line = records[0].message.join("");
    assert.equal(line.split("\n").length, 1);
    assert.ok(
      line.startsWith('10.0.0.1:\\u{202e}1 "GET /nope/a\\x22 200 0 x\\x0a{b}\\\\" 503 18 nope '),
      line,
    );
    assert.equal(records[0].properties.path, job.path);
  } finally {
    close();
    await reset();
  }
});

Deno.test("monitor: sample() fills the per-second series the page draws", async () => {
  const { monitor, balancer, host, close } = setup();
  monitor.attach({ balancer });
  const w = new FakeWorker(host, "worker 127.0.0.1:6002", ["svc"], 1);
  host.addProvider(w);
  try {
    monitor.sample();
    for (let i = 0; i < 3; i++) {
      const job = balancer.submit(epJob("svc")) as Promise<JobResult>;
      w.answer({});
      await job;
    }
    const running = balancer.submit(epJob("svc"));
    const queued = balancer.submit(epJob("svc"));
    monitor.sample();
    const snap = monitor.snapshot();
    const svc = snap.services[0];
    assert.equal(svc.series!.queued.at(-1), 1);
    assert.equal(svc.series!.busy.at(-1), 1);
    assert.ok(svc.series!.rate.at(-1)! > 0);
    assert.equal(snap.series!.queued.at(-1), 1);
    assert.equal(snap.series!.rate.length, 2);
    assert.ok(snap.sampledAt > 0);
    const bare = monitor.snapshot({ series: false });
    assert.equal(bare.series, undefined);
    assert.equal(bare.services[0].series, undefined);
    w.answer({});
    await running;
    w.answer({});
    await queued;
  } finally {
    close();
  }
});
