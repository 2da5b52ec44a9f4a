import assert from "node:assert/strict";
import { Doorbell } from "./doorbell.ts";

Deno.test("doorbell notifies only an armed sleeper, once per sleep", () => {
  const bell = new Doorbell(new SharedArrayBuffer(64), 8);
  assert.equal(bell.ring(), false);
  const seq = bell.arm();
  assert.equal(bell.armed, true);
  assert.equal(bell.ring(), true);
  assert.equal(bell.armed, false);
  assert.equal(bell.ring(), false, "a second ring before re-arming costs nothing");
  assert.equal(bell.waitAsync(seq), undefined, "SEQ moved on: no wait");
  const seq2 = bell.arm();
  assert.equal(seq2, seq + 1);
  bell.disarm();
  assert.equal(bell.ring(), false);
});

Deno.test("doorbell: a lazy sleeper is woken only by an urgent ring, and stays armed until then", () => {
  const bell = new Doorbell(new SharedArrayBuffer(64), 8);
  const seq = bell.arm(true);
  assert.equal(bell.ring(false), false, "not urgent: no notify");
  assert.equal(bell.armed, true, "still armed for the urgent ring to come");
  assert.equal(bell.waitSync(seq, 0), "timed-out", "SEQ did not move: the sleeper sleeps on");
  assert.equal(bell.ring(true), true);
  assert.equal(bell.armed, false);
  assert.equal(bell.waitAsync(seq), undefined, "SEQ moved on");
  // A sleeper armed the usual way is woken by any ring.
  bell.arm();
  assert.equal(bell.ring(false), true);
});
