import assert from "node:assert/strict";
import { BlockingClock, READ_AHEAD_MS } from "./_precise_clock.ts";

const onError = (err: unknown) => {
  throw err;
};

/** Posts a message now; resolves with the time it is handled (an event-loop turn). */
function turn(): Promise<number> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      port2.close();
      resolve(performance.now());
    };
    port2.postMessage(null);
  });
}

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

Deno.test("BlockingClock lets the event loop turn before a deadline only when asked to read ahead", async () => {
  for (const readAhead of [false, true]) {
    const clock = new BlockingClock(onError, () => readAhead);
    try {
      const due = performance.now() + 2;
      const fired = new Promise<number>((resolve) =>
        clock.at(due, () => resolve(performance.now()))
      );
      // Posted after the clock's own hop: handled when the event loop next turns.
      const handled = turn();
      const [f, h] = await Promise.all([fired, handled]);
      if (readAhead) {
        assert.ok(h < f, "the event loop turned while the entry waited");
        assert.ok(h >= due - READ_AHEAD_MS - 1, "and only near its deadline");
        assert.equal(clock.readAheads, 1);
      } else {
        assert.ok(h >= f, "the thread blocked until the entry ran");
        assert.equal(clock.readAheads, 0);
      }
      assert.ok(f >= due);
    } finally {
      clock.close();
    }
  }
});
