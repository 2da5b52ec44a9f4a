/**
 * The sandbox a handler runs in: it can neither remove nor replace ep's interrupt hook,
 * nor run code where the hook cannot reach (finalizers, the to-be-closed variables and
 * message handlers of interrupted code, long loops inside C functions), nor touch what
 * ep's controls rely on (the registry, binary chunks, the GC switch, `io`, `os.exit`).
 *
 * Spins here are bounded (`for i = 1, 1e8`) and record that they finished in the global
 * `ESCAPED`: with the interrupt slot set before the call, a spin the hook can reach never
 * finishes, so `ESCAPED` stays nil; a broken sandbox makes a test fail, not hang.
 */
import assert from "node:assert/strict";
import { INTERRUPT_ANY, LuaEngine, type LuaRequest, type LuaStep } from "./engine.ts";
import { LuaError, LuaTimeoutError } from "./errors.ts";

const text = new TextDecoder();
const FIXTURES = new URL("../tests/fixtures/lua/", import.meta.url);

/** A bounded spin that records that it ran to its end (the hook did not stop it). */
const SPIN =
  `for _ = 1, 1e8 do end rawset(_G, "ESCAPED", (rawget(_G, "ESCAPED") or "") .. "|spin")`;

function request(over: Partial<LuaRequest> = {}): LuaRequest {
  return { service: "svc", method: "GET", path: "/svc", query: "", headers: [], body: "", ...over };
}

function bodyOf(step: LuaStep<unknown>): string {
  assert.ok(step.done, "the call should have finished");
  return text.decode((step.value as { body: Uint8Array }).body);
}

interface Probe {
  engine: LuaEngine;
  flag: Int32Array;
  /** Loads `return function(req) <body> end` and calls it; `interrupt` presets the slot. */
  run(body: string, interrupt?: boolean): LuaStep<unknown>;
  /** Whatever spins ran to their end since the last look (and forgets them). */
  escaped(): string;
}

async function probe(memoryLimitBytes = 16 << 20): Promise<Probe> {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const engine = await LuaEngine.create({ interrupt: flag, memoryLimitBytes });
  const look = engine.loadHandler(
    `return function() local e = rawget(_G, "ESCAPED") rawset(_G, "ESCAPED", nil) return tostring(e) end`,
    "look.lua",
  );
  let n = 0;
  return {
    engine,
    flag,
    run(body, interrupt = true) {
      const ref = engine.loadHandler(`return function(req) ${body} end`, `probe${++n}.lua`);
      if (interrupt) Atomics.store(flag, 0, INTERRUPT_ANY);
      try {
        return engine.callHandler(ref, request());
      } finally {
        Atomics.store(flag, 0, 0);
      }
    },
    escaped() {
      const e = bodyOf(engine.callHandler(look, request()));
      return e === "nil" ? "" : e;
    },
  };
}

/** The engine still interrupts a plain runaway and serves a plain handler. */
function assertStillGuarded(p: Probe, what: string): void {
  assert.throws(() => p.run(SPIN), LuaTimeoutError, `${what}: a later runaway is interrupted`);
  assert.equal(p.escaped(), "", `${what}: a later runaway is interrupted`);
  assert.equal(bodyOf(p.run(`return "ok"`, false)), "ok", `${what}: the engine serves on`);
  assert.ok(p.engine.healthy, `${what}: the engine stays healthy`);
  assert.equal(p.engine.stackTop, 0, `${what}: the stack is unchanged`);
}

Deno.test("A handler can neither remove nor replace ep's interrupt hook: debug.sethook in every form, then a runaway, is interrupted", async () => {
  // Each variant tries to switch the hook off (or swap in its own) and then spins; the
  // attempt may fail (pcall) but the spin must still be interrupted.
  const variants: Record<string, string> = {
    "hook with an empty mask": `pcall(debug.sethook, function() end, "", 0) ${SPIN}`,
    "no arguments (hook off)": `pcall(debug.sethook) ${SPIN}`,
    "a line hook of its own": `pcall(debug.sethook, function() end, "l") ${SPIN}`,
    "a count hook of its own": `pcall(debug.sethook, function() end, "", 1e9) ${SPIN}`,
    "off for a coroutine, which spins": `
      local co = coroutine.create(function() ${SPIN} end)
      pcall(debug.sethook, co)
      coroutine.resume(co)
      ${SPIN}`,
    "off inside a coroutine, which spins": `
      coroutine.wrap(function() pcall(debug.sethook) ${SPIN} end)()
      ${SPIN}`,
    "a coroutine.wrap that spins": `coroutine.wrap(function() ${SPIN} end)() ${SPIN}`,
    "off through require('debug')": `pcall(function() require("debug").sethook() end) ${SPIN}`,
    "off for the main thread, through the registry": `
      pcall(function() debug.sethook(debug.getregistry()[1]) end)
      ${SPIN}`,
  };
  for (const [name, body] of Object.entries(variants)) {
    const p = await probe();
    try {
      assert.throws(() => p.run(body), LuaTimeoutError, name);
      assert.equal(p.escaped(), "", `${name}: no spin ran to its end`);
      assertStillGuarded(p, name);
      // Also when the hook-killing call came first, in a call of its own.
      assert.equal(bodyOf(p.run(`pcall(debug.sethook) return "done"`, false)), "done");
      assertStillGuarded(p, `${name} (after a separate debug.sethook())`);
    } finally {
      p.engine.close();
    }
  }
});

Deno.test("A runaway on a coroutine made after the main thread's hook was attacked is interrupted", async () => {
  const p = await probe();
  try {
    p.run(`pcall(function() debug.sethook(debug.getregistry()[1]) end) return "x"`, false);
    // Hold the pooled coroutine with a suspended call, so the next call needs a new one.
    const nap = p.run(`coroutine.yield("sleep", 1) return "woke"`, false);
    assert.ok(!nap.done);
    assert.throws(() => p.run(SPIN), LuaTimeoutError);
    assert.equal(p.escaped(), "");
    if (!nap.done) p.engine.cancel(nap.call);
  } finally {
    p.engine.close();
  }
});

Deno.test("The sandbox keeps debug.traceback/getinfo/getlocal and takes away what can break ep's controls", async () => {
  const p = await probe();
  try {
    const check = (expr: string) => bodyOf(p.run(`return tostring(${expr})`, false));
    assert.equal(
      check(`(function() local t = {} for k in pairs(debug) do t[#t + 1] = k end
        table.sort(t) return table.concat(t, ",") end)()`),
      "getinfo,getlocal,traceback",
    );
    assert.equal(check(`require("debug") == debug`), "true");
    assert.match(check(`debug.traceback("here")`), /^here\nstack traceback:/);
    assert.match(check(`debug.getinfo(1, "S").short_src`), /^probe\d+\.lua$/);
    assert.equal(check(`(function(a) return debug.getlocal(1, 1) end)(7)`), "a");
    // No file system, no process: wasmoon's io sees an in-memory file system whose
    // files live outside the memory cap, and os.exit stops the whole engine.
    assert.equal(check(`io`), "nil");
    assert.equal(check(`package.loaded.io`), "nil");
    assert.equal(
      check(`(function() local t = {} for k in pairs(os) do t[#t + 1] = k end
        table.sort(t) return table.concat(t, ",") end)()`),
      "clock,date,difftime,getenv,time",
    );
    assert.equal(check(`loadfile == nil and dofile == nil and package.loadlib == nil`), "true");
    // Text chunks only: a binary chunk can crash the VM.
    assert.match(
      check(`select(2, load(string.dump(function() return 1 end)))`),
      /attempt to load a binary chunk \(mode is 't'\)/,
    );
    assert.match(
      check(`select(2, pcall(load, "return 1", "x", "b"))`),
      /binary chunks are not allowed/,
    );
    assert.equal(check(`load("return 6 * 7")()`), "42");
    assert.equal(check(`load("return x", "=x", "t", { x = 5 })()`), "5");
    assert.equal(check(`pcall(load("return print", "=p", "t", nil))`), "false");
    // The collector cannot be stopped or retuned; asking for a collection is fine.
    assert.match(check(`select(2, pcall(collectgarbage, "stop"))`), /"stop" is not allowed/);
    assert.match(check(`select(2, pcall(collectgarbage, "generational"))`), /not allowed/);
    assert.equal(check(`collectgarbage("isrunning")`), "true");
    assert.equal(check(`collectgarbage() == 0 and collectgarbage("step") ~= nil`), "true");
    // Finalizers run where no hook can stop them.
    assert.match(
      check(`select(2, pcall(setmetatable, {}, { __gc = function() end }))`),
      /__gc metamethods are not allowed/,
    );
    assert.match(
      check(`select(2, pcall(setmetatable, {}, { __gc = false }))`),
      /__gc metamethods are not allowed/,
    );
    assert.equal(check(`getmetatable(setmetatable({}, { __index = {} })).__gc`), "nil");
    // Coroutines ep runs handlers in are ep's.
    assert.match(
      check(`select(2, coroutine.resume(coroutine.running()))`),
      /cannot resume a coroutine that ep runs or interrupted/,
    );
    assert.equal(check(`coroutine.wrap(function(a) return a + 1 end)(1)`), "2");
    assert.match(
      check(`select(2, pcall(function()
        local f = coroutine.wrap(function() error("inner") end)
        local r = f()
        return r
      end))`),
      /^probe\d+\.lua:3: probe\d+\.lua:2: inner$/,
    );
    assert.equal(
      check(`select(2, xpcall(error, function(e) return "handled " .. e end, "x"))`),
      "handled x",
    );
    assert.equal(check(`string.rep("", 1e15)`), "");
    assert.equal(check(`string.rep("ab", 3, ",")`), "ab,ab,ab");
  } finally {
    p.engine.close();
  }
});

Deno.test("Code ep's hook cannot reach cannot run long: finalizers, to-be-closed variables and message handlers of interrupted code", async () => {
  const CLOSE_SPIN = `setmetatable({}, { __close = function() ${SPIN} end })`;
  const variants: Record<string, string> = {
    "a finalizer that spins": `
      pcall(setmetatable, {}, { __gc = function() ${SPIN} end })
      collectgarbage()
      ${SPIN}`,
    "a to-be-closed variable of the interrupted handler": `
      local x <close> = ${CLOSE_SPIN}
      ${SPIN}`,
    "a to-be-closed variable in an interrupted coroutine.wrap": `
      pcall(coroutine.wrap(function() local x <close> = ${CLOSE_SPIN} ${SPIN} end))
      ${SPIN}`,
    "an xpcall message handler in an interrupted coroutine": `
      pcall(coroutine.wrap(function()
        xpcall(function() ${SPIN} end, function() ${SPIN} end)
      end))
      ${SPIN}`,
    "an xpcall message handler inside table.sort": `
      table.sort({ 3, 2, 1 }, function()
        xpcall(function() ${SPIN} end, function() ${SPIN} end)
        return false
      end)
      ${SPIN}`,
  };
  for (const [name, body] of Object.entries(variants)) {
    const p = await probe();
    try {
      assert.throws(() => p.run(body), LuaTimeoutError, name);
      assert.equal(p.escaped(), "", `${name}: no spin ran to its end`);
      assertStillGuarded(p, name);
    } finally {
      p.engine.close();
    }
  }
});

Deno.test("A coroutine ep interrupted cannot be resumed or closed later to run without the hook", async () => {
  const p = await probe();
  try {
    // Saved coroutines: the handler's own, and one it made, both cut short by the hook.
    assert.throws(
      () =>
        p.run(`
          SAVED_SELF = coroutine.running()
          SAVED_CO = coroutine.create(function()
            local x <close> = setmetatable({}, { __close = function() ${SPIN} end })
            ${SPIN}
          end)
          coroutine.resume(SAVED_CO)
          ${SPIN}`),
      LuaTimeoutError,
    );
    assert.equal(p.escaped(), "");
    // A later call tries to run them: refused, and nothing runs hookless.
    assert.equal(
      bodyOf(p.run(
        `local a, b = coroutine.resume(SAVED_SELF)
         local c, d = coroutine.close(SAVED_CO)
         local e, f = coroutine.resume(SAVED_CO)
         return table.concat({ tostring(a), tostring(b), tostring(c), tostring(d), tostring(e), tostring(f) }, "|")`,
      )),
      [
        "false",
        "cannot resume a coroutine that ep runs or interrupted",
        "false",
        "cannot close a coroutine that ep runs or interrupted",
        "false",
        "cannot resume a coroutine that ep runs or interrupted",
      ].join("|"),
    );
    assert.equal(p.escaped(), "");
    assertStillGuarded(p, "saved coroutines");
  } finally {
    p.engine.close();
  }
});

Deno.test("To-be-closed variables of a failed or abandoned call run with a budget, under the memory cap", async () => {
  const p = await probe(8 << 20);
  try {
    // A failing handler: its to-be-closed variables are closed after the call, by ep.
    assert.throws(
      () =>
        p.run(
          `local x <close> = setmetatable({}, { __close = function() ${SPIN} end }) error("boom")`,
          false,
        ),
      (err: unknown) => err instanceof LuaError && /boom/.test(err.message),
    );
    assert.equal(p.escaped(), "", "the __close of a failed call is cut short");
    // An abandoned (cancelled) suspended call.
    const step = p.run(
      `local x <close> = setmetatable({}, { __close = function() ${SPIN} end })
       coroutine.yield("sleep", 1)`,
      false,
    );
    assert.ok(!step.done);
    if (!step.done) p.engine.cancel(step.call);
    assert.equal(p.escaped(), "", "the __close of a cancelled call is cut short");
    // A __close that allocates past the cap while ep closes the call.
    const hog = p.run(
      `local x <close> = setmetatable({}, { __close = function()
         HOG = {} for i = 1, 1e8 do HOG[i] = { i } end
       end })
       coroutine.yield("sleep", 1)`,
      false,
    );
    if (!hog.done) p.engine.cancel(hog.call);
    p.engine.collectGarbage();
    assert.ok(p.engine.memoryUsed <= 8 << 20, `${p.engine.memoryUsed} bytes in use`);
    // A short __close runs in full.
    const fine = p.run(
      `local x <close> = setmetatable({}, { __close = function() rawset(_G, "CLOSED", true) end })
       coroutine.yield("sleep", 1)`,
      false,
    );
    if (!fine.done) p.engine.cancel(fine.call);
    assert.equal(bodyOf(p.run(`return tostring(CLOSED)`, false)), "true");
    assertStillGuarded(p, "closing");
  } finally {
    p.engine.close();
  }
});

/**
 * Runs handler bodies in a Web Worker (`tests/fixtures/lua/probe_worker.ts`), for loops
 * inside C functions: no hook reaches them, and neither does `worker.terminate()`, so a
 * broken guard would hang the test process; here it is a failed assertion instead.
 */
async function inWorker(
  bodies: Record<string, string>,
  giveUpMs = 30_000,
): Promise<Record<string, string>> {
  const worker = new Worker(new URL("probe_worker.ts", FIXTURES), { type: "module" });
  const inbox: { name: string; outcome: string }[] = [];
  let wake: (() => void) | null = null;
  worker.onmessage = (e) => {
    inbox.push(e.data);
    wake?.();
  };
  const results: Record<string, string> = {};
  try {
    worker.postMessage({ bodies });
    for (let i = 0; i < Object.keys(bodies).length; i++) {
      if (inbox.length === 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, giveUpMs);
        });
        clearTimeout(timer);
        wake = null;
      }
      const next = inbox.shift();
      if (next === undefined) {
        const stuck = Object.keys(bodies).find((k) => !(k in results));
        results[stuck!] = "never returned";
        break;
      }
      results[next.name] = next.outcome;
    }
  } finally {
    worker.terminate();
  }
  return results;
}

Deno.test("Loops inside C functions that take no memory are bounded: string.rep, table.move, table.insert, table.remove", async () => {
  const LIE = `setmetatable({}, { __len = function() return 1 << 53 end })`;
  const results = await inWorker({
    "string.rep of an empty string": `return tostring(#string.rep("", 1 << 53))`,
    "string.rep of empty strings with an empty separator":
      `return tostring(#("").rep("", 1 << 53, ""))`,
    "table.move over an empty range of keys": `table.move({}, 1, 1 << 53, 1) return "moved"`,
    "table.move overlapping upwards": `table.move({}, 1, 1 << 53, 2) return "moved"`,
    "table.insert with a lying __len": `table.insert(${LIE}, 1, "x") return "inserted"`,
    "table.remove with a lying __len": `table.remove(${LIE}, 1) return "removed"`,
  });
  assert.deepEqual(results, {
    "string.rep of an empty string": "0",
    "string.rep of empty strings with an empty separator": "0",
    "table.move over an empty range of keys": "LuaTimeoutError",
    "table.move overlapping upwards": "LuaTimeoutError",
    "table.insert with a lying __len": "LuaTimeoutError",
    "table.remove with a lying __len": "LuaTimeoutError",
  });
});

Deno.test("table.move, table.insert and table.remove keep their semantics when ep splits the work", async () => {
  const p = await probe();
  try {
    const run = (body: string) => bodyOf(p.run(body, false));
    const N = 200_000; // more than one chunk
    assert.equal(
      run(`local t = {} for i = 1, ${N} do t[i] = i end
        table.move(t, 1, ${N}, 3)
        return t[1] .. "," .. t[2] .. "," .. t[3] .. "," .. t[${N} + 2] .. "," .. #t`),
      `1,2,1,${N},${N + 2}`,
    );
    assert.equal(
      run(`local t = {} for i = 1, ${N} do t[i] = i end
        table.move(t, 3, ${N}, 1)
        return t[1] .. "," .. t[${N} - 2] .. "," .. t[${N}]`),
      `3,${N},${N}`,
    );
    assert.equal(
      run(`local a, b = {}, {} for i = 1, ${N} do a[i] = i end
        local r = table.move(a, 1, ${N}, 5, b)
        return tostring(r == b) .. "," .. b[5] .. "," .. b[${N} + 4] .. "," .. tostring(b[4])`),
      `true,1,${N},nil`,
    );
    assert.match(
      run(`return select(2, pcall(table.move, {}, 1, math.maxinteger, 2))`),
      /wrap around/,
    );
    // With a __len that tells the truth, through metamethods, as the C functions do.
    assert.equal(
      run(`local store = { "a", "b", "c" }
        local t = setmetatable({}, { __len = function() return #store end,
          __index = store, __newindex = store })
        table.insert(t, 2, "x")
        local removed = table.remove(t, 1)
        return removed .. ":" .. table.concat(store, ",")`),
      "a:x,b,c",
    );
    assert.match(
      run(
        `return select(2, pcall(table.insert, setmetatable({}, { __len = function() return 3 end }), 9, "x"))`,
      ),
      /position out of bounds/,
    );
    assert.match(
      run(
        `return select(2, pcall(table.remove, setmetatable({}, { __len = function() return 3 end }), 9))`,
      ),
      /position out of bounds/,
    );
  } finally {
    p.engine.close();
  }
});
