import assert from "node:assert/strict";
import { Balancer } from "../balancer/balancer.ts";
import type { Job, JobResult } from "../job.ts";
import { Monitor } from "./monitor.ts";
import { parseExposition, valueOf } from "../../tests/_prometheus_parser.ts";

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

function bodyText(r: JobResult): string {
  return typeof r.body === "string" ? r.body : dec.decode(r.body ?? new Uint8Array(0));
}

function header(r: JobResult, name: string): string | undefined {
  return r.headers?.find(([k]) => k === name)?.[1];
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

Deno.test("status endpoints: /_ep/ pages go to loopback peers only by default; health to everyone", async () => {
  const { monitor, balancer, close } = setup();
  monitor.attach({ balancer });
  try {
    for (const path of ["/_ep/", "/_ep/stats", "/_ep/metrics"]) {
      const local = await balancer.submit(httpJob(path));
      assert.equal(local.status, 200, path);
      for (const remote of ["10.0.0.7:4000", "[2001:db8::1]:4000", "128.0.0.1:1"]) {
        const far = await balancer.submit(httpJob(path, { remote }));
        assert.equal(far.status, 403, `${path} from ${remote}`);
        assert.match(bodyText(far), /loopback/);
      }
    }
    const v6 = await balancer.submit(httpJob("/_ep/metrics", { remote: "[::1]:4000" }));
    assert.equal(v6.status, 200);
    const health = await balancer.submit(httpJob("/_ep/health", { remote: "10.0.0.7:4000" }));
    assert.equal(health.status, 200);
    assert.equal(JSON.parse(bodyText(health)).ready, true);
    const page = await balancer.submit(httpJob("/_ep/"));
    assert.match(header(page, "content-type")!, /^text\/html/);
    assert.match(header(page, "content-security-policy")!, /default-src 'none'/);
    assert.match(bodyText(page), /<!doctype html>/);
    const full = JSON.parse(bodyText(await balancer.submit(httpJob("/_ep/stats"))));
    assert.ok(Array.isArray(full.series.rate));
    const lean = JSON.parse(bodyText(await balancer.submit(httpJob("/_ep/stats?series=0"))));
    assert.equal(lean.series, undefined);
    assert.equal(lean.version, "9.9.9");
    const metrics = await balancer.submit(httpJob("/_ep/metrics"));
    assert.equal(header(metrics, "content-type"), "text/plain; version=0.0.4; charset=utf-8");
    const denied = parseExposition(monitor.metricsText());
    assert.equal(valueOf(denied, "ep_status_denied_total", { reason: "remote" }), 9);
  } finally {
    close();
  }
});

Deno.test("status endpoints: with a token, every peer needs it (Bearer header or ?token=)", async () => {
  const { monitor, balancer, close } = setup({ access: { token: "s3cret" } });
  monitor.attach({ balancer });
  try {
    const none = await balancer.submit(httpJob("/_ep/stats"));
    assert.equal(none.status, 401, "loopback without the token");
    assert.equal(header(none, "www-authenticate"), 'Bearer realm="ep"');
    const wrong = await balancer.submit(
      httpJob("/_ep/stats", { headers: [["authorization", "Bearer nope"]] }),
    );
    assert.equal(wrong.status, 401);
    const byHeader = await balancer.submit(
      httpJob("/_ep/metrics", {
        remote: "10.1.2.3:9",
        headers: [["authorization", "bearer s3cret"]],
      }),
    );
    assert.equal(byHeader.status, 200, "remote with the token");
    const byQuery = await balancer.submit(httpJob("/_ep/?token=s3cret", { remote: "10.1.2.3:9" }));
    assert.equal(byQuery.status, 200);
    const health = await balancer.submit(httpJob("/_ep/health", { remote: "10.1.2.3:9" }));
    assert.equal(health.status, 200, "health needs no token");
  } finally {
    close();
  }
  const open = setup({ access: { public: true } });
  open.monitor.attach({ balancer: open.balancer });
  try {
    const far = await open.balancer.submit(httpJob("/_ep/stats", { remote: "10.0.0.7:4000" }));
    assert.equal(far.status, 200, "public: everyone");
  } finally {
    open.close();
  }
});

Deno.test("status endpoints: answers every /_ep/ path itself: 404 unknown, 405 not GET/HEAD", async () => {
  const { monitor, balancer, close } = setup();
  monitor.attach({ balancer });
  try {
    const unknown = await balancer.submit(httpJob("/_ep/nothing", { remote: "10.0.0.1:1" }));
    assert.equal(unknown.status, 404);
    const post = await balancer.submit(httpJob("/_ep/stats", { method: "POST" }));
    assert.equal(post.status, 405);
    assert.equal(header(post, "allow"), "GET, HEAD");
    const head = await balancer.submit(httpJob("/_ep/health", { method: "HEAD" }));
    assert.equal(head.status, 200);
    assert.equal(monitor.internal(httpJob("/_ep/elsewhere")).status, 404, "never undefined");
  } finally {
    close();
  }
});
