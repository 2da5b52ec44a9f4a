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
