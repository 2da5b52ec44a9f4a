/**
 * Lua control scripts and Lua services, end to end: `ep run <script>` in real processes,
 * driven over HTTP and EP.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { Proc, waitStats } from "./_cluster.ts";

const dec = new TextDecoder();

/** Writes a project (files by relative path) into a temp dir; returns the dir. */
async function project(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-lua-" });
  for (const [name, text] of Object.entries(files)) {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return dir;
}

/** Runs `ep run dir/main.lua` and waits for it to listen; returns the process and address. */
async function run(
  dir: string,
  env: Record<string, string> = {},
): Promise<{ proc: Proc; addr: string; url: string }> {
  const proc = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0", ...env });
  const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 20_000);
  const addr = `127.0.0.1:${m[1]}`;
  return { proc, addr, url: `http://${addr}` };
}

const LISTEN = `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }\nep.threads(1)\n`;

Deno.test("lua: file and inline services, prefix and function routes, errors as 500", async () => {
  const dir = await project({
    "main.lua": LISTEN + `
local util = require("lib.util")
ep.service("upper", "services/upper.lua")
ep.service("inline", function(req) return util.shout(req.body) .. " from " .. req.service end)
ep.service("fail", function() error("kaput") end)
ep.route("/api/v1", "upper")
ep.route(function(req)
  if req.headers["x-to"] then return req.headers["x-to"] end
end)
`,
    "lib/util.lua": `local M = {}\nfunction M.shout(s) return s:upper() .. "!" end\nreturn M\n`,
    "services/upper.lua": `return function(req)
  return { status = 201, headers = { ["x-path"] = req.path }, body = req.body:upper() }
end
`,
  });
  const { proc, url, addr } = await run(dir);
  try {
    let res = await fetch(`${url}/upper`, { method: "POST", body: "abc" });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("x-path"), "/upper");
    assert.equal(await res.text(), "ABC");
    res = await fetch(`${url}/inline`, { method: "POST", body: "hey" });
    assert.equal(await res.text(), "HEY! from inline");
    res = await fetch(`${url}/api/v1/anything`, { method: "POST", body: "routed" });
    assert.equal(await res.text(), "ROUTED");
    res = await fetch(`${url}/whatever`, {
      method: "POST",
      body: "fn",
      headers: { "x-to": "upper" },
    });
    assert.equal(await res.text(), "FN");
    res = await fetch(`${url}/fail`);
    assert.equal(res.status, 500);
    const reason = await res.text();
    // The handler's message stays in the log: the client gets the request id.
    assert.equal(reason, `Handler failed (request ${res.headers.get("x-request-id")})\n`);
    assert.ok(!reason.includes("kaput") && !reason.includes(dir), reason);
    const client = await connect(addr);
    assert.equal(dec.decode((await client.request("inline", "ep")).body), "EP! from inline");
    await assert.rejects(
      client.request("fail"),
      (e: unknown) => e instanceof JobError && e.kind === "handler_error",
    );
    client.close();
    assert.match(proc.output, /stack traceback|kaput/, "the traceback goes to the log");
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: a runaway handler is interrupted at its timeout; the thread keeps serving", async () => {
  const dir = await project({
    "main.lua": LISTEN + `
ep.service("spin", function() while true do end end, { timeout_ms = 100 })
ep.service("ok", function() return "ok" end)
`,
  });
  const { proc, url } = await run(dir);
  try {
    const t0 = Date.now();
    const res = await fetch(`${url}/spin`);
    const took = Date.now() - t0;
    assert.equal(res.status, 504);
    await res.body?.cancel();
    assert.ok(took < 1000, `answered after ${took} ms`);
    // One thread: it must be free again.
    const ok = await fetch(`${url}/ok`);
    assert.equal(await ok.text(), "ok");
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.call reaches another service through the balancer", async () => {
  const dir = await project({
    "main.lua": LISTEN + `
ep.config { grace_ms = 0 }
ep.service("front", function(req)
  local body, status = ep.call("back", req.body)
  local none, message, kind = ep.call("missing", "")
  return ("%s/%d/%s/%s"):format(body, status, tostring(none), kind)
end)
ep.service("back", function(req) return "back:" .. req.body end)
`,
  });
  const { proc, url } = await run(dir);
  try {
    const res = await fetch(`${url}/front`, { method: "POST", body: "x" });
    assert.equal(await res.text(), "back:x/200/nil/no_service");
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.call from a module worker goes through the balancers it pulls from; bodies are bytes; a waiting call leaves the thread free", async () => {
  const dir = await project({
    "main.lua": LISTEN + `
ep.service("back", function(req)
  if req.body == "slow" then ep.sleep(1500) end
  -- every byte value, both ways
  local out = {}
  for i = #req.body, 1, -1 do out[#out + 1] = req.body:sub(i, i) end
  return table.concat(out)
end, { slots = 2 })
`,
    "worker.lua": `
ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("front", function(req)
  local body, status = ep.call("back", req.body, { timeout_ms = 5000 })
  return { status = 200, headers = { ["x-status"] = tostring(status) }, body = body }
end, { slots = 2 })
`,
  });
  const { proc, url, addr } = await run(dir);
  const worker = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: addr });
  try {
    await waitStats(addr, (s) => s.providers.some((p) => p.services.includes("front")));
    const bytes = new Uint8Array(256).map((_, i) => i);
    const res = await fetch(`${url}/front`, { method: "POST", body: bytes });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-status"), "200");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes.slice().reverse());
    // One thread, two slots: while one job waits in its call, another runs on the thread.
    let slowDone = false;
    const slow = fetch(`${url}/front`, { method: "POST", body: "slow" }).then(async (r) => {
      const text = await r.text();
      slowDone = true;
      return text;
    });
    await waitStats(addr, (s) => s.providers.some((p) => p.busy > 0));
    const quick = await fetch(`${url}/front`, { method: "POST", body: "ab" });
    assert.equal(await quick.text(), "ba");
    assert.equal(slowDone, false, "the quick call was answered while the slow one waited");
    assert.equal(await slow, "wols");
  } finally {
    await worker.stop();
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.every in a service file fires on a handler thread with no job in flight", async () => {
  // The handler thread sleeps in one futex wait until its next timer; before, it slept until
  // the next job and its timers never fired while it was idle.
  const dir = await project({
    "main.lua": LISTEN + `ep.service("ticks", "ticks.lua")
`,
    "ticks.lua": `
local n = 0
ep.every(10, function() n = n + 1 end)
return function() return tostring(n) end
`,
  });
  const { proc, url } = await run(dir);
  try {
    const first = Number(await (await fetch(`${url}/ticks`)).text());
    await new Promise((r) => setTimeout(r, 500));
    const second = Number(await (await fetch(`${url}/ticks`)).text());
    assert.ok(second - first >= 10, `ticks while idle: ${second - first}`);
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: a control script that fails to load names file and line and exits non-zero", async () => {
  const dir = await project({ "main.lua": `ep.threads(1)\nlocal x = = 2\n` });
  const proc = new Proc(["run", `${dir}/main.lua`]);
  try {
    const status = await proc.exited;
    assert.notEqual(status.code, 0);
    assert.match(proc.output, /main\.lua:2:/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const dir2 = await project({ "main.lua": `ep.threads("many")\n` });
  const proc2 = new Proc(["run", `${dir2}/main.lua`]);
  try {
    assert.notEqual((await proc2.exited).code, 0);
    assert.match(proc2.output, /main\.lua:1: bad argument #1 to 'ep\.threads'/);
  } finally {
    await Deno.remove(dir2, { recursive: true });
  }
  // A misspelt tuning key is an error, not silently ignored.
  const dir3 = await project({ "main.lua": `ep.config { max_qeue = 5 }\n` });
  const proc3 = new Proc(["run", `${dir3}/main.lua`]);
  try {
    assert.notEqual((await proc3.exited).code, 0);
    assert.match(
      proc3.output,
      /main\.lua:1: bad argument #1 to 'ep\.config' \(unknown key 'max_qeue'\)/,
    );
  } finally {
    await Deno.remove(dir3, { recursive: true });
  }
});

Deno.test("lua: ep.exit stops with its code, from the script or from a timer", async () => {
  const dir = await project({ "main.lua": `ep.log.info("bye")\nep.exit(3)\n` });
  assert.equal((await new Proc(["run", `${dir}/main.lua`]).exited).code, 3);
  await Deno.writeTextFile(`${dir}/main.lua`, `ep.timer(50, function() ep.exit(4) end)\n`);
  assert.equal((await new Proc(["run", `${dir}/main.lua`]).exited).code, 4);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("lua: a worker script pulls from a balancer script", async () => {
  const dir = await project({
    "main.lua": LISTEN,
    "worker.lua": `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("sleep", "services/sleep.lua", { slots = 4 })
`,
    "services/sleep.lua":
      `return function(req) ep.sleep(tonumber(req.body)) return "done " .. req.body end`,
  });
  const b = await run(dir);
  const w = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr });
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1);
    const client = await connect(b.addr);
    const t0 = performance.now();
    const replies = await Promise.all([1, 2, 3, 4].map(() => client.request("sleep", "50")));
    const took = performance.now() - t0;
    assert.deepEqual(replies.map((r) => dec.decode(r.body)), Array(4).fill("done 50"));
    assert.ok(took < 190, `4 sleeping jobs share one thread (${Math.round(took)} ms)`);
    client.close();
  } finally {
    await w.stop();
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: SIGHUP reloads service code under load and no job fails", async () => {
  const dir = await project({
    "main.lua": LISTEN + `ep.service("v", "services/v.lua", { slots = 8 })\n`,
    "services/v.lua": `return function() ep.sleep(20) return "v1" end`,
  });
  const { proc, addr } = await run(dir);
  const client = await connect(addr);
  try {
    const seen = new Set<string>();
    let failures = 0;
    let stop = false;
    const lanes = Array.from({ length: 6 }, async () => {
      while (!stop) {
        try {
          seen.add(dec.decode((await client.request("v")).body));
        } catch {
          failures++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    await Deno.writeTextFile(
      `${dir}/services/v.lua`,
      `return function() ep.sleep(20) return "v2" end`,
    );
    proc.kill("SIGHUP");
    const deadline = Date.now() + 10_000;
    while (!seen.has("v2") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await Promise.all(lanes);
    assert.equal(failures, 0);
    assert.ok(seen.has("v1") && seen.has("v2"), [...seen].join(","));
    // Only the new code serves now.
    assert.equal(dec.decode((await client.request("v")).body), "v2");
  } finally {
    client.close();
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Waits for a process to exit, at most `ms`; a process still running then fails the test. */
async function exitedWithin(proc: Proc, ms: number): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running after ${ms} ms:\n${proc.output}`)),
      ms,
    );
  });
  try {
    return await Promise.race([proc.exited, late]);
  } finally {
    clearTimeout(timer);
    proc.kill();
  }
}

Deno.test("lua: a job redelivered after its worker was killed sees req.attempt = 2", async () => {
  const dir = await project({
    "main.lua": LISTEN + `ep.config { retries = 1 }\n`,
    "worker.lua": `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("job", function(req)
  if ep.env("HANG") then ep.sleep(60000) end
  return tostring(req.attempt)
end)
`,
  });
  const b = await run(dir);
  const first = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr, HANG: "1" });
  let second: Proc | null = null;
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1);
    const reply = fetch(`${b.url}/job`, { method: "POST", body: "x" });
    await waitStats(b.addr, (s) => s.providers.some((p) => p.busy > 0));
    second = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr });
    await waitStats(b.addr, (s) => s.providers.length === 2);
    first.kill("SIGKILL");
    const res = await reply;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "2");
  } finally {
    await first.stop();
    await second?.stop();
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: req.id is the client's x-request-id, req.deadline_ms the time left of its ep-timeout, req.attempt 1", async () => {
  const dir = await project({
    "main.lua": LISTEN + `ep.service("ctx", function(req)
  return ep.json.encode({
    id = req.id, deadline_ms = req.deadline_ms, attempt = req.attempt,
    headers = { id = req.headers["x-request-id"] or "none", ep = req.headers["ep-request-id"] or "none" },
  })
end)
`,
  });
  const { proc, url, addr } = await run(dir);
  try {
    const res = await fetch(`${url}/ctx`, {
      headers: { "x-request-id": "order-42.a", "ep-timeout": "5000" },
    });
    const ctx = await res.json();
    assert.equal(ctx.id, "order-42.a");
    assert.equal(ctx.attempt, 1);
    assert.ok(ctx.deadline_ms > 0 && ctx.deadline_ms <= 5000, `deadline_ms ${ctx.deadline_ms}`);
    // The client's header stays a header; ep's own key is not one.
    assert.deepEqual(ctx.headers, { id: "order-42.a", ep: "none" });
    // Over EP, with no id of the client's: one the balancer made.
    const client = await connect(addr);
    const ep = JSON.parse(dec.decode((await client.request("ctx", "", { timeoutMs: 3000 })).body));
    client.close();
    assert.match(ep.id, /^[0-9a-f]{16}$/);
    assert.ok(ep.deadline_ms > 0 && ep.deadline_ms <= 3000, `deadline_ms ${ep.deadline_ms}`);
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.call with { upstream = name } reaches a service behind another cluster's balancer", async () => {
  const dir = await project({
    "a.lua": LISTEN + `ep.service("billing", function(req) return "billed " .. req.body end)\n`,
    "once.lua": `ep.upstream("a", ep.env("A_ADDR"))
ep.timer(0, function()
  local body, message = ep.call("billing", "once", { upstream = "a" })
  ep.log.info("got " .. tostring(body or message))
  ep.exit(body and 0 or 1)
end)
`,
    "main.lua": LISTEN + `ep.upstream("a", { "127.0.0.1:1", ep.env("A_ADDR") })
ep.config { grace_ms = 0 }
ep.service("front", function(req)
  local body, status = ep.call("billing", req.body, { upstream = "a", timeout_ms = 5000 })
  local _, own, own_kind = ep.call("billing", req.body)
  local _, unknown, unknown_kind = ep.call("billing", req.body, { upstream = "nowhere" })
  return table.concat({ body, status, own_kind, unknown, unknown_kind }, "|")
end)
`,
  });
  const a = new Proc(["run", `${dir}/a.lua`], { EP_PORT: "0" });
  let b: { proc: Proc; url: string } | null = null;
  try {
    const m = await a.waitFor(/listening on [^:]+:(\d+)/, 20_000);
    b = await run(dir, { A_ADDR: `127.0.0.1:${m[1]}` });
    const res = await fetch(`${b.url}/front`, { method: "POST", body: "7" });
    assert.equal(
      await res.text(),
      'billed 7|200|no_service|No upstream "nowhere"|no_service',
    );
    // A script with neither ep.listen nor ep.connect calls an upstream from its timer.
    const once = new Proc(["run", `${dir}/once.lua`], { A_ADDR: `127.0.0.1:${m[1]}` });
    const status = await exitedWithin(once, 20_000);
    assert.equal(status.code, 0, once.output);
    assert.match(once.output, /got billed once/);
  } finally {
    await b?.proc.stop();
    await a.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.call works in a control-script timer, and ep.exit there exits quietly with its code", async () => {
  const dir = await project({
    // The script's timers start once the process runs: the first call is answered.
    "main.lua": LISTEN + `ep.service("double", function(req) return req.body .. req.body end)
ep.timer(0, function()
  local body, status_or_message, kind = ep.call("double", "ab")
  if body == nil then
    ep.log.info("timer call failed: " .. status_or_message .. " " .. kind)
    ep.exit(6)
  end
  ep.log.info("timer called: " .. body .. " " .. status_or_message)
  ep.exit(5)
end)
`,
  });
  const proc = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
  try {
    const status = await exitedWithin(proc, 20_000);
    assert.equal(status.code, 5, proc.output);
    assert.match(proc.output, /timer called: abab 200/);
    assert.doesNotMatch(proc.output, /__ep_exit__|ERR|not an ep request/);
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: a control script's top-level ep.log and ep.every run once per process, not once per handler thread", async () => {
  const dir = await project({
    "main.lua": `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
ep.threads(3)
ep.log.info("top-level line")
local ticks = 0
ep.every(50, function()
  ticks = ticks + 1
  ep.log.info("tick " .. ticks)
end)
ep.service("ping", function() return "pong" end)
`,
  });
  const { proc, url } = await run(dir);
  try {
    // Three threads have run the script (for the inline handler): all answer.
    const replies = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(async () => await (await fetch(`${url}/ping`)).text()),
    );
    assert.deepEqual(replies, Array(6).fill("pong"));
    await proc.waitFor(/tick 4\b/, 20_000);
    assert.equal(proc.output.match(/top-level line/g)?.length, 1, proc.output);
    assert.equal(proc.output.match(/tick 2\b/g)?.length, 1, proc.output);
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.service's description and version are served at /_ep/services, from the balancer's own threads and from a worker script", async () => {
  const dir = await project({
    "main.lua": LISTEN +
      `ep.service("own", function() return "own" end, { description = "Served in process", version = "2.0" })\n`,
    "worker.lua": `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("remote", function() return "remote" end, { description = "Served by a worker", version = "0.3" })
`,
  });
  const b = await run(dir);
  const w = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr });
  try {
    await waitStats(b.addr, (s) => s.providers.length === 2);
    const end = Date.now() + 10_000;
    let services: { name: string; description: string | null; version: string | null }[] = [];
    while (Date.now() < end) {
      services = (await (await fetch(`${b.url}/_ep/services`)).json()).services;
      if (services.every((s) => s.version !== null) && services.length === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(services.map((s) => [s.name, s.description, s.version]), [
      ["own", "Served in process", "2.0"],
      ["remote", "Served by a worker", "0.3"],
    ]);
  } finally {
    await w.stop();
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: ep.service { hedge_ms } on two workers: a job stalled on one is answered by its copy on the other (req.hedge, req.attempt 2), registered over EP version 2", async () => {
  const dir = await project({
    "main.lua": LISTEN,
    "worker.lua": `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("slow", "services/slow.lua", { slots = 1, hedge_ms = 100 })
`,
    // The original sleeps (a Lua handler runs to its end when cancelled); the copy answers.
    "services/slow.lua": `return function(req)
  if req.body == "fast" then return "fast" end
  if req.hedge then return "copy " .. req.attempt end
  ep.sleep(3000)
  return "original"
end`,
  });
  const b = await run(dir);
  const workers = [1, 2].map(() => new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr }));
  try {
    await waitStats(b.addr, (s) => s.providers.length === 2);
    const client = await connect(b.addr);
    // The budget: at most 5 % of the last 200 jobs hedged, so the 20th job may be.
    for (let i = 0; i < 19; i++) await client.request("slow", "fast");
    const t0 = performance.now();
    const reply = await client.request("slow", "");
    const took = performance.now() - t0;
    assert.equal(dec.decode(reply.body), "copy 2");
    assert.ok(took < 2500, `answered by the copy (${Math.round(took)} ms)`);
    client.close();
  } finally {
    for (const w of workers) await w.stop();
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lua: slots = { min =, max = } starts one thread at the min slots and offers more while jobs wait past target_wait_ms; no job is lost", async () => {
  const dir = await project({
    "main.lua": LISTEN + `
ep.service("wait", function(req) ep.sleep(40) return "waited" end,
  { slots = { min = 1, max = 4 }, target_wait_ms = 20 })
`,
  });
  const { proc, url } = await run(dir);
  try {
    const scaling = async () => {
      const stats = await (await fetch(`${url}/_ep/stats`)).json();
      return { threads: stats.pool.threads.length, slots: stats.pool.scaling.slots };
    };
    assert.deepEqual(await scaling(), { threads: 1, slots: 1 });
    const statuses: number[] = [];
    const end = Date.now() + 30_000;
    while ((await scaling()).slots < 2) {
      if (Date.now() > end) throw new Error("Gave up waiting for a second slot");
      statuses.push(
        ...await Promise.all(
          Array.from({ length: 8 }, async () => {
            const res = await fetch(`${url}/wait`, { method: "POST", body: "" });
            assert.equal(await res.text(), "waited");
            return res.status;
          }),
        ),
      );
    }
    assert.ok(statuses.length > 0 && statuses.every((s) => s === 200), `${new Set(statuses)}`);
    assert.equal((await scaling()).threads, 1, "no thread added");
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
