/**
 * The `ep` command's error messages, run as a user types it (`deno run -A mod.ts …` in a
 * child process): each says what is wrong, once, on one line, with the value or the address
 * it is about, and exits with a code that tells usage (2) from failure (1).
 */
import assert from "node:assert/strict";
import { ep, EpProc, freePort, lines, scriptDir } from "./_cli.ts";

Deno.test("a Lua syntax error in a control script names one location", async () => {
  const s = await scriptDir({
    "syntax.lua": `ep.listen { port = 0 }\nep.service("s", function(req)\n  return (1 +\nend)\n`,
  });
  try {
    const r = await ep(["run", `${s.dir}/syntax.lua`]);
    assert.equal(r.code, 1, r.err);
    const [line, ...rest] = lines(r.err);
    assert.deepEqual(rest, [], r.err);
    assert.match(line, /syntax\.lua:4: unexpected symbol near 'end'$/);
    assert.doesNotMatch(line, /\.lua:\d+:.*\.lua:\d+:/, "one location");
  } finally {
    await s.remove();
  }
});

Deno.test("a port in use is reported with the address, by the balancer and by a control script", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  try {
    for (
      const [args, env] of [
        [["balancer", "--port", String(port)], {}],
        [["start"], { EP_PORT: String(port), EP_THREADS: "1" }],
      ] as const
    ) {
      const r = await ep([...args], { env });
      assert.equal(r.code, 1, `${args.join(" ")}: ${r.err}`);
      assert.match(r.err, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`, "i"));
    }
  } finally {
    held.close();
  }
});

Deno.test("a wrong flag is one line with the hint to use --help, for every command", async () => {
  for (
    const args of [
      ["--bogus"],
      ["balancer", "--bogus"],
      ["start", "--bogus"],
      ["call", "echo", "--bogus"],
      ["bench", "--bogus"],
      ["status", "--bogus"],
      ["balancer", "--port"],
    ]
  ) {
    const r = await ep(args);
    assert.equal(r.code, 2, args.join(" "));
    const err = lines(r.err);
    assert.equal(err.length, 1, `${args.join(" ")}:\n${r.err}`);
    assert.match(err[0], /--(bogus|port)/);
    assert.match(err[0], /--help/);
    assert.equal(r.out, "");
  }
});

Deno.test("ep bench --rate -5 says the rate must be positive, on one line", async () => {
  const r = await ep(["bench", "--rate", "-5"]);
  assert.equal(r.code, 2, r.err);
  assert.deepEqual(lines(r.err).length, 1, r.err);
  assert.match(r.err, /--rate "-5"/);
  assert.doesNotMatch(r.err, /ambiguous/);
});

Deno.test("ep bench of a service that never answers reports the errors, not a latency of 0", async () => {
  const port = freePort();
  const b = new EpProc(["balancer", "--port", String(port)]);
  try {
    await b.waitFor(/listening on/);
    const r = await ep([
      "bench",
      "nosuch",
      "--port",
      String(port),
      "--duration",
      "0.5",
      "--rate",
      "20",
      "--timeout",
      "300",
      "--quiet",
    ]);
    assert.equal(r.code, 1, r.out + r.err);
    assert.doesNotMatch(r.out, /p50 0\.000/);
    assert.match(r.out, /no request succeeded/);
    assert.match(r.out, /errors: (timeout|no_service) \d+/);
  } finally {
    await b.terminate();
  }
});

Deno.test("the commands that talk to a balancer name the address they could not reach", async () => {
  const port = freePort();
  for (const cmd of [["call", "echo"], ["status"], ["bench", "--duration", "0.2", "--quiet"]]) {
    const r = await ep([...cmd, "--addr", `127.0.0.1:${port}`]);
    assert.notEqual(r.code, 0, cmd.join(" "));
    assert.equal(lines(r.err).length, 1, `${cmd.join(" ")}:\n${r.err}`);
    assert.match(r.err, new RegExp(`127\\.0\\.0\\.1:${port}`), cmd.join(" "));
    assert.match(r.err, /connection refused/i, cmd.join(" "));
  }
});
