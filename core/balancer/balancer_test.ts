/**
 * The dispatch rules, pinned exactly: a fake provider (records what it is handed, grants
 * credit and answers, fails or loses jobs when told) and a fake clock, the sweep run by the
 * test. No sockets, no threads, no timers, no sleeps.
 */
import assert from "node:assert/strict";
import { Balancer } from "./balancer.ts";

Deno.test("balancer clock: sweeps every 10 ms by default, never by itself with sweepIntervalMs 0", () => {
  const realSet = globalThis.setInterval;
  const realClear = globalThis.clearInterval;
  const started: unknown[] = [];
  const cleared: unknown[] = [];
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    const id = realSet(fn, ms);
    started.push(ms);
    return id;
  }) as typeof setInterval;
  globalThis.clearInterval = ((id: number) => {
    cleared.push(id);
    realClear(id);
  }) as typeof clearInterval;
  try {
    const manual = new Balancer({ sweepIntervalMs: 0 });
    assert.deepEqual(started, []);
    manual.close();
    const auto = new Balancer();
    assert.deepEqual(started, [10]);
    auto.close();
    assert.equal(cleared.length, 2);
    assert.notEqual(cleared[1], undefined, "the interval it started is cleared");
  } finally {
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
  }
});

Deno.test("balancer clock: uptime reads the given clock; a bad sweep interval is refused", () => {
  let t = 1000;
  const b = new Balancer({ now: () => t, sweepIntervalMs: 0 });
  assert.equal(b.uptimeMs, 0);
  t += 1234.5;
  assert.equal(b.uptimeMs, 1234.5);
  assert.throws(() => new Balancer({ sweepIntervalMs: -1 }), RangeError);
  assert.throws(() => new Balancer({ sweepIntervalMs: NaN }), RangeError);
  b.close();
});
