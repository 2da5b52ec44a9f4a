/**
 * The admin API's rules without sockets: how a worker is named (full name, address, HELLO
 * name when unique, `local`), what each operation answers, and a property test: whatever
 * JSON a peer sends as a request, the answer is a result or a classified refusal (400, 404,
 * 409), never an unexpected failure, and a refused request changes nothing.
 */
import assert from "node:assert/strict";
import { Balancer } from "../balancer/balancer.ts";
import type { Provider } from "../balancer/provider.ts";
import { Monitor } from "./monitor.ts";
import { mulberry32, type Rng } from "../../tests/fuzz/_mutate.ts";
import { hasControls } from "../escape.ts";

function provider(name: string, services = ["svc"]): Provider {
  return {
    name,
    services: new Set(services),
    slots: 1,
    credit: 1,
    draining: false,
    dispatch() {},
    cancel() {},
  };
}

function setup() {
  const monitor = new Monitor();
  const balancer = new Balancer({ serviceGraceMs: 0, sweepIntervalMs: 0, observer: monitor });
  monitor.attach({ balancer });
  const local = provider("local pool");
  const a = provider("worker 10.0.0.5:40412 (billing 1)");
  const b = provider("worker 10.0.0.6:5000 (twin)");
  const c = provider("worker 10.0.0.7:5000 (twin)");
  const bare = provider("worker [::1]:6000");
  for (const p of [local, a, b, c, bare]) balancer.addProvider(p);
  return {
    monitor,
    balancer,
    local,
    a,
    b,
    bare,
    close() {
      monitor.close();
      balancer.close();
    },
  };
}

Deno.test("admin names a worker by its full name, its address, its HELLO name when unique, or local", () => {
  const r = setup();
  try {
    const state = (p: Provider) =>
      r.balancer.stats().providers.find((s) => s.name === p.name)!.admin;
    for (
      const [name, p] of [
        ["worker 10.0.0.5:40412 (billing 1)", r.a],
        ["10.0.0.5:40412", r.a],
        ["billing 1", r.a],
        ["10.0.0.6:5000", r.b],
        ["[::1]:6000", r.bare],
        ["local", r.local],
        ["local pool", r.local],
      ] as const
    ) {
      const out = r.monitor.admin({ op: "disable", worker: name });
      assert.ok(out.ok, `${name}: ${JSON.stringify(out)}`);
      assert.equal(state(p), "disabled", name);
      assert.ok(r.monitor.admin({ op: "enable", worker: name }).ok);
      assert.equal(state(p), null, name);
    }
    const twin = r.monitor.admin({ op: "disable", worker: "twin" });
    assert.deepEqual(twin, {
      ok: false,
      status: 409,
      code: 100,
      message:
        'Worker name "twin" is ambiguous: twin at 10.0.0.6:5000, twin at 10.0.0.7:5000 have it; name one by its address',
    });
    const none = r.monitor.admin({ op: "disable", worker: "w\u001b[31m9" });
    assert.ok(!none.ok);
    assert.equal(none.status, 404);
    assert.equal(
      none.message,
      'No worker "w\\x1b[31m9" is attached (workers: local, billing 1 at 10.0.0.5:40412, twin at 10.0.0.6:5000, twin at 10.0.0.7:5000, [::1]:6000)',
    );
  } finally {
    r.close();
  }
});

Deno.test("admin answers each operation: workers, services, errors, drain with a grace, set max_queue", () => {
  const r = setup();
  try {
    const workers = r.monitor.admin({ op: "workers" });
    assert.ok(workers.ok);
    assert.equal((workers.result.workers as unknown[]).length, 5);
    const drained = r.monitor.admin({ op: "drain", worker: "billing 1", grace_ms: 0 });
    assert.ok(drained.ok);
    assert.equal((drained.result.worker as { state: string }).state, "drained");
    assert.deepEqual(r.monitor.admin({ op: "set", service: "svc", key: "max_queue", value: 3 }), {
      ok: true,
      result: { service: "svc", key: "max_queue", value: 3 },
    });
    const services = r.monitor.admin({ op: "services" });
    assert.ok(services.ok);
    assert.deepEqual(
      (services.result.services as { name: string; maxQueue: number }[]).map((
        s,
      ) => [s.name, s.maxQueue]),
      [["svc", 3]],
    );
    assert.deepEqual(r.monitor.admin({ op: "errors" }), { ok: true, result: { errors: [] } });
  } finally {
    r.close();
  }
});

/** A random JSON value, biased towards admin-shaped objects. */
function randomJson(rng: Rng, depth = 0): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];
  const scalar = () =>
    pick<unknown>([
      null,
      true,
      0,
      -1,
      1.5,
      2 ** 32,
      1e308,
      "",
      "local",
      "twin",
      "billing 1",
      "10.0.0.6:5000",
      "svc",
      "max_queue",
      "\u0000\n\u202e",
      "x".repeat(300),
      Math.floor(rng() * 100),
    ]);
  const r = rng();
  if (depth > 2 || r < 0.3) return scalar();
  if (r < 0.4) {
    return Array.from({ length: Math.floor(rng() * 3) }, () => randomJson(rng, depth + 1));
  }
  const keys = [
    "op",
    "worker",
    "grace_ms",
    "limit",
    "service",
    "key",
    "value",
    "extra",
    "__proto__",
  ];
  const ops = [
    "workers",
    "services",
    "errors",
    "drain",
    "disable",
    "enable",
    "set",
    "reboot",
    "toString",
  ];
  const out: Record<string, unknown> = {};
  if (rng() < 0.9) out.op = pick(ops);
  for (let i = Math.floor(rng() * 4); i > 0; i--) {
    Object.defineProperty(out, pick(keys), {
      value: rng() < 0.5 ? scalar() : randomJson(rng, depth + 1),
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return out;
}

Deno.test("admin property: any JSON request gets a result or a classified refusal, never an unexpected failure; a refused one changes nothing", () => {
  const r = setup();
  try {
    const seed = 0x5eed_ad;
    const rng = mulberry32(seed);
    const states = () => JSON.stringify(r.balancer.stats().providers.map((p) => p.admin));
    const queues = () => JSON.stringify(r.balancer.stats().services.map((s) => s.maxQueue));
    let results = 0;
    let refusals = 0;
    for (let i = 0; i < 3000; i++) {
      const request = randomJson(rng);
      const text = JSON.stringify(request) ?? "null";
      const before = states() + queues();
      const out = r.monitor.adminJson(text);
      if (out.ok) {
        assert.equal(typeof out.result, "object", text);
        results++;
        continue;
      }
      refusals++;
      assert.ok(
        [400, 404, 409].includes(out.status),
        `seed ${seed} case ${i}: ${text} -> ${JSON.stringify(out)}`,
      );
      assert.equal(out.code, 100);
      assert.ok(!hasControls(out.message), `control characters in ${out.message}`);
      assert.equal(states() + queues(), before, `refused yet changed: ${text}`);
    }
    assert.ok(results > 100 && refusals > 100, `${results} results, ${refusals} refusals`);
    assert.deepEqual(r.monitor.adminJson("{").ok, false);
  } finally {
    r.close();
  }
});
