import assert from "node:assert/strict";
import { configure, type LogRecord } from "@logtape/logtape";
import {
  LuaEngine,
  type LuaRequest,
  type LuaResponse,
  type LuaStep,
  type LuaTimerHost,
} from "./engine.ts";
import { LuaError, LuaMemoryError } from "./errors.ts";

const records: LogRecord[] = [];
await configure({
  reset: true,
  sinks: { buffer: (r: LogRecord) => void records.push(r) },
  loggers: [
    { category: ["ep", "lua"], sinks: ["buffer"], lowestLevel: "debug" },
    { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
  ],
});

const text = new TextDecoder();

function request(service = "svc"): LuaRequest {
  return { service, method: "GET", path: `/${service}`, query: "", headers: [], body: "" };
}

function bodyOf(step: LuaStep<LuaResponse>): string {
  assert.ok(step.done, "the call should have finished");
  return text.decode(step.value.body);
}

/** Runs `body` as a handler and returns what it returns, as text. */
function run(engine: LuaEngine, body: string, service = "svc"): string {
  const ref = engine.loadHandler(`return function(req) ${body} end`, "t.lua", service);
  try {
    return bodyOf(engine.callHandler(ref, request(service)));
  } finally {
    engine.unloadHandler(ref);
  }
}

function luaFails(engine: LuaEngine, body: string): string {
  let message = "";
  assert.throws(() => run(engine, body), (err: unknown) => {
    assert.ok(err instanceof LuaError, String(err));
    message = err.message;
    return true;
  });
  return message;
}

Deno.test("ep is a global and the result of require('ep')", async () => {
  const engine = await LuaEngine.create();
  try {
    assert.equal(
      run(engine, `return tostring(require("ep") == ep and type(ep.json) == "table")`),
      "true",
    );
  } finally {
    engine.close();
  }
});

Deno.test("ep.log.* and print log under [ep, lua, <service>] with their level", async () => {
  const engine = await LuaEngine.create();
  try {
    records.length = 0;
    run(
      engine,
      `ep.log.debug("d", 1) ep.log.info("i {x}") ep.log.warn("w", nil, true) ep.log.error("e") print("p", 2)`,
      "user",
    );
    assert.deepEqual(
      records.map((r) => [r.category.join("."), r.level, r.message.join("")]),
      [
        ["ep.lua.user", "debug", "d 1"],
        ["ep.lua.user", "info", "i {x}"],
        ["ep.lua.user", "warning", "w nil true"],
        ["ep.lua.user", "error", "e"],
        ["ep.lua.user", "info", "p 2"],
      ],
    );
    // While a file loads, its logs carry the service name given to loadHandler.
    records.length = 0;
    engine.loadHandler(`ep.log.info("loading") return function() end`, "x.lua", "loader");
    assert.deepEqual(records.map((r) => r.category.join(".")), ["ep.lua.loader"]);
  } finally {
    engine.close();
  }
});

Deno.test("ep.now is fractional milliseconds and monotonic", async () => {
  const engine = await LuaEngine.create();
  try {
    const out = run(
      engine,
      `local a = ep.now()
      local fractional = false
      local prev = a
      for i = 1, 2000 do
        local t = ep.now()
        if t < prev then return "went back" end
        if t ~= math.floor(t) then fractional = true end
        prev = t
      end
      return tostring(prev > a) .. " " .. tostring(fractional) .. " " .. math.type(a)`,
    );
    assert.equal(out, "true true float");
    const js = performance.now();
    const lua = Number(run(engine, `return tostring(ep.now())`));
    assert.ok(lua >= js && lua - js < 1000, `${lua} vs ${js}`);
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.encode writes arrays, objects, nesting, null and escapes", async () => {
  const engine = await LuaEngine.create();
  try {
    const enc = (expr: string) => run(engine, `return ep.json.encode(${expr})`);
    assert.equal(enc(`{1, 2, 3}`), "[1,2,3]");
    assert.equal(enc(`{}`), "{}");
    assert.equal(enc(`ep.json.array()`), "[]");
    assert.equal(enc(`ep.json.array({1, nil, 3})`), "[1,null,3]");
    assert.equal(enc(`{1, ep.json.null, 3}`), "[1,null,3]");
    assert.equal(enc(`{a = 1}`), '{"a":1}');
    assert.equal(enc(`{[1] = "a", [3] = "c"}`), '{"1":"a","3":"c"}');
    assert.equal(enc(`{x = {y = {z = {true, false}}}}`), '{"x":{"y":{"z":[true,false]}}}');
    assert.equal(enc(`1.5`), "1.5");
    assert.equal(enc(`-7`), "-7");
    assert.equal(enc(`2^53`), "9007199254740992");
    assert.equal(enc(`math.maxinteger`), "9223372036854775807");
    assert.equal(enc(`nil`), "null");
    assert.equal(enc(`"a\\"b\\\\c\\n\\1"`), '"a\\"b\\\\c\\n\\u0001"');
    assert.equal(enc(`"héllo 😀"`), '"héllo 😀"');
    const obj = JSON.parse(enc(`{name = "x", list = {1, 2}, nested = {ok = true}}`));
    assert.deepEqual(obj, { name: "x", list: [1, 2], nested: { ok: true } });
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.encode refuses what JSON cannot hold", async () => {
  const engine = await LuaEngine.create();
  try {
    assert.match(
      luaFails(engine, `return ep.json.encode({f = print})`),
      /Cannot encode a function value/,
    );
    assert.match(
      luaFails(engine, `local t = {} t.self = t return ep.json.encode(t)`),
      /contains itself/,
    );
    assert.match(luaFails(engine, `return ep.json.encode(0/0)`), /Cannot encode the number "NaN"/);
    assert.match(luaFails(engine, `return ep.json.encode({[true] = 1})`), /boolean key/);
    assert.match(
      luaFails(
        engine,
        `local t = {} local c = t for i = 1, 300 do c[1] = {} c = c[1] end return ep.json.encode(t)`,
      ),
      /nested deeper than 200/,
    );
    // The failing position is the handler's line.
    assert.match(
      luaFails(engine, `return ep.json.encode(coroutine.create(print))`),
      /^t.lua:1: Cannot encode a thread/,
    );
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.encode stops at the memory cap instead of building an unbounded text outside it", async () => {
  // The text is built in JS, outside the cap, from a Lua value that can be far smaller.
  const engine = await LuaEngine.create({ memoryLimitBytes: 8 << 20 });
  try {
    for (
      const value of [
        `ep.json.array({ [2^24] = 1 })`, // 16 M "null"s
        `(function() local s = ("x"):rep(1 << 20) local t = {} for i = 1, 64 do t[i] = s end return t end)()`,
        `(function() local t = {} for i = 1, 24 do t = { t, t } end return t end)()`,
      ]
    ) {
      assert.throws(() => run(engine, `return ep.json.encode(${value})`), (err: unknown) => {
        assert.ok(err instanceof LuaError && !(err instanceof LuaMemoryError), String(err));
        assert.match(err.message, /^t\.lua:1: JSON text longer than 8388608 characters$/);
        return true;
      });
    }
    assert.ok(engine.healthy);
    assert.equal(
      run(engine, `return ep.json.encode({ ("x"):rep(1 << 20) })`).length,
      (1 << 20) + 4,
    );
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.decode refuses a text whose value cannot fit the memory cap before parsing it outside the cap", async () => {
  // JSON.parse builds the whole value in JS first: a few bytes of text per table.
  const engine = await LuaEngine.create({ memoryLimitBytes: 8 << 20 });
  try {
    for (
      const text of [
        `"[" .. ("[],"):rep(3e5) .. "[]]"`,
        `"[" .. ("{},"):rep(3e5) .. "{}]"`,
        `"[" .. ("1,"):rep(6e5) .. "1]"`,
      ]
    ) {
      assert.throws(() => run(engine, `return #ep.json.decode(${text})`), (err: unknown) => {
        assert.ok(err instanceof LuaError && !(err instanceof LuaMemoryError), String(err));
        assert.match(
          err.message,
          /^t\.lua:1: JSON text too large for the memory cap \(8388608 bytes\)$/,
        );
        return true;
      });
    }
    assert.ok(engine.healthy);
    // Brackets and commas inside strings do not count; what fits, decodes.
    assert.equal(
      run(engine, `return #ep.json.decode('["' .. ("[],"):rep(3e5) .. '"]')[1]`),
      "900000",
    );
    assert.equal(run(engine, `return #ep.json.decode("[" .. ("1,"):rep(1e4) .. "1]")`), "10001");
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.decode reads JSON into tables and round-trips", async () => {
  const engine = await LuaEngine.create();
  try {
    const out = run(
      engine,
      `local v = ep.json.decode('{"a":[1,2,{"b":null}],"s":"\\\\u00e9\\\\ud83d\\\\ude00","f":1.25,"t":true,"e":[],"o":{}}')
      return table.concat({
        #v.a, math.type(v.a[1]), tostring(v.a[3].b == ep.json.null), v.s, tostring(v.f), tostring(v.t),
        tostring(ep.json.is_array(v.e)), tostring(ep.json.is_array(v.o)), tostring(ep.json.is_array(v.a)),
      }, "|")`,
    );
    assert.equal(out, "3|integer|true|é😀|1.25|true|true|false|true");
    for (
      const json of [
        '{"a":[1,2,{"b":null}]}',
        "[]",
        "{}",
        '[[],[[]],{"x":[]}]',
        '"\\u0000\\t"',
        "[1.5,-2,1e+300,true,false,null]",
        '{"k":"ünï€😀"}',
      ]
    ) {
      const back = run(engine, `return ep.json.encode(ep.json.decode(${JSON.stringify(json)}))`);
      assert.deepEqual(JSON.parse(back), JSON.parse(json), json);
    }
  } finally {
    engine.close();
  }
});

Deno.test("ep.json.decode raises a Lua error for invalid JSON", async () => {
  const engine = await LuaEngine.create();
  try {
    for (const bad of ["{", "[1,]", "{'a':1}", "nul", "", '"\\x"', "[1] x"]) {
      assert.match(
        luaFails(engine, `return ep.json.decode(${JSON.stringify(bad)})`),
        /^t.lua:1: Invalid JSON: /,
        bad,
      );
    }
    assert.match(
      luaFails(engine, `return ep.json.decode({})`),
      /bad argument #1 to 'ep.json.decode' \(string expected, got table\)/,
    );
    assert.match(
      luaFails(engine, `return ep.json.decode(string.rep("[", 300) .. string.rep("]", 300))`),
      /nested deeper than 200/,
    );
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});

Deno.test("ep.sleep yields inside a handler and raises elsewhere", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(`return function() ep.sleep(2.5) return "slept" end`, "s.lua");
    const step = engine.callHandler(ref, request());
    assert.ok(!step.done);
    assert.equal(step.op, "sleep");
    assert.equal(step.args[0], 2.5);
    assert.ok(typeof step.args[1] === "number" && step.args[1] <= performance.now());
    assert.equal(bodyOf(engine.resume(step.call)), "slept");

    assert.throws(() => engine.loadHandler(`ep.sleep(1) return function() end`, "load.lua"), {
      message: "load.lua:1: ep.sleep is only available inside a handler or a timer callback",
    });
    // (coroutine.wrap adds its own position in front.)
    assert.match(
      luaFails(engine, `local co = coroutine.wrap(function() ep.sleep(1) end) co()`),
      /t.lua:1: ep.sleep is only available inside a handler or a timer callback$/,
    );
    assert.match(
      luaFails(engine, `ep.sleep("soon")`),
      /bad argument #1 to 'ep.sleep' \(milliseconds expected, got soon\)/,
    );
    assert.match(luaFails(engine, `ep.sleep(-1)`), /milliseconds expected/);
  } finally {
    engine.close();
  }
});

Deno.test("ep.timer and ep.every go through the engine's scheduler; handles cancel", async () => {
  const calls: string[] = [];
  const host: LuaTimerHost = {
    set: (id, ms, repeat) => void calls.push(`set ${id} ${ms} ${repeat}`),
    clear: (id) => void calls.push(`clear ${id}`),
  };
  const engine = await LuaEngine.create({ timers: host });
  try {
    const ref = engine.loadHandler(
      `FIRED = {}
      return function(req)
        local a = ep.timer(5, function() FIRED[#FIRED + 1] = "a" end)
        local b = ep.every(10, function() FIRED[#FIRED + 1] = "b" ep.sleep(1) FIRED[#FIRED + 1] = "b2" end)
        local c = ep.timer(1, function() error("timer boom") end)
        TIMERS = { a = a, b = b }
        return a.id .. "," .. b.id .. "," .. c.id
      end`,
      "timers.lua",
      "clock",
    );
    const ids = bodyOf(engine.callHandler(ref, request("clock"))).split(",").map(Number);
    assert.deepEqual(calls, [
      `set ${ids[0]} 5 false`,
      `set ${ids[1]} 10 true`,
      `set ${ids[2]} 1 false`,
    ]);

    assert.deepEqual(engine.fireTimer(ids[0]), { done: true, value: undefined });
    assert.deepEqual(engine.fireTimer(ids[0]), { done: true, value: undefined }); // one-shot: gone
    const every = engine.fireTimer(ids[1]);
    assert.ok(!every.done);
    assert.equal(every.op, "sleep");
    assert.equal(every.call.kind, "timer");
    assert.equal(every.call.service, "clock");
    assert.ok(engine.resume(every.call).done);
    assert.throws(() => engine.fireTimer(ids[2]), {
      name: "LuaError",
      message: "timers.lua:5: timer boom",
    });
    assert.equal(run(engine, `return table.concat(FIRED, ",")`), "a,b,b2");

    calls.length = 0;
    run(engine, `TIMERS.b:cancel() TIMERS.b:cancel()`);
    assert.deepEqual(calls, [`clear ${ids[1]}`]);
    assert.deepEqual(engine.fireTimer(ids[1]), { done: true, value: undefined });
    assert.match(
      luaFails(engine, `ep.timer(1, "not a function")`),
      /bad argument #2 to 'ep.timer' \(function expected, got string\)/,
    );
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});

Deno.test("ep.timer raises an error in an engine without a scheduler", async () => {
  const engine = await LuaEngine.create();
  try {
    assert.match(
      luaFails(engine, `ep.timer(1, function() end)`),
      /ep.timer is not available in this engine/,
    );
    assert.match(
      luaFails(engine, `ep.every(1, function() end)`),
      /ep.every is not available in this engine/,
    );
  } finally {
    engine.close();
  }
});

Deno.test("ep.env reads the environment with a default", async () => {
  Deno.env.set("EP_LUA_TEST_VALUE", "from env");
  const engine = await LuaEngine.create();
  try {
    assert.equal(run(engine, `return ep.env("EP_LUA_TEST_VALUE", "dflt")`), "from env");
    assert.equal(run(engine, `return ep.env("EP_LUA_TEST_UNSET_VALUE", "dflt")`), "dflt");
    assert.equal(run(engine, `return tostring(ep.env("EP_LUA_TEST_UNSET_VALUE"))`), "nil");
  } finally {
    engine.close();
    Deno.env.delete("EP_LUA_TEST_VALUE");
  }
});

Deno.test("ep.call outside a handler raises an error", async () => {
  const engine = await LuaEngine.create();
  try {
    // (coroutine.wrap is ep.lua's: called in a tail call, it cannot name the caller's line.)
    assert.match(
      luaFails(engine, `return coroutine.wrap(function() return ep.call("user", "x") end)()`),
      /^(t\.lua:1: )?ep\.call is only available inside a handler or a timer callback$/,
    );
    assert.equal(
      luaFails(
        engine,
        `local r = coroutine.wrap(function() return ep.call("user", "x") end)() return r`,
      ),
      "t.lua:1: ep.call is only available inside a handler or a timer callback",
    );
  } finally {
    engine.close();
  }
});
