import assert from "node:assert/strict";
import { childrenSecondsOfStat, parseProcStat, parseWrk, wrkMixScript } from "./_bench_procs.ts";

// A /proc/<pid>/stat line whose command name holds spaces and a ")": pid 4242, ppid 17,
// utime 150, stime 50, cutime 30, cstime 20 ticks.
const STAT = "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 900 0 0 0 150 50 30 20 20 0 " +
  "5 0 1234 100000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

Deno.test("bench procs: a /proc stat line gives the parent and CPU seconds with children's", () => {
  assert.deepEqual(parseProcStat(STAT), { ppid: 17, own: 2, seconds: 2.5 });
  assert.equal(childrenSecondsOfStat(STAT), 0.5);
});

const WRK_OK = `Running 1s test @ http://127.0.0.1:38887/hello
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   226.94us  595.70us   8.76ms   94.74%
    Req/Sec    37.23k    10.32k   48.25k    80.00%
  Latency Distribution
     50%   76.00us
     75%  152.00us
     90%  409.00us
     99%    3.03ms
  37007 requests in 1.00s, 3.78MB read
Requests/sec:  36984.77
Transfer/sec:      3.77MB
`;

Deno.test("bench procs: wrk's output gives requests, rate, seconds and latency percentiles in µs", () => {
  assert.deepEqual(parseWrk(WRK_OK), {
    requests: 37007,
    non2xx: 0,
    socketErrors: {},
    rps: 36984.77,
    seconds: 1,
    latencyUs: { p50: 76, p75: 152, p90: 409, p99: 3030 },
  });
});

Deno.test("bench procs: wrk's output gives its non-2xx responses and socket errors", () => {
  const text = WRK_OK.replace(
    "  37007 requests in 1.00s, 3.78MB read\n",
    "  37007 requests in 1.00m, 3.78MB read\n  Socket errors: connect 1, read 2, write 3, timeout 4\n" +
      "  Non-2xx or 3xx responses: 12\n",
  );
  const r = parseWrk(text)!;
  assert.equal(r.seconds, 60);
  assert.equal(r.non2xx, 12);
  assert.deepEqual(r.socketErrors, { connect: 1, read: 2, write: 3, timeout: 4 });
});

Deno.test("bench procs: wrk output without totals (wrk failed) parses to null", () => {
  assert.equal(parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"), null);
});

Deno.test("bench procs: the wrk mix script lists each job time's path with its cumulative weight", async () => {
  const path = await Deno.makeTempFile({ suffix: ".lua" });
  try {
    await wrkMixScript(path, "sleep", [{ ms: 1, p: 0.9 }, { ms: 20, p: 0.1 }]);
    const text = await Deno.readTextFile(path);
    assert.match(text, /\{ 0\.9, "\/sleep\?ms=1" \}, \{ 1, "\/sleep\?ms=20" \}/);
    assert.match(text, /^request = function\(\)/m);
  } finally {
    await Deno.remove(path);
  }
});
