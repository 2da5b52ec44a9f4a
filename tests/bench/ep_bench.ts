/**
 * EP request/reply round trips with the TypeScript client, pipelined, against HTTP
 * keep-alive requests to the same server measured by wrk in the same run. The server runs
 * in its own process; the EP client keeps `--window` requests in flight.
 *
 *   deno run -A tests/bench/ep_bench.ts [--rounds 3] [--seconds 5] [--window 256]
 *
 * Last line: `EP pipelined vs HTTP keep-alive requests/s: 2.3x`.
 */
import { parseArgs } from "node:util";
import { connect } from "../../core/net/client.ts";
import { fmt, have, median, startChild, wrk } from "./_bench_util.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
    window: { type: "string", default: "256" },
    connections: { type: "string", default: "50" },
  },
});
const seconds = Number(values.seconds);
const window = Number(values.window);
const body = new TextEncoder().encode("hello\n");

/** Keeps `window` requests in flight on one connection for `ms`; returns replies/s. */
async function epRate(port: number, ms: number): Promise<number> {
  const client = await connect(`127.0.0.1:${port}`);
  let done = 0;
  let stop = false;
  const t0 = performance.now();
  const lane = async () => {
    while (!stop) {
      await client.request("hello", body);
      done++;
    }
  };
  const lanes = Array.from({ length: window }, lane);
  await new Promise((r) => setTimeout(r, ms));
  stop = true;
  await Promise.all(lanes);
  const rate = done / ((performance.now() - t0) / 1000);
  client.close();
  return rate;
}

const server = new URL("./_hello_server.ts", import.meta.url).pathname;
const haveWrk = await have("wrk");
const ep: number[] = [];
const http: number[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const child = await startChild(server, ["ep"]);
  try {
    await epRate(child.port, 500); // warm-up
    const e = await epRate(child.port, seconds * 1000);
    ep.push(e);
    let line = `round ${round + 1} EP ${fmt(e)} req/s`;
    if (haveWrk) {
      const h = await wrk(`http://127.0.0.1:${child.port}/hello`, {
        seconds,
        connections: Number(values.connections),
      });
      http.push(h);
      line += `, HTTP ${fmt(h)} req/s`;
    }
    console.log(line);
  } finally {
    await child.stop();
  }
}
console.log(`median: EP ${fmt(median(ep))} req/s (one connection, window ${window})`);
if (haveWrk) {
  console.log(`median: HTTP ${fmt(median(http))} req/s (wrk -t1 -c${values.connections})`);
  console.log(
    `EP pipelined vs HTTP keep-alive requests/s: ${(median(ep) / median(http)).toFixed(2)}x`,
  );
} else {
  console.log("wrk is missing (apt-get install -y wrk): no HTTP figure to compare with");
}
