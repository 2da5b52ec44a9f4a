/**
 * Property of the class "handler code that escapes or disables ep's controls": whatever a
 * handler calls, with whatever arguments, ep's timeout and memory cap still hold after
 * it, nothing runs to its end without the interrupt hook, the garbage collector keeps
 * running and the engine stays healthy with its stack unchanged.
 *
 * Every function of a handler's globals (`_G`, the standard tables, `ep`) is called with
 * every argument of a hostile corpus (functions that spin, tables whose metamethods spin
 * or lie about their length, coroutines, a binary chunk, huge integers, "stop", ...),
 * every ordered pair of the hostile ones, and seeded random longer tuples, with the
 * interrupt slot set before each call. It runs in a Web Worker
 * (`tests/fixtures/lua/sandbox_property_worker.ts`) watched for progress: a loop inside a
 * C function cannot be stopped, so a probe that never returns fails the test, naming the
 * call, instead of hanging it. `EP_FUZZ_SEED` changes the seed.
 */
import assert from "node:assert/strict";

const SEED = Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x5eed_f022);
const RANDOM_TUPLES = 40;
/** A probe that gives no sign of life for this long is stuck in C. */
const STUCK_MS = 30_000;

interface Report {
  functions: number;
  probes: number;
  failures: string[];
}

Deno.test("No handler code, whatever it calls with whatever arguments, switches off or escapes ep's timeout, memory cap or engine health", async () => {
  const worker = new Worker(
    new URL("../tests/fixtures/lua/sandbox_property_worker.ts", import.meta.url),
    { type: "module" },
  );
  let last = "(start)";
  const seen: string[] = [];
  let report: Report | null = null;
  let wake: (() => void) | null = null;
  worker.onerror = (e) => {
    e.preventDefault();
    report = {
      functions: 0,
      probes: 0,
      failures: [`the worker failed after ${last}: ${e.message}`],
    };
    wake?.();
  };
  worker.onmessage = (e) => {
    const msg = e.data as { probe?: string; failure?: string; done?: Report };
    if (msg.probe !== undefined) last = msg.probe;
    if (msg.failure !== undefined) seen.push(msg.failure);
    if (msg.done !== undefined) report = msg.done;
    wake?.();
  };
  try {
    worker.postMessage({ seed: SEED, randomTuples: RANDOM_TUPLES });
    while (report === null) {
      const before = last;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const alive = await new Promise<boolean>((resolve) => {
        wake = () => resolve(true);
        timer = setTimeout(() => resolve(false), STUCK_MS);
      });
      clearTimeout(timer);
      wake = null;
      assert.ok(
        alive || last !== before || report !== null,
        `stuck in C: ${last}${seen.length > 0 ? `; before it:\n${seen.join("\n")}` : ""}`,
      );
    }
    const r = report as Report;
    assert.deepEqual(r.failures, [], `seed ${SEED}`);
    assert.ok(r.functions > 100, `${r.functions} functions probed`);
    assert.ok(r.probes > r.functions * 300, `${r.probes} probes`);
  } finally {
    worker.terminate();
  }
});
