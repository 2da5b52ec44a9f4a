import assert from "node:assert/strict";
import {
  createRing,
  RING_HEAD_OFFSET,
  RING_HEADER_BYTES,
  RING_TAIL_OFFSET,
  RingConsumer,
  ringMaxPayload,
  RingProducer,
  RingRecord,
  ringStats,
  utf8Length,
} from "./ring.ts";
import { RingMessageTooLargeError } from "../errors.ts";
import type { StressReport, StressStart } from "../../tests/fixtures/ring_stress_worker.ts";

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

/** A fresh empty ring whose indices both stand at `index`. */
function ringAt(capacity: number, index: number): SharedArrayBuffer {
  const sab = createRing(capacity);
  const ctl = new Int32Array(sab);
  ctl[RING_TAIL_OFFSET >> 2] = index | 0;
  ctl[RING_HEAD_OFFSET >> 2] = index | 0;
  return sab;
}

Deno.test("ring carries id, kind, aux, meta and body unchanged", () => {
  const sab = createRing(1024);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const meta = bytes(5, 9);
  const body = bytes(70, 3);
  assert.equal(p.tryWrite(0xfedc_ba98, 0xffff, 0xabcd, meta, body), true);
  assert.equal(p.tryWrite(2, 0, 0, null, null), true);
  const rec = new RingRecord();
  assert.equal(c.read(rec), false, "nothing is visible before flush");
  p.flush();
  assert.equal(c.read(rec), true);
  assert.deepEqual(
    [rec.id, rec.kind, rec.aux, rec.metaLength, rec.bodyLength],
    [0xfedc_ba98, 0xffff, 0xabcd, 5, 70],
  );
  assert.deepEqual(c.takeMeta(rec), meta);
  assert.deepEqual(c.takeBody(rec), body);
  assert.equal(c.read(rec), true);
  assert.deepEqual([rec.id, rec.metaLength, rec.bodyLength], [2, 0, 0]);
  assert.deepEqual(c.takeBody(rec), new Uint8Array(0));
  assert.equal(c.read(rec), false);
  c.release();
  const s = ringStats(sab);
  assert.deepEqual([s.written, s.read, s.usedBytes], [2, 2, 0]);
});

Deno.test("empty ring reads false; full ring refuses writes, counts them, and takes more after release", () => {
  const sab = createRing(256);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  assert.equal(c.read(rec), false);
  assert.equal(c.hasData(), false);
  const msg = bytes(40); // 56-byte records: four fill 224 of 256 bytes
  let n = 0;
  while (p.tryWrite(n, 1, 0, null, msg)) n++;
  assert.equal(n, 4);
  assert.equal(p.fullEvents, 1);
  assert.equal(p.tryWrite(99, 1, 0, null, msg), false);
  assert.equal(ringStats(sab).fullEvents, 2);
  p.flush();
  assert.equal(c.read(rec), true);
  assert.equal(p.tryWrite(4, 1, 0, null, msg), false, "space is not reusable before release");
  c.release();
  assert.equal(p.tryWrite(4, 1, 0, null, msg), true, "released space is reused");
  p.flush();
  const ids: number[] = [];
  while (c.read(rec)) {
    ids.push(rec.id);
    assert.deepEqual(c.takeBody(rec), msg);
  }
  c.release();
  assert.deepEqual(ids, [1, 2, 3, 4]);
  assert.equal(ringStats(sab).usedBytes, 0);
});

Deno.test("message larger than the ring's limit is refused with RingMessageTooLargeError and nothing is written", () => {
  const sab = createRing(256);
  const p = new RingProducer(sab);
  assert.equal(p.maxPayload, ringMaxPayload(256));
  assert.equal(p.maxPayload, 112);
  p.tryWrite(1, 1, 0, null, bytes(3));
  assert.throws(
    () => p.tryWrite(2, 1, 0, bytes(13), bytes(100)),
    (e: unknown) =>
      e instanceof RingMessageTooLargeError && e.size === 113 && e.limit === 112 &&
      e.name === "RingMessageTooLargeError" && /113 bytes/.test(e.message),
  );
  assert.throws(() => p.tryWriteText(2, 1, 0, null, "€".repeat(38)), RingMessageTooLargeError);
  assert.throws(() => p.fits(113), RingMessageTooLargeError);
  p.flush();
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  assert.equal(c.read(rec), true);
  assert.deepEqual([rec.id, rec.bodyLength], [1, 3]);
  assert.equal(c.read(rec), false);
});

Deno.test("capacity must be a power of two within bounds", () => {
  assert.throws(() => createRing(1000), RangeError);
  assert.throws(() => createRing(32), RangeError);
  assert.throws(() => createRing(2 ** 31), RangeError);
  assert.throws(() => new RingProducer(new SharedArrayBuffer(RING_HEADER_BYTES + 100)), RangeError);
});

Deno.test("largest message fits an empty ring wherever its indices stand, including across 2^32", () => {
  const cap = 256;
  const max = ringMaxPayload(cap);
  const body = bytes(max, 7);
  const starts: number[] = [];
  for (let off = 0; off < cap; off += 8) starts.push(off, 0xffff_ff00 + off);
  for (const start of starts) {
    const sab = ringAt(cap, start);
    const p = new RingProducer(sab);
    const c = new RingConsumer(sab);
    const rec = new RingRecord();
    for (let round = 0; round < 5; round++) {
      assert.equal(p.tryWrite(round, 1, 0, null, body), true, `start ${start} round ${round}`);
      p.flush();
      assert.equal(c.read(rec), true);
      assert.equal(rec.bodyLength, max);
      assert.deepEqual(c.takeBody(rec), body);
      assert.equal(c.read(rec), false);
      c.release();
    }
  }
});

Deno.test("a record that does not fit before the end wraps whole to offset 0", () => {
  const sab = createRing(256);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  // 200 bytes used, then released: 56 bytes remain before the end.
  assert.ok(p.tryWrite(1, 1, 0, null, bytes(96)) && p.tryWrite(2, 1, 0, null, bytes(72)));
  p.flush();
  while (c.read(rec));
  c.release();
  const body = bytes(60, 5); // 80-byte record > 56 left: wrap marker, record at 0
  assert.ok(p.tryWrite(3, 1, 0, null, body));
  p.flush();
  assert.equal(ringStats(sab).usedBytes, 56 + 80);
  assert.ok(c.read(rec));
  assert.deepEqual([rec.id, rec.offset], [3, 16]);
  assert.deepEqual(c.takeBody(rec), body);
  // A record ending exactly at the end needs no marker.
  const sab2 = createRing(256);
  const p2 = new RingProducer(sab2);
  const c2 = new RingConsumer(sab2);
  assert.ok(p2.tryWrite(1, 1, 0, null, bytes(112)) && p2.tryWrite(2, 1, 0, null, bytes(112)));
  p2.flush();
  while (c2.read(rec));
  c2.release();
  assert.ok(p2.tryWrite(3, 1, 0, null, bytes(1)));
  p2.flush();
  assert.ok(c2.read(rec));
  assert.deepEqual([rec.id, rec.offset], [3, 16]);
});

Deno.test("tryWriteText encodes UTF-8 straight into shared memory, as TextEncoder does", () => {
  const sab = createRing(1024);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  const texts = ["", "ascii", "é€😀", "lone \ud800 high", "lone \udc00 low", "end \ud83d"];
  const meta = bytes(3);
  for (const [i, t] of texts.entries()) {
    assert.equal(utf8Length(t), new TextEncoder().encode(t).length, JSON.stringify(t));
    assert.ok(p.tryWriteText(i, 1, 0, meta, t));
  }
  p.flush();
  for (const t of texts) {
    assert.ok(c.read(rec));
    assert.deepEqual(c.takeMeta(rec), meta);
    assert.deepEqual(c.takeBody(rec), new TextEncoder().encode(t));
    assert.equal(c.bodyText(rec), new TextDecoder().decode(new TextEncoder().encode(t)));
  }
});

Deno.test("copyBody and copyMeta write only the copied region of the destination", () => {
  const sab = createRing(4096);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  for (const n of [0, 1, 63, 64, 65, 1000]) {
    const meta = bytes(n, 2);
    const body = bytes(n, 4);
    assert.ok(p.tryWrite(n, 1, 0, meta, body));
    p.flush();
    assert.ok(c.read(rec));
    for (const [copy, expected] of [[c.copyMeta, meta], [c.copyBody, body]] as const) {
      const dst = new Uint8Array(n + 32).fill(0xee);
      copy.call(c, rec, dst, 16);
      assert.deepEqual(dst.subarray(16, 16 + n), expected);
      assert.ok(dst.subarray(0, 16).every((b) => b === 0xee), `sentinel before, ${n} bytes`);
      assert.ok(dst.subarray(16 + n).every((b) => b === 0xee), `sentinel after, ${n} bytes`);
    }
    assert.throws(() => c.copyBody(rec, new Uint8Array(n + 3), 4), RangeError);
    c.release();
  }
});

/** Runs one end of a ring on its own thread (a Web Worker) and resolves with its report. */
function runRingEnd(start: StressStart): Promise<StressReport> {
  const w = new Worker(
    new URL("../../tests/fixtures/ring_stress_worker.ts", import.meta.url).href,
    {
      type: "module",
    },
  );
  return new Promise<StressReport>((resolve, reject) => {
    w.onmessage = (e: MessageEvent<StressReport>) => {
      w.terminate();
      resolve(e.data);
    };
    w.onerror = (e) => {
      e.preventDefault();
      w.terminate();
      reject(new Error(e.message));
    };
    w.postMessage(start);
  });
}

async function stress(count: number, seed: number, capacity: number, releaseEvery: number) {
  const ring = createRing(capacity);
  const [producer, consumer] = await Promise.all([
    runRingEnd({ role: "producer", ring, count, seed, releaseEvery }),
    runRingEnd({ role: "consumer", ring, count, seed, releaseEvery }),
  ]);
  assert.deepEqual(consumer.errors, []);
  assert.equal(consumer.count, count);
  assert.equal(producer.count, count);
  const s = ringStats(ring);
  assert.equal(s.written, count);
  assert.equal(s.read, count);
  assert.equal(s.usedBytes, 0);
  return { producer, consumer, stats: s };
}

Deno.test("ring under a real producer thread and consumer thread delivers 2M seeded messages intact", async () => {
  const { producer, consumer, stats } = await stress(2_000_000, 0xc0ffee, 4096, 64);
  // The sequence really exercised the edges.
  assert.ok(consumer.zeroLength > 60_000, `zero-length: ${consumer.zeroLength}`);
  assert.ok(consumer.maxLength > 60_000, `max-length: ${consumer.maxLength}`);
  assert.ok(consumer.wraps > 60_000, `wrap markers: ${consumer.wraps}`);
  assert.ok(consumer.exactEnds > 1_000, `records ending exactly at the end: ${consumer.exactEnds}`);
  // Both ends had to wait, so the wake-up path ran too.
  assert.ok(producer.sleeps + consumer.sleeps > 0);
  assert.ok(stats.fullEvents > 0);
});

Deno.test("ring under threads stays intact when the consumer releases after every record", async () => {
  const { consumer } = await stress(300_000, 42, 256, 1);
  assert.ok(consumer.wraps > 1000);
});

Deno.test("main thread holds what does not fit and retries after the consumer thread releases", async () => {
  const ring = createRing(4096);
  const count = 200_000;
  const seed = 7;
  const consumerDone = runRingEnd({ role: "consumer", ring, count, seed, releaseEvery: 16 });
  // The producer side, written as the main thread does it: never block, await space.
  const { prng, nextSize } = await import("../../tests/fixtures/ring_stress_worker.ts");
  const p = new RingProducer(ring);
  const max = p.maxPayload;
  const rnd = prng(seed);
  const pat = (() => {
    const r = prng(seed ^ 0x5eed);
    const a = new Uint8Array(1 << 16);
    for (let i = 0; i < a.length; i++) a[i] = r() & 255;
    return a;
  })();
  let held = 0;
  let waits = 0;
  for (let i = 0; i < count; i++) {
    const size = nextSize(rnd, max);
    const split = size === 0 ? 0 : rnd() % (size + 1);
    const start = i % ((1 << 16) - 2 * max);
    const meta = pat.subarray(start, start + split);
    const body = pat.subarray(start + split, start + size);
    if (!p.tryWrite(i, i & 0xffff, size & 0xffff, meta, body)) {
      held++;
      while (!p.tryWrite(i, i & 0xffff, size & 0xffff, meta, body)) {
        const wait = p.waitForSpaceAsync(size);
        if (wait) {
          waits++;
          await wait;
        }
      }
    }
    if ((i & 15) === 15) p.flush();
  }
  p.flush();
  const report = await consumerDone;
  assert.deepEqual(report.errors, []);
  assert.ok(held > 0, "the ring was full at times");
  assert.ok(waits > 0, "the main thread waited with Atomics.waitAsync");
  assert.equal(ringStats(ring).read, count);
});

Deno.test("main thread sleeps on Atomics.waitAsync and wakes for a producer thread", async () => {
  const ring = createRing(4096);
  const count = 100_000;
  const producerDone = runRingEnd({ role: "producer", ring, count, seed: 3, releaseEvery: 1 });
  const c = new RingConsumer(ring);
  const rec = new RingRecord();
  let n = 0;
  let sleeps = 0;
  let lastId = -1;
  while (n < count) {
    while (c.read(rec)) {
      assert.equal(rec.id, lastId + 1);
      lastId = rec.id;
      n++;
    }
    c.release();
    if (n === count) break;
    const wait = c.waitForDataAsync();
    if (wait) {
      sleeps++;
      await wait;
    }
  }
  await producerDone;
  assert.equal(n, count);
  assert.ok(sleeps > 0);
  assert.ok(ringStats(ring).dataWakeups > 0, "the producer notified a sleeping consumer");
});

Deno.test("peekKind names the next record's kind without reading it, across the ring's wrap, and -1 when none is published", () => {
  const sab = createRing(256);
  const p = new RingProducer(sab);
  const c = new RingConsumer(sab);
  const rec = new RingRecord();
  assert.equal(c.peekKind(), -1);
  let seed = 7;
  const next = () => (seed = (seed * 1_103_515_245 + 12_345) & 0x7fff_ffff);
  let id = 0;
  for (let round = 0; round < 500; round++) {
    // Up to three records of random kinds and sizes (the sizes walk the wrap marker around).
    const kinds: number[] = [];
    for (let k = next() % 3 + 1; k > 0; k--) {
      const kind = next() & 0xffff;
      if (!p.tryWrite(++id, kind, 0, null, bytes(next() % 60))) break;
      kinds.push(kind);
    }
    assert.equal(c.peekKind(), -1, "nothing is visible before flush");
    p.flush();
    for (const kind of kinds) {
      assert.equal(c.peekKind(), kind, `round ${round}`);
      assert.equal(c.peekKind(), kind, "peeking does not read");
      assert.equal(c.read(rec), true);
      assert.equal(rec.kind, kind);
    }
    assert.equal(c.peekKind(), -1);
    c.release();
  }
});

Deno.test("a producer's lazyKind records do not wake a lazily armed consumer; a batch with any other kind does", () => {
  const sab = createRing(4096);
  const producer = new RingProducer(sab, { lazyKind: 1 });
  const consumer = new RingConsumer(sab);
  const rec = new RingRecord();
  // Lazily armed: two lazy-kind records published, no wake-up; they are there to read.
  let seq = consumer.armData(true);
  assert.notEqual(seq, -1);
  producer.tryWrite(1, 1, 0, null, null);
  assert.equal(producer.flush(), false);
  producer.tryWrite(2, 1, 0, null, null);
  assert.equal(producer.flush(), false);
  assert.equal(consumer.sleepSync(seq, 0), "timed-out");
  assert.equal(consumer.read(rec) && rec.id, 1);
  assert.equal(consumer.read(rec) && rec.id, 2);
  // Lazily armed again: a batch holding another kind wakes it.
  seq = consumer.armData(true);
  producer.tryWrite(3, 1, 0, null, null);
  producer.tryWrite(4, 2, 0, null, null);
  assert.equal(producer.flush(), true);
  assert.equal(consumer.sleepSync(seq, 0), "not-equal");
  // Armed the usual way, a lazy-kind record wakes it too.
  consumer.read(rec);
  consumer.read(rec);
  seq = consumer.armData();
  producer.tryWrite(5, 1, 0, null, null);
  assert.equal(producer.flush(), true);
  assert.equal(producer.wakeups, 2);
});
