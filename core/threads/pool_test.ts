import assert from "node:assert/strict";
import { HandlerPool, type HandlerPoolOptions, type JobReply, TS_HANDLER_RUNTIME } from "./pool.ts";
import {
  HandlerError,
  HandlerThreadLostError,
  JobError,
  JobTimeoutError,
  PoolClosedError,
  RingMessageTooLargeError,
} from "../errors.ts";
import { int, mulberry32 } from "../../tests/fuzz/_mutate.ts";

const HANDLERS = new URL("../../tests/fixtures/pool_handlers.ts", import.meta.url).href;
const enc = new TextEncoder();
const dec = new TextDecoder();
const text = (r: JobReply) => dec.decode(r.body);

function startPool(options: Partial<HandlerPoolOptions> = {}): Promise<HandlerPool> {
  return HandlerPool.start({
    module: TS_HANDLER_RUNTIME,
    moduleOptions: { handlers: HANDLERS },
    threads: 2,
    ...options,
  });
}

/** Resolves when `predicate` holds, checking every few milliseconds (no timing asserted). */
async function until(predicate: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`Gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("pool starts its threads, reports the runtime's services and answers jobs through the rings", async () => {
  const pool = await startPool({ perThreadConcurrency: 4 });
  try {
    assert.equal(pool.threads, 2);
    assert.equal(pool.freeSlots, 8);
    assert.ok(pool.serves("echo") && pool.serves("upper") && !pool.serves("nope"));
    assert.deepEqual([...pool.services], [...pool.services].sort());
    const body = enc.encode("hello");
    const echo = await pool.call({ id: 7, service: "echo", body });
    assert.deepEqual([echo.id, echo.status, echo.body, echo.meta.length], [7, 200, body, 0]);
    const upper = await pool.call({
      id: 8,
      service: "upper",
      meta: new Uint8Array([1, 2, 3]),
      body: enc.encode("héllo"),
    });
    assert.deepEqual([upper.id, upper.status, text(upper)], [8, 201, "HÉLLO"]);
    assert.deepEqual(upper.meta, new Uint8Array([1, 2, 3]));
    const empty = await pool.call({ id: 9, service: "echo", body: new Uint8Array(0) });
    assert.equal(empty.body.length, 0);
    // Both threads serve.
    const names = await Promise.all(
      Array.from({ length: 40 }, (_, i) => pool.call({ id: i, service: "whoami", body: body })),
    );
    assert.deepEqual(new Set(names.map(text)), new Set(["ep-handler-0", "ep-handler-1"]));
    assert.equal(pool.freeSlots, 8);
    assert.equal(pool.jobsInFlight, 0);
  } finally {
    await pool.close();
  }
});

Deno.test("submit takes a slot or returns false, and a reply frees its slot before onReply runs", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 2 });
  try {
    const replies: string[] = [];
    let resubmitted = false;
    const done = new Promise<void>((resolve, reject) => {
      const onReply = (err: Error | null, reply: JobReply | null) => {
        if (err) return reject(err);
        replies.push(text(reply!));
        if (!resubmitted) {
          resubmitted = true;
          assert.equal(pool.freeSlots, 1, "the slot is free inside the callback");
          assert.equal(
            pool.submit({ id: 3, service: "sleep", body: enc.encode("1") }, onReply),
            true,
          );
        }
        if (replies.length === 3) resolve();
      };
      assert.equal(pool.submit({ id: 1, service: "sleep", body: enc.encode("20") }, onReply), true);
      assert.equal(pool.submit({ id: 2, service: "sleep", body: enc.encode("20") }, onReply), true);
      assert.equal(pool.freeSlots, 0);
      assert.equal(
        pool.submit({ id: 9, service: "echo", body: new Uint8Array(1) }, onReply),
        false,
      );
      assert.equal(pool.jobsInFlight, 2);
    });
    await done;
    assert.deepEqual(replies.sort(), ["slept 1", "slept 20", "slept 20"]);
    assert.equal(pool.freeSlots, 2);
  } finally {
    await pool.close();
  }
});

Deno.test("call waits in line for a free slot", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 1 });
  try {
    const replies = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => pool.call({ id: i, service: "echo", body: new Uint8Array([i]) }),
      ),
    );
    assert.deepEqual(replies.map((r) => r.body[0]), Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(replies.map((r) => r.id), Array.from({ length: 20 }, (_, i) => i));
  } finally {
    await pool.close();
  }
});

Deno.test("async handlers: one thread holds as many jobs in flight as its slots", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 16 });
  try {
    // Each gate job waits until 16 are held at once: only concurrent jobs can finish.
    const replies = await Promise.all(
      Array.from(
        { length: 16 },
        (_, i) => pool.call({ id: i, service: "gate", body: enc.encode("16") }),
      ),
    );
    assert.ok(replies.every((r) => text(r) === "16"));
    assert.equal(pool.counters().threads[0].asyncJobsInFlight, 0);
  } finally {
    await pool.close();
  }
});

Deno.test("handler errors become error replies and the thread goes on", async () => {
  const pool = await startPool({ threads: 1 });
  try {
    await assert.rejects(
      pool.call({ id: 1, service: "fail", body: new Uint8Array() }),
      (e: unknown) =>
        e instanceof HandlerError && e.name === "HandlerError" &&
        e.handlerErrorName === "TypeError" && e.message === "Handler failed on purpose" &&
        /pool_handlers\.ts/.test(e.stack ?? ""),
    );
    await assert.rejects(
      pool.call({ id: 2, service: "failAsync", body: new Uint8Array() }),
      (e: unknown) => e instanceof HandlerError && e.handlerErrorName === "RangeError",
    );
    await assert.rejects(
      pool.call({ id: 3, service: "bad", body: new Uint8Array() }),
      (e: unknown) => e instanceof HandlerError && /neither bytes/.test(e.message),
    );
    assert.equal(text(await pool.call({ id: 4, service: "echo", body: enc.encode("ok") })), "ok");
    const c = pool.counters();
    assert.equal(c.threadsLost, 0);
    assert.equal(c.threads[0].restarts, 0);
    assert.equal(c.replied, 4);
  } finally {
    await pool.close();
  }
});

Deno.test("unknown services and jobs larger than the ring are refused; an oversized reply fails clearly", async () => {
  const pool = await startPool({ threads: 1, ringBytes: 4096 });
  try {
    assert.equal(pool.maxMessageBytes, 2032);
    assert.throws(
      () => pool.submit({ id: 1, service: "nope", body: new Uint8Array() }, () => {}),
      RangeError,
    );
    assert.throws(
      () =>
        pool.submit({
          id: 1,
          service: "echo",
          meta: new Uint8Array(33),
          body: new Uint8Array(2000),
        }, () => {}),
      RingMessageTooLargeError,
    );
    await assert.rejects(
      pool.call({ id: 1, service: "echo", body: new Uint8Array(2033) }),
      RingMessageTooLargeError,
    );
    assert.equal(pool.jobsInFlight, 0, "a refused job takes no slot");
    await assert.rejects(
      pool.call({ id: 2, service: "big", body: enc.encode("5000") }),
      (e: unknown) => e instanceof RingMessageTooLargeError && e.size === 5000 && e.limit === 2032,
    );
    const ok = await pool.call({ id: 3, service: "big", body: enc.encode("2032") });
    assert.equal(ok.body.length, 2032);
  } finally {
    await pool.close();
  }
});

Deno.test("jobs that do not fit in the job ring are held on the main thread and none is lost", async () => {
  // 4 KiB rings take two 2000-byte jobs at a time; 64 slots make the main thread hold the
  // rest, and the replies (same size) fill the reply ring, so the thread holds some too.
  const pool = await startPool({ threads: 1, ringBytes: 4096, perThreadConcurrency: 64 });
  try {
    const bodies = Array.from({ length: 64 }, (_, i) => new Uint8Array(2000).fill(i));
    const replies = await Promise.all(
      bodies.map((body, i) => pool.call({ id: i, service: "echo", body })),
    );
    for (const [i, r] of replies.entries()) {
      assert.equal(r.id, i);
      assert.deepEqual(r.body, bodies[i]);
    }
    const t = pool.counters().threads[0];
    assert.ok(t.jobRing.fullEvents > 0, "the main thread held jobs");
    assert.equal(t.jobsHeld, 0);
    assert.equal(t.jobsDone, 64);
  } finally {
    await pool.close();
  }
});

Deno.test("a thread holds replies that do not fit in the reply ring and none is lost", async () => {
  // Small jobs, 2000-byte replies: the 4 KiB reply ring takes two, the thread holds the rest
  // while the main thread is kept busy, then writes them as the main thread drains.
  const pool = await startPool({ threads: 1, ringBytes: 4096, perThreadConcurrency: 8 });
  try {
    const replies = Array.from(
      { length: 8 },
      (_, i) => pool.call({ id: i, service: "big", body: enc.encode("2000") }),
    );
    await Promise.resolve(); // the jobs are published
    const end = Date.now() + 10_000;
    while (pool.counters().threads[0].jobsDone < 8 && Date.now() < end) {
      // busy: no reply can be taken meanwhile
    }
    assert.ok(pool.counters().threads[0].replyRing.fullEvents > 0, "the thread held replies");
    for (const [i, r] of (await Promise.all(replies)).entries()) {
      assert.equal(r.id, i);
      assert.equal(r.body.length, 2000);
      assert.ok(r.body.every((b) => b === 7));
    }
  } finally {
    await pool.close();
  }
});

Deno.test("the scheduler drains reply rings in turns, so a busy thread cannot starve another", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 400 });
  try {
    const order: string[] = [];
    let left = 800;
    const done = new Promise<void>((resolve, reject) => {
      const onReply = (err: Error | null, reply: JobReply | null) => {
        if (err) return reject(err);
        order.push(text(reply!));
        if (--left === 0) resolve();
      };
      for (let i = 0; i < 800; i++) {
        pool.submit({ id: i, service: "whoami", body: new Uint8Array() }, onReply);
      }
    });
    // Let the jobs be published, then keep the main thread busy (synchronously: no reply
    // can be taken meanwhile) while both threads fill their reply rings. The scheduler then
    // finds 400 replies in each ring.
    await Promise.resolve();
    const end = Date.now() + 10_000;
    while (!pool.counters().threads.every((t) => t.jobsDone === 400) && Date.now() < end) {
      // busy: the threads work
    }
    assert.deepEqual(order, [], "no reply was taken while the main thread was busy");
    await done;
    let longest = 0;
    let run = 0;
    for (let i = 0; i < order.length; i++) {
      run = i > 0 && order[i] === order[i - 1] ? run + 1 : 1;
      longest = Math.max(longest, run);
    }
    assert.ok(longest <= 64, `longest run of replies from one thread: ${longest}`);
    assert.deepEqual(new Set(order.slice(0, 128)), new Set(["ep-handler-0", "ep-handler-1"]));
  } finally {
    await pool.close();
  }
});

async function crashAndRestart(service: string, reason: RegExp): Promise<void> {
  const lost: { thread: number; reason: string; failedJobs: number; restarting: boolean }[] = [];
  let available = 0;
  const pool = await startPool({
    threads: 2,
    perThreadConcurrency: 4,
    onThreadLost: (e) => lost.push(e),
    onSlotsAvailable: () => available++,
  });
  try {
    // Fill both threads with slow jobs, then crash one of them.
    const slow = Array.from(
      { length: 6 },
      (_, i) =>
        pool.call({ id: i, service: "sleep", body: enc.encode("300") }).then(
          (r) => ({ ok: true as const, who: text(r) }),
          (e: unknown) => ({ ok: false as const, e }),
        ),
    );
    const crash = pool.call({ id: 99, service, body: new Uint8Array() }).catch((e: unknown) => e);
    const results = await Promise.all(slow);
    // "crash" replies, then throws from a timer: its reply may or may not beat the loss.
    const crashFailed = (await crash) instanceof HandlerThreadLostError;
    if (service !== "crash") assert.ok(crashFailed);
    await until(() => lost.length === 1 && available === 1, "the thread to be lost and restarted");
    const failed = results.filter((r) => !r.ok);
    const served = results.filter((r) => r.ok);
    assert.ok(failed.length >= 1, "jobs on the lost thread failed");
    assert.ok(served.length >= 1, "the other thread kept serving");
    for (const f of failed) {
      assert.ok(!f.ok && f.e instanceof HandlerThreadLostError, String(!f.ok && f.e));
      assert.equal((f.e as HandlerThreadLostError).thread, lost[0].thread);
      assert.match((f.e as HandlerThreadLostError).message, reason);
    }
    assert.equal(lost[0].restarting, true);
    assert.match(lost[0].reason, reason);
    assert.equal(lost[0].failedJobs, failed.length + (crashFailed ? 1 : 0));
    // The restarted thread serves again, with all its slots.
    await until(() => pool.freeSlots === 8, "all slots free");
    const names = await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) => pool.call({ id: i, service: "whoami", body: new Uint8Array() }),
      ),
    );
    assert.deepEqual(new Set(names.map(text)), new Set(["ep-handler-0", "ep-handler-1"]));
    const c = pool.counters();
    assert.equal(c.threadsLost, 1);
    assert.equal(c.threads[lost[0].thread].restarts, 1);
    assert.equal(c.threads[lost[0].thread].status, "ready");
  } finally {
    await pool.close();
  }
}

Deno.test("a thread that crashes (uncaught error) fails its jobs with HandlerThreadLostError and is restarted", async () => {
  await crashAndRestart("crash", /Thread crashed on purpose/);
});

Deno.test("a thread that calls self.close() is treated as lost and restarted", async () => {
  await crashAndRestart("close", /self\.close\(\)/);
});

Deno.test("a thread that calls Deno.exit() is treated as lost and restarted", async () => {
  await crashAndRestart("exit", /Deno\.exit/);
});

Deno.test("close drains jobs in flight first and refuses new ones with PoolClosedError", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 2 });
  const inFlight = Array.from(
    { length: 4 },
    (_, i) => pool.call({ id: i, service: "sleep", body: enc.encode("50") }),
  );
  const queued = pool.call({ id: 9, service: "echo", body: enc.encode("queued") });
  const closed = pool.close({ drain: true });
  assert.equal(pool.freeSlots, 0);
  assert.throws(
    () => pool.submit({ id: 5, service: "echo", body: new Uint8Array() }, () => {}),
    PoolClosedError,
  );
  await assert.rejects(
    pool.call({ id: 6, service: "echo", body: new Uint8Array() }),
    PoolClosedError,
  );
  const replies = await Promise.all(inFlight);
  assert.ok(replies.every((r) => text(r) === "slept 50"));
  assert.equal(text(await queued), "queued", "a call accepted before close still runs");
  await closed;
  assert.ok(pool.counters().threads.every((t) => t.status === "stopped"));
  assert.equal(pool.close(), closed, "close is idempotent");
});

Deno.test("close without drain fails jobs in flight with PoolClosedError", async () => {
  const pool = await startPool({ threads: 1 });
  const job = pool.call({ id: 1, service: "sleep", body: enc.encode("200") }).catch((e) => e);
  await new Promise((r) => setTimeout(r, 20));
  await pool.close({ drain: false });
  assert.ok(await job instanceof PoolClosedError);
});

Deno.test("a drain that runs out of time fails what is left", async () => {
  const pool = await startPool({ threads: 1 });
  const job = pool.call({ id: 1, service: "sleep", body: enc.encode("300") }).catch((e) => e);
  await pool.close({ drain: true, timeoutMs: 20 });
  const e = await job;
  assert.ok(e instanceof PoolClosedError && /timed out/.test(e.message), String(e));
});

Deno.test("a job past its deadline fails with JobTimeoutError and its thread's interrupt flag names it", async () => {
  const pool = await HandlerPool.start({
    module: new URL("../../tests/fixtures/interrupt_runtime.ts", import.meta.url),
    threads: 1,
    perThreadConcurrency: 2,
  });
  try {
    assert.deepEqual([...pool.services], ["loop", "peek"]);
    // `loop` spins until the interrupt flag names its job, as the Lua hook will.
    await assert.rejects(
      pool.call({ id: 1, service: "loop", body: new Uint8Array(), deadlineMs: 30 }),
      (e: unknown) => e instanceof JobTimeoutError && e.deadlineMs === 30,
    );
    // The slot stays taken until the thread lets go of the job; then all is free again.
    await until(() => pool.jobsInFlight === 0, "the interrupted job to end");
    assert.equal(pool.freeSlots, 2);
    assert.equal(text(await pool.call({ id: 2, service: "peek", body: new Uint8Array() })), "0");
    // pool.interrupt(): "whatever runs".
    const job = pool.call({ id: 3, service: "loop", body: new Uint8Array() });
    await new Promise((r) => setTimeout(r, 20));
    pool.interrupt(0);
    assert.equal(text(await job), "interrupted all");
    const late = await pool.call({
      id: 4,
      service: "peek",
      body: new Uint8Array(),
      deadlineMs: 5000,
    });
    assert.equal(text(late), "0");
  } finally {
    await pool.close();
  }
});

Deno.test("start fails clearly when the runtime cannot start", async () => {
  await assert.rejects(
    HandlerPool.start({
      module: new URL("../../tests/fixtures/broken_runtime.ts", import.meta.url),
      threads: 2,
    }),
    (e: unknown) =>
      e instanceof Error && /failed to start/.test(e.message) && /refused to start/.test(e.message),
  );
  await assert.rejects(
    HandlerPool.start({ module: TS_HANDLER_RUNTIME, moduleOptions: {}, threads: 1 }),
    (e: unknown) => e instanceof Error && /moduleOptions\.handlers/.test(e.message),
  );
  await assert.rejects(
    HandlerPool.start({ module: new URL("./no_such_runtime.ts", import.meta.url), threads: 1 }),
    (e: unknown) => e instanceof Error && /failed to start/.test(e.message),
  );
  await assert.rejects(
    HandlerPool.start({ module: TS_HANDLER_RUNTIME, moduleOptions: { f: () => 1 }, threads: 2 }),
    (e: unknown) => e instanceof Error && /failed to start/.test(e.message),
  );
  await assert.rejects(HandlerPool.start({ module: TS_HANDLER_RUNTIME, threads: 0 }), RangeError);
  await assert.rejects(
    HandlerPool.start({ module: TS_HANDLER_RUNTIME, ringBytes: 5000 }),
    RangeError,
  );
});

Deno.test("counters report jobs in flight, ring occupancy, ring-full events and wake-ups", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 4 });
  try {
    const jobs = Array.from(
      { length: 8 },
      (_, i) => pool.call({ id: i, service: "sleep", body: enc.encode("30") }),
    );
    await Promise.resolve();
    let c = pool.counters();
    assert.equal(c.jobsInFlight, 8);
    assert.equal(c.freeSlots, 0);
    assert.deepEqual(c.threads.map((t) => t.jobsInFlight), [4, 4]);
    await Promise.all(jobs);
    // Idle threads sleep; the next job wakes one.
    await new Promise((r) => setTimeout(r, 20));
    await pool.call({ id: 9, service: "echo", body: new Uint8Array(1) });
    c = pool.counters();
    assert.equal(c.submitted, 9);
    assert.equal(c.replied, 9);
    assert.equal(c.jobsInFlight, 0);
    const wakeups = c.threads.reduce((n, t) => n + t.jobRing.dataWakeups, 0);
    assert.ok(wakeups >= 1, "a sleeping thread was woken");
    assert.ok(c.threads.every((t) => t.jobRing.usedBytes === 0 && t.replyRing.usedBytes === 0));
    assert.ok(c.threads.every((t) => t.jobRing.capacity === 1 << 20));
    assert.equal(c.threads[0].jobRing.fullEvents + c.threads[1].jobRing.fullEvents, 0);
    assert.equal(c.threads[0].jobsDone + c.threads[1].jobsDone, 9);
  } finally {
    await pool.close();
  }
});

Deno.test("a reply with a status outside 200–599, or a body with 204 or 304, fails with a message that says which", async () => {
  const pool = await startPool({ threads: 1 });
  try {
    const cases: [string, string][] = [
      ["0", "Handler returned status 0; allowed 200–599"],
      ["99", "Handler returned status 99; allowed 200–599"],
      ["100", "Handler returned status 100; allowed 200–599"],
      ["101", "Handler returned status 101; allowed 200–599"],
      ["199", "Handler returned status 199; allowed 200–599"],
      ["600", "Handler returned status 600; allowed 200–599"],
      ["999", "Handler returned status 999; allowed 200–599"],
      ["70000", "Handler returned status 70000; allowed 200–599"],
      ["200.5", "Handler returned status 200.5; allowed 200–599"],
      ["204 x", "Handler returned a body with status 204; a 204 response has no body"],
      ["304 x", "Handler returned a body with status 304; a 304 response has no body"],
    ];
    let id = 0;
    for (const [body, message] of cases) {
      await assert.rejects(
        pool.call({ id: ++id, service: "status", body: enc.encode(body) }),
        (e: unknown) => e instanceof HandlerError && e.message === message,
        body,
      );
    }
    for (const ok of ["200", "204", "304 ", "599"]) {
      const r = await pool.call({ id: ++id, service: "status", body: enc.encode(ok) });
      assert.equal(r.status, Number(ok.trim()));
    }
  } finally {
    await pool.close();
  }
});

const CANCEL_RUNTIME = new URL("../../tests/fixtures/cancel_runtime.ts", import.meta.url);

Deno.test("cancel: a running job is answered cancelled at once, its runtime is told its ticket, and its slot frees when the handler ends", async () => {
  const pool = await HandlerPool.start({
    module: CANCEL_RUNTIME,
    threads: 1,
    perThreadConcurrency: 2,
  });
  try {
    let freed = 0;
    pool.onSlotsAvailable = () => freed++;
    const answer = new Promise<Error | null>((resolve) => {
      assert.ok(pool.submit({ id: 41, service: "wait", body: new Uint8Array() }, resolve));
    });
    await until(() => pool.counters().threads[0].asyncJobsInFlight === 1, "the job to run");
    assert.equal(pool.cancel(41), true);
    const err = await answer;
    assert.ok(err instanceof JobError && err.kind === "cancelled", String(err));
    // The runtime stops the handler when told; the late reply frees the slot.
    await until(() => freed === 1, "the slot to be freed");
    assert.equal(pool.freeSlots, 2);
    const log = JSON.parse(
      text(await pool.call({ id: 42, service: "log", body: new Uint8Array() })),
    );
    assert.equal(log.started.length, 1);
    assert.deepEqual(log.cancelled, log.started, "cancel names the job's ticket");
    assert.deepEqual(log.ended, log.started, "the runtime is told the job ended");
    assert.equal(pool.cancel(41), false, "an answered job is no longer held");
    assert.equal(pool.cancel(999), false);
  } finally {
    await pool.close({ drain: false });
  }
});

Deno.test("cancel: a job waiting on its thread ends without running; the runtime never sees it", async () => {
  const pool = await HandlerPool.start({
    module: CANCEL_RUNTIME,
    threads: 1,
    perThreadConcurrency: 1,
    perThreadQueue: 1,
  });
  try {
    const first = pool.call({ id: 1, service: "wait", body: new Uint8Array() });
    const second = pool.call({ id: 2, service: "wait", body: new Uint8Array() });
    await until(() => pool.counters().threads[0].asyncJobsInFlight === 1, "the first job to run");
    assert.equal(pool.cancel(2), true);
    await assert.rejects(second, (e) => e instanceof JobError && e.kind === "cancelled");
    await until(() => pool.freeSlots === 1, "the waiting job's slot to be freed");
    assert.equal(pool.cancel(1), true);
    await assert.rejects(first, (e) => e instanceof JobError && e.kind === "cancelled");
    await until(() => pool.freeSlots === 2, "the running job's slot to be freed");
    const log = JSON.parse(
      text(await pool.call({ id: 3, service: "log", body: new Uint8Array() })),
    );
    assert.equal(log.started.length, 1, "the cancelled waiting job never started");
    assert.deepEqual(log.cancelled, log.started);
    assert.equal(log.ended.length, 2, "both jobs ended");
  } finally {
    await pool.close({ drain: false });
  }
});

Deno.test("deadline: a job timed out while it waits on its thread behind a running one gives back its slot at once, not when the one ahead ends; onFreed says so once", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 1, perThreadQueue: 1 });
  const events: string[] = [];
  try {
    // The first job's handler ignores its signal and has no deadline: it runs on.
    const ran = pool.submit(
      { id: 1, service: "sleep", body: enc.encode("1500") },
      (err) => events.push(err ? `1 ${err.name}` : "1 reply"),
      () => events.push("1 freed"),
    );
    await until(() => pool.counters().threads[0].asyncJobsInFlight === 1, "the first job to run");
    const waited = pool.submit(
      { id: 2, service: "sleep", body: enc.encode("1"), deadlineMs: 50 },
      (err) => events.push(err ? `2 ${err.name}` : "2 reply"),
      () => events.push("2 freed"),
    );
    assert.ok(ran && waited);
    await until(() => events.includes("1 reply"), "the first job to end");
    assert.deepEqual(events, ["2 JobTimeoutError", "2 freed", "1 freed", "1 reply"]);
    assert.equal(pool.jobsInFlight, 0);
  } finally {
    await pool.close({ drain: false });
  }
});

Deno.test("a deadline further ahead than setTimeout holds (2^32 - 1 ms) arms one timer, not one per millisecond", async () => {
  const pool = await startPool({ threads: 1 });
  const real = globalThis.setTimeout;
  let armed = 0;
  let overflowing = 0;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    armed++;
    if ((ms ?? 0) > 2 ** 31 - 1) overflowing++;
    return real(fn, ms);
  }) as typeof setTimeout;
  try {
    const reply = await pool.call({
      id: 1,
      service: "sleep",
      body: enc.encode("60"),
      deadlineMs: 2 ** 32 - 1,
    });
    assert.equal(text(reply), "slept 60");
    assert.equal(overflowing, 0, "no delay setTimeout cannot hold");
    assert.ok(armed <= 3, `${armed} timers armed while one job waited 60 ms`);
  } finally {
    globalThis.setTimeout = real;
    await pool.close();
  }
});

// ---- growing and shrinking (HandlerPool.grow, HandlerPool.retire) ----

/** Submits `service(body)` and resolves with its reply text (or rejects with its error). */
function submitted(
  pool: HandlerPool,
  id: number,
  service: string,
  body: string,
): { accepted: boolean; reply: Promise<string> } {
  let accepted = false;
  const reply = new Promise<string>((resolve, reject) => {
    accepted = pool.submit({ id, service, body: enc.encode(body) }, (err, r) => {
      if (err) reject(err);
      else resolve(text(r!));
    });
  });
  return { accepted, reply };
}

Deno.test("grow adds a thread whose slots count once it is ready; retire takes an idle thread's slots at once and stops it", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 2 });
  try {
    let resized = 0;
    let available = 0;
    pool.onResize = () => resized++;
    pool.onSlotsAvailable = () => available++;
    assert.equal(pool.grow("more"), true);
    // Starting: its slots do not count yet.
    assert.deepEqual([pool.threads, pool.threadsStarting, pool.concurrency, pool.freeSlots], [
      1,
      1,
      2,
      2,
    ]);
    await until(() => resized === 1, "the added thread to be ready");
    assert.deepEqual([pool.threads, pool.threadsStarting, pool.concurrency, pool.freeSlots], [
      2,
      0,
      4,
      4,
    ]);
    assert.equal(available, 1, "its free slots are announced");
    const names = await Promise.all(
      Array.from(
        { length: 40 },
        (_, i) => pool.call({ id: i, service: "whoami", body: enc.encode("") }),
      ),
    );
    assert.deepEqual(new Set(names.map(text)), new Set(["ep-handler-0", "ep-handler-1"]));

    assert.equal(pool.retire("idle"), true);
    assert.deepEqual([pool.threads, pool.concurrency, pool.freeSlots], [1, 2, 2]);
    assert.equal(resized, 2);
    await until(() => pool.counters().threads.length === 1, "the retired thread to stop");
    assert.equal(pool.retire("idle"), false, "the last thread is never retired");
    const scaling = pool.counters().scaling!;
    assert.deepEqual(
      [
        scaling.threads,
        scaling.up,
        scaling.down,
        scaling.changes.map((c) => [c.direction, c.threads, c.reason]),
      ],
      [1, 1, 1, [["up", 2, "more"], ["down", 1, "idle"]]],
    );
  } finally {
    await pool.close();
  }
});

Deno.test("a retiring thread takes no new job and finishes the jobs it holds: none is lost", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 1 });
  try {
    const a = submitted(pool, 1, "sleep", "150");
    const b = submitted(pool, 2, "sleep", "150");
    assert.ok(a.accepted && b.accepted);
    assert.equal(pool.freeSlots, 0);
    assert.equal(pool.retire(), true);
    // Both threads hold a job; one retires: the pool counts one thread's slots.
    assert.deepEqual([pool.threads, pool.concurrency, pool.freeSlots, pool.jobsInFlight], [
      1,
      1,
      0,
      2,
    ]);
    const statuses = pool.counters().threads.map((t) => t.status).sort();
    assert.deepEqual(statuses, ["ready", "retiring"]);
    assert.deepEqual(await Promise.all([a.reply, b.reply]), ["slept 150", "slept 150"]);
    await until(() => pool.counters().threads.length === 1, "the retiring thread to stop");
    assert.deepEqual([pool.freeSlots, pool.jobsInFlight], [1, 0]);
    const counters = pool.counters();
    assert.deepEqual([counters.replied, counters.failed, counters.threadsLost], [2, 0, 0]);
    // The thread left serves.
    assert.equal(text(await pool.call({ id: 3, service: "echo", body: enc.encode("on") })), "on");
  } finally {
    await pool.close();
  }
});

Deno.test("grow keeps a retiring thread that still holds jobs: its free slots count again at once", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 2 });
  try {
    const a = submitted(pool, 1, "sleep", "100");
    const b = submitted(pool, 2, "sleep", "100");
    assert.equal(pool.freeSlots, 2);
    assert.equal(pool.retire(), true);
    assert.deepEqual([pool.threads, pool.freeSlots], [1, 1]);
    assert.equal(pool.grow(), true);
    assert.deepEqual([pool.threads, pool.threadsStarting, pool.freeSlots], [2, 0, 2]);
    assert.deepEqual(await Promise.all([a.reply, b.reply]), ["slept 100", "slept 100"]);
    assert.equal(pool.freeSlots, 4);
    assert.deepEqual(pool.counters().threads.map((t) => t.status), ["ready", "ready"]);
  } finally {
    await pool.close();
  }
});

Deno.test("retire stops a thread still starting; a retired index starts again when the pool grows", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 1 });
  try {
    assert.equal(pool.grow(), true);
    assert.equal(pool.retire(), true, "the starting thread goes first");
    assert.deepEqual([pool.threads, pool.threadsStarting, pool.counters().threads.length], [
      1,
      0,
      1,
    ]);
    let resized = 0;
    pool.onResize = () => resized++;
    assert.equal(pool.grow(), true);
    await until(() => resized === 1, "the thread to be ready");
    const names = await Promise.all(
      Array.from(
        { length: 20 },
        (_, i) => pool.call({ id: i, service: "whoami", body: enc.encode("") }),
      ),
    );
    assert.deepEqual(new Set(names.map(text)), new Set(["ep-handler-0", "ep-handler-1"]));
    assert.equal(pool.counters().threads.length, 2);
  } finally {
    await pool.close();
  }
});

Deno.test("close while a thread retires: the jobs it holds still finish (drain) and every thread stops", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 1 });
  const a = submitted(pool, 1, "sleep", "100");
  const b = submitted(pool, 2, "sleep", "100");
  assert.equal(pool.retire(), true);
  await pool.close({ drain: true });
  assert.deepEqual(await Promise.all([a.reply, b.reply]), ["slept 100", "slept 100"]);
  assert.equal(pool.grow(), false);
  assert.ok(pool.counters().threads.every((t) => t.status === "stopped"));
});

Deno.test("property: under random grow, retire and jobs, every job is answered once, none fails, and the slots add up", async () => {
  for (const seed of [1, 2, 3]) {
    const rng = mulberry32(seed);
    const pool = await startPool({ threads: 1, perThreadConcurrency: 2 });
    try {
      const replies: Promise<string>[] = [];
      const expected: string[] = [];
      let id = 0;
      for (let step = 0; step < 120; step++) {
        const op = int(rng, 10);
        if (op === 0) pool.grow(`seed ${seed}`);
        else if (op === 1) pool.retire(`seed ${seed}`);
        else if (op === 2) await new Promise((r) => setTimeout(r, int(rng, 8)));
        else if (pool.freeSlots > 0) {
          const ms = int(rng, 6);
          const job = submitted(pool, ++id, "sleep", String(ms));
          assert.ok(job.accepted);
          replies.push(job.reply);
          expected.push(`slept ${ms}`);
        }
        assert.ok(pool.threads >= 1 && pool.threads + pool.threadsStarting <= 1 + 120);
        assert.ok(pool.freeSlots <= pool.concurrency, "free slots only on threads that count");
      }
      assert.deepEqual(await Promise.all(replies), expected, `seed ${seed}`);
      await until(() => pool.threadsStarting === 0, "added threads to be ready");
      const c = pool.counters();
      assert.deepEqual([c.submitted, c.replied, c.failed, c.threadsLost], [id, id, 0, 0]);
      assert.deepEqual([pool.jobsInFlight, pool.freeSlots], [0, pool.concurrency], `seed ${seed}`);
      const s = c.scaling!;
      assert.equal(1 + s.up - s.down, pool.threads, "every change is counted");
    } finally {
      await pool.close();
    }
  }
});

// ---- scaling slots (HandlerPoolOptions.slotLimit) ----

Deno.test("slotLimit: the pool takes at most the limit of jobs at once though its threads have more slots; grow raises it one slot at a time up to the threads' slots", async () => {
  const pool = await startPool({ threads: 2, perThreadConcurrency: 2, slotLimit: 1 });
  try {
    let resized = 0;
    let available = 0;
    pool.onResize = () => resized++;
    pool.onSlotsAvailable = () => available++;
    assert.deepEqual([pool.scaleUnit, pool.scaleSize, pool.scaleStep], ["slots", 1, 1]);
    assert.deepEqual([pool.concurrency, pool.freeSlots], [1, 1]);
    const a = submitted(pool, 1, "sleep", "100");
    const b = submitted(pool, 2, "sleep", "100");
    assert.deepEqual([a.accepted, b.accepted, pool.freeSlots], [true, false, 0]);
    assert.equal(pool.grow("busy"), true);
    assert.deepEqual([pool.concurrency, pool.freeSlots, resized, available], [2, 1, 1, 1]);
    const c = submitted(pool, 3, "sleep", "100");
    assert.deepEqual([c.accepted, pool.freeSlots], [true, 0]);
    assert.equal(pool.grow(), true);
    assert.equal(pool.grow(), true);
    assert.equal(pool.grow(), false, "never beyond the threads' slots");
    assert.deepEqual([pool.concurrency, pool.freeSlots, pool.threads], [4, 2, 2]);
    assert.deepEqual(await Promise.all([a.reply, c.reply]), ["slept 100", "slept 100"]);
    const scaling = pool.counters().scaling!;
    assert.deepEqual(
      [scaling.slots, scaling.changes.map((ch) => [ch.direction, ch.slots, ch.threads])],
      [4, [["up", 2, 2], ["up", 3, 2], ["up", 4, 2]]],
    );
  } finally {
    await pool.close();
  }
});

Deno.test("slotLimit: retire lowers the limit at once; jobs above it finish and none starts until those in flight fit; a job never runs beyond the limit", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 4, slotLimit: 3 });
  try {
    const jobs = [1, 2, 3].map((id) => submitted(pool, id, "sleep", "120"));
    assert.ok(jobs.every((j) => j.accepted));
    assert.equal(pool.retire("idle"), true);
    assert.equal(pool.retire("idle"), true);
    assert.deepEqual([pool.scaleSize, pool.concurrency, pool.freeSlots, pool.jobsInFlight], [
      1,
      1,
      0,
      3,
    ]);
    assert.equal(submitted(pool, 4, "echo", "x").accepted, false, "3 in flight, limit 1");
    assert.equal(pool.retire(), false, "one slot is always offered");
    // The call queue waits for the limit too.
    const queued = pool.call({ id: 5, service: "echo", body: enc.encode("after") });
    let peak = 0;
    const watch = setInterval(() => peak = Math.max(peak, pool.jobsInFlight), 1);
    assert.deepEqual(await Promise.all(jobs.map((j) => j.reply)), [
      "slept 120",
      "slept 120",
      "slept 120",
    ]);
    assert.equal(text(await queued), "after");
    clearInterval(watch);
    assert.ok(peak <= 3, `peak ${peak}`);
    assert.deepEqual([pool.freeSlots, pool.jobsInFlight, pool.counters().failed], [1, 0, 0]);
    // From now on one job at a time.
    const x = submitted(pool, 6, "sleep", "50");
    assert.deepEqual([x.accepted, submitted(pool, 7, "echo", "y").accepted], [true, false]);
    await x.reply;
  } finally {
    await pool.close();
  }
});

Deno.test("slotLimit: a limit outside 1 to threads × concurrency is refused", async () => {
  await assert.rejects(startPool({ threads: 1, perThreadConcurrency: 2, slotLimit: 3 }), {
    name: "RangeError",
    message: 'Slot limit must be an integer from 1 to 2: "3"',
  });
  await assert.rejects(startPool({ threads: 1, perThreadConcurrency: 2, slotLimit: 0 }), {
    name: "RangeError",
  });
});

/** `p`, or a failure saying `what` after `ms` (a test that would hang fails instead). */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a job reaching a thread whose every slot waits on a promise does not wake it; it starts as soon as a slot frees", async () => {
  const pool = await startPool({ threads: 1, perThreadConcurrency: 1, perThreadQueue: 1 });
  try {
    const wakeups = () => pool.counters().threads[0].jobRing.dataWakeups;
    const first = pool.call({ id: 1, service: "sleep", body: enc.encode("300") });
    await until(() => pool.counters().threads[0].asyncJobsInFlight === 1, "the first job to run");
    const before = wakeups();
    const second = pool.call({ id: 2, service: "sleep", body: enc.encode("1") });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(wakeups() - before, 0, "the second job woke the thread");
    await within(5_000, Promise.all([first, second]), "the second job waited for something else");
  } finally {
    await pool.close({ drain: false });
  }
});

Deno.test("async jobs with random durations and arrivals on one- and two-slot threads are all answered once", async () => {
  // Seeded: slots, queue room, and for each job its sleep (0-5 ms) and the pause before the
  // next arrival; every job must be answered exactly once, none may hang.
  let seed = Number(Deno.env.get("EP_FUZZ_SEED") ?? 7);
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  for (const [slots, queue] of [[1, 1], [2, 1], [1, 0]]) {
    const pool = await startPool({
      threads: 1,
      perThreadConcurrency: slots,
      perThreadQueue: queue,
    });
    try {
      const answers = new Map<number, number>();
      const run = async () => {
        const calls: Promise<void>[] = [];
        for (let id = 1; id <= 200; id++) {
          const ms = Math.floor(rand() * 6);
          const body = enc.encode(String(ms));
          while (pool.freeSlots === 0) await new Promise((r) => setTimeout(r, 1));
          calls.push(
            pool.call({ id, service: "sleep", body }).then(() => {
              answers.set(id, (answers.get(id) ?? 0) + 1);
            }),
          );
          if (rand() < 0.5) await new Promise((r) => setTimeout(r, Math.floor(rand() * 3)));
        }
        await Promise.all(calls);
      };
      await within(20_000, run(), "a job hung");
      assert.equal(answers.size, 200);
      for (const n of answers.values()) assert.equal(n, 1);
    } finally {
      await pool.close({ drain: false });
    }
  }
});
