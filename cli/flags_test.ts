import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import {
  CLIENT_FLAGS,
  HELP_FLAG,
  JSON_FLAG,
  parseHeaderArg,
  REQUEST_FLAGS,
  ROLE_FLAGS,
} from "./flags.ts";

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
  const groups = { HELP_FLAG, CLIENT_FLAGS, REQUEST_FLAGS, JSON_FLAG, ROLE_FLAGS };
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
