/**
 * HTTP keep-alive "hello" on ep's sniffed port against `Deno.serve` returning the same body,
 * both driven by wrk in the same run, alternating, each server in its own process.
 *
 *   deno run -A tests/bench/http_bench.ts [--rounds 3] [--seconds 5] [--connections 50]
 *
 * Last line: `ep HTTP vs Deno.serve requests/s: 0.93x`.
 */
import { parseArgs } from "node:util";
import { fmt, have, median, startChild, wrk } from "./_bench_util.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    connections: { type: "string", default: "50" },
  },
});
if (!(await have("wrk"))) {
  console.log("wrk is missing: apt-get install -y wrk");
  Deno.exit(1);
}
const server = new URL("./_hello_server.ts", import.meta.url).pathname;
const seconds = Number(values.seconds);
const connections = Number(values.connections);
const results: Record<string, number[]> = { ep: [], "deno-serve": [] };
for (let round = 0; round < Number(values.rounds); round++) {
  for (const mode of ["ep", "deno-serve"] as const) {
    const child = await startChild(server, [mode]);
    try {
      await wrk(`http://127.0.0.1:${child.port}/hello`, { seconds: 1, connections }); // warm-up
      const rps = await wrk(`http://127.0.0.1:${child.port}/hello`, { seconds, connections });
      results[mode].push(rps);
      console.log(`round ${round + 1} ${mode.padEnd(10)} ${fmt(rps)} req/s`);
    } finally {
      await child.stop();
    }
  }
}
const ep = median(results.ep);
const ds = median(results["deno-serve"]);
console.log(`median: ep ${fmt(ep)} req/s, Deno.serve ${fmt(ds)} req/s (wrk -t1 -c${connections})`);
console.log(`ep HTTP vs Deno.serve requests/s: ${(ep / ds).toFixed(2)}x`);
