/**
 * The Lua runtime on real handler threads (`HandlerPool` + `LUA_RUNTIME`): what only shows
 * there, where a thread with nothing asynchronous in flight sleeps in `Atomics.wait` and
 * the event loop does not turn.
 */
import assert from "node:assert/strict";
import { HandlerPool, type HandlerPoolOptions } from "../core/threads/pool.ts";
import { HandlerError, JobTimeoutError } from "../core/errors.ts";
import { LUA_RUNTIME, type LuaThreadOptions } from "./thread.ts";
import { encodeMeta } from "../protocol/ep_meta.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function project(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-lua-worker-" });
  for (const [name, source] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, source);
  }
  return dir;
}

/**
 * Runs `body` with a one-thread pool serving one Lua service per file (`nap.lua` is service
 * `nap`), with `pool`'s options; then closes the pool and removes the files.
 */
async function withLuaThread(
  files: Record<string, string>,
  pool: Partial<HandlerPoolOptions>,
  body: (pool: HandlerPool) => Promise<void>,
): Promise<void> {
  const dir = await project(files);
  const options: LuaThreadOptions = {
    services: Object.keys(files).map((f) => ({
      name: f.replace(/\.lua$/, ""),
      file: `${dir}/${f}`,
    })),
    scriptDir: `${dir}/`,
    logLevel: "fatal",
  };
  const p = await HandlerPool.start({
    module: LUA_RUNTIME,
    moduleOptions: options,
    threads: 1,
    ...pool,
  });
  try {
    await body(p);
  } finally {
    await p.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("A handler thread replaces an engine that must be replaced before it runs another job", async () => {
  const dir = await project({
    "leak.lua":
      `return function() LEAK = LEAK or {} for i = 1, 1e8 do LEAK[#LEAK + 1] = { i } end end`,
    "who.lua": `ENGINE = ENGINE or tostring(ep.now())
return function() return ENGINE .. " " .. tostring(LEAK ~= nil) end`,
  });
  const options: LuaThreadOptions = {
    services: [{ name: "leak", file: `${dir}/leak.lua` }, { name: "who", file: `${dir}/who.lua` }],
    scriptDir: `${dir}/`,
    memoryLimitBytes: 8 << 20,
    logLevel: "fatal",
  };
  const pool = await HandlerPool.start({ module: LUA_RUNTIME, moduleOptions: options, threads: 1 });
  try {
    let id = 0;
    const call = async (service: string) =>
      dec.decode((await pool.call({ id: ++id, service, body: enc.encode("") })).body);
    const [first] = (await call("who")).split(" ");
    // The leak leaves the engine over its cap after a full collection: it must go.
    await assert.rejects(
      pool.call({ id: ++id, service: "leak", body: enc.encode("") }),
      (err: unknown) => err instanceof HandlerError && /ran out of memory/.test(err.message),
    );
    // The very next job runs on a fresh engine (no LEAK, another ENGINE), and so do later ones.
    for (let i = 0; i < 3; i++) {
      const [engine, leaked] = (await call("who")).split(" ");
      assert.notEqual(engine, first, "a new engine answers");
      assert.equal(leaked, "false", "the new engine has none of the old one's state");
    }
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("A Lua handler on a handler thread sees its attempt, request id and deadline from the ring meta, and no ep- key as a header", async () => {
  const dir = await project({
    "ctx.lua": `return function(req)
  local names = {}
  for k in pairs(req.headers) do names[#names + 1] = k end
  table.sort(names)
  return ep.json.encode({
    attempt = req.attempt, id = req.id or "none", deadline_ms = req.deadline_ms or "none",
    method = req.method, path = req.path, query_string = req.query_string,
    headers = ep.json.array(names),
  })
end`,
  });
  const options: LuaThreadOptions = {
    services: [{ name: "ctx", file: `${dir}/ctx.lua` }],
    scriptDir: `${dir}/`,
    logLevel: "fatal",
  };
  const pool = await HandlerPool.start({ module: LUA_RUNTIME, moduleOptions: options, threads: 1 });
  try {
    // An HTTP job, redelivered, with a deadline: what a worker's ring carries (SPEC.md §10).
    const redelivered = JSON.parse(dec.decode(
      (await pool.call({
        id: 1,
        service: "ctx",
        meta: encodeMeta([
          ["ep-method", "GET"],
          ["ep-path", "/ctx/a"],
          ["ep-query", "q=1"],
          ["ep-request-id", "req-7"],
          ["ep-attempt", "2"],
          ["x-trace", "t"],
          ["ep-something-new", "x"],
        ]),
        body: enc.encode(""),
        deadlineMs: 60_000,
      })).body,
    ));
    const left = redelivered.deadline_ms;
    delete redelivered.deadline_ms;
    assert.deepEqual(redelivered, {
      attempt: 2,
      id: "req-7",
      method: "GET",
      path: "/ctx/a",
      query_string: "q=1",
      headers: ["x-trace"],
    });
    assert.ok(Number.isInteger(left) && left > 0 && left <= 60_000, `deadline_ms ${left}`);
    // A first delivery with no deadline and no request id.
    const first = JSON.parse(dec.decode(
      (await pool.call({ id: 2, service: "ctx", body: enc.encode("") })).body,
    ));
    assert.equal(first.attempt, 1);
    assert.equal(first.id, "none");
    assert.equal(first.deadline_ms, "none");
    assert.deepEqual(first.headers, []);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("On a handler thread the control script's top level does nothing but ep.service; its inline handlers then use ep.log and timers as usual", async () => {
  const dir = await project({
    "main.lua": `TICKS = 0
ep.every(1, function() TICKS = TICKS + 1 end)
local once = ep.timer(1, function() TICKS = TICKS + 100 end)
once:cancel()
ep.log.info("top level")
print("top level print")
ep.upstream("other", "127.0.0.1:1")
ep.config { retries = 1 }
ep.exit(3)
local info = ep.log.info
ep.service("probe", function(req)
  ep.sleep(30)
  local before = TICKS
  local fired = false
  ep.timer(1, function() fired = true end)
  ep.sleep(20)
  info("a handler logs") -- captured at the top level: works in the handler
  return before .. " " .. tostring(fired)
end)
`,
  });
  const options: LuaThreadOptions = {
    services: [{ name: "probe" }],
    script: `${dir}/main.lua`,
    scriptDir: `${dir}/`,
    logLevel: "fatal",
  };
  const pool = await HandlerPool.start({ module: LUA_RUNTIME, moduleOptions: options, threads: 2 });
  try {
    const reply = await pool.call({ id: 1, service: "probe", body: enc.encode("") });
    // No tick of the top level's ep.every ran on the thread; the handler's own timer did.
    assert.equal(dec.decode(reply.body), "0 true");
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("An ep.call the handler thread refuses at once (a service or upstream name too long to encode) returns nil, message, kind instead of hanging", async () => {
  const dir = await project({
    "front.lua": `return function(req)
  local long = ("x"):rep(70000)
  local body, message, kind
  if req.body == "service" then body, message, kind = ep.call(long, "")
  else body, message, kind = ep.call("svc", "", { upstream = long }) end
  return tostring(body) .. "|" .. tostring(kind)
end`,
  });
  const options: LuaThreadOptions = {
    services: [{ name: "front", file: `${dir}/front.lua` }],
    scriptDir: `${dir}/`,
    logLevel: "fatal",
  };
  let onCalls = 0;
  const pool = await HandlerPool.start({
    module: LUA_RUNTIME,
    moduleOptions: options,
    threads: 1,
    onCall: () => {
      onCalls++;
      return Promise.resolve({ status: 200, meta: [], body: new Uint8Array() });
    },
  });
  try {
    for (const [id, body] of [[1, "service"], [2, "upstream"]] as const) {
      const reply = await pool.call({
        id,
        service: "front",
        body: enc.encode(body),
        deadlineMs: 10_000,
      });
      assert.equal(dec.decode(reply.body), "nil|bad_request", body);
    }
    assert.equal(onCalls, 0);
  } finally {
    await pool.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("On a handler thread ep.sleep never ends early, also once the thread has learned to aim its waits early", async () => {
  const nap = `return function(req)
    local ms = tonumber(req.body)
    local t0 = ep.now()
    ep.sleep(ms)
    return tostring(ep.now() - t0)
  end`;
  await withLuaThread({ "nap.lua": nap }, { perThreadConcurrency: 1 }, async (pool) => {
    let id = 0;
    // 150 timed waits: enough for the lead to settle (wake_lead.ts), then keep checking.
    for (let i = 0; i < 150; i++) {
      const ms = [0.2, 0.5, 1, 2][i % 4];
      const reply = await pool.call({ id: ++id, service: "nap", body: enc.encode(String(ms)) });
      const slept = Number(dec.decode(reply.body));
      assert.ok(slept >= ms, `job ${i}: slept ${slept} ms for ${ms}`);
    }
  });
});

/** A service that sleeps the body's milliseconds and answers with the body. */
const NAP = `return function(req)
  ep.sleep(tonumber(req.body))
  return req.body
end`;

Deno.test("ep.sleep on a handler thread waits in place only while nothing else needs the thread: a job that arrives meanwhile runs, a timer due meanwhile fires", async () => {
  const ticks = `TICKS = 0
ep.every(5, function() TICKS = TICKS + 1 end)
return function()
  local before = TICKS
  ep.sleep(60)
  return tostring(TICKS - before)
end`;
  const files = { "nap.lua": NAP, "ticks.lua": ticks };
  await withLuaThread(files, { perThreadConcurrency: 2 }, async (pool) => {
    // The first job is alone on the thread when it sleeps; the second comes while it does and
    // must not wait for it.
    const order: string[] = [];
    const long = pool.call({ id: 1, service: "nap", body: enc.encode("400") })
      .then((r) => order.push(dec.decode(r.body)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const short = pool.call({ id: 2, service: "nap", body: enc.encode("10") })
      .then((r) => order.push(dec.decode(r.body)));
    await Promise.all([long, short]);
    assert.deepEqual(order, ["10", "400"]);
    // A pending ep.every keeps ticking through a job's sleep (every 5 ms over 60 ms).
    const n = Number(dec.decode(
      (await pool.call({ id: 3, service: "ticks", body: enc.encode("") })).body,
    ));
    assert.ok(n >= 3, `${n} ticks during the sleep`);
  });
});

Deno.test("A job whose deadline falls within its ep.sleep on a handler thread fails at the deadline and frees the thread for the next job", async () => {
  await withLuaThread({ "nap.lua": NAP }, { perThreadConcurrency: 1 }, async (pool) => {
    const start = performance.now();
    await assert.rejects(
      pool.call({ id: 1, service: "nap", body: enc.encode("20000"), deadlineMs: 100 }),
      // The thread's own watch of the deadline, or the pool's, whichever comes first.
      (err: unknown) =>
        err instanceof JobTimeoutError ||
        (err instanceof HandlerError && /interrupted/.test(err.message)),
    );
    // The one slot is free again long before the 20 s sleep would have ended.
    const reply = await pool.call({ id: 2, service: "nap", body: enc.encode("1") });
    assert.equal(dec.decode(reply.body), "1");
    const took = performance.now() - start;
    assert.ok(took < 10_000, `the next job waited for the sleep: ${took} ms`);
  });
});

Deno.test("A job that waited in place is answered before the job queued behind it runs, however long that one takes", async () => {
  const spin = `return function(req)
    local t = ep.now() + tonumber(req.body)
    while ep.now() < t do end
    return "spun"
  end`;
  // One slot and room for one more job on the thread, as a module worker's prefetch: the
  // second job reaches the thread while the first sleeps in place, and waits there.
  const prefetching = { perThreadConcurrency: 1, perThreadQueue: 1 };
  await withLuaThread({ "nap.lua": NAP, "spin.lua": spin }, prefetching, async (pool) => {
    let napped = 0;
    let spun = 0;
    const napping = pool.call({ id: 1, service: "nap", body: enc.encode("100") })
      .then(() => napped = performance.now());
    await new Promise((resolve) => setTimeout(resolve, 20));
    const spinning = pool.call({ id: 2, service: "spin", body: enc.encode("1000") })
      .then(() => spun = performance.now());
    await Promise.all([napping, spinning]);
    assert.ok(spun - napped > 500, `the first answer came ${spun - napped} ms before the second`);
  });
});
