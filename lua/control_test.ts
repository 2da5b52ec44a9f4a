/**
 * Control scripts on the main thread (`loadControl`): what `ep.upstream` records, and what
 * `ep.call` and `ep.exit` do in a control script's timers. End to end, in real processes:
 * `tests/lua_control_test.ts`.
 */
import assert from "node:assert/strict";
import { configure, type LogRecord } from "@logtape/logtape";
import { ErrorCode } from "../protocol/errors.ts";
import { JobError } from "../core/job.ts";
import type { PoolCall } from "../core/threads/pool_types.ts";
import { applyOverrides, type Control, loadControl } from "./control.ts";
import { LuaError } from "./errors.ts";

const records: LogRecord[] = [];
await configure({
  reset: true,
  sinks: { buffer: (r: LogRecord) => void records.push(r) },
  loggers: [
    { category: ["ep"], sinks: ["buffer"], lowestLevel: "debug" },
    { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
  ],
});

const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

/** Writes `main.lua` into a temp dir and loads it; the dir is removed afterwards. */
async function withScript<T>(
  source: string,
  options: Parameters<typeof loadControl>[1],
  fn: (control: Control) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ep-control-" });
  await Deno.writeTextFile(`${dir}/main.lua`, source);
  let control: Control | undefined;
  try {
    control = await loadControl(`${dir}/main.lua`, options);
    control.startTimers();
    return await fn(control);
  } finally {
    control?.runtime.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The message a script that fails to load rejects with. */
async function loadError(source: string): Promise<string> {
  try {
    await withScript(source, {}, () => Promise.resolve());
  } catch (err) {
    assert.ok(err instanceof LuaError, String(err));
    return err.message;
  }
  assert.fail(`the script loaded: ${source}`);
}

function message(r: LogRecord): string {
  return r.message.map(String).join("");
}

Deno.test("ep.upstream names another cluster's balancers (one or a list) and the token to present", async () => {
  const script = `
ep.upstream("billing", { "10.0.0.5:7070", "10.0.0.6:7070" }, { token = "s3cret" })
ep.upstream("audit.v2", "[::1]:7071")
`;
  await withScript(script, {}, (control) => {
    assert.deepEqual(control.config.upstreams, {
      billing: { servers: ["10.0.0.5:7070", "10.0.0.6:7070"], token: "s3cret" },
      "audit.v2": { servers: ["[::1]:7071"] },
    });
    return Promise.resolve();
  });
});

Deno.test("ep.upstream refuses a bad name, address list, port or option with a Lua error naming the argument", async () => {
  const cases: [string, RegExp][] = [
    [
      `ep.upstream(7, "a:1")`,
      /main\.lua:1: bad argument #1 to 'ep\.upstream' \(string expected, got number\)/,
    ],
    [
      `ep.upstream("Billing", "a:1")`,
      /main\.lua:1: bad argument #1 to 'ep\.upstream' \(service-like name expected: 1–64 characters of a-z 0-9 _ \. - starting with a letter or digit; got "Billing"\)/,
    ],
    [
      `ep.upstream("b")`,
      /bad argument #2 to 'ep\.upstream' \("host:port" or a list of them expected, got nil\)/,
    ],
    [
      `ep.upstream("b", {})`,
      /bad argument #2 to 'ep\.upstream' \(at least one "host:port" expected\)/,
    ],
    [
      `ep.upstream("b", { "a:1", 7 })`,
      /bad argument #2 to 'ep\.upstream' \("host:port" expected at index 2, got 7\)/,
    ],
    [
      `ep.upstream("b", "nohost")`,
      /bad argument #2 to 'ep\.upstream' \("host:port" expected at index 1, got "nohost"\)/,
    ],
    [
      `ep.upstream("b", "a:1\\n")`,
      /main\.lua:1: bad argument #2 to 'ep\.upstream' \("host:port" expected at index 1, got "a:1\\n"\)$/,
    ],
    [
      `ep.upstream("b", "a:70000")`,
      /bad argument #2 to 'ep\.upstream' \("host:port" expected at index 1, got "a:70000"\)/,
    ],
    [
      `ep.upstream("b", "a:1", "t")`,
      /bad argument #3 to 'ep\.upstream' \(table expected, got string\)/,
    ],
    [
      `ep.upstream("b", "a:1", { token = 5 })`,
      /bad argument #3 to 'ep\.upstream' \(string token expected, got number\)/,
    ],
    [
      `ep.upstream("b", "a:1", { tokn = "x" })`,
      /bad argument #3 to 'ep\.upstream' \(unknown option 'tokn'\)/,
    ],
    [
      `ep.upstream("b", "a:1")\nep.upstream("b", "a:2")`,
      /main\.lua:2: bad argument #1 to 'ep\.upstream' \(upstream "b" is already named\)/,
    ],
  ];
  for (const [source, expected] of cases) {
    assert.match(await loadError(source), expected, source);
  }
});

Deno.test("ep.call in a control-script timer calls through the process's node (upstream, timeout, errors as values); ep.exit then ends it quietly", async () => {
  records.length = 0;
  const calls: PoolCall[] = [];
  let exited!: (code: number) => void;
  const exit = new Promise<number>((resolve) => exited = resolve);
  const script = `
ep.timer(1, function()
  local body, status = ep.call("double", "ab", { upstream = "billing", timeout_ms = 250 })
  local none, message, kind = ep.call("missing", "")
  ep.log.info(("%s %s | %s %s %s"):format(body, status, tostring(none), message, kind))
  pcall(ep.exit, 7) -- pcall cannot keep the callback going
  ep.log.info("after ep.exit")
end)
`;
  await withScript(script, {
    onExit: (code) => exited(code),
    call: (call) => {
      calls.push(call);
      if (call.service === "missing") {
        return Promise.reject(new JobError(ErrorCode.NO_SERVICE, 'No service "missing"'));
      }
      const text = utf8d.decode(call.body);
      return Promise.resolve({ status: 201, meta: [], body: utf8.encode(text + text) });
    },
  }, async (control) => {
    assert.equal(await exit, 7);
    assert.equal(control.config.exitCode, 7);
    await new Promise((r) => setTimeout(r, 20));
  });
  assert.deepEqual(
    calls.map((c) => [c.service, utf8d.decode(c.body), c.timeoutMs, c.upstream]),
    [["double", "ab", 250, "billing"], ["missing", "", 0, undefined]],
  );
  const lines = records.map(message);
  assert.ok(lines.includes('abab 201 | nil No service "missing" no_service'), lines.join("\n"));
  assert.ok(!lines.includes("after ep.exit"), "the callback stopped at ep.exit");
  const loud = records.filter((r) => r.level === "error" || r.level === "warning");
  assert.deepEqual(loud.map(message), [], "ep.exit from a timer logs nothing");
});

Deno.test("ep.call in a control-script timer before the process can call returns nil, a message and unavailable", async () => {
  records.length = 0;
  let exited!: (code: number) => void;
  const exit = new Promise<number>((resolve) => exited = resolve);
  const script = `
ep.timer(1, function()
  local none, message, kind = ep.call("svc", "x")
  ep.log.info(("%s|%s|%s"):format(tostring(none), message, kind))
  ep.exit(0)
end)
`;
  await withScript(script, { onExit: (code) => exited(code) }, async () => {
    assert.equal(await exit, 0);
  });
  const lines = records.map(message);
  assert.ok(
    lines.includes('nil|This process is still starting: it cannot call "svc" yet|unavailable'),
    lines.join("\n"),
  );
});

Deno.test("ep.service and ep.route refuse a name no request could reach with a Lua error naming it", async () => {
  assert.match(
    await loadError(`ep.service("Bad Name", function() return "x" end)`),
    /main\.lua:1: bad argument #1 to 'ep\.service' \(service name expected: 1–64 characters of a-z 0-9 _ \. - starting with a letter or digit; got "Bad Name"\)/,
  );
  assert.match(
    await loadError(`ep.route("/api", "-api")`),
    /main\.lua:1: bad argument #2 to 'ep\.route' \(service name expected: 1–64 characters of a-z 0-9 _ \. - starting with a letter or digit; got "-api"\)/,
  );
  await withScript(`ep.service("user.v2", function() end)\nep.route("/u", "user.v2")`, {}, (c) => {
    assert.deepEqual(c.config.services.map((s) => s.name), ["user.v2"]);
    assert.deepEqual(c.config.routes, [{ prefix: "/u", service: "user.v2" }]);
    return Promise.resolve();
  });
});

Deno.test("A control script's timers start when the process runs (startTimers), counting from when the script set them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ep-control-" });
  await Deno.writeTextFile(`${dir}/main.lua`, `ep.timer(0, function() ep.exit(9) end)\n`);
  const exits: number[] = [];
  const control = await loadControl(`${dir}/main.lua`, { onExit: (code) => exits.push(code) });
  try {
    await new Promise((r) => setTimeout(r, 30));
    assert.deepEqual(exits, [], "no timer runs before the process does");
    control.startTimers();
    while (exits.length === 0) await new Promise((r) => setTimeout(r, 1));
    assert.deepEqual(exits, [9]);
  } finally {
    control.runtime.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Control-script and ep argument errors show the offending value on one line", async () => {
  const cases: [string, string][] = [
    [`ep.config { ["a\\nb"] = 1 }`, "(unknown key 'a\\010b')"],
    [`ep.upstream("b", "a:1", { ["x\\ny"] = 1 })`, "(unknown option 'x\\010y')"],
    [`ep.service("a\\nb", function() end)`, 'got "a\\nb")'],
    [`ep.timer("1\\n2", function() end)`, "(milliseconds expected, got 1\\0102)"],
  ];
  for (const [source, tail] of cases) {
    const message = await loadError(source);
    assert.ok(!message.includes("\n"), `${source}: ${message}`);
    assert.ok(message.endsWith(tail), `${source}: ${message}`);
  }
});

Deno.test("ep.service records a description and a version; a value that is not a string is a Lua error naming it", async () => {
  await withScript(
    `ep.service("echo", function(req) return req.body end, { description = "Echoes", version = "1.0" })
ep.service("bare", function() end)`,
    {},
    (control) => {
      const [echo, bare] = control.config.services;
      assert.deepEqual([echo.description, echo.version], ["Echoes", "1.0"]);
      assert.ok(!("description" in bare) && !("version" in bare));
      return Promise.resolve();
    },
  );
  assert.match(
    await loadError(`ep.service("echo", function() end, { version = 2 })`),
    /bad argument #3 to 'ep.service' \(string version expected, got number\)/,
  );
  assert.match(
    await loadError(`ep.service("echo", function() end, { description = {} })`),
    /bad argument #3 to 'ep.service' \(string description expected, got table\)/,
  );
});

Deno.test("a syntax error in a control script names one location: the script's", async () => {
  assert.equal(
    await loadError(`ep.listen { port = 0 }\nep.threads(1\n`),
    "main.lua:3: ')' expected (to close '(' at line 2) near <eof>",
  );
  assert.equal(await loadError(`local x = = 1\n`), "main.lua:1: unexpected symbol near '='");
});

Deno.test("ep.threads(0) means the number of cores; a negative or fractional count is an error", async () => {
  await withScript(`ep.threads(0)\n`, {}, (c) => {
    assert.equal(c.config.threads, undefined);
    return Promise.resolve();
  });
  for (const bad of ["-1", "1.5", '"2"']) {
    assert.match(
      await loadError(`ep.threads(${bad})\n`),
      /^main\.lua:1: bad argument #1 to 'ep\.threads' \(number of threads expected: 0 \(the number of cores\) or more; got /,
    );
  }
});

Deno.test("ep.listen checks its port and keys, and a bad EP_PORT it reads names the variable", async () => {
  await withScript(`ep.listen { port = 0, host = "0.0.0.0" }\n`, {}, (c) => {
    assert.deepEqual(c.config.listen, { port: 0, hostname: "0.0.0.0" });
    return Promise.resolve();
  });
  assert.match(await loadError(`ep.listen { port = 70000 }\n`), /port expected: .* got 70000\)$/);
  assert.match(await loadError(`ep.listen { port = -1 }\n`), /port expected: .* got -1\)$/);
  assert.match(await loadError(`ep.listen { prot = 1 }\n`), /unknown option 'prot'/);
  Deno.env.set("EP_PORT", "abc");
  try {
    assert.equal(
      await loadError(`ep.listen {}\n`),
      'main.lua:1: EP_PORT "abc" is not a port: an integer from 0 to 65535',
    );
  } finally {
    Deno.env.delete("EP_PORT");
  }
});

Deno.test("ep.config refuses a value below the key's least", async () => {
  assert.match(
    await loadError(`ep.config { max_queue = 0 }\n`),
    /max_queue must be at least 1; got 0/,
  );
  assert.match(await loadError(`ep.config { retries = -1 }\n`), /retries must be at least 0/);
  await withScript(`ep.config { retries = 0, grace_ms = 0 }\n`, {}, (c) => {
    assert.deepEqual(c.config.config, { retries: 0, grace_ms: 0 });
    return Promise.resolve();
  });
});

Deno.test("applyOverrides: the command line's values replace the script's; one that does not apply is noted", async () => {
  await withScript(
    `ep.listen { port = 7070 }\nep.threads(4)\nep.token("s")\n`,
    {},
    (c) => {
      const notes = applyOverrides(c.config, {
        port: 7071,
        host: "0.0.0.0",
        threads: 0,
        token: "t",
        connect: ["h:1"],
      });
      assert.deepEqual(c.config.listen, { port: 7071, hostname: "0.0.0.0" });
      assert.equal(c.config.threads, undefined);
      assert.equal(c.config.token, "t");
      assert.deepEqual(c.config.connect, []);
      assert.deepEqual(notes, ["--connect does not apply: the script does not call ep.connect"]);
      return Promise.resolve();
    },
  );
});

Deno.test("ep.service refuses slots or timeout_ms that are not whole numbers of at least 0", async () => {
  for (const bad of ["slots = -1", 'slots = "many"', "timeout_ms = 1.5"]) {
    assert.match(
      await loadError(`ep.service("s", "s.lua", { ${bad} })\n`),
      /^main\.lua:1: bad argument #3 to 'ep\.service' \((slots|timeout_ms) must be an integer of at least 0; got /,
    );
  }
});

Deno.test("ep.service records hedge = true (hedged after the service's p95) and hedge_ms (after that many ms; it implies hedge)", async () => {
  const script = `
ep.service("a", "a.lua", { hedge = true })
ep.service("b", "b.lua", { hedge_ms = 50, slots = 2 })
ep.service("c", "c.lua", { hedge = true, hedge_ms = 7 })
ep.service("d", "d.lua", { hedge = false })
ep.service("e", "e.lua")
`;
  await withScript(script, {}, (control) => {
    assert.deepEqual(
      control.config.services.map((s) => [s.name, s.hedge, s.hedgeMs, s.slots]),
      [["a", true, 0, 0], ["b", true, 50, 2], ["c", true, 7, 0], ["d", false, 0, 0], [
        "e",
        false,
        0,
        0,
      ]],
    );
    return Promise.resolve();
  });
});

Deno.test("ep.service refuses a hedge that is not a boolean, a hedge_ms that is not an integer from 1 to 4294967294, and hedge_ms with hedge = false", async () => {
  const cases: [string, RegExp][] = [
    [
      `ep.service("a", "a.lua", { hedge = "yes" })`,
      /main\.lua:1: bad argument #3 to 'ep\.service' \(boolean hedge expected, got string\)/,
    ],
    [
      `ep.service("a", "a.lua", { hedge_ms = 0 })`,
      /bad argument #3 to 'ep\.service' \(integer hedge_ms from 1 to 4294967294 expected, got 0\)/,
    ],
    [
      `ep.service("a", "a.lua", { hedge_ms = 1.5 })`,
      /\(integer hedge_ms from 1 to 4294967294 expected, got 1\.5\)/,
    ],
    [
      `ep.service("a", "a.lua", { hedge_ms = 4294967295 })`,
      /\(integer hedge_ms from 1 to 4294967294 expected, got 4294967295\)/,
    ],
    [
      `ep.service("a", "a.lua", { hedge_ms = "5" })`,
      /\(integer hedge_ms from 1 to 4294967294 expected, got 5\)/,
    ],
    [
      `ep.service("a", "a.lua", { hedge = false, hedge_ms = 5 })`,
      /main\.lua:1: bad argument #3 to 'ep\.service' \(hedge_ms given with hedge = false\)/,
    ],
  ];
  for (const [source, re] of cases) assert.match(await loadError(source), re, source);
});

Deno.test("ep.service { threads = { min =, max = }, target_wait_ms = } and ep.spawn record what scales, with defaults", async () => {
  const script = `
ep.listen { port = 0 }
ep.service("a", function() return "a" end, { threads = { min = 1, max = 8 }, target_wait_ms = 20 })
ep.service("b", function() return "b" end, { threads = { min = 2, max = 4 } })
ep.service("c", function() return "c" end)
ep.spawn { script = "worker.lua", max = 4 }
ep.spawn { script = "other.lua", min = 2, max = 3, target_wait_ms = 7.5 }
`;
  await withScript(script, {}, (control) => {
    const c = control.config;
    assert.deepEqual(c.services.map((s) => [s.name, s.threads, s.targetWaitMs]), [
      ["a", { min: 1, max: 8 }, 20],
      ["b", { min: 2, max: 4 }, 50],
      ["c", undefined, undefined],
    ]);
    assert.deepEqual(c.spawn, [
      { script: "worker.lua", min: 1, max: 4, targetWaitMs: 50 },
      { script: "other.lua", min: 2, max: 3, targetWaitMs: 7.5 },
    ]);
    return Promise.resolve();
  });
});

Deno.test("ep.service { slots = { min =, max = }, target_wait_ms = } records slots that scale; slots = n still records a fixed count", async () => {
  const script = `
ep.listen { port = 0 }
ep.service("a", function() return "a" end, { slots = { min = 2, max = 16 }, target_wait_ms = 20 })
ep.service("b", function() return "b" end, { slots = { min = 1, max = 4 } })
ep.service("c", function() return "c" end, { slots = 3 })
`;
  await withScript(script, {}, (control) => {
    const c = control.config;
    assert.deepEqual(
      c.services.map((s) => [s.name, s.slots, s.slotRange, s.threads, s.targetWaitMs]),
      [
        ["a", 0, { min: 2, max: 16 }, undefined, 20],
        ["b", 0, { min: 1, max: 4 }, undefined, 50],
        ["c", 3, undefined, undefined, undefined],
      ],
    );
    return Promise.resolve();
  });
});

Deno.test("ep.service slots = { min =, max = } refuses bad bounds, and scaling slots and threads in one script", async () => {
  const f = `function() end`;
  const cases: [string, string][] = [
    [
      `ep.service("a", ${f}, { slots = { min = 3, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (slots = n or slots = { min =, max = } expected with integers 1 <= min <= max <= 65535, got min = 3, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { slots = { min = 1.5, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (slots = n or slots = { min =, max = } expected with integers 1 <= min <= max <= 65535, got min = 1.5, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { slots = { min = 0, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (slots = n or slots = { min =, max = } expected with integers 1 <= min <= max <= 65535, got min = 0, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { slots = { max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (slots = n or slots = { min =, max = } expected with integers 1 <= min <= max <= 65535, got min = nil, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { slots = { min = 1, max = 2 }, threads = { min = 1, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (threads and slots cannot both scale: one of threads = { min =, max = } and slots = { min =, max = } per script)",
    ],
    [
      `ep.service("a", ${f}, { threads = { min = 1, max = 2 } })
ep.service("b", ${f}, { slots = { min = 1, max = 2 } })`,
      "main.lua:2: bad argument #3 to 'ep.service' (threads and slots cannot both scale: one of threads = { min =, max = } and slots = { min =, max = } per script)",
    ],
    [
      `ep.service("a", ${f}, { slots = { min = 1, max = 2 } })
ep.service("b", ${f}, { threads = { min = 1, max = 2 } })`,
      "main.lua:2: bad argument #3 to 'ep.service' (threads and slots cannot both scale: one of threads = { min =, max = } and slots = { min =, max = } per script)",
    ],
  ];
  for (const [source, expected] of cases) {
    assert.equal(await loadError(source), expected, source);
  }
});

Deno.test("ep.service threads and target_wait_ms, and ep.spawn, refuse bad values with a Lua error naming the argument and the value", async () => {
  const f = `function() end`;
  const cases: [string, string][] = [
    [
      `ep.service("a", ${f}, { threads = { min = 3, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (threads = { min =, max = } expected with integers 1 <= min <= max <= 1024, got min = 3, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { threads = 4 })`,
      "main.lua:1: bad argument #3 to 'ep.service' (threads = { min =, max = } expected with integers 1 <= min <= max <= 1024, got number)",
    ],
    [
      `ep.service("a", ${f}, { threads = { min = 0.5, max = 2 } })`,
      "main.lua:1: bad argument #3 to 'ep.service' (threads = { min =, max = } expected with integers 1 <= min <= max <= 1024, got min = 0.5, max = 2)",
    ],
    [
      `ep.service("a", ${f}, { target_wait_ms = 20 })`,
      "main.lua:1: bad argument #3 to 'ep.service' (target_wait_ms needs threads = { min =, max = } or slots = { min =, max = })",
    ],
    [
      `ep.service("a", ${f}, { threads = { min = 1, max = 2 }, target_wait_ms = -1 })`,
      "main.lua:1: bad argument #3 to 'ep.service' (target_wait_ms expected as a positive number of ms, got -1)",
    ],
    [
      `ep.spawn("worker.lua")`,
      "main.lua:1: bad argument #1 to 'ep.spawn' (table expected, got string)",
    ],
    [
      `ep.spawn { script = "w.lua", max = 2, maxx = 3 }`,
      "main.lua:1: bad argument #1 to 'ep.spawn' (unknown option 'maxx')",
    ],
    [
      `ep.spawn { max = 2 }`,
      "main.lua:1: bad argument #1 to 'ep.spawn' (script = file name expected, got nil)",
    ],
    [
      `ep.spawn { script = "w.lua" }`,
      "main.lua:1: bad argument #1 to 'ep.spawn' (min and max expected as integers 1 <= min <= max <= 256, got min = 1, max = nil)",
    ],
    [
      `ep.spawn { script = "w.lua", max = 2, target_wait_ms = "soon" }`,
      "main.lua:1: bad argument #1 to 'ep.spawn' (target_wait_ms expected as a positive number of ms, got string)",
    ],
  ];
  for (const [source, expected] of cases) {
    assert.equal(await loadError(source), expected, source);
  }
});
