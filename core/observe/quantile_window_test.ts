import assert from "node:assert/strict";
import { QuantileWindow } from "./quantile_window.ts";

Deno.test("QuantileWindow is within 5 % and forgets values older than its window", () => {
  const w = new QuantileWindow(60);
  // 1..1000 ms: p50 ≈ 500 ms, p99 ≈ 990 ms.
  for (let i = 1; i <= 1000; i++) w.observe(i / 1000);
  const p50 = w.quantile(0.5);
  const p99 = w.quantile(0.99);
  assert.ok(Math.abs(p50 - 0.5) / 0.5 < 0.05, `p50 ${p50}`);
  assert.ok(Math.abs(p99 - 0.99) / 0.99 < 0.05, `p99 ${p99}`);
  // The second's own p99 comes back from tick, and the values stay in the window.
  const sec = w.tick(0.99);
  assert.ok(Math.abs(sec - 0.99) / 0.99 < 0.05, `second p99 ${sec}`);
  assert.equal(w.count, 1000);
  for (let t = 0; t < 59; t++) assert.ok(Number.isNaN(w.tick(0.5)));
  assert.equal(w.count, 1000, "still inside the minute");
  for (let t = 0; t < 6; t++) w.tick(0.5);
  assert.equal(w.count, 0, "a minute and more later it is gone");
  assert.ok(Number.isNaN(w.quantile(0.5)));
  // Extremes are clamped, not lost.
  w.observe(0);
  w.observe(1e6);
  assert.equal(w.count, 2);
  assert.ok(w.quantile(1) > 100);
});
