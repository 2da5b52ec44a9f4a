/**
 * Property of the class "ep's own metadata reaches a handler as the client's, or a handler
 * misses it": whatever a handler thread's ring meta holds (ep's reserved keys in any order
 * and number, among other keys, with any value), the Lua request table has exactly the
 * non-`ep-` keys as headers, the request line, `attempt`, `id` and `deadline_ms` that the
 * reserved keys and the deadline say, and no `ep-` key. Seeded (`EP_FUZZ_SEED` changes it);
 * each case runs through `luaJob` (what a handler thread does) and a real engine.
 */
import assert from "node:assert/strict";
import { encodeMeta } from "../protocol/ep_meta.ts";
import { LuaEngine } from "./engine.ts";
import { luaJob } from "./thread.ts";

const SEED = Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x5eed_2e9);
const CASES = 400;

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEYS = [
  "ep-method",
  "ep-path",
  "ep-query",
  "ep-request-id",
  "ep-attempt",
  "ep-hedge",
  "ep-something-new",
  "ep-",
  "ep",
  "epx",
  "e",
  "x-request-id",
  "accept",
  "x-dup",
];
const ATTEMPTS = [
  "2",
  "3",
  "1",
  "0",
  "-2",
  "1.5",
  "abc",
  "",
  "9007199254740991",
  "1e3",
  "99999999999999999999",
];

interface Expected {
  method: string;
  path: string;
  query_string: string;
  attempt: number;
  hedge: boolean;
  id?: string;
  headers: Record<string, string>;
}

/** What the handler must see, computed from the meta list directly. */
function expected(meta: [string, string][], service: string): Expected {
  const e: Expected = {
    method: "EP",
    path: "/" + service,
    query_string: "",
    attempt: 1,
    hedge: false,
    headers: {},
  };
  const headers = new Map<string, string>();
  for (const [k, v] of meta) {
    if (!k.startsWith("ep-")) {
      const before = headers.get(k);
      headers.set(k, before === undefined ? v : `${before}, ${v}`);
    } else if (k === "ep-method") e.method = v;
    else if (k === "ep-path") e.path = v;
    else if (k === "ep-query") e.query_string = v;
    else if (k === "ep-request-id") e.id = v;
    else if (k === "ep-attempt") {
      const n = Number(v);
      e.attempt = Number.isSafeInteger(n) && n > 1 ? n : 1;
    } else if (k === "ep-hedge") e.hedge = v === "1";
  }
  e.headers = Object.fromEntries(headers);
  return e;
}

Deno.test("Whatever the ring meta holds, a Lua handler sees the non-ep keys as headers and the request line, attempt, hedge, id and deadline_ms the reserved keys and the deadline say", async () => {
  const random = prng(SEED);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
  const text = () => {
    let s = "";
    const n = Math.floor(random() * 12);
    for (let i = 0; i < n; i++) s += String.fromCharCode(0x20 + Math.floor(random() * 95));
    return s;
  };
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function(req)
        return ep.json.encode({
          method = req.method, path = req.path, query_string = req.query_string,
          attempt = req.attempt, hedge = req.hedge, id = req.id, deadline_ms = req.deadline_ms,
          headers = req.headers,
        })
      end`,
      "probe.lua",
    );
    for (let c = 0; c < CASES; c++) {
      const meta: [string, string][] = [];
      const n = Math.floor(random() * 9);
      for (let i = 0; i < n; i++) {
        const k = pick(KEYS);
        meta.push([
          k,
          k === "ep-attempt" && random() < 0.8
            ? pick(ATTEMPTS)
            : k === "ep-hedge" && random() < 0.8
            ? pick(["1", "0", "true", ""])
            : text(),
        ]);
      }
      const mode = pick(["none", "past", "future"] as const);
      const ahead = 1 + Math.floor(random() * 100_000);
      const now = performance.now();
      const deadline = mode === "none" ? undefined : mode === "past" ? now - ahead : now + ahead;
      const job = luaJob({
        id: c + 1,
        service: "svc",
        meta: meta.length > 0 ? encodeMeta(meta) : new Uint8Array(),
        body: new Uint8Array(),
        deadline,
      }, "svc");
      const step = engine.callHandler(ref, job);
      assert.ok(step.done);
      const seen = JSON.parse(new TextDecoder().decode(step.value.body));
      const left = seen.deadline_ms;
      delete seen.deadline_ms;
      const want = expected(meta, "svc");
      const label = `seed ${SEED}, case ${c}: ${JSON.stringify(meta)}`;
      assert.deepEqual(seen, { ...want, headers: seen.headers }, label);
      // ep.json encodes an empty table as {}: headers compare as objects.
      assert.deepEqual(seen.headers, want.headers, label);
      if (mode === "none") assert.equal(left, undefined, label);
      else if (mode === "past") assert.equal(left, 0, label);
      else assert.ok(Number.isInteger(left) && left >= 0 && left <= ahead, `${label}: ${left}`);
    }
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});
