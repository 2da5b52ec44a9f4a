/**
 * Lua handler calls: ep's raw-C-API fast path (`LuaEngine.callHandler`) against wasmoon's
 * JS function wrapper (`engine.global.get(fn)(req)`), the interrupt hook's cost, and
 * `ep.sleep` accuracy, all in one process on one thread.
 *
 * Run: `deno run -A tests/bench/lua_bench.ts [--quick]`. Rounds are interleaved (A, B, A,
 * B, …) so that drift on a shared machine hits both sides alike; figures are medians of
 * the rounds. The handler is a trivial echo (`return req.body`) given a request with a
 * method, a path, an empty query, one header and a 5-byte body. wasmoon's wrapper runs in
 * a thread of its own that has no hook, so it is compared with the fast path both with
 * and without the hook; the last line uses the fast path with the hook on.
 *
 * @module
 */

import { loadLua } from "../../lua/_lua_api.ts";
import { LuaEngine, type LuaRequest } from "../../lua/engine.ts";
import { LuaHandlerRuntime } from "../../lua/handler_runtime.ts";

const quick = Deno.args.includes("--quick");
const ROUNDS = quick ? 3 : 7;
const ROUND_MS = quick ? 150 : 400;
const ECHO = "return function(req) return req.body end";
const LOOP = `return function(req)
  local s = 0
  for i = 1, tonumber(req.body) do s = s + i % 7 end
  return tostring(s)
end`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Calls `fn` in batches for about `ms` and returns calls per second. */
function rate(fn: () => void, ms: number): number {
  const batch = 1000;
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let i = 0; i < batch; i++) fn();
    n += batch;
    t = performance.now();
  }
  return n / ((t - t0) / 1000);
}

/** Runs the named cases in interleaved rounds; returns each case's median. */
function sideBySide(cases: Record<string, () => number>): Record<string, number> {
  const results: Record<string, number[]> = {};
  for (const name of Object.keys(cases)) {
    cases[name](); // warm-up
    results[name] = [];
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(cases)) results[name].push(fn());
  }
  return Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

const flag = new Int32Array(new SharedArrayBuffer(4));
const hooked = await LuaEngine.create({ interrupt: flag });
const plain = await LuaEngine.create();
const req: LuaRequest = {
  service: "echo",
  method: "POST",
  path: "/echo",
  query: "",
  headers: [["content-type", "text/plain"]],
  body: new TextEncoder().encode("hello"),
};
const echoHooked = hooked.loadHandler(ECHO, "echo.lua");
const echoPlain = plain.loadHandler(ECHO, "echo.lua");

// wasmoon's wrapper: the same function in a wasmoon engine of its own (same wasm module),
// fetched as a JS function from a global.
const wasmoon = await (await loadLua()).factory.createEngine({ enableProxy: false });
wasmoon.doStringSync(`echo_fn = (function() ${ECHO} end)()`);
const wrapped = wasmoon.global.get("echo_fn") as (req: unknown) => unknown;
const wasmoonReq = {
  service: "echo",
  method: "POST",
  path: "/echo",
  query: {},
  headers: { "content-type": "text/plain" },
  body: "hello",
};
if (wrapped(wasmoonReq) !== "hello") throw new Error("wasmoon wrapper echo failed");

console.log(`Lua handler calls, one engine, one thread (${ROUNDS} rounds of ${ROUND_MS} ms)`);
const calls = sideBySide({
  hookOn: () => rate(() => void hooked.callHandler(echoHooked, req), ROUND_MS),
  hookOff: () => rate(() => void plain.callHandler(echoPlain, req), ROUND_MS),
  wrapper: () => rate(() => void wrapped(wasmoonReq), ROUND_MS),
});
console.log(`  fast path, hook on         ${fmt(calls.hookOn)} calls/s`);
console.log(`  fast path, hook off        ${fmt(calls.hookOff)} calls/s`);
console.log(`  wasmoon wrapper (no hook)  ${fmt(calls.wrapper)} calls/s`);
console.log(
  `  hook on / hook off (trivial handler): ${(calls.hookOn / calls.hookOff).toFixed(2)}x`,
);
console.log(`  fast path (hook off) vs wrapper: ${(calls.hookOff / calls.wrapper).toFixed(2)}x`);
if (hooked.stackTop !== 0 || plain.stackTop !== 0) throw new Error("stack not clean");

// The same handler through LuaHandlerRuntime.handle (a promise per job), 1000 jobs a batch.
const echoRuntime = await LuaHandlerRuntime.create({
  interrupt: flag,
  services: [{ name: "echo", source: ECHO, chunkName: "echo.lua" }],
});
const job = {
  id: 1,
  ...req,
  headers: [["content-type", "text/plain"]] as [string, string][],
  body: req.body as Uint8Array,
};
const runtimeRates: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ROUND_MS) {
    const batch: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) batch.push(echoRuntime.handle(job));
    await Promise.all(batch);
    n += 1000;
  }
  runtimeRates.push(n / ((performance.now() - t0) / 1000));
}
echoRuntime.close();
console.log(`  LuaHandlerRuntime.handle, hook on: ${fmt(median(runtimeRates))} jobs/s`);

// A CPU-bound Lua loop: the count hook makes Lua check it at every instruction.
const loopHooked = hooked.loadHandler(LOOP, "loop.lua");
const loopPlain = plain.loadHandler(LOOP, "loop.lua");
const iterations = quick ? 1_000_000 : 3_000_000;
const loopReq: LuaRequest = { ...req, body: String(iterations) };
const timeLoop = (engine: LuaEngine, ref: number) => () => {
  const t0 = performance.now();
  engine.callHandler(ref, loopReq);
  return performance.now() - t0;
};
const loop = sideBySide({ on: timeLoop(hooked, loopHooked), off: timeLoop(plain, loopPlain) });
console.log(`\nCPU-bound Lua loop (${fmt(iterations)} iterations, hook every 1000 instructions)`);
console.log(
  `  hook on ${loop.on.toFixed(1)} ms, hook off ${loop.off.toFixed(1)} ms: ${
    (loop.on / loop.off).toFixed(2)
  }x`,
);

// A handler that does typical work: a table, string formatting, JSON.
const MIXED = `return function(req)
  local items = {}
  for i = 1, 20 do items[i] = { id = i, name = string.format("item-%03d", i), tags = { "a", "b" } } end
  return ep.json.encode({ path = req.path, items = items })
end`;
const mixedHooked = hooked.loadHandler(MIXED, "mixed.lua");
const mixedPlain = plain.loadHandler(MIXED, "mixed.lua");
const mixed = sideBySide({
  on: () => rate(() => void hooked.callHandler(mixedHooked, req), ROUND_MS),
  off: () => rate(() => void plain.callHandler(mixedPlain, req), ROUND_MS),
});
console.log(`\nTable + string.format + ep.json.encode handler`);
console.log(
  `  hook on ${fmt(mixed.on)} calls/s, hook off ${fmt(mixed.off)} calls/s: ${
    (mixed.off / mixed.on).toFixed(2)
  }x slower with the hook`,
);

// ep.sleep accuracy through the runtime, against a bare setTimeout.
const runtime = await LuaHandlerRuntime.create({
  services: [{
    name: "nap",
    source: `return function(req)
      local ms = tonumber(req.body)
      local t0 = ep.now()
      ep.sleep(ms)
      return tostring(ep.now() - t0 - ms)
    end`,
    chunkName: "nap.lua",
  }],
});
const samples = quick ? 15 : 41;
console.log(`\nep.sleep error (slept - asked), median of ${samples}`);
for (const ms of [1, 5, 20]) {
  const lua: number[] = [];
  const st: number[] = [];
  for (let i = 0; i < samples; i++) {
    const reply = await runtime.handle({
      id: i + 1,
      service: "nap",
      method: "GET",
      path: "/nap",
      query: "",
      headers: [],
      body: new TextEncoder().encode(String(ms)),
    });
    lua.push(Number(new TextDecoder().decode(reply.body)));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, ms));
    st.push(performance.now() - t0 - ms);
  }
  console.log(
    `  ${String(ms).padStart(2)} ms: ep.sleep ${median(lua).toFixed(3)} ms, setTimeout ${
      median(st).toFixed(3)
    } ms`,
  );
}
runtime.close();
hooked.close();
plain.close();
wasmoon.global.close();

console.log(
  `lua fast path vs wasmoon wrapper calls/s: ${(calls.hookOn / calls.wrapper).toFixed(1)}x`,
);
