/**
 * Property of the class "a wait that takes something and does not give it back" for
 * `ep.sleep` on a real handler thread, where a job alone on its thread waits in place and
 * one with company yields: random jobs (sleeps of 0–4 ms, some with a deadline inside their
 * sleep, some cancelled by their caller, arrivals 0–3 ms apart) on one thread with one or
 * two slots and room for zero or one job queued on it. Every job is answered exactly once:
 * its own body no sooner than its sleep asked, or a timeout or cancellation; and afterwards
 * every slot is free again and a last job is answered. Seeded (`EP_FUZZ_SEED` changes it).
 */
import assert from "node:assert/strict";
import { HandlerPool } from "../core/threads/pool.ts";
import type { JobReply } from "../core/threads/pool_types.ts";
import { LUA_RUNTIME, type LuaThreadOptions } from "./thread.ts";
import { int, mulberry32 } from "../tests/fuzz/_mutate.ts";

const SEED = Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x51ee_9);
const JOBS = 40;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Sleeps the body's milliseconds (fractions allowed), twice when it ends in "+". */
const NAP = `return function(req)
  local ms = tonumber((req.body:gsub("%+$", "")))
  ep.sleep(ms)
  if req.body:sub(-1) == "+" then ep.sleep(ms) end
  return req.body
end`;

for (const shape of [[1, 0], [1, 1], [2, 0], [2, 1]] as const) {
  const [concurrency, queue] = shape;
  Deno.test(`ep.sleep property: ${concurrency} slot(s), ${queue} queued on the thread: every job answered once, on time or with its error; every slot back (seed ${SEED})`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "ep-lua-sleep-" });
    await Deno.writeTextFile(`${dir}/nap.lua`, NAP);
    const options: LuaThreadOptions = {
      services: [{ name: "nap", file: `${dir}/nap.lua` }],
      scriptDir: `${dir}/`,
      logLevel: "fatal",
    };
    const pool = await HandlerPool.start({
      module: LUA_RUNTIME,
      moduleOptions: options,
      threads: 1,
      perThreadConcurrency: concurrency,
      perThreadQueue: queue,
    });
    const rng = mulberry32(SEED + concurrency * 10 + queue);
    try {
      const answers = new Map<number, number>();
      const problems: string[] = [];
      const outcomes = { ok: 0, timedOut: 0, cancelled: 0 };
      const settled: Promise<void>[] = [];
      for (let id = 1; id <= JOBS; id++) {
        const ms = int(rng, 5) + (int(rng, 2) === 0 ? 0.5 : 0);
        const twice = int(rng, 4) === 0;
        const body = `${ms}${twice ? "+" : ""}`;
        const asked = twice ? 2 * ms : ms;
        // One job in five must end inside its sleep; one in eight is cancelled by its caller.
        const deadlineMs = int(rng, 5) === 0 && asked >= 2 ? asked / 2 : undefined;
        const cancelAfter = int(rng, 8) === 0 ? int(rng, 3) : -1;
        // A full pool refuses a job: the caller waits for a free slot, as a worker would.
        while (pool.freeSlots === 0) await new Promise((r) => setTimeout(r, 0));
        const sent = performance.now();
        settled.push(
          new Promise<void>((resolve) => {
            const taken = pool.submit(
              { id, service: "nap", body: enc.encode(body), deadlineMs },
              (err: Error | null, reply: JobReply | null) => {
                // Checked after the run: a throw here would only reach the pool's logger.
                answers.set(id, (answers.get(id) ?? 0) + 1);
                const took = performance.now() - sent;
                if (err === null) {
                  outcomes.ok++;
                  const got = dec.decode(reply!.body);
                  if (got !== body) problems.push(`job ${id}: body ${got} for ${body}`);
                  if (took < asked) {
                    problems.push(`job ${id}: answered after ${took} ms for ${asked}`);
                  }
                } else if (/cancel/i.test(err.message)) {
                  outcomes.cancelled++;
                } else if (/timeout|timed out|interrupted/i.test(`${err.name}: ${err.message}`)) {
                  outcomes.timedOut++;
                } else {
                  problems.push(`job ${id}: ${err.name}: ${err.message}`);
                }
                resolve();
              },
            );
            if (!taken) {
              problems.push(`job ${id}: refused with ${pool.freeSlots} free slots`);
              resolve();
            }
          }),
        );
        if (cancelAfter >= 0) setTimeout(() => pool.cancel(id), cancelAfter);
        const gap = int(rng, 4);
        if (gap > 0) await new Promise((r) => setTimeout(r, gap - 1));
      }
      // A job lost on the way would never be answered: fail instead of hanging.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const lost = new Promise<"lost">((r) => timer = setTimeout(() => r("lost"), 10_000));
      const all = await Promise.race([Promise.all(settled), lost]);
      clearTimeout(timer);
      assert.notEqual(all, "lost", `answered: ${answers.size} of ${JOBS}`);
      // Answers may come a little after the callback (late replies of cancelled jobs).
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(problems, []);
      // The run covered what it is about: jobs answered, and jobs stopped inside their sleep.
      assert.ok(outcomes.ok > JOBS / 2, `outcomes ${JSON.stringify(outcomes)}`);
      assert.ok(outcomes.timedOut + outcomes.cancelled > 0, `outcomes ${JSON.stringify(outcomes)}`);
      for (let id = 1; id <= JOBS; id++) assert.equal(answers.get(id), 1, `job ${id} answers`);
      assert.equal(pool.jobsInFlight, 0, "no job holds a slot");
      assert.equal(pool.freeSlots, concurrency + queue, "every slot is free");
      const last = await pool.call({ id: JOBS + 1, service: "nap", body: enc.encode("1") });
      assert.equal(dec.decode(last.body), "1");
    } finally {
      await pool.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
