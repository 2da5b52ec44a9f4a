import assert from "node:assert/strict";
import { LEAD_QUANTILE, MAX_LEAD_MS, WakeLead } from "./wake_lead.ts";

Deno.test("WakeLead settles near the low quantile of the overshoot", () => {
  const lead = new WakeLead();
  // Overshoots spread like the measured ones: 23–130 µs, a low floor.
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const samples: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const s = 0.023 + 0.1 * rand() ** 3;
    samples.push(s);
    lead.observe(s);
  }
  samples.sort((a, b) => a - b);
  const q = samples[Math.floor(LEAD_QUANTILE * samples.length)];
  assert.ok(Math.abs(lead.ms - q) < 0.004, `lead ${lead.ms} vs quantile ${q}`);
  // Most waits then still wake at or after the deadline: few spin.
  const early = samples.filter((s) => s < lead.ms).length / samples.length;
  assert.ok(early < 0.15, `early ${early}`);
});

Deno.test("WakeLead stays within [0, MAX_LEAD_MS] and ignores nonsense", () => {
  const lead = new WakeLead();
  for (let i = 0; i < 5_000; i++) lead.observe(5);
  assert.equal(lead.ms, MAX_LEAD_MS);
  for (let i = 0; i < 5_000; i++) lead.observe(-1);
  assert.equal(lead.ms, 0);
  lead.observe(NaN);
  lead.observe(Infinity);
  assert.equal(lead.ms, 0);
});

Deno.test("WakeLead follows a machine that gets slower, then faster", () => {
  const lead = new WakeLead();
  for (let i = 0; i < 5_000; i++) lead.observe(0.01);
  assert.ok(Math.abs(lead.ms - 0.01) < 0.004);
  for (let i = 0; i < 5_000; i++) lead.observe(0.04);
  assert.ok(Math.abs(lead.ms - 0.04) < 0.004);
  for (let i = 0; i < 500; i++) lead.observe(0.005);
  assert.ok(lead.ms < 0.01, `lead ${lead.ms}`);
});
