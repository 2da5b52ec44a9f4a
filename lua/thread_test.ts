/**
 * The Lua runtime on real handler threads (`HandlerPool` + `LUA_RUNTIME`): what only shows
 * there, where a thread with nothing asynchronous in flight sleeps in `Atomics.wait` and
 * the event loop does not turn.
 */
import assert from "node:assert/strict";
import { HandlerPool } from "../core/threads/pool.ts";
import { HandlerError } from "../core/errors.ts";
import { LUA_RUNTIME, type LuaThreadOptions } from "./thread.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

async function project(files: Record<string, string>): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ep-lua-worker-" });
  for (const [name, source] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, source);
  }
  return dir;
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
