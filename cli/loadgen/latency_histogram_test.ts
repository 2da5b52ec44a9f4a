import assert from "node:assert/strict";
import { LatencyHistogram, percentiles } from "./latency_histogram.ts";
import { createRng } from "./rng.ts";

Deno.test("histogram percentiles are exact below 256 µs and within 0.8 % above", () => {
  const h = new LatencyHistogram();
  for (let v = 1; v <= 100; v++) h.record(v);
  assert.equal(h.percentile(50), 50);
  assert.equal(h.percentile(99), 99);
  assert.equal(h.percentile(100), 100);
  assert.equal(h.percentile(0), 1);
  assert.equal(h.percentile(0.5), 1); // nearest rank: ceil(0.005 · 100) = 1

  const big = new LatencyHistogram();
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
  const h = new LatencyHistogram();
  assert.equal(h.percentile(99), 0);
  assert.deepEqual(percentiles(h).max, 0);
  h.record(123_456);
  assert.equal(h.percentile(1), 123_456); // clamped to the exact min and max
  assert.equal(h.percentile(99.9), 123_456);
  h.record(-5); // negative counts as 0
  assert.equal(h.min, 0);
});

Deno.test("histograms merge by adding counts and survive JSON", () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  const all = new LatencyHistogram();
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
  const back = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  for (const p of [10, 50, 90, 99, 99.9]) assert.equal(back.percentile(p), a.percentile(p));
  assert.equal(back.count, a.count);
  assert.equal(back.min, a.min);
  assert.equal(back.max, a.max);
  assert.ok(Math.abs(back.mean - a.mean) < 1e-9);
});
