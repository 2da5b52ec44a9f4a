/**
 * The autoscaler's rule, step by step on a fake clock with a fake target: what it decides at
 * each one-second tick, given the queue waits and busy counts of that second.
 */
import assert from "node:assert/strict";
import { Autoscaler, type ScalePolicy, type ScaleTarget, WaitWindow } from "./autoscaler.ts";
import { QueueWaitEstimate } from "./_wait_estimate.ts";

/** A target that records what it is asked; added units start until `ready()`. */
class FakeTarget implements ScaleTarget {
  size: number;
  starting = 0;
  unitSlots: number;
  busy = 0;
  /** When set, shrink() only records the wish (a module worker waiting for its credit). */
  deferShrink = false;
  readonly calls: string[] = [];
  constructor(size: number, unitSlots = 1) {
    this.size = size;
    this.unitSlots = unitSlots;
  }
  grow(reason: string): void {
    this.calls.push(`grow: ${reason}`);
    this.size++;
    this.starting++;
  }
  shrink(reason: string): void {
    this.calls.push(`shrink: ${reason}`);
    if (!this.deferShrink) this.size--;
  }
  cancelShrink(): void {
    this.calls.push("cancel shrink");
  }
  ready(): void {
    this.starting = 0;
  }
}

/** A controller on a clock the test moves: `tick(waits, busy)` advances one second and steps. */
function harness(target: FakeTarget, policy: Partial<ScalePolicy> = {}) {
  let now = 0;
  const scaler = new Autoscaler(target, {
    min: 1,
    max: 3,
    target: (s) => (s === "svc" ? { waitMs: 50, max: 3 } : undefined),
    ...policy,
  }, () => now);
  return {
    tick(waits: Record<string, number>, busy = 0): string {
      now += 1_000;
      const d = scaler.step({ waits: new Map(Object.entries(waits)), busy });
      return d.action === "hold" ? "hold" : `${d.action} (${d.reason}) → ${target.size}`;
    },
  };
}

Deno.test("autoscaler grows after two seconds above target whose p99 did not fall by more than 10 %, one unit at a time, not while one starts, up to max", () => {
  const target = new FakeTarget(1);
  const h = harness(target);
  const steps: [number, string][] = [];
  const at = (w: number, expect: string) => steps.push([w, expect]);
  at(10, "hold"); //         t=1: below target
  at(80, "hold"); //         t=2: one second above
  at(90, "up (wait p99 90 ms > 50 ms (svc)) → 2"); // t=3: two, not falling
  at(120, "hold"); //        t=4: the added unit is still starting
  at(100, "hold"); //        t=5: falling by more than 10 % (the backlog drains)
  at(40, "hold"); //         t=6
  at(70, "hold"); //         t=7
  at(64, "up (wait p99 64 ms > 50 ms (svc)) → 3"); // t=8: within 10 % of 70 is a plateau
  at(200, "hold"); //        t=9: starting
  at(300, "hold"); //        t=10: at max
  at(400, "hold"); //        t=11
  const got: string[] = [];
  for (const [i, [w]] of steps.entries()) {
    got.push(h.tick({ svc: w }));
    if (i === 3 || i === 8) target.ready(); // ready within the next second
  }
  assert.deepEqual(got, steps.map(([, e]) => e));
  assert.deepEqual(target.calls, [
    "grow: wait p99 90 ms > 50 ms (svc)",
    "grow: wait p99 64 ms > 50 ms (svc)",
  ]);
});

Deno.test("autoscaler waits two seconds after a change before growing again, and a second without jobs is not a second above target", () => {
  const target = new FakeTarget(1);
  const h = harness(target);
  assert.equal(h.tick({ svc: 60 }), "hold", "t=1: cooldown from the start (and one second)");
  assert.equal(h.tick({ svc: 70 }), "up (wait p99 70 ms > 50 ms (svc)) → 2");
  target.ready();
  assert.equal(h.tick({ svc: 80 }), "hold", "t=3: one second since the change");
  assert.equal(h.tick({ svc: 90 }), "up (wait p99 90 ms > 50 ms (svc)) → 3");
  const t2 = new FakeTarget(1);
  const h2 = harness(t2);
  assert.equal(h2.tick({ svc: 60 }), "hold");
  assert.equal(h2.tick({ svc: NaN }), "hold", "no job: not above target");
  assert.equal(h2.tick({}), "hold", "a service missing from the input saw no job");
  assert.equal(h2.tick({ svc: 60 }), "hold");
  assert.equal(h2.tick({ svc: 60 }), "up (wait p99 60 ms > 50 ms (svc)) → 2");
});

Deno.test("autoscaler grows only for services that drive scaling, and each only up to its own max", () => {
  const target = new FakeTarget(1);
  const h = harness(target, {
    max: 4,
    target: (s) =>
      s === "a" ? { waitMs: 50, max: 2 } : s === "b" ? { waitMs: 10, max: 4 } : undefined,
  });
  assert.equal(h.tick({ other: 900 }), "hold");
  assert.equal(h.tick({ other: 900, a: 60 }), "hold");
  assert.equal(h.tick({ other: 900, a: 60 }), "up (wait p99 60 ms > 50 ms (a)) → 2");
  target.ready();
  assert.equal(h.tick({ a: 60 }), "hold");
  assert.equal(h.tick({ a: 60 }), "hold", "a's max is 2");
  assert.equal(h.tick({ a: 60, b: 12 }), "hold");
  assert.equal(h.tick({ a: 60, b: 12 }), "up (wait p99 12 ms > 10 ms (b)) → 3");
});

Deno.test("autoscaler retires a unit after ten quiet seconds when one unit fewer would be at most half busy, never below min", () => {
  const target = new FakeTarget(3, 2);
  const h = harness(target);
  const got: string[] = [];
  // Ten quiet seconds, 1.9 jobs held on average: 2 units (4 slots) would be under half busy.
  for (let i = 0; i < 10; i++) got.push(h.tick({ svc: 20 }, 1.9));
  assert.deepEqual(got, [...Array(9).fill("hold"), "down (idle: 1.9 of 6 slots busy) → 2"]);
  got.length = 0;
  // 1.9 held: 1 unit (2 slots) would be more than half busy.
  for (let i = 0; i < 12; i++) got.push(h.tick({ svc: 20 }, 1.9));
  assert.deepEqual(got, Array(12).fill("hold"));
  got.length = 0;
  // The window still holds one second at 1.9: (1.9 + 9 × 0.8) / 10 ≈ 0.9 ≤ ½ × 1 × 2.
  for (let i = 0; i < 9; i++) got.push(h.tick({ svc: NaN }, 0.8));
  assert.deepEqual(got, [...Array(8).fill("hold"), "down (idle: 0.9 of 4 slots busy) → 1"]);
  got.length = 0;
  for (let i = 0; i < 12; i++) got.push(h.tick({}, 0));
  assert.deepEqual(got, Array(12).fill("hold"), "min is 1");
});

Deno.test("autoscaler keeps its units while any second of the idle window had a p99 above half the target", () => {
  const target = new FakeTarget(2);
  const h = harness(target);
  const got: string[] = [];
  const waits = [10, 10, 26, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10];
  for (const w of waits) got.push(h.tick({ svc: w }, 0));
  // The 26 ms second (t=3) is in every ten-second window up to t=12; t=13's is clear.
  assert.deepEqual(got, [...Array(12).fill("hold"), "down (idle: 0 of 2 slots busy) → 1"]);
});

Deno.test("autoscaler asks again each tick for a shrink the target cannot finish yet, calls it off when the waits rise, and counts a late shrink as a change", () => {
  const target = new FakeTarget(2);
  target.deferShrink = true;
  const h = harness(target);
  const got: string[] = [];
  for (let i = 0; i < 11; i++) got.push(h.tick({ svc: 5 }, 0));
  assert.deepEqual(got, [
    ...Array(9).fill("hold"),
    "down (idle: 0 of 2 slots busy) → 2",
    "down (idle: 0 of 2 slots busy) → 2",
  ]);
  assert.equal(h.tick({ svc: 60 }, 1), "hold", "no longer idle: the shrink is called off");
  assert.equal(h.tick({ svc: 70 }, 1), "up (wait p99 70 ms > 50 ms (svc)) → 3");
  assert.deepEqual(target.calls, [
    "shrink: idle: 0 of 2 slots busy",
    "shrink: idle: 0 of 2 slots busy",
    "cancel shrink",
    "grow: wait p99 70 ms > 50 ms (svc)",
  ]);
  // A shrink that finishes between ticks restarts the quiet window.
  const t2 = new FakeTarget(3);
  t2.deferShrink = true;
  const h2 = harness(t2);
  for (let i = 0; i < 10; i++) h2.tick({}, 0);
  t2.size = 2; // the target finished it later
  const after: string[] = [];
  // Seen at the next tick (t=11): ten quiet seconds from there.
  for (let i = 0; i < 11; i++) after.push(h2.tick({}, 0));
  assert.deepEqual(after, [...Array(10).fill("hold"), "down (idle: 0 of 2 slots busy) → 2"]);
});

Deno.test("autoscaler refuses bounds that are not 1 <= min <= max", () => {
  const target = new FakeTarget(1);
  assert.throws(
    () => new Autoscaler(target, { min: 0, max: 2, target: () => undefined }),
    { name: "RangeError", message: 'Scale bounds must be 1 <= min <= max: "0–2"' },
  );
  assert.throws(
    () => new Autoscaler(target, { min: 3, max: 2, target: () => undefined }),
    RangeError,
  );
});

Deno.test("wait window gives each service's p99 of the second, NaN for a second without jobs, and keeps only accepted services", () => {
  const w = new WaitWindow((s) => s !== "skip");
  for (let i = 1; i <= 100; i++) w.observe("svc", i);
  w.observe("skip", 5);
  w.observe("svc", NaN);
  const first = w.tick();
  assert.deepEqual([...first.keys()], ["svc"]);
  assert.ok(first.get("svc")! >= 94 && first.get("svc")! <= 105, String(first.get("svc")));
  assert.ok(Number.isNaN(w.tick().get("svc")));
});

Deno.test("a worker estimates the wait at its balancer as queue depth over the rate it finishes the service's jobs (last three seconds)", () => {
  let now = 0;
  const seen: [string, number][] = [];
  const e = new QueueWaitEstimate((s, ms) => seen.push([s, ms]), () => now);
  now = 100;
  for (let i = 0; i < 3; i++) e.answered("svc");
  now = 1_500;
  for (let i = 0; i < 3; i++) e.answered("svc");
  now = 2_500;
  for (let i = 0; i < 4; i++) e.answered("svc");
  now = 3_000;
  e.request("svc", 5); // 10 finished in 3 000 ms: 5 ÷ (10 / 3 000 ms)
  e.request("svc", 0); // nothing queued: no wait
  e.request("new", 2); // queued, none finished: 2 × 3 s
  now = 4_500;
  e.request("svc", 1); // seconds 1–4: 7 finished in 3 500 ms
  assert.deepEqual(seen, [["svc", 1_500], ["svc", 0], ["new", 6_000], ["svc", 500]]);
});
