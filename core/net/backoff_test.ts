import assert from "node:assert/strict";
import { backoffMs } from "./backoff.ts";

/** A seeded generator (mulberry32), so that a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("backoff (property): every delay lies in [cap/2, cap), cap = min(max, first·2^attempt), never above max, whatever the attempt", () => {
  const r = rng(20261126);
  for (let i = 0; i < 20_000; i++) {
    const first = 1 + Math.floor(r() * 1_000);
    const max = first + Math.floor(r() * 60_000);
    const attempt = Math.floor(r() * 2_000) - 5;
    const jitter = r();
    const d = backoffMs(attempt, first, max, () => jitter);
    const cap = Math.min(max, first * 2 ** Math.max(0, Math.min(attempt, 60)));
    const where = `attempt ${attempt}, first ${first}, max ${max}, jitter ${jitter}: ${d}`;
    assert.ok(Number.isFinite(d), where);
    assert.ok(d >= cap / 2 && d < cap, where);
    assert.ok(d < max, where);
  }
});

Deno.test("backoff (property): the cap never shrinks from one attempt to the next", () => {
  const r = rng(7);
  for (let i = 0; i < 2_000; i++) {
    const first = 1 + Math.floor(r() * 500);
    const max = first + Math.floor(r() * 10_000);
    let prev = 0;
    for (let a = 0; a < 70; a++) {
      const cap = backoffMs(a, first, max, () => 0.9999999999);
      assert.ok(cap >= prev, `attempt ${a}: ${cap} < ${prev}`);
      prev = cap;
    }
  }
});

Deno.test("backoff: jitter spreads clients that failed together over half the cap", () => {
  const r = rng(1);
  const delays = Array.from({ length: 1_000 }, () => backoffMs(4, 100, 5_000, r));
  const lo = Math.min(...delays);
  const hi = Math.max(...delays);
  assert.ok(lo >= 800 && hi < 1_600, `${lo}..${hi}`);
  assert.ok(hi - lo > 600, `spread ${hi - lo}`);
});
