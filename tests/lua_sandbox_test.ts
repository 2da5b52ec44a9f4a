/**
 * The Lua sandbox end to end: an all-in-one node (`ep run main.lua`, one handler thread)
 * over HTTP. A handler that attacks ep's interrupt hook and then spins is answered with
 * its timeout, its thread is free again (the next job on the only thread is answered),
 * and the process goes back to idle.
 */
import assert from "node:assert/strict";
import { Proc } from "./_cluster.ts";

async function project(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-lua-sandbox-" });
  for (const [name, source] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, source);
  }
  return dir;
}

/** CPU seconds (user + system) the process has used, from `/proc/<pid>/stat`. */
function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (USER_HZ = 100)
}

const ATTACKS: Record<string, string> = {
  "hook-off": `pcall(debug.sethook, function() end, "", 0) while true do end`,
  "unhook": `pcall(debug.sethook) while true do end`,
  "co-unhook": `local co = coroutine.create(function() while true do end end)
    pcall(debug.sethook, co) coroutine.resume(co) while true do end`,
  "inner-unhook": `coroutine.wrap(function() pcall(debug.sethook) while true do end end)()`,
  "wrap-spin": `coroutine.wrap(function() while true do end end)() while true do end`,
  "gc-spin": `pcall(setmetatable, {}, { __gc = function() while true do end end })
    collectgarbage() while true do end`,
  "close-spin": `local x <close> = setmetatable({}, { __close = function() while true do end end })
    while true do end`,
  "rep-spin": `string.rep("", math.maxinteger) while true do end`,
};

Deno.test("lua sandbox: a handler that attacks the interrupt hook gets its timeout, its thread serves the next job, the process goes idle", async () => {
  const services = Object.entries(ATTACKS).map(([name, body]) =>
    `ep.service(${JSON.stringify(name)}, function() ${body} end, { timeout_ms = 200 })`
  );
  const dir = await project({
    "main.lua": `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
ep.threads(1)
${services.join("\n")}
ep.service("unhook-only", function() pcall(debug.sethook) return "unhooked" end)
ep.service("ok", function() return "ok" end)
`,
  });
  const proc = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
  try {
    const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 20_000);
    const url = `http://127.0.0.1:${m[1]}`;
    // A stuck thread would leave a request unanswered: give up on it instead of hanging.
    const get = async (path: string) => {
      const res = await fetch(`${url}/${path}`, { signal: AbortSignal.timeout(15_000) });
      return { status: res.status, body: await res.text() };
    };
    assert.deepEqual(await get("ok"), { status: 200, body: "ok" });
    for (const name of Object.keys(ATTACKS)) {
      const res = await get(name);
      assert.equal(res.status, 504, `${name}: answered with its timeout (${res.body})`);
      // One thread: answered only if the attack let go of it.
      assert.deepEqual(await get("ok"), { status: 200, body: "ok" }, `${name}: the thread is free`);
    }
    // debug.sethook() alone breaks nothing for later requests.
    assert.deepEqual(await get("unhook-only"), { status: 200, body: "unhooked" });
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(await get("ok"), { status: 200, body: "ok" }, `request ${i} after it`);
    }
    assert.equal((await get("unhook")).status, 504, "and a runaway after it is still stopped");
    assert.deepEqual(await get("ok"), { status: 200, body: "ok" });
    if (Deno.build.os === "linux") {
      // Idle: a thread still spinning would burn a whole core.
      const pid = proc.child.pid;
      const c0 = cpuSeconds(pid);
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 2000));
      const share = (cpuSeconds(pid) - c0) / ((performance.now() - t0) / 1000);
      assert.ok(share < 0.5, `the process uses ${(share * 100).toFixed(0)} % of a core when idle`);
    }
  } finally {
    await proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
