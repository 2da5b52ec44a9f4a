import assert from "node:assert/strict";
import { mixSampler, parseMix } from "./mix.ts";
import { poissonSchedule } from "./schedule.ts";

Deno.test("schedules are reproducible from their seed and follow rate and mix", () => {
  const mix = parseMix("1@0.9,20@0.1");
  const a = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 11, mix });
  const b = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 11, mix });
  const c = poissonSchedule({ rate: 2000, durationMs: 5000, seed: 12, mix });
  assert.deepEqual(a.at, b.at);
  assert.deepEqual(a.jobMs, b.jobMs);
  assert.notDeepEqual(a.at, c.at);
  const n = a.at.length;
  assert.ok(n > 9_500 && n < 10_500, `${n} arrivals for 10 000 expected`);
  for (let i = 1; i < n; i++) assert.ok(a.at[i] >= a.at[i - 1]);
  const slow = a.jobMs!.filter((ms) => ms === 20).length / n;
  assert.ok(slow > 0.085 && slow < 0.115, `share of 20 ms jobs ${slow}`);
  // The closed loop draws job times from the same stream.
  const draw = mixSampler(mix, 11);
  for (let i = 0; i < 100; i++) assert.equal(draw(), a.jobMs![i]);
  // Gaps are exponential: their coefficient of variation is about 1.
  const gaps = Array.from({ length: n - 1 }, (_, i) => a.at[i + 1] - a.at[i]);
  const mean = gaps.reduce((s, g) => s + g, 0) / gaps.length;
  const sd = Math.sqrt(gaps.reduce((s, g) => s + (g - mean) ** 2, 0) / gaps.length);
  assert.ok(Math.abs(sd / mean - 1) < 0.05, `cv ${sd / mean}`);
});
