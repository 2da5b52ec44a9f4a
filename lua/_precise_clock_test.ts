import assert from "node:assert/strict";
import { BlockingClock } from "./_precise_clock.ts";

const onError = (err: unknown) => {
  throw err;
};

Deno.test("BlockingClock runs entries in deadline order and never early, short and long", async () => {
  const clock = new BlockingClock(onError);
  try {
    const ran: [number, number, number][] = [];
    const done = Promise.all([0.5, 2, 12, 1].map((ms, i) =>
      new Promise<void>((resolve) => {
        const at = performance.now() + ms;
        clock.at(at, () => {
          ran.push([i, at, performance.now()]);
          resolve();
        });
      })
    ));
    await done;
    assert.deepEqual(ran.map(([i]) => i), [0, 3, 1, 2]);
    for (const [, at, t] of ran) assert.ok(t >= at, `ran ${at - t} ms early`);
    assert.ok(clock.blocks >= 1);
  } finally {
    clock.close();
  }
});
