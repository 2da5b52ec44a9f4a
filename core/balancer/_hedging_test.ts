import assert from "node:assert/strict";
import { HEDGE_WINDOW, ServiceHedging } from "./_hedging.ts";
import { SERVICE_TIMES_MIN } from "./_service_times.ts";

type Job = { dispatched: number };

Deno.test("hedging budget allows 5 % of the last 200 jobs, and a copy again once old stamps leave the window", () => {
  const h = new ServiceHedging<Job>(0.05);
  assert.equal(HEDGE_WINDOW, 200);
  for (let i = 0; i < HEDGE_WINDOW; i++) h.arrived();
  let sent = 0;
  while (h.allows()) {
    h.record();
    sent++;
  }
  assert.equal(sent, 10);
  // The copies were stamped at arrival 200: they leave the window 200 jobs later.
  for (let i = 0; i < HEDGE_WINDOW - 1; i++) h.arrived();
  assert.equal(h.allows(), false);
  h.arrived();
  assert.equal(h.allows(), true);
});

Deno.test("hedging budget counts all jobs while fewer than the window have come", () => {
  const h = new ServiceHedging<Job>(0.05);
  for (let i = 0; i < 19; i++) h.arrived();
  assert.equal(h.allows(), false); // 1 > 0.05 × 19
  h.arrived();
  assert.equal(h.allows(), true); // 1 ≤ 0.05 × 20
  h.record();
  assert.equal(h.allows(), false);
});

Deno.test("hedging budget of 0 makes no job hedgeable, even one that asked", () => {
  const h = new ServiceHedging<Job>(0);
  h.learn({ ms: 10 }, []);
  assert.equal(h.hedgeable(true), false);
  assert.equal(h.hedgeable(undefined), false);
});

Deno.test("hedging delay is the fixed ms when set, whatever the service times", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn({ ms: 50 }, [7]);
  assert.equal(h.after, 50);
  for (let i = 1; i <= 100; i++) h.times.add(i);
  assert.equal(h.delay(), 50);
});

Deno.test("hedging delay is the p95 of recent answers, unknown (Infinity) before 20", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn({}, []);
  assert.equal(h.after, null);
  assert.equal(SERVICE_TIMES_MIN, 20);
  for (let i = 1; i < SERVICE_TIMES_MIN; i++) h.times.add(i);
  assert.equal(h.delay(), Infinity);
  h.times.add(20);
  assert.equal(h.delay(), 19); // the ⌈0.95 × 20⌉-th smallest of 1..20
});

Deno.test("hedging delay: the balancer's option wins, else the first provider that declared one", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn(undefined, [undefined, 30, null]);
  assert.equal(h.after, 30);
  h.learn(undefined, [undefined, null, 30]);
  assert.equal(h.after, null);
  h.learn({ ms: 5 }, [30]);
  assert.equal(h.after, 5);
  h.learn(undefined, [undefined]);
  assert.equal(h.after, undefined);
});

Deno.test("hedging: a job is hedgeable when it asked, or when its service is marked and it did not refuse", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn(undefined, []);
  assert.equal(h.hedgeable(undefined), false);
  assert.equal(h.hedgeable(true), true);
  h.learn({ ms: 10 }, []);
  assert.equal(h.hedgeable(undefined), true);
  assert.equal(h.hedgeable(false), false);
});

Deno.test("hedging scan hands over the candidates past the delay and returns when the next one is due", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn({ ms: 100 }, []);
  const a = { dispatched: 0 }, b = { dispatched: 30 }, c = { dispatched: 60 };
  h.add(a);
  h.add(b);
  h.add(c);
  const due: Job[] = [];
  assert.equal(
    h.scan(130, (j) => {
      due.push(j);
      h.delete(j);
    }),
    160,
  );
  assert.deepEqual(due, [a, b]);
  assert.equal(h.size, 1);
});

Deno.test("hedging pick takes the accepted candidate past its delay longest, above a floor", () => {
  const h = new ServiceHedging<Job>(0.05);
  h.learn({ ms: 100 }, []);
  const a = { dispatched: 0 }, b = { dispatched: 10 }, c = { dispatched: 50 };
  h.add(a);
  h.add(b);
  h.add(c);
  assert.equal(h.pick(120, 0, () => true), a);
  assert.equal(h.pickedOver, 20);
  assert.equal(h.pick(120, 0, (j) => j !== a), b);
  assert.equal(h.pickedOver, 10);
  assert.equal(h.pick(120, 15, (j) => j !== a), null); // b is only 10 ms past
  assert.equal(h.pick(140, 0, () => true), a); // c is not due yet at 140
  const asked: Job[] = [];
  h.pick(120, 0, (j) => (asked.push(j), true));
  // b, less past than a, and c, not past its delay, are never asked about (nor the budget).
  assert.deepEqual(asked, [a]);
});
