/**
 * `ep check <script.lua>` (like `nginx -t`), run as a user types it: it loads the control
 * script and compiles every service file, validates the flags and environment values and
 * the options the script gave, checks that the listen port can be bound, and starts nothing.
 * Exit 0 with "ok", or one line per problem and exit 1.
 */
import assert from "node:assert/strict";
import { ep, freePort, lines, scriptDir } from "./_cli.ts";

const MAIN_LUA = new URL("../scripts/main.lua", import.meta.url).pathname;

Deno.test("ep check passes the shipped scripts with ok and exit 0, and checks main.lua by default", async () => {
  for (const args of [["check", MAIN_LUA], ["check"]]) {
    const r = await ep(args, { env: { EP_PORT: String(freePort()) } });
    assert.equal(r.code, 0, r.out + r.err);
    assert.equal(r.err, "");
    const out = lines(r.out);
    assert.equal(out.length, 1, r.out);
    assert.match(out[0], /main\.lua: ok\b/);
    assert.match(out[0], /echo, json, sleep/);
  }
  for (const script of ["balancer.lua", "worker.lua"]) {
    const r = await ep(["check", new URL(`../scripts/${script}`, import.meta.url).pathname], {
      env: { EP_PORT: String(freePort()) },
    });
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, new RegExp(`${script.replace(".", "\\.")}: ok`));
  }
});

Deno.test("ep check reports every broken service file on its own line and exits 1", async () => {
  const s = await scriptDir({
    "main.lua": `ep.listen { port = 0 }\nep.threads(1)\n` +
      `ep.service("good", "services/good.lua")\n` +
      `ep.service("syntax", "services/syntax.lua")\n` +
      `ep.service("missing", "services/missing.lua")\n` +
      `ep.service("nofunc", "services/nofunc.lua")\n`,
    "services/good.lua": `return function(req) return "ok" end\n`,
    "services/syntax.lua": `return function(req)\n  return (1 +\nend\n`,
    "services/nofunc.lua": `return 42\n`,
  });
  try {
    const r = await ep(["check", `${s.dir}/main.lua`]);
    assert.equal(r.code, 1, r.out + r.err);
    const problems = lines(r.err);
    assert.equal(problems.length, 3, r.err);
    assert.match(problems[0], /service "syntax": syntax\.lua:3: unexpected symbol near 'end'$/);
    assert.doesNotMatch(problems[0], /\.lua:\d+:.*\.lua:\d+:/, "one location");
    assert.match(problems[1], /service "missing": .*services\/missing\.lua/);
    assert.match(problems[1], /no such file/i);
    assert.match(problems[2], /service "nofunc": .*nofunc\.lua/);
    assert.match(problems[2], /function/);
    assert.doesNotMatch(r.err, /good/);
  } finally {
    await s.remove();
  }
});

Deno.test("ep check reports a control script's syntax error with one location", async () => {
  const s = await scriptDir({ "main.lua": `ep.listen { port = 0 }\nep.threads(1\n` });
  try {
    const r = await ep(["check", `${s.dir}/main.lua`]);
    assert.equal(r.code, 1);
    const problems = lines(r.err);
    assert.equal(problems.length, 1, r.err);
    assert.match(problems[0], /main\.lua:3: '\)' expected \(to close '\(' at line 2\) near <eof>$/);
  } finally {
    await s.remove();
  }
});

Deno.test("ep check reports bad environment values, a bad option and a port in use, one line each", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  const s = await scriptDir({
    "main.lua": `ep.listen {}\n`,
    "options.lua": `ep.listen {}\nep.config { max_queue = -1 }\n`,
  });
  try {
    const bad = await ep(["check", `${s.dir}/main.lua`], {
      env: { EP_PORT: "abc", EP_THREADS: "-2" },
    });
    assert.equal(bad.code, 1, bad.out + bad.err);
    const problems = lines(bad.err);
    assert.equal(problems.length, 2, bad.err);
    assert.match(problems[0], /EP_PORT "abc"/);
    assert.match(problems[1], /EP_THREADS "-2"/);

    const option = await ep(["check", `${s.dir}/options.lua`], {
      env: { EP_PORT: String(freePort()) },
    });
    assert.equal(option.code, 1, option.out + option.err);
    assert.equal(lines(option.err).length, 1, option.err);
    assert.match(option.err, /options\.lua:2: .*max_queue.*-1/);

    const inUse = await ep(["check", `${s.dir}/main.lua`], { env: { EP_PORT: String(port) } });
    assert.equal(inUse.code, 1, inUse.out + inUse.err);
    assert.equal(lines(inUse.err).length, 1, inUse.err);
    assert.match(inUse.err, new RegExp(`127\\.0\\.0\\.1:${port}: address already in use`, "i"));
  } finally {
    held.close();
    await s.remove();
  }
});

Deno.test("ep check starts nothing: no timer runs, nothing stays bound, it exits at once", async () => {
  const port = freePort();
  const s = await scriptDir({
    "main.lua": `ep.listen { port = ${port} }\nep.threads(1)\n` +
      `ep.service("ping", function() return "pong" end)\n` +
      `ep.timer(0, function() print("TIMER RAN") end)\n`,
  });
  try {
    const r = await ep(["check", `${s.dir}/main.lua`], { timeoutMs: 20_000 });
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, r.out + r.err);
    assert.doesNotMatch(r.out + r.err, /TIMER RAN|listening/);
    // The port it checked is free again.
    Deno.listen({ hostname: "127.0.0.1", port }).close();
  } finally {
    await s.remove();
  }
});

Deno.test("ep check of a script that does not exist says so on one line and exits 1", async () => {
  const r = await ep(["check", "/nonexistent/main.lua"]);
  assert.equal(r.code, 1);
  assert.equal(lines(r.err).length, 1, r.err);
  assert.match(r.err, /\/nonexistent\/main\.lua/);
});
