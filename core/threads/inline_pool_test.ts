import assert from "node:assert/strict";
import { decodeMeta, encodeMeta } from "../../protocol/ep_meta.ts";
import { HandlerError, JobError, JobTimeoutError, PoolClosedError } from "../errors.ts";
import { InlinePool } from "./inline_pool.ts";
import type { Handlers } from "./handler_context.ts";
import type { JobReply, PoolCall, PoolJob } from "./pool_types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Runs `job` and resolves with its reply or its error. */
function run(pool: InlinePool, job: PoolJob): Promise<JobReply | Error> {
  return new Promise((resolve) => {
    const ok = pool.submit(job, (err, reply) => resolve(err ?? reply!));
    if (!ok) resolve(new Error("No free slot"));
  });
}

/** A promise and its resolver. */
function later<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("inline pool: a handler sees the whole request and its reply headers are encoded for it", async () => {
  const pool = await InlinePool.start({
    handlers: {
      look: (req) => ({
        status: 201,
        headers: { "X-Seen": `${req.method} ${req.path}?${req.query}`, "set-cookie": ["a", "b"] },
        body: JSON.stringify({
          service: req.service,
          protocol: req.protocol,
          q: req.searchParams.get("q"),
          tenant: req.headers.get("x-tenant"),
          id: req.id,
          attempt: req.attempt,
          hasTime: req.deadlineMs > 0 && req.deadlineMs <= 1000,
          body: req.text(),
        }),
      }),
    },
  });
  try {
    const reply = await run(pool, {
      id: 7,
      service: "look",
      meta: encodeMeta([
        ["ep-method", "POST"],
        ["ep-path", "/look/x"],
        ["ep-query", "q=1"],
        ["ep-request-id", "r-9"],
        ["ep-attempt", "2"],
        ["x-tenant", "beta"],
      ]),
      body: enc.encode("hi"),
      deadlineMs: 1000,
    });
    assert.ok(!(reply instanceof Error), String(reply));
    assert.equal(reply.id, 7);
    assert.equal(reply.status, 201);
    assert.deepEqual(decodeMeta(reply.meta), [
      ["x-seen", "POST /look/x?q=1"],
      ["set-cookie", "a"],
      ["set-cookie", "b"],
    ]);
    assert.deepEqual(JSON.parse(dec.decode(reply.body)), {
      service: "look",
      protocol: "http",
      q: "1",
      tenant: "beta",
      id: "r-9",
      attempt: 2,
      hasTime: true,
      body: "hi",
    });
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: concurrency jobs run at once, queue more wait their turn, then submit refuses", async () => {
  const gates = [later(), later(), later()];
  const started: number[] = [];
  const pool = await InlinePool.start({
    handlers: {
      gate: async (req) => {
        const n = Number(req.text());
        started.push(n);
        await gates[n].promise;
        return String(n);
      },
    },
    concurrency: 2,
    queue: 1,
  });
  try {
    assert.equal(pool.concurrency, 2);
    assert.equal(pool.freeSlots, 3);
    const replies = [0, 1, 2].map((n) =>
      run(pool, { id: n, service: "gate", body: enc.encode(String(n)) })
    );
    assert.equal(pool.freeSlots, 0);
    assert.equal(pool.submit({ id: 9, service: "gate", body: new Uint8Array() }, () => {}), false);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(started, [0, 1], "two run, the third waits");
    gates[1].resolve();
    assert.equal(dec.decode((await replies[1] as JobReply).body), "1");
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(started, [0, 1, 2], "the waiting job starts in the freed slot");
    gates[0].resolve();
    gates[2].resolve();
    await Promise.all(replies);
    assert.equal(pool.freeSlots, 3);
    assert.equal(pool.jobsInFlight, 0);
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: past its deadline a job is answered JobTimeoutError, its signal fires TimeoutError, and its slot frees when the handler returns", async () => {
  const seen = later<string>();
  const pool = await InlinePool.start({
    handlers: {
      wait: (req) =>
        new Promise((resolve) => {
          req.signal.addEventListener("abort", () => {
            seen.resolve((req.signal.reason as DOMException).name);
            resolve("late");
          });
        }),
    },
  });
  let freed = 0;
  pool.onSlotsAvailable = () => freed++;
  try {
    const reply = await run(pool, {
      id: 1,
      service: "wait",
      body: new Uint8Array(),
      deadlineMs: 20,
    });
    assert.ok(reply instanceof JobTimeoutError, String(reply));
    assert.equal(await seen.promise, "TimeoutError");
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(freed, 1);
    assert.equal(pool.freeSlots, 1);
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: cancel answers a running job cancelled and fires its signal with AbortError; a waiting job never runs", async () => {
  const reasons: string[] = [];
  const ran: string[] = [];
  const pool = await InlinePool.start({
    handlers: {
      wait: (req) => {
        ran.push(req.text());
        return new Promise((resolve) => {
          req.signal.addEventListener("abort", () => {
            reasons.push((req.signal.reason as DOMException).name);
            resolve("stopped");
          });
        });
      },
    },
    concurrency: 1,
    queue: 1,
  });
  try {
    const running = run(pool, { id: 1, service: "wait", body: enc.encode("a") });
    const waiting = run(pool, { id: 2, service: "wait", body: enc.encode("b") });
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(pool.cancel(2), true);
    const w = await waiting;
    assert.ok(w instanceof JobError && w.kind === "cancelled", String(w));
    assert.equal(pool.freeSlots, 1, "the waiting job's slot is free at once");
    assert.equal(pool.cancel(1), true);
    const r = await running;
    assert.ok(r instanceof JobError && r.kind === "cancelled", String(r));
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(reasons, ["AbortError"]);
    assert.deepEqual(ran, ["a"], "the cancelled waiting job never ran");
    assert.equal(pool.freeSlots, 2);
    assert.equal(pool.cancel(1), false);
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: onFreed is called once per job, when its slot is free: before its reply, before the answer of a job taken back, after the answer of a running job cancelled or timed out", async () => {
  const events: string[] = [];
  let release = () => {};
  const pool = await InlinePool.start({
    handlers: {
      quick: (req) => req.text(),
      // Ignores its signal: runs until the test releases it.
      stuck: () => new Promise<string>((resolve) => release = () => resolve("late")),
    },
    concurrency: 1,
    queue: 2,
  });
  const submit = (id: number, service: string, deadlineMs?: number) =>
    pool.submit(
      { id, service, body: enc.encode(String(id)), deadlineMs },
      (err) => events.push(`${id} ${err ? err.name : "reply"}`),
      () => events.push(`${id} freed`),
    );
  try {
    assert.ok(submit(1, "quick"));
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(events.splice(0), ["1 freed", "1 reply"]);
    assert.ok(submit(2, "stuck"));
    assert.ok(submit(3, "quick"));
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(pool.cancel(3), true); // waiting: taken back
    assert.equal(pool.cancel(2), true); // running: its handler runs on
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(events.splice(0), ["3 freed", "3 JobError", "2 JobError"]);
    release();
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(events.splice(0), ["2 freed"]);
    assert.ok(submit(4, "stuck", 20));
    for (let i = 0; i < 2_000 && events.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.deepEqual(events.splice(0), ["4 JobTimeoutError"], "answered, its slot still taken");
    release();
    await new Promise((r) => setTimeout(r, 0));
    assert.deepEqual(events.splice(0), ["4 freed"]);
    assert.equal(pool.jobsInFlight, 0);
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: throws, rejections and results the rules refuse become HandlerErrors, and the pool goes on", async () => {
  const handlers: Handlers = {
    fail: () => {
      throw new TypeError("Bad on purpose");
    },
    reject: () => Promise.reject(new RangeError("Rejected on purpose")),
    status: () => ({ status: 99 }),
    both: () => ({ headers: { a: "1" }, meta: new Uint8Array(2) }),
    ok: () => "fine",
  };
  const pool = await InlinePool.start({ handlers });
  try {
    const fail = await run(pool, { id: 1, service: "fail", body: new Uint8Array() });
    assert.ok(fail instanceof HandlerError && fail.handlerErrorName === "TypeError");
    assert.equal(fail.message, "Bad on purpose");
    const reject = await run(pool, { id: 2, service: "reject", body: new Uint8Array() });
    assert.ok(reject instanceof HandlerError && reject.handlerErrorName === "RangeError");
    const status = await run(pool, { id: 3, service: "status", body: new Uint8Array() });
    assert.ok(status instanceof HandlerError && /status 99/.test(status.message));
    const both = await run(pool, { id: 4, service: "both", body: new Uint8Array() });
    assert.ok(both instanceof HandlerError && /both headers and meta/.test(both.message));
    const ok = await run(pool, { id: 5, service: "ok", body: new Uint8Array() });
    assert.equal(dec.decode((ok as JobReply).body), "fine");
    assert.throws(
      () => pool.submit({ id: 6, service: "nope", body: new Uint8Array() }, () => {}),
      RangeError,
    );
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: ctx.call goes to onCall and its JobError reaches the handler", async () => {
  const calls: PoolCall[] = [];
  const pool = await InlinePool.start({
    handlers: {
      front: async (req, ctx) => {
        const r = await ctx.call("back", req.body, {
          timeoutMs: 250,
          meta: { "X-Tenant": "beta" },
        });
        try {
          await ctx.call("missing");
        } catch (err) {
          return `${dec.decode(r.body)} ${(err as JobError).kind}`;
        }
        return "no error";
      },
    },
    onCall: (call) => {
      calls.push(call);
      if (call.service === "missing") {
        return Promise.reject(new JobError(101, 'No service "missing"'));
      }
      return Promise.resolve({
        status: 200,
        meta: [],
        body: enc.encode(`back:${dec.decode(call.body)}`),
      });
    },
  });
  try {
    const reply = await run(pool, { id: 1, service: "front", body: enc.encode("x") });
    assert.equal(dec.decode((reply as JobReply).body), "back:x no_service");
    assert.equal(calls[0].service, "back");
    assert.equal(calls[0].timeoutMs, 250);
    assert.deepEqual(calls[0].meta, [["x-tenant", "beta"]]);
  } finally {
    await pool.close();
  }
});

Deno.test("inline pool: close drains what runs, then refuses new jobs; without drain it fails them", async () => {
  const gate = later();
  const pool = await InlinePool.start({
    handlers: { gate: () => gate.promise.then(() => "done") },
    concurrency: 2,
  });
  const a = run(pool, { id: 1, service: "gate", body: new Uint8Array() });
  const closed = pool.close({ drain: true, timeoutMs: 5000 });
  assert.throws(
    () => pool.submit({ id: 2, service: "gate", body: new Uint8Array() }, () => {}),
    PoolClosedError,
  );
  gate.resolve();
  assert.equal(dec.decode(((await a) as JobReply).body), "done");
  await closed;

  const stuck = await InlinePool.start({ handlers: { wait: () => new Promise(() => {}) } });
  const b = run(stuck, { id: 1, service: "wait", body: new Uint8Array() });
  await stuck.close({ drain: false });
  assert.ok((await b) instanceof PoolClosedError);
});

Deno.test("inline pool: one deadline timer serves every slot: jobs time out in deadline order, whatever order they came in, also while they wait to start", async () => {
  const pool = await InlinePool.start({
    handlers: {
      // Never ends by itself: only its deadline answers it.
      wait: (req) =>
        new Promise<string>((resolve) =>
          req.signal.addEventListener("abort", () => resolve("aborted"))
        ),
      ok: () => "ok",
    },
    concurrency: 2,
    queue: 2,
  });
  try {
    const order: number[] = [];
    const job = (id: number, service: string, deadlineMs?: number) =>
      run(pool, { id, service, body: new Uint8Array(), deadlineMs }).then((r) => {
        order.push(id);
        return r;
      });
    const results = Promise.all([
      job(1, "wait", 300),
      job(2, "wait", 60), // later deadline first, then an earlier one
      job(3, "wait", 30), // waits to start: both slots run
      job(4, "wait"), // no deadline: still running at the end
    ]);
    // A job that ends in time leaves the timer armed for the others.
    const quick = await run(pool, { id: 5, service: "ok", body: new Uint8Array(), deadlineMs: 10 });
    assert.ok(quick instanceof Error && quick.message === "No free slot", String(quick));
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(order, [3, 2, 1]);
    assert.equal(pool.cancel(4), true);
    const r = await results;
    for (const x of r.slice(0, 3)) assert.ok(x instanceof JobTimeoutError, JSON.stringify(x));
    assert.ok(r[3] instanceof JobError && r[3].kind === "cancelled", String(r[3]));
  } finally {
    await pool.close({ drain: false });
  }
});
