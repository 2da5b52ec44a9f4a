import assert from "node:assert/strict";
import { encodeMeta } from "../../protocol/ep_meta.ts";
import { mulberry32, type Rng } from "../../tests/fuzz/_mutate.ts";
import { PoolStartError } from "../errors.ts";
import { HandlerPool, TS_HANDLER_RUNTIME } from "./pool.ts";
import { createHandlerRuntime, tsHandlerRuntime } from "./ts_runtime.ts";
import type { EpRequest } from "./ep_request.ts";
import { decodeMeta } from "../../protocol/ep_meta.ts";
import { encodeReplyHeaders } from "./_reply.ts";

const int = (rng: Rng, n: number) => Math.floor(rng() * n);

Deno.test("TS runtime refuses a relative handler module path, which would resolve inside ep", async () => {
  const context = {
    thread: 0,
    interrupt: new Int32Array(1),
    options: { handlers: "./services.ts" },
  };
  await assert.rejects(
    createHandlerRuntime(context),
    (e) =>
      e instanceof TypeError && /absolute URL/.test(e.message) &&
      /"\.\/services\.ts"/.test(e.message),
  );
  await assert.rejects(
    HandlerPool.start({
      module: TS_HANDLER_RUNTIME,
      moduleOptions: { handlers: "services.ts" },
      threads: 1,
    }),
    (e) => e instanceof PoolStartError && /absolute URL/.test(e.message),
  );
});

Deno.test("TS runtime: cancel fires the running job's signal (AbortError), past its deadline TimeoutError; an ended or unknown job is ignored", () => {
  const seen: EpRequest[] = [];
  const runtime = tsHandlerRuntime({ hold: (req) => (seen.push(req), "ok") }, undefined);
  const job = (id: number, deadline?: number) => ({
    id,
    service: "hold",
    meta: new Uint8Array(),
    body: new Uint8Array(),
    deadline,
  });
  runtime.handle(job(0x10001), 0);
  runtime.handle(job(0x10002, performance.now() - 1), 0);
  runtime.handle(job(0x10003), 0);
  runtime.ended!(0x10003);
  runtime.cancel!(0x10001);
  runtime.cancel!(0x10002);
  runtime.cancel!(0x10003); // ended: ignored
  runtime.cancel!(0x20001); // another generation of slot 1: ignored
  assert.equal((seen[0].signal.reason as DOMException).name, "AbortError");
  assert.equal((seen[1].signal.reason as DOMException).name, "TimeoutError");
  assert.equal(seen[2].signal.aborted, false);
  runtime.ended!(0x10001);
  runtime.ended!(0x10002);
});

/** A random string of code units below `limit` (0x100: a byte string, as HTTP's). */
function randomString(rng: Rng, max: number, limit: number): string {
  return String.fromCharCode(...Array.from({ length: int(rng, max + 1) }, () => int(rng, limit)));
}

Deno.test("property: an EpRequest reads back the method, path, query, id, attempt, hedge and headers of any job metadata, ep- entries apart", () => {
  const rng = mulberry32(0x15ad);
  const names = ["x-a", "x-b", "content-type", "accept", "ep-future", "ep-method", "ep-attempt"];
  for (let round = 0; round < 500; round++) {
    const http = rng() < 0.5;
    const limit = http ? 0x100 : 0x3000;
    const meta: [string, string][] = [];
    const want = { method: "EP", path: "/svc", query: "", id: "", attempt: 1, hedge: false };
    if (http) {
      want.method = ["GET", "POST", "PATCH"][int(rng, 3)];
      want.path = "/" + randomString(rng, 12, 0x7f);
      want.query = randomString(rng, 20, 0x7f);
      meta.push(["ep-method", want.method], ["ep-path", want.path], ["ep-query", want.query]);
    }
    if (rng() < 0.7) {
      want.id = randomString(rng, 16, 0x7f);
      meta.push(["ep-request-id", want.id]);
    }
    if (rng() < 0.3) {
      want.attempt = 2 + int(rng, 5);
      meta.push(["ep-attempt", String(want.attempt)]);
    }
    if (rng() < 0.3) {
      want.hedge = true;
      meta.push(["ep-hedge", "1"]);
    }
    for (let i = int(rng, 6); i > 0; i--) {
      const name = names[int(rng, names.length)];
      // ep sends each of its own entries once; an unknown ep- entry may come anywhere.
      if (name === "ep-method" || name === "ep-attempt") continue;
      meta.splice(int(rng, meta.length + 1), 0, [name, randomString(rng, 10, limit)]);
    }
    // The header fields: the entries that are not ep's, in the order sent.
    const fields = meta.filter(([k]) => !k.startsWith("ep-"));
    let got: EpRequest | null = null;
    const probe = tsHandlerRuntime({ svc: (req) => (got = req, "") }, undefined);
    probe.handle({ id: 1, service: "svc", meta: encodeMeta(meta), body: new Uint8Array() }, 0);
    const req = got! as EpRequest;
    const where = `round ${round}: ${JSON.stringify(meta)}`;
    assert.equal(req.method, want.method, where);
    assert.equal(req.protocol, http ? "http" : "ep", where);
    assert.equal(req.path, want.path, where);
    assert.equal(req.query, want.query, where);
    assert.equal(req.id, want.id, where);
    assert.equal(req.attempt, want.attempt, where);
    assert.equal(req.hedge, want.hedge, where);
    assert.deepEqual([...req.headers], fields, where);
    for (const name of names.filter((n) => !n.startsWith("ep-"))) {
      const values = fields.filter(([k]) => k === name).map(([, v]) => v);
      assert.deepEqual(req.headers.getAll(name.toUpperCase()), values, where);
      assert.equal(req.headers.get(name), values.length === 0 ? null : values.join(", "), where);
    }
  }
});

Deno.test("property: reply headers as a record or as pairs encode to the same lower-case metadata, in order", () => {
  const rng = mulberry32(0x15ae);
  for (let round = 0; round < 500; round++) {
    const record: Record<string, string | string[]> = {};
    const pairs: [string, string][] = [];
    for (let i = int(rng, 5); i > 0; i--) {
      const name = `X-${
        randomString(rng, 4, 26).replace(/./g, (c) => String.fromCharCode(97 + c.charCodeAt(0)))
      }${i}`;
      const values = Array.from({ length: 1 + int(rng, 3) }, () => randomString(rng, 8, 0x100));
      record[name] = values.length === 1 ? values[0] : values;
      for (const v of values) pairs.push([name.toLowerCase(), v]);
    }
    const where = `round ${round}: ${JSON.stringify(record)}`;
    const fromRecord = encodeReplyHeaders(record);
    const fromPairs = encodeReplyHeaders(
      pairs.map(([k, v]): [string, string] => [k.toUpperCase(), v]),
    );
    const fromMap = encodeReplyHeaders(
      new Map(Object.entries(record).map(([k, v]) => [k, String(v)])),
    );
    if (pairs.length === 0) {
      assert.equal(fromRecord, null, where);
      continue;
    }
    assert.deepEqual(decodeMeta(fromRecord!), pairs, where);
    assert.deepEqual(decodeMeta(fromPairs!), pairs, where);
    assert.equal(decodeMeta(fromMap!).length, Object.keys(record).length, where);
  }
  assert.throws(() => encodeReplyHeaders({ "x-n": 1 as unknown as string }), TypeError);
  assert.throws(() => encodeReplyHeaders([["x-a"]] as unknown as [string, string][]), TypeError);
});

Deno.test("TS runtime: a signal first read after its job ended never fires, and reading it leaves other jobs' signals alone", async () => {
  const seen: EpRequest[] = [];
  const runtime = tsHandlerRuntime({ keep: (req) => (seen.push(req), "ok") }, undefined);
  const job = (id: number) => ({
    id,
    service: "keep",
    meta: new Uint8Array(),
    body: new Uint8Array(),
    deadline: performance.now() + 5,
  });
  runtime.handle(job(0x10001), 0);
  runtime.handle(job(0x10002), 0);
  runtime.ended!(0x10001);
  runtime.ended!(0x10002);
  const a = seen[0].signal;
  runtime.cancel!(0x10001);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(a.aborted, false, "ended: no deadline timer, no cancel");
  assert.notEqual(seen[1].signal, a);
  assert.equal(seen[1].signal.aborted, false);
});

Deno.test("TS runtime: overlapping jobs' signals fire at their own deadlines, earliest first, and an ended job's never", async () => {
  const reqs = new Map<number, EpRequest>();
  const runtime = tsHandlerRuntime({
    keep: (req) => {
      reqs.set(Number(new TextDecoder().decode(req.body)), req);
      return "ok";
    },
  }, undefined);
  const fired: number[] = [];
  const start = performance.now();
  const deadlines = [40, 10, 25, 15];
  deadlines.forEach((ms, i) => {
    runtime.handle({
      id: 0x10000 | i,
      service: "keep",
      meta: new Uint8Array(),
      body: new TextEncoder().encode(String(ms)),
      deadline: start + ms,
    }, 0);
    const signal = reqs.get(ms)!.signal;
    signal.addEventListener("abort", () => {
      assert.equal((signal.reason as DOMException).name, "TimeoutError");
      assert.ok(performance.now() >= start + ms, `${ms} ms signal fired early`);
      fired.push(ms);
    });
  });
  runtime.ended!(0x10000 | 2); // the 25 ms job ends first
  await new Promise((r) => setTimeout(r, 70));
  assert.deepEqual(fired, [10, 15, 40]);
  for (let i = 0; i < deadlines.length; i++) runtime.ended!(0x10000 | i);
});
