import assert from "node:assert/strict";
import { configure, type LogRecord } from "@logtape/logtape";
import { JobError } from "../core/job.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { LuaHandlerRuntime, type LuaJob, type LuaServiceSource } from "./handler_runtime.ts";
import { LuaError, LuaMemoryError, LuaTimeoutError } from "./errors.ts";
import { loadLua } from "./_lua_api.ts";

const records: LogRecord[] = [];
await configure({
  reset: true,
  sinks: { buffer: (r: LogRecord) => void records.push(r) },
  loggers: [
    { category: ["ep", "lua"], sinks: ["buffer"], lowestLevel: "debug" },
    { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
  ],
});

const FIXTURES = new URL("../tests/fixtures/lua/", import.meta.url);
const text = new TextDecoder();
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();
const utf8e = new TextEncoder();

function service(name: string, body: string): LuaServiceSource {
  return { name, source: body, chunkName: `${name}.lua` };
}

let nextId = 1;
function job(svc: string, body = "", over: Partial<LuaJob> = {}): LuaJob {
  return {
    id: nextId++,
    service: svc,
    method: "POST",
    path: `/${svc}`,
    query: "",
    headers: [],
    body: utf8.encode(body),
    ...over,
  };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 1));
}

Deno.test("LuaHandlerRuntime answers jobs and refuses unknown services", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      {
        name: "echo",
        source: await Deno.readTextFile(new URL("echo.lua", FIXTURES)),
        chunkName: "echo.lua",
      },
      service("fail", `return function() error("nope") end`),
    ],
  });
  try {
    assert.deepEqual(runtime.services, ["echo", "fail"]);
    const reply = await runtime.handle(job("echo", "hi"));
    assert.equal(reply.status, 200);
    assert.equal(text.decode(reply.body), "hi");
    await assert.rejects(runtime.handle(job("fail")), {
      name: "LuaError",
      message: "fail.lua:1: nope",
    });
    await assert.rejects(runtime.handle(job("nothere")), (err: unknown) => {
      assert.ok(err instanceof JobError);
      assert.equal(err.kind, "no_service");
      return true;
    });
    assert.equal(text.decode((await runtime.handle(job("echo", "again"))).body), "again");
  } finally {
    runtime.close();
  }
});

Deno.test("Many sleeping jobs interleave on one engine", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "nap",
        `ACTIVE, MAX = 0, 0
        return function(req)
          ACTIVE = ACTIVE + 1
          if ACTIVE > MAX then MAX = ACTIVE end
          ep.sleep(tonumber(req.query.ms))
          ep.sleep(1)
          ACTIVE = ACTIVE - 1
          return req.body .. " " .. MAX
        end`,
      ),
    ],
  });
  try {
    const n = 200;
    const started = performance.now();
    const replies = await Promise.all(
      Array.from(
        { length: n },
        (_, i) => runtime.handle(job("nap", `job${i}`, { query: `ms=${5 + (i % 7)}` })),
      ),
    );
    const elapsed = performance.now() - started;
    for (let i = 0; i < n; i++) {
      const [name, max] = text.decode(replies[i].body).split(" ");
      assert.equal(name, `job${i}`);
      // Every job entered before any left: all 200 were in flight together.
      assert.equal(Number(max), n);
    }
    // No job wakes early.
    assert.ok(elapsed >= 5 + 1, `${elapsed}`);
    assert.equal(runtime.inFlight, 0);
    assert.equal(runtime.engine.stackTop, 0);
  } finally {
    runtime.close();
  }
});

Deno.test("ep.sleep never wakes early", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "nap",
        `return function(req)
          local ms = tonumber(req.body)
          local t0 = ep.now()
          ep.sleep(ms)
          return tostring(ep.now() - t0)
        end`,
      ),
    ],
  });
  try {
    for (const ms of [0, 0.5, 1, 3, 7]) {
      const slept = Number(text.decode((await runtime.handle(job("nap", String(ms)))).body));
      assert.ok(slept >= ms, `slept ${slept} for ${ms}`);
    }
  } finally {
    runtime.close();
  }
});

Deno.test("ep.timer fires once, ep.every until cancelled; callback errors are logged, not fatal", async () => {
  records.length = 0;
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "clock",
        `LOG = {}
        local boot = ep.every(2, function() LOG[#LOG + 1] = "boot" end)
        return function(req)
          if req.body == "start" then
            ep.timer(3, function() LOG[#LOG + 1] = "once" end)
            ep.timer(1, function() error("timer boom") end)
            ep.timer(2, function() ep.sleep(2) LOG[#LOG + 1] = "slept" end)
            TICK = ep.every(1, function() LOG[#LOG + 1] = "tick" end)
            boot:cancel()
            return "started"
          elseif req.body == "stop" then
            TICK:cancel()
            return "stopped"
          end
          local counts = {}
          for _, v in ipairs(LOG) do counts[v] = (counts[v] or 0) + 1 end
          return ep.json.encode(counts)
        end`,
      ),
    ],
  });
  try {
    const counts = async () =>
      JSON.parse(text.decode((await runtime.handle(job("clock", "count"))).body));
    // The timer started while the file loaded runs too.
    for (;;) {
      if ((await counts()).boot >= 1) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal(text.decode((await runtime.handle(job("clock", "start"))).body), "started");
    const bootBefore = (await counts()).boot;
    for (;;) {
      const c = await counts();
      if (c.once === 1 && c.slept === 1 && c.tick >= 5) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.equal(text.decode((await runtime.handle(job("clock", "stop"))).body), "stopped");
    const ticks = (await counts()).tick;
    await new Promise((r) => setTimeout(r, 10));
    const after = await counts();
    assert.equal(after.tick, ticks, "no tick after cancel");
    assert.equal(after.boot, bootBefore, "no boot tick after cancel");
    assert.equal(after.once, 1);
    const errors = records.filter((r) => r.level === "error");
    assert.equal(errors.length, 1);
    assert.equal(errors[0].properties.message, "clock.lua:6: timer boom");
    assert.match(String(errors[0].properties.traceback), /stack traceback/);
  } finally {
    runtime.close();
  }
});

Deno.test("A handler that leaks past the memory cap gets LuaMemoryError and a new engine takes over", async () => {
  const runtime = await LuaHandlerRuntime.create({
    memoryLimitBytes: 8 << 20,
    services: [
      service(
        "leak",
        `return function() LEAK = LEAK or {} for i = 1, 1e8 do LEAK[#LEAK + 1] = { i } end end`,
      ),
      service("hog", `return function() local t = {} for i = 1, 1e8 do t[i] = { i } end end`),
      service("ok", `return function() return "ok " .. tostring(LEAK) end`),
    ],
  });
  try {
    await assert.rejects(runtime.handle(job("hog")), (err: unknown) => {
      assert.ok(err instanceof LuaMemoryError && err.engineUsable);
      return true;
    });
    assert.equal(runtime.replacements, 0);
    const first = runtime.engine;
    await assert.rejects(runtime.handle(job("leak")), (err: unknown) => {
      assert.ok(err instanceof LuaMemoryError);
      assert.equal(err.engineUsable, false);
      return true;
    });
    await until(() => runtime.replacements === 1);
    assert.notEqual(runtime.engine, first);
    assert.equal(first.healthy, false);
    assert.equal(text.decode((await runtime.handle(job("ok"))).body), "ok nil");
  } finally {
    runtime.close();
  }
});

Deno.test("The interrupt slot stops a running job and a sleeping one", async () => {
  const interrupt = new Int32Array(new SharedArrayBuffer(4));
  const runtime = await LuaHandlerRuntime.create({
    interrupt,
    services: [
      service("spin", `return function() ep.sleep(1) while true do end end`),
      service("nap", `return function() ep.sleep(60000) return "woke" end`),
      service("ok", `return function() return "ok" end`),
    ],
  });
  try {
    const napJob = job("nap");
    const nap = runtime.handle(napJob);
    await until(() => runtime.inFlight === 1);
    Atomics.store(interrupt, 0, napJob.id);
    await assert.rejects(nap, (err: unknown) => {
      assert.ok(err instanceof LuaTimeoutError);
      assert.equal(err.service, "nap");
      return true;
    });
    assert.equal(Atomics.load(interrupt, 0), 0);
    assert.equal(runtime.inFlight, 0);

    // Set before it wakes: the hook stops it as soon as it runs again.
    const spinJob = job("spin");
    const spin = runtime.handle(spinJob);
    Atomics.store(interrupt, 0, spinJob.id);
    await assert.rejects(spin, LuaTimeoutError);
    assert.equal(text.decode((await runtime.handle(job("ok"))).body), "ok");
  } finally {
    runtime.close();
  }
});

Deno.test("A handler that yields something other than an ep request fails", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [service("odd", `return function() coroutine.yield("dance", 1) return "x" end`)],
  });
  try {
    await assert.rejects(runtime.handle(job("odd")), (err: unknown) => {
      assert.ok(err instanceof LuaError);
      assert.equal(
        err.message,
        'Handler of service "odd" yielded "dance", which is not an ep request',
      );
      return true;
    });
    assert.equal(runtime.engine.stackTop, 0);
  } finally {
    runtime.close();
  }
});

Deno.test("LuaHandlerRuntime.create rejects a service file that fails to load", async () => {
  await assert.rejects(
    LuaHandlerRuntime.create({ services: [service("bad", `return function(`)] }),
    { name: "LuaError" },
  );
});

Deno.test("close() rejects the jobs in flight and refuses new ones", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [service("nap", `return function() ep.sleep(60000) return "woke" end`)],
  });
  const pending = runtime.handle(job("nap"));
  await until(() => runtime.inFlight === 1);
  runtime.close();
  await assert.rejects(pending, { message: "The Lua handler runtime is closed" });
  await assert.rejects(runtime.handle(job("nap")), TypeError);
});

Deno.test("require in service files resolves against scriptDir", async () => {
  const runtime = await LuaHandlerRuntime.create({
    scriptDir: FIXTURES,
    services: [
      service(
        "greeter",
        `local greet = require("greet") return function(req) return greet.hello(req.body) end`,
      ),
    ],
  });
  try {
    assert.equal(text.decode((await runtime.handle(job("greeter", "ann"))).body), "hello ann");
  } finally {
    runtime.close();
  }
});

Deno.test("ep.call yields to the host's call function and returns body and status or nil, message, kind", async () => {
  const calls: string[] = [];
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "front",
        `return function(req)
          local body, status = ep.call("back", req.body, { timeout_ms = 50 })
          local none, message, kind = ep.call("missing")
          return ("%s %s | %s %s %s"):format(body, status, tostring(none), message, kind)
        end`,
      ),
    ],
    call: ({ service: svc, body, timeoutMs }, done) => {
      const text = utf8d.decode(body);
      calls.push(`${svc}:${text}:${timeoutMs}`);
      // Answered later, as a thread's ring or a socket would.
      queueMicrotask(() => {
        if (svc === "back") done(null, { status: 201, body: utf8e.encode(text.toUpperCase()) });
        else done({ kind: "no_service", message: 'No service "missing"' });
      });
    },
  });
  try {
    const reply = await runtime.handle(job("front", "hi"));
    assert.equal(utf8d.decode(reply.body), 'HI 201 | nil No service "missing" no_service');
    assert.deepEqual(calls, ["back:hi:50", "missing::0"]);
  } finally {
    await runtime.close();
  }
});

Deno.test("An engine that failed is replaced before it runs another job; its suspended jobs fail with a clear error", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service("who", `ENGINE = ENGINE or tostring(ep.now()) return function() return ENGINE end`),
      service("nap", `return function() ep.sleep(5000) return "woke" end`),
    ],
  });
  // A trap inside the wasm module (what os.exit or a bad binary chunk did): the next
  // lua_resume throws a JS exception instead of returning.
  const { raw } = await loadLua();
  const resume = raw._lua_resume;
  try {
    const first = text.decode((await runtime.handle(job("who"))).body);
    const napping = runtime.handle(job("nap"));
    await until(() => runtime.inFlight === 1);
    (raw as { _lua_resume: typeof resume })._lua_resume = () => {
      (raw as { _lua_resume: typeof resume })._lua_resume = resume;
      throw new WebAssembly.RuntimeError("unreachable");
    };
    const failing = runtime.handle(job("who"));
    // Asked at once, before the replacement can be ready: it waits for it.
    const next = runtime.handle(job("who"));
    const [failed, napped, answered] = await Promise.allSettled([failing, napping, next]);
    assert.equal(failed.status, "rejected");
    if (failed.status === "rejected") {
      assert.ok(failed.reason instanceof LuaError);
      assert.equal(failed.reason.message, "The Lua engine failed and is being replaced");
    }
    assert.equal(napped.status, "rejected", "the suspended job cannot go on");
    if (napped.status === "rejected") {
      assert.ok(napped.reason instanceof LuaError);
      assert.equal(
        napped.reason.message,
        'The Lua engine failed while a job of service "nap" waited',
      );
    }
    assert.equal(answered.status, "fulfilled", "the next job is answered");
    const second = answered.status === "fulfilled" ? text.decode(answered.value.body) : "";
    assert.notEqual(second, first, "a new engine answers");
    assert.equal(runtime.replacements, 1);
    assert.equal(runtime.inFlight, 0);
    assert.ok(runtime.engine.healthy);
    assert.ok(
      records.some((r) =>
        r.level === "warning" && String(r.message.join("")).includes("must be replaced")
      ),
    );
    assert.ok(
      records.some((r) => String(r.message.join("")).includes("Replaced the Lua engine")),
    );
  } finally {
    (raw as { _lua_resume: typeof resume })._lua_resume = resume;
    runtime.close();
  }
});

Deno.test("With the exit option, a timer callback or job that yields exit ends at once and quietly, its to-be-closed variables run", async () => {
  records.length = 0;
  const exits: number[] = [];
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "stop",
        `ep.timer(1, function()
          local closed <close> = setmetatable({}, { __close = function() CLOSED = (CLOSED or 0) + 1 end })
          pcall(coroutine.yield, "exit", 5)
          AFTER = true
        end)
        return function()
          local closed <close> = setmetatable({}, { __close = function() CLOSED = (CLOSED or 0) + 1 end })
          coroutine.yield("exit", 6)
          AFTER = true
        end`,
      ),
      service("state", `return function() return tostring(CLOSED) .. " " .. tostring(AFTER) end`),
    ],
    exit: (code) => exits.push(code),
  });
  try {
    await until(() => exits.length === 1 || records.some((r) => r.level === "error"));
    assert.deepEqual(records.filter((r) => r.level === "error").map((r) => r.message), []);
    assert.equal((await runtime.handle(job("stop"))).status, 204);
    assert.deepEqual(exits, [5, 6]);
    assert.equal(text.decode((await runtime.handle(job("state"))).body), "2 nil");
    assert.equal(runtime.inFlight, 0);
    assert.deepEqual(records.filter((r) => r.level === "error").map((r) => r.message), []);
  } finally {
    runtime.close();
  }
  // Without the option, "exit" is not an ep request.
  const plain = await LuaHandlerRuntime.create({
    services: [service("stop", `return function() coroutine.yield("exit", 1) end`)],
  });
  try {
    await assert.rejects(plain.handle(job("stop")), {
      message: 'Handler of service "stop" yielded "exit", which is not an ep request',
    });
  } finally {
    plain.close();
  }
});

Deno.test("ep.call refuses options of the wrong type with a Lua error naming the option", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "bad",
        `return function(req) local body = ep.call("x", "", load("return " .. req.body)()) return body end`,
      ),
    ],
    call: (_request, done) =>
      queueMicrotask(() => done(null, { status: 200, body: new Uint8Array() })),
  });
  try {
    const cases: [string, string][] = [
      [`"fast"`, "bad argument #3 to 'ep.call' (table expected, got string)"],
      [
        `{ timeout_ms = "soon" }`,
        "bad option 'timeout_ms' to 'ep.call' (non-negative number expected, got string)",
      ],
      [
        `{ timeout_ms = -1 }`,
        "bad option 'timeout_ms' to 'ep.call' (non-negative number expected, got number)",
      ],
      [`{ upstream = 7 }`, "bad option 'upstream' to 'ep.call' (string expected, got number)"],
      [`{ upstrem = "a" }`, "bad option 'upstrem' to 'ep.call' (unknown option)"],
    ];
    for (const [opts, expected] of cases) {
      await assert.rejects(runtime.handle(job("bad", opts)), (err: unknown) => {
        assert.ok(err instanceof LuaError);
        assert.equal(err.message, `bad.lua:1: ${expected}`, opts);
        return true;
      });
    }
    assert.equal(
      (await runtime.handle(job("bad", `{ timeout_ms = 5, upstream = "u" }`))).status,
      200,
    );
    assert.equal((await runtime.handle(job("bad", `nil`))).status, 200);
  } finally {
    runtime.close();
  }
});

Deno.test("An ep.call answered at once (inside the call option) or whose call option throws resumes the handler with the answer", async () => {
  const runtime = await LuaHandlerRuntime.create({
    services: [
      service(
        "front",
        `return function(req)
          local body, status, kind = ep.call(req.body, "x")
          return tostring(body) .. " " .. tostring(status) .. " " .. tostring(kind)
        end`,
      ),
    ],
    call: ({ service: svc }, done) => {
      if (svc === "now") return done(null, { status: 200, body: utf8e.encode("at once") });
      if (svc === "refused") return done({ kind: "bad_request", message: "Too long" });
      if (svc === "job-error") throw new JobError(ErrorCode.OVERLOADED, "Busy");
      throw new TypeError("broken call option");
    },
  });
  try {
    const answer = async (svc: string) =>
      text.decode((await runtime.handle(job("front", svc))).body);
    assert.equal(await answer("now"), "at once 200 nil");
    assert.equal(await answer("refused"), "nil Too long bad_request");
    assert.equal(await answer("job-error"), "nil Busy overloaded");
    assert.equal(await answer("other"), "nil Internal error internal");
    assert.equal(runtime.inFlight, 0);
  } finally {
    runtime.close();
  }
});

Deno.test("With holdTimers, timers set while a file loads wait for releaseTimers, then count from when they were set", async () => {
  const runtime = await LuaHandlerRuntime.create({
    holdTimers: true,
    services: [
      service(
        "state",
        `FIRED = {}
        ep.timer(1, function() FIRED[#FIRED + 1] = "timer" end)
        local every = ep.every(5, function() FIRED[#FIRED + 1] = "every" end)
        ep.timer(1, function() FIRED[#FIRED + 1] = "cancelled" end):cancel()
        return function(req)
          if req.body == "stop" then every:cancel() end
          return table.concat(FIRED, ",")
        end`,
      ),
    ],
  });
  const state = async (body = "") => text.decode((await runtime.handle(job("state", body))).body);
  try {
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(await state(), "", "nothing fires before releaseTimers");
    runtime.releaseTimers();
    runtime.releaseTimers(); // idempotent
    // Their time passed while held: the timer runs at once, the every at once and on.
    let seen: string[] = [];
    while (seen.length < 3) {
      await new Promise((r) => setTimeout(r, 2));
      seen = (await state()).split(",").filter((s) => s !== "");
    }
    assert.deepEqual(seen.slice(0, 3), ["timer", "every", "every"]);
    await state("stop");
  } finally {
    runtime.close();
  }
});
