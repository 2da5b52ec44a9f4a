import assert from "node:assert/strict";
import {
  INTERRUPT_ANY,
  LuaEngine,
  type LuaRequest,
  type LuaResponse,
  type LuaStep,
} from "./engine.ts";
import { LuaError, LuaMemoryError, LuaTimeoutError } from "./errors.ts";

const FIXTURES = new URL("../tests/fixtures/lua/", import.meta.url);
const text = new TextDecoder();

function request(over: Partial<LuaRequest> = {}): LuaRequest {
  return {
    service: "svc",
    method: "POST",
    path: "/svc/x",
    query: "",
    headers: [],
    body: "hello",
    ...over,
  };
}

function done(step: LuaStep<LuaResponse>): LuaResponse {
  assert.ok(step.done, "the call should have finished");
  return step.value;
}

function bodyOf(step: LuaStep<LuaResponse>): string {
  return text.decode(done(step).body);
}

Deno.test("LuaEngine serves 100 000 calls on one engine with the stack unchanged", async () => {
  const engine = await LuaEngine.create({ interrupt: new Int32Array(new SharedArrayBuffer(4)) });
  try {
    const ref = engine.loadHandler("return function(req) return req.body end", "echo.lua");
    const top = engine.stackTop;
    const req = request({ headers: [["content-type", "text/plain"]], query: "a=1" });
    for (let i = 0; i < 100_000; i++) {
      const step = engine.callHandler(ref, req);
      if (!step.done) assert.fail("echo yielded");
      if (i % 10_000 === 0) {
        assert.equal(text.decode(step.value.body), "hello");
        assert.equal(engine.stackTop, top);
      }
    }
    assert.equal(engine.stackTop, top);
    assert.equal(engine.idleCoroutines, 1);
    engine.collectGarbage();
    assert.ok(engine.memoryUsed < 1 << 20, `memory grew to ${engine.memoryUsed}`);
    // The engine's count agrees with Lua's own.
    const count = engine.loadHandler(
      `return function() return collectgarbage("count") * 1024 end`,
      "c.lua",
    );
    const lua = Number(text.decode(done(engine.callHandler(count, req)).body));
    assert.ok(Math.abs(lua - engine.memoryUsed) < 4096, `${lua} vs ${engine.memoryUsed}`);
  } finally {
    engine.close();
  }
});

Deno.test("LuaEngine builds the request table: query, lower-case headers, binary body", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function(req)
        local keys = {}
        for k in pairs(req.headers) do keys[#keys + 1] = k end
        table.sort(keys)
        return table.concat({
          req.service, req.method, req.path,
          req.query.a, req.query.b, req.query.empty, tostring(req.query.missing),
          req.query["x y"], table.concat(keys, ","), req.headers["x-dup"],
          #req.body, req.body:byte(1), req.body:byte(3),
        }, "|")
      end`,
      "req.lua",
    );
    const body = bodyOf(engine.callHandler(ref, {
      service: "svc",
      method: "PUT",
      path: "/svc/p",
      query: "a=1%202&b=%E2%82%AC&empty=&x+y=z&bad=%zz&a=3",
      headers: [["X-Dup", "1"], ["Accept", "*/*"], ["x-dup", "2"]],
      body: new Uint8Array([0, 255, 7]),
    }));
    assert.equal(body, "svc|PUT|/svc/p|3|€||nil|z|accept,x-dup|1, 2|3|0|7");
  } finally {
    engine.close();
  }
});

Deno.test("LuaEngine maps handler results to responses", async () => {
  const engine = await LuaEngine.create();
  try {
    const load = (src: string) => engine.loadHandler(`return function(req) ${src} end`, "r.lua");
    const text200 = done(engine.callHandler(load(`return "hi"`), request()));
    assert.deepEqual(text200.status, 200);
    assert.deepEqual(text200.headers, [["content-type", "text/plain; charset=utf-8"]]);
    assert.equal(text.decode(text200.body), "hi");

    const table = done(engine.callHandler(
      load(
        `return { status = 201, body = "made", headers = { ["x-a"] = "1", ["set-cookie"] = { "a=1", "b=2" }, n = 5 } }`,
      ),
      request(),
    ));
    assert.equal(table.status, 201);
    assert.equal(text.decode(table.body), "made");
    assert.deepEqual(
      [...table.headers].sort(),
      [["n", "5"], ["set-cookie", "a=1"], ["set-cookie", "b=2"], ["x-a", "1"]],
    );

    assert.deepEqual(done(engine.callHandler(load(`return { status = 404 }`), request())), {
      status: 404,
      headers: [],
      body: new Uint8Array(),
    });
    assert.equal(done(engine.callHandler(load(`return`), request())).status, 204);
    assert.equal(done(engine.callHandler(load(`return nil`), request())).status, 204);

    for (
      const [src, message] of [
        [
          `return true`,
          'Handler of service "svc" returned a boolean; expected a string or a table',
        ],
        [`return { status = 1.5 }`, "Handler returned status 1.5; allowed 200–599"],
        [`return { status = 99 }`, "Handler returned status 99; allowed 200–599"],
        [`return { status = 600 }`, "Handler returned status 600; allowed 200–599"],
        [
          `return { status = 304, body = "x" }`,
          "Handler returned a body with status 304; a 304 response has no body",
        ],
        [`return { status = "200" }`, 'Handler of service "svc" returned a string status'],
        [`return { body = {} }`, 'Handler of service "svc" returned a table body'],
        [
          `return { headers = { [1] = "x" } }`,
          'Handler of service "svc" returned a header without a name',
        ],
      ]
    ) {
      assert.throws(() => engine.callHandler(load(src), request()), (err: unknown) => {
        assert.ok(err instanceof LuaError);
        assert.equal(err.message, message);
        return true;
      });
      assert.equal(engine.stackTop, 0);
    }
    // Metamethods on the response are not run (a raising __index would abort the module).
    const meta = done(engine.callHandler(
      load(`return setmetatable({}, { __index = function() error("no") end })`),
      request(),
    ));
    assert.equal(meta.status, 200);
  } finally {
    engine.close();
  }
});

Deno.test("A handler error is a LuaError with a one-line message and the traceback apart; the engine keeps serving", async () => {
  const engine = await LuaEngine.create();
  try {
    const bad = engine.loadHandler(
      `local function inner(x)
        return x.field
      end
      return function(req) local v = inner(nil) return v end`,
      "/srv/secret/dir/user.lua",
    );
    const good = engine.loadHandler(`return function(req) return "ok" end`, "ok.lua");
    const top = engine.stackTop;
    for (let i = 0; i < 3; i++) {
      assert.throws(() => engine.callHandler(bad, request()), (err: unknown) => {
        assert.ok(err instanceof LuaError);
        assert.equal(err.name, "LuaError");
        assert.equal(err.message, "user.lua:2: attempt to index a nil value (local 'x')");
        assert.ok(!err.message.includes("\n"));
        assert.ok(!err.message.includes("/srv"));
        assert.match(err.traceback, /stack traceback:/);
        assert.match(err.traceback, /in (upvalue|local|function) 'inner'/);
        return true;
      });
      assert.equal(engine.stackTop, top);
      assert.equal(bodyOf(engine.callHandler(good, request())), "ok");
    }
    const custom = engine.loadHandler(`return function() error({ code = 7 }) end`, "t.lua");
    assert.throws(() => engine.callHandler(custom, request()), { message: "(a table value)" });
    const multi = engine.loadHandler(
      `return function() error("line one\\nline two", 0) end`,
      "m.lua",
    );
    assert.throws(() => engine.callHandler(multi, request()), (err: unknown) => {
      assert.ok(err instanceof LuaError);
      assert.equal(err.message, "line one");
      assert.match(err.traceback, /^line one\nline two\nstack traceback:/);
      return true;
    });
    assert.equal(engine.stackTop, top);
  } finally {
    engine.close();
  }
});

Deno.test("loadHandler rejects syntax errors, failing files and non-functions, leaving the stack alone", async () => {
  const engine = await LuaEngine.create();
  try {
    const top = engine.stackTop;
    assert.throws(() => engine.loadHandler("return function(", "syn.lua"), {
      name: "LuaError",
      message: "syn.lua:1: <name> or '...' expected near <eof>",
    });
    assert.throws(() => engine.loadHandler("error('at load')", "fail.lua"), (err: unknown) => {
      assert.ok(err instanceof LuaError);
      assert.equal(err.message, "fail.lua:1: at load");
      assert.match(err.traceback, /stack traceback:/);
      return true;
    });
    assert.throws(() => engine.loadHandler("return 42", "num.lua"), {
      message: 'Script "num.lua" returned a number; expected a function',
    });
    assert.equal(engine.stackTop, top);
  } finally {
    engine.close();
  }
});

Deno.test("A handler that passes the memory cap gets LuaMemoryError and the engine serves on", async () => {
  const engine = await LuaEngine.create({ memoryLimitBytes: 8 << 20 });
  try {
    const hog = engine.loadHandler(
      `return function() local t = {} for i = 1, 1e8 do t[i] = { i } end end`,
      "hog.lua",
    );
    const ok = engine.loadHandler(`return function(req) return "still here" end`, "ok.lua");
    assert.throws(() => engine.callHandler(hog, request()), (err: unknown) => {
      assert.ok(err instanceof LuaMemoryError);
      assert.equal(err.name, "LuaMemoryError");
      assert.equal(err.limitBytes, 8 << 20);
      assert.equal(err.engineUsable, true);
      assert.equal(
        err.message,
        'Lua handler of service "svc" ran out of memory (limit 8388608 bytes)',
      );
      return true;
    });
    assert.ok(engine.healthy);
    assert.ok(engine.memoryUsed < 1 << 20);
    assert.equal(bodyOf(engine.callHandler(ok, request())), "still here");
    // A large allocation from JS (the request) is not refused: the cap only binds Lua.
    const big = "x".repeat(10 << 20);
    const echo = engine.loadHandler(`return function(req) return #req.body end`, "len.lua");
    assert.equal(bodyOf(engine.callHandler(echo, request({ body: big }))), String(10 << 20));
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});

Deno.test("A handler that keeps memory in a global makes the engine unhealthy", async () => {
  const engine = await LuaEngine.create({ memoryLimitBytes: 8 << 20 });
  try {
    const leak = engine.loadHandler(
      `return function() LEAK = LEAK or {} for i = 1, 1e8 do LEAK[#LEAK + 1] = { i } end end`,
      "leak.lua",
    );
    assert.throws(() => engine.callHandler(leak, request()), (err: unknown) => {
      assert.ok(err instanceof LuaMemoryError);
      assert.equal(err.engineUsable, false);
      return true;
    });
    assert.equal(engine.healthy, false);
  } finally {
    engine.close();
  }
});

Deno.test("require finds modules relative to scriptDir through Deno, not wasmoon's file system", async () => {
  const engine = await LuaEngine.create({ scriptDir: FIXTURES });
  try {
    const ref = engine.loadHandler(
      `local greet = require("greet")
      local pkg = require("pkg")
      return function(req)
        return greet.hello(req.body) .. "|" .. pkg.name .. "|" .. pkg.twice("ab") .. "|" ..
          tostring(require("greet") == greet)
      end`,
      "user.lua",
    );
    assert.equal(
      bodyOf(engine.callHandler(ref, request({ body: "bob" }))),
      "hello bob|pkg|abab|true",
    );

    const probe = (src: string) =>
      bodyOf(
        engine.callHandler(engine.loadHandler(`return function() ${src} end`, "p.lua"), request()),
      );
    // Why the searcher exists: wasmoon's io sees an in-memory file system (and the
    // sandbox takes io away: lua/sandbox_test.ts).
    assert.equal(probe(`return tostring(io)`), "nil");
    assert.match(
      probe(`return package.path`),
      /fixtures\/lua\/\?\.lua;.*fixtures\/lua\/\?\/init\.lua$/,
    );

    const requireError = (name: string) => {
      let message = "";
      assert.throws(
        () =>
          engine.callHandler(
            engine.loadHandler(`return function() require(${JSON.stringify(name)}) end`, "r.lua"),
            request(),
          ),
        (err: unknown) => {
          assert.ok(err instanceof LuaError);
          message = err.traceback;
          return true;
        },
      );
      return message;
    };
    assert.match(
      requireError("nope"),
      /module 'nope' not found:[\s\S]*no file 'nope.lua'[\s\S]*no file 'nope\/init.lua'/,
    );
    assert.match(requireError("lib.broken"), /lib\/broken.lua:3: broken module/);
    assert.match(requireError("..etc"), /invalid module name/);
    assert.match(requireError("/etc/passwd"), /invalid module name|Invalid module path/);
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});

Deno.test("A handler that yields is suspended, resumed with values, or cancelled", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function(req)
        local a, b = coroutine.yield("ask", 1, "two", true, {})
        return req.body .. ":" .. tostring(a) .. ":" .. tostring(b)
      end`,
      "y.lua",
    );
    const step = engine.callHandler(ref, request());
    assert.ok(!step.done);
    assert.equal(step.op, "ask");
    assert.deepEqual(step.args, [1, "two", true, null]);
    assert.equal(step.call.suspended, true);
    assert.equal(step.call.service, "svc");
    // Other calls run while it waits.
    const other = engine.callHandler(ref, request({ body: "other" }));
    assert.ok(!other.done);
    assert.equal(bodyOf(engine.resume(step.call, ["x", 2])), "hello:x:2");
    assert.throws(() => engine.resume(step.call), TypeError);
    engine.cancel(other.call);
    assert.throws(() => engine.resume(other.call), TypeError);
    assert.equal(engine.stackTop, 0);
    assert.equal(engine.idleCoroutines, 2);
  } finally {
    engine.close();
  }
});

Deno.test("The interrupt slot stops a runaway handler, even inside pcall or a C call, and the engine serves on", async () => {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const engine = await LuaEngine.create({ interrupt: flag });
  try {
    const ok = engine.loadHandler(`return function(req) return "ok" end`, "ok.lua");
    const handlers = [
      "return function() while true do end end",
      "return function() while true do pcall(function() while true do end end) end end",
      "return function() local t = {3, 2, 1} table.sort(t, function() while true do end end) end",
      "return function() local co = coroutine.wrap(function() while true do end end) co() while true do end end",
    ];
    for (const src of handlers) {
      const ref = engine.loadHandler(src, "loop.lua");
      // Set before the call: the hook sees it within 1000 instructions.
      Atomics.store(flag, 0, INTERRUPT_ANY);
      assert.throws(() => engine.callHandler(ref, request()), (err: unknown) => {
        assert.ok(err instanceof LuaTimeoutError, String(err));
        assert.equal(err.message, 'Lua handler of service "svc" was interrupted');
        assert.match(err.traceback, /loop.lua:1/);
        return true;
      });
      assert.equal(Atomics.load(flag, 0), 0, "the interrupt is taken");
      assert.equal(engine.stackTop, 0);
      assert.equal(bodyOf(engine.callHandler(ok, request())), "ok");
    }
    // Aimed at another job: this one runs to its end and the slot is left alone.
    const count = engine.loadHandler(
      `return function() local n = 0 for i = 1, 1e5 do n = n + 1 end return tostring(n) end`,
      "count.lua",
    );
    Atomics.store(flag, 0, 99);
    assert.equal(bodyOf(engine.callHandler(count, request(), { token: 5 })), "100000");
    assert.equal(Atomics.load(flag, 0), 99);
    // Aimed at this job's token.
    const loop = engine.loadHandler("return function() while true do end end", "loop.lua");
    Atomics.store(flag, 0, 5);
    assert.throws(() => engine.callHandler(loop, request(), { token: 5 }), LuaTimeoutError);
    assert.equal(Atomics.load(flag, 0), 0);
    // A suspended call whose token is set is stopped when it would resume.
    const nap = engine.loadHandler(
      `return function() coroutine.yield("sleep", 1) return "woke" end`,
      "nap.lua",
    );
    const step = engine.callHandler(nap, request(), { token: 6 });
    assert.ok(!step.done);
    Atomics.store(flag, 0, 6);
    assert.throws(() => engine.resume(step.call), LuaTimeoutError);
    assert.equal(engine.stackTop, 0);
  } finally {
    engine.close();
  }
});

Deno.test("A runaway handler in a Web Worker is interrupted from the main thread within 100 ms", async () => {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL("runaway_worker.ts", FIXTURES), { type: "module" });
  const inbox: unknown[] = [];
  let notify: (() => void) | null = null;
  worker.onmessage = (e) => {
    inbox.push(e.data);
    notify?.();
  };
  const next = async (): Promise<unknown> => {
    while (inbox.length === 0) await new Promise<void>((r) => notify = r);
    return inbox.shift();
  };
  try {
    worker.postMessage({ flag });
    assert.equal(await next(), "ready");
    for (const name of ["loop", "pcall_loop", "sort_loop"]) {
      worker.postMessage({ run: name });
      assert.deepEqual(await next(), { started: name });
      await new Promise((r) => setTimeout(r, 50));
      const setAt = performance.now();
      Atomics.store(flag, 0, INTERRUPT_ANY);
      const reply = await next() as { done: string; error: string; elapsed: number; top: number };
      const latency = performance.now() - setAt;
      assert.equal(reply.done, name);
      assert.equal(reply.error, "LuaTimeoutError");
      assert.equal(reply.top, 0);
      assert.ok(latency < 100, `interrupted after ${latency.toFixed(1)} ms`);
      assert.equal(Atomics.load(flag, 0), 0);

      worker.postMessage({ run: "echo" });
      assert.deepEqual(await next(), { started: "echo" });
      const echo = await next() as { done: string; body: string };
      assert.equal(echo.body, "echo x");
    }
  } finally {
    worker.terminate();
  }
});

Deno.test("Host functions raise Lua errors that carry the caller's position", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function()
        local ok, err = pcall(ep.json.decode, "{")
        local ok2, err2 = pcall(function() return ep.json.decode("[1,") end)
        return tostring(ok) .. "|" .. err .. "|" .. err2
      end`,
      "pos.lua",
    );
    const body = bodyOf(engine.callHandler(ref, request()));
    assert.match(body, /^false\|Invalid JSON: .+\|pos.lua:3: Invalid JSON: .+$/);
  } finally {
    engine.close();
  }
});

Deno.test("LuaEngine refuses use after close and re-entrant calls", async () => {
  const engine = await LuaEngine.create();
  const ref = engine.loadHandler(`return function() return "x" end`, "x.lua");
  engine.close();
  engine.close();
  assert.throws(() => engine.callHandler(ref, request()), TypeError);
  assert.throws(() => engine.loadHandler("return function() end", "y.lua"), TypeError);
});

Deno.test("LuaEngine passes an HTTP request's header bytes to Lua as they are, and reads the reply's header bytes back as a byte string", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function(req)
        local seen = {}
        for _, name in ipairs({ "x-in", "x-dup" }) do
          local v = req.headers[name]
          seen[#seen + 1] = (v:gsub(".", function(c) return string.format("%02x", c:byte()) end))
        end
        return { headers = { ["x-out"] = "\\u{e9}\\u{20ac}\\xff" }, body = table.concat(seen, " ") }
      end`,
      "bytes.lua",
    );
    // Byte strings, as the HTTP parser gives them: UTF-8 "é" (c3 a9), a Latin-1 "é" (e9).
    const headers: [string, string][] = [["x-in", "\xc3\xa9\xe9"], ["x-dup", "a\xff"], [
      "x-dup",
      "\x80",
    ]];
    const res = done(engine.callHandler(ref, request({ headers, headerBytes: true })));
    assert.equal(text.decode(res.body), "c3a9e9 61ff2c2080");
    assert.deepEqual(res.headers, [["x-out", "\xc3\xa9\xe2\x82\xac\xff"]]);
    // EP metadata is text: UTF-8 both ways.
    const ep = done(
      engine.callHandler(ref, request({ method: "EP", headers: [["x-in", "é"], ["x-dup", "€"]] })),
    );
    assert.equal(text.decode(ep.body), "c3a9 e282ac");
    assert.deepEqual(ep.headers, [["x-out", "é€\ufffd"]]);
  } finally {
    engine.close();
  }
});

Deno.test("LuaEngine's request table has attempt (1 unless given), the request id and deadline_ms (whole ms left) when given", async () => {
  const engine = await LuaEngine.create();
  try {
    const ref = engine.loadHandler(
      `return function(req)
        return table.concat({
          math.type(req.attempt), req.attempt, tostring(req.id),
          tostring(req.deadline_ms), math.type(req.deadline_ms) or "none",
        }, "|")
      end`,
      "ctx.lua",
    );
    assert.equal(bodyOf(engine.callHandler(ref, request())), "integer|1|nil|nil|none");
    const given = bodyOf(engine.callHandler(
      ref,
      request({ attempt: 3, requestId: "req-1", deadline: performance.now() + 60_000 }),
    )).split("|");
    assert.deepEqual(given.slice(0, 3), ["integer", "3", "req-1"]);
    assert.equal(given[4], "integer");
    const left = Number(given[3]);
    assert.ok(left > 0 && left <= 60_000, `deadline_ms ${left}`);
    // A deadline already past leaves 0 ms, never a negative time.
    const late = bodyOf(engine.callHandler(ref, request({ deadline: performance.now() - 5 })));
    assert.equal(late, "integer|1|nil|0|integer");
  } finally {
    engine.close();
  }
});
