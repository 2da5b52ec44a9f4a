import assert from "node:assert/strict";
import { simulateCentralQueue } from "./central_queue.ts";
import type { LatencyHistogram } from "./latency_histogram.ts";

Deno.test("the ideal central queue simulation on a known tiny case", () => {
  // Two servers, one FIFO queue. Arrivals 0, 0, 0, 1, 10 with jobs 4, 2, 2, 1, 1 ms:
  // job 0 on s0 [0,4]; job 1 on s1 [0,2]; job 2 waits for s1 [2,4]; job 3 waits for the
  // first free server (s0 and s1 both free at 4) [4,5]; job 4 finds both free [10,11].
  const h = simulateCentralQueue({
    at: Float64Array.from([0, 0, 0, 1, 10]),
    jobMs: Float64Array.from([4, 2, 2, 1, 1]),
  }, 2);
  const values = (x: LatencyHistogram) => [...x.buckets()].flatMap(([v, n]) => Array(n).fill(v));
  const near = (got: number[], want: number[]) => {
    assert.equal(got.length, want.length);
    // Buckets report their upper edge: within 0.8 % above the value.
    got.forEach((g, i) => assert.ok(g >= want[i] && g <= want[i] * 1.008, `${got} vs ${want}`));
  };
  near(values(h), [1000, 2000, 4000, 4000, 4000]);
  assert.equal(h.min, 1000);
  assert.equal(h.max, 4000);
  // One server is a plain FIFO: jobs end at 4, 6, 8, 9, 11: responses 4, 6, 8, 8, 1.
  const one = simulateCentralQueue({
    at: Float64Array.from([0, 0, 0, 1, 10]),
    jobMs: Float64Array.from([4, 2, 2, 1, 1]),
  }, 1);
  assert.equal(one.max, 8000);
  near(values(one), [1000, 4000, 6000, 8000, 8000]);
  assert.throws(() => simulateCentralQueue({ at: new Float64Array(1), jobMs: null }, 2));
});
