import assert from "node:assert/strict";
import { Series } from "./series.ts";

Deno.test("Series keeps the newest samples in order and writes NaN as null", () => {
  const s = new Series(4);
  assert.ok(Number.isNaN(s.last));
  for (const v of [1, 2, NaN, 4, 5]) s.push(v);
  assert.deepEqual(s.toArray(), [2, null, 4, 5]);
  assert.equal(s.last, 5);
  assert.equal(s.size, 4);
  assert.equal(s.mean(3), 4.5, "NaN samples are skipped");
  assert.equal(new Series(2).toArray().length, 0);
});
