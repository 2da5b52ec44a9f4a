/**
 * One configuration rule for every `ep` command, run as a user types it (`deno run -A mod.ts
 * …` in a child process): a flag beats its environment variable, which beats the default;
 * the same names everywhere (README "Configuration"); a bad value is one line naming where
 * it came from, and exit 2.
 */
import assert from "node:assert/strict";
import { ep, EpProc, freePort, lines, scriptDir } from "./_cli.ts";

const HOST = "127.0.0.1";
const WORKER_LUA = new URL("../scripts/worker.lua", import.meta.url).pathname;

Deno.test("ep --port N start binds N, --threads reaches the control script, and call, status and bench find it by --port or EP_PORT", async () => {
  const port = freePort();
  const start = new EpProc(["--port", String(port), "start", "--threads", "1"]);
  try {
    await start.waitFor(new RegExp(`listening on ${HOST.replaceAll(".", "\\.")}:${port}\\b`));
    // One thread: echo and json get one slot each, sleep its 64.
    await start.waitFor(/serves echo,json,sleep with 66 slots/);
    const viaEnv = await ep(["call", "echo", "hi"], { env: { EP_PORT: String(port) } });
    assert.equal(viaEnv.code, 0, viaEnv.err);
    assert.equal(viaEnv.out, "hi");
    const viaFlag = await ep(["call", "echo", "flag", "--port", String(port)]);
    assert.equal(viaFlag.code, 0, viaFlag.err);
    assert.equal(viaFlag.out, "flag");
    // The flag beats the environment.
    const dead = freePort();
    const both = await ep(["call", "echo", "x", "--port", String(port)], {
      env: { EP_PORT: String(dead) },
    });
    assert.equal(both.code, 0, both.err);
    const status = await ep(["status"], { env: { EP_PORT: String(port) } });
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, new RegExp(`at 127\\.0\\.0\\.1:${port}`));
    const bench = await ep(
      ["bench", "echo", "--duration", "0.3", "--rate", "20", "--quiet", "--json"],
      { env: { EP_PORT: String(port) } },
    );
    assert.equal(bench.code, 0, bench.err);
    assert.ok(JSON.parse(bench.out).ok > 0, bench.out);
  } finally {
    await start.terminate();
  }
});

Deno.test("EP_PORT reaches start, and EP_ADDR beats EP_PORT for the commands that talk to a balancer", async () => {
  const port = freePort();
  const start = new EpProc(["start"], { EP_PORT: String(port), EP_THREADS: "1" });
  try {
    await start.waitFor(new RegExp(`listening on 127\\.0\\.0\\.1:${port}\\b`));
    const r = await ep(["call", "echo", "hi"], {
      env: { EP_ADDR: `127.0.0.1:${port}`, EP_PORT: String(freePort()) },
    });
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, "hi");
  } finally {
    await start.terminate();
  }
});

Deno.test("a flag replaces what the control script itself sets (--port over ep.listen's port)", async () => {
  const literal = freePort();
  const port = freePort();
  const s = await scriptDir({
    "main.lua": `ep.listen { port = ${literal} }\nep.threads(1)\n` +
      `ep.service("ping", function() return "pong" end)\n`,
  });
  const proc = new EpProc(["run", `${s.dir}/main.lua`, "--port", String(port)]);
  try {
    await proc.waitFor(new RegExp(`listening on 127\\.0\\.0\\.1:${port}\\b`));
    const r = await ep(["call", "ping", "--port", String(port)]);
    assert.equal(r.out, "pong", r.err);
  } finally {
    await proc.terminate();
    await s.remove();
  }
});

Deno.test("EP_THREADS=0 and --threads 0 mean the number of cores in start, worker and the worker script", async () => {
  const cores = navigator.hardwareConcurrency;
  const port = freePort();
  const start = new EpProc(["start"], { EP_PORT: String(port), EP_THREADS: "0" });
  try {
    await start.waitFor(new RegExp(`listening on 127\\.0\\.0\\.1:${port}\\b`));
    // echo and json get one slot per thread, sleep its 64.
    await start.waitFor(new RegExp(`serves echo,json,sleep with ${2 * cores + 64} slots`));
    for (
      const [args, env] of [
        [["worker", "--threads", "0"], { EP_CONNECT: `127.0.0.1:${port}` }],
        [["worker"], { EP_CONNECT: `127.0.0.1:${port}`, EP_THREADS: "0" }],
        [["run", WORKER_LUA], { EP_CONNECT: `127.0.0.1:${port}`, EP_THREADS: "0" }],
      ] as const
    ) {
      const w = new EpProc([...args], env);
      try {
        await w.waitFor(/Registered with balancer/);
      } finally {
        assert.equal((await w.terminate()).code, 0, `${args.join(" ")}: ${w.output}`);
      }
    }
  } finally {
    await start.terminate();
  }
});

Deno.test("a bad flag or environment value is one line naming its source and value, exit 2, before anything starts", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["start"], { EP_PORT: "abc" }, /EP_PORT "abc"/],
    [["balancer", "--port", "abc"], {}, /--port "abc"/],
    [["balancer", "--port", "70000"], {}, /--port "70000"/],
    [["start", "--threads", "1.5"], {}, /--threads "1\.5"/],
    [["worker"], { EP_THREADS: "-1" }, /EP_THREADS "-1"/],
    [["run", WORKER_LUA], { EP_THREADS: "lots" }, /EP_THREADS "lots"/],
    [["worker"], { EP_CONNECT: "nocolon" }, /EP_CONNECT "nocolon"/],
    [["worker", "--concurrency", "many"], {}, /--concurrency "many"/],
    [["call", "echo"], { EP_ADDR: "nowhere" }, /EP_ADDR "nowhere"/],
    [["status"], { EP_PORT: "x" }, /EP_PORT "x"/],
    [["balancer", "--log-level", "loud"], {}, /--log-level "loud"/],
    [["start"], { EP_LOG_LEVEL: "loud" }, /EP_LOG_LEVEL "loud"/],
  ];
  for (const [args, env, message] of cases) {
    const what = `${JSON.stringify(env)} ep ${args.join(" ")}`;
    const r = await ep(args, { env, timeoutMs: 15_000 });
    assert.equal(r.timedOut, false, `${what} kept running: ${r.out}${r.err}`);
    assert.equal(r.code, 2, `${what}: ${r.out}${r.err}`);
    assert.equal(lines(r.err).length, 1, `${what}: one line:\n${r.err}`);
    assert.match(r.err, message, what);
    assert.equal(r.out, "", what);
  }
});
