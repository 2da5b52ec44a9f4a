import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  clientAddr,
  HELP_FLAG,
  JSON_FLAG,
  LOG_FLAGS,
  parseFlags,
  parseHeaderArg,
  REQUEST_FLAGS,
  ROLE_FLAGS,
  roleSettings,
  SETTINGS,
} from "./flags.ts";
import { UsageError } from "./errors.ts";

Deno.test("parseHeaderArg lower-cases the name and trims the value", () => {
  assert.deepEqual(parseHeaderArg("X-Trace: abc "), ["x-trace", "abc"]);
  assert.deepEqual(parseHeaderArg("a:b:c"), ["a", "b:c"]);
  assert.deepEqual(parseHeaderArg("x-empty:"), ["x-empty", ""]);
  assert.deepEqual(parseHeaderArg("x-tab:a\tb"), ["x-tab", "a\tb"]);
});

Deno.test("parseHeaderArg refuses a missing colon, a name that is not a token and control characters", () => {
  for (
    const bad of ["novalue", ":v", "x y:v", "x\r\ny:v", "x:a\r\nb", "x:a\nb", "x:a\0b", "x:\x7f"]
  ) {
    assert.throws(() => parseHeaderArg(bad), RangeError, JSON.stringify(bad));
  }
});

Deno.test("no flag is defined in two shared groups", () => {
  const seen = new Map<string, string>();
  const groups = {
    HELP_FLAG,
    CLIENT_FLAGS,
    REQUEST_FLAGS,
    JSON_FLAG,
    ADDRESS_FLAGS,
    LOG_FLAGS,
    ROLE_FLAGS,
  };
  for (const [group, flags] of Object.entries(groups)) {
    for (const name of Object.keys(flags)) {
      assert.equal(seen.get(name), undefined, `--${name} in ${seen.get(name)} and ${group}`);
      seen.set(name, group);
    }
  }
});

Deno.test("the shared groups combine in one parseArgs call", () => {
  const { values } = parseArgs({
    args: ["--addr", "h:1", "--header", "a:b", "--header", "c:d", "--http", "--json", "-h"],
    options: { ...CLIENT_FLAGS, ...REQUEST_FLAGS, ...JSON_FLAG, ...HELP_FLAG },
  });
  assert.equal(values.addr, "h:1");
  assert.deepEqual(values.header, ["a:b", "c:d"]);
  assert.equal(values.http, true);
  assert.equal(values.json, true);
  assert.equal(values.help, true);
});

Deno.test("parseFlags takes a negative number as a value and says every mistake in one line", () => {
  const options = { rate: { type: "string" }, json: { type: "boolean" } } as const;
  assert.equal(parseFlags(["--rate", "-5"], options).values.rate, "-5");
  assert.equal(parseFlags(["--rate", "-.5"], options).values.rate, "-.5");
  assert.deepEqual(parseFlags(["x", "--", "--rate"], options).positionals, ["x", "--rate"]);
  for (
    const [args, message] of [
      [["--bogus"], 'Unknown option "--bogus"'],
      [["-x"], 'Unknown option "-x"'],
      [["--rate"], "Option --rate needs a value"],
      [["--rate", "--json"], "Option --rate needs a value"],
      [
        ["--rate", "-abc"],
        'Option --rate needs a value (a value that starts with "-" is written --rate=-abc)',
      ],
      [["--json=1"], "Option --json takes no value"],
    ] as const
  ) {
    assert.throws(() => parseFlags([...args], options), (err: Error) => {
      assert.ok(err instanceof UsageError, args.join(" "));
      assert.equal(err.message, message);
      return true;
    });
  }
  assert.throws(
    () => parseFlags(["x"], options, false),
    (err: Error) => err instanceof UsageError && err.message === 'Unexpected argument "x"',
  );
});

Deno.test("a setting's flag beats its environment variable, which beats the default", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  const none = env({});
  assert.equal(roleSettings({}, none).settings.port, 7070);
  assert.equal(roleSettings({}, env({ EP_PORT: "7071" })).settings.port, 7071);
  assert.equal(roleSettings({ port: "7072" }, env({ EP_PORT: "7071" })).settings.port, 7072);
  assert.deepEqual(roleSettings({}, env({ EP_CONNECT: "a:1, b:2" })).settings.connect, [
    "a:1",
    "b:2",
  ]);
  assert.equal(roleSettings({}, env({ EP_THREADS: "0" })).settings.threads, undefined);
  assert.equal(roleSettings({ threads: "3" }, env({ EP_THREADS: "0" })).settings.threads, 3);
  assert.equal(roleSettings({}, env({ EP_LOG_JSON: "1" })).settings.logJson, true);
  assert.equal(roleSettings({ "log-json": true }, none).settings.logJson, true);
  assert.equal(roleSettings({}, env({ EP_LOG_LEVEL: "debug" })).settings.logLevel, "debug");
  // What the command line gave, for the control script to be overridden with.
  assert.deepEqual(roleSettings({ port: "1", threads: "0" }, none).settings.given, {
    port: 1,
    threads: true,
  });
  // The client commands: --addr, --host/--port, EP_ADDR, EP_HOST/EP_PORT, the default.
  assert.equal(clientAddr({}, none), "127.0.0.1:7070");
  assert.equal(clientAddr({}, env({ EP_PORT: "1" })), "127.0.0.1:1");
  assert.equal(clientAddr({}, env({ EP_HOST: "0.0.0.0", EP_PORT: "1" })), "127.0.0.1:1");
  assert.equal(clientAddr({}, env({ EP_HOST: "::" })), "[::1]:7070");
  assert.equal(clientAddr({}, env({ EP_ADDR: "h:2", EP_PORT: "1" })), "h:2");
  assert.equal(clientAddr({ port: "3" }, env({ EP_ADDR: "h:2" })), "127.0.0.1:3");
  assert.equal(clientAddr({ addr: "x:4", port: "3" }, env({ EP_ADDR: "h:2" })), "x:4");
});

Deno.test("every environment variable ep reads is a documented setting", async () => {
  const documented = new Set(SETTINGS.map((s) => s.env));
  const read = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/\.(ts|lua)$/.test(e.name) && !/_test\.ts$/.test(e.name)) {
        const text = (await Deno.readTextFile(path)).split("\n")
          .filter((l) => !/^\s*(\*|\/\/|--)/.test(l)).join("\n");
        for (const m of text.matchAll(/\w*(?:env|Env)\w*(?:\.get)?\(\s*"(EP_[A-Z0-9_]+)"/g)) {
          read.set(m[1], path);
        }
      }
    }
  };
  const root = new URL("..", import.meta.url).pathname;
  for (const dir of ["cli", "core", "lua", "scripts"]) await walk(`${root}${dir}`);
  assert.ok(read.size >= 5, `found ${[...read.keys()]}`);
  for (const [name, path] of read) assert.ok(documented.has(name), `${name} (${path})`);
});
