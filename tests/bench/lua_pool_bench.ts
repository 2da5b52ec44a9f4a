/**
 * The cost of a Lua handler over a TypeScript one, through the handler-thread pool: the
 * same trivial echo service on one thread, every slot kept busy, jobs per second with the
 * Lua runtime (interrupt hook on) against the TypeScript runtime, rounds interleaved.
 *
 *   deno run -A tests/bench/lua_pool_bench.ts [--quick]
 *
 * Last line: `lua vs ts handler jobs/s (1 thread): 0.62x`.
 *
 * @module
 */
import { HandlerPool, TS_HANDLER_RUNTIME } from "../../core/threads/pool.ts";
import { LUA_RUNTIME } from "../../lua/thread.ts";

const quick = Deno.args.includes("--quick");
const rounds = quick ? 1 : 3;
const jobs = quick ? 30_000 : 150_000;
const BODY = new Uint8Array(64).fill(0x61);
const dir = await Deno.makeTempDir();
await Deno.writeTextFile(
  `${dir}/echo.lua`,
  "return function(req) return { status = 200, body = req.body } end\n",
);

const lua = await HandlerPool.start({
  module: LUA_RUNTIME,
  moduleOptions: { services: [{ name: "echo", file: `${dir}/echo.lua` }], scriptDir: `${dir}/` },
  threads: 1,
  perThreadConcurrency: 32,
});
const ts = await HandlerPool.start({
  module: TS_HANDLER_RUNTIME,
  moduleOptions: { handlers: new URL("../fixtures/pool_handlers.ts", import.meta.url).href },
  threads: 1,
  perThreadConcurrency: 32,
});

async function rate(pool: HandlerPool, n: number): Promise<number> {
  let sent = 0;
  let done = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (sent < n && pool.freeSlots > 0) {
        sent++;
        pool.submit({ id: sent, service: "echo", body: BODY }, (err) => {
          if (err) throw err;
          if (++done === n) resolve();
          else pump();
        });
      }
    };
    pump();
  });
  return n / ((performance.now() - t0) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
await rate(lua, 5_000);
await rate(ts, 5_000);
const luaRates: number[] = [];
const tsRates: number[] = [];
for (let r = 0; r < rounds; r++) {
  luaRates.push(await rate(lua, jobs));
  tsRates.push(await rate(ts, jobs));
  console.log(
    `round ${r + 1}: lua ${Math.round(luaRates[r]).toLocaleString("en-US")} jobs/s, ts ${
      Math.round(tsRates[r]).toLocaleString("en-US")
    } jobs/s`,
  );
}
const l = median(luaRates);
const t = median(tsRates);
console.log(`added cost per job of a Lua handler: ${((1e6 / l) - (1e6 / t)).toFixed(2)} µs`);
await lua.close();
await ts.close();
await Deno.remove(dir, { recursive: true });
console.log(`lua vs ts handler jobs/s (1 thread): ${(l / t).toFixed(2)}x`);
