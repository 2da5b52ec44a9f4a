import assert from "node:assert/strict";
import { mixMean, parseMix } from "./mix.ts";

Deno.test("parseMix reads ms@probability lists and rejects bad ones", () => {
  assert.deepEqual(parseMix("1@0.9,20@0.1"), [{ ms: 1, p: 0.9 }, { ms: 20, p: 0.1 }]);
  assert.deepEqual(parseMix("2"), [{ ms: 2, p: 1 }]);
  assert.deepEqual(parseMix(" 0.5@.5, 1.5@.5 "), [{ ms: 0.5, p: 0.5 }, { ms: 1.5, p: 0.5 }]);
  assert.ok(Math.abs(mixMean(parseMix("1@0.9,20@0.1")) - 2.9) < 1e-12);
  for (const bad of ["", "1@0.5", "1@0.9,20@0.2", "x@1", "1@", "1@2", "1,2", "-1@1"]) {
    assert.throws(() => parseMix(bad), RangeError, bad);
  }
});
