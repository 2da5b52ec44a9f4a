import assert from "node:assert/strict";
import { LuaEngine, type LuaRequest, type LuaResponse, type LuaStep } from "./engine.ts";
import { LuaTimeoutError } from "./errors.ts";

const text = new TextDecoder();

function request(over: Partial<LuaRequest> = {}): LuaRequest {
  return {
    service: "svc",
    method: "POST",
    path: "/svc",
    query: "",
    headers: [],
    body: "",
    ...over,
  };
}

async function sliced(sliceMs: number): Promise<LuaEngine> {
  return await LuaEngine.create({ interrupt: new Int32Array(new SharedArrayBuffer(4)), sliceMs });
}

/** Resumes every preempted step until the call is done; returns it and the preemptions. */
function runPreempted(
  engine: LuaEngine,
  first: LuaStep<LuaResponse>,
): { value: LuaResponse; preempted: number } {
  let step = first;
  let preempted = 0;
  while (!step.done) {
    assert.equal(step.op, "preempt");
    assert.deepEqual(step.args, []);
    preempted++;
    step = engine.resume(step.call);
  }
  return { value: step.value, preempted };
}

Deno.test("A sliced engine suspends a long call at each slice and resumes it where it was", async () => {
  const engine = await sliced(2);
  try {
    const ref = engine.loadHandler(
      `return function(req)
        local s = 0
        local t0 = ep.now()
        while ep.now() - t0 < 50 do
          for i = 1, 1000 do s = s + i end
        end
        local ok, inner = pcall(function()
          local t1 = ep.now()
          while ep.now() - t1 < 20 do end
          return "inside pcall"
        end)
        return tostring(s > 0) .. " " .. inner
      end`,
      "long.lua",
    );
    const { value, preempted } = runPreempted(engine, engine.callHandler(ref, request()));
    assert.equal(text.decode(value.body), "true inside pcall");
    // 70 ms of running in 2 ms slices: the hook stays on after each resume.
    assert.ok(preempted >= 5, `preempted ${preempted} times`);
    // The engine serves on, and a short call is not preempted.
    const echo = engine.loadHandler("return function(req) return 'ok' end", "echo.lua");
    const step = engine.callHandler(echo, request());
    assert.ok(step.done);
  } finally {
    engine.close();
  }
});

Deno.test("A sliced engine interrupts a call past its own deadline, preempted or not", async () => {
  const engine = await sliced(2);
  try {
    const ref = engine.loadHandler("return function(req) while true do end end", "spin.lua");
    const deadline = performance.now() + 30;
    let step = engine.callHandler(ref, request(), { token: 7, deadline });
    let preempted = 0;
    assert.throws(
      () => {
        while (!step.done) {
          preempted++;
          step = engine.resume(step.call);
        }
      },
      (err: unknown) => err instanceof LuaTimeoutError,
    );
    assert.ok(performance.now() >= deadline);
    assert.ok(preempted >= 2, `preempted ${preempted} times`);
    // Also when Lua cannot yield (inside a C call): the hook raises at the deadline.
    const sort = engine.loadHandler(
      `return function(req)
        local t = {3, 1, 2}
        table.sort(t, function(a, b) while true do end end)
      end`,
      "sort.lua",
    );
    assert.throws(
      () => engine.callHandler(sort, request(), { deadline: performance.now() + 20 }),
      (err: unknown) => err instanceof LuaTimeoutError,
    );
    // And the engine serves on.
    const ok = engine.loadHandler("return function(req) return 'ok' end", "ok.lua");
    assert.ok(engine.callHandler(ok, request()).done);
  } finally {
    engine.close();
  }
});

Deno.test("A nested coroutine is not preempted: its own coroutine.resume keeps its meaning", async () => {
  const engine = await sliced(1);
  try {
    const ref = engine.loadHandler(
      `return function(req)
        local co = coroutine.wrap(function()
          local t0 = ep.now()
          while ep.now() - t0 < 10 do end
          coroutine.yield("from inside")
          return "second"
        end)
        local a = co()
        local b = co()
        return a .. " " .. b
      end`,
      "nested.lua",
    );
    const { value } = runPreempted(engine, engine.callHandler(ref, request()));
    assert.equal(text.decode(value.body), "from inside second");
  } finally {
    engine.close();
  }
});
