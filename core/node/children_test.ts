import assert from "node:assert/strict";
import { childCommand, EP_V8_FLAGS } from "./children.ts";

Deno.test("a child ep starts runs with ep's V8 flags, before the module", () => {
  const { command, args } = childCommand("/srv/worker.lua");
  assert.equal(command, Deno.execPath());
  const flag = args.indexOf(`--v8-flags=${EP_V8_FLAGS}`);
  const mod = args.findIndex((a) => a.endsWith("/mod.ts"));
  assert.ok(flag > 0 && mod > flag, args.join(" "));
  assert.deepEqual(args.slice(-2), ["run", "/srv/worker.lua"]);
});

Deno.test("every deno task that runs ep, and the compiled binary, use ep's V8 flags", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  for (const name of ["start", "balancer", "worker", "ep", "compile"]) {
    assert.ok(
      config.tasks[name].includes(`--v8-flags=${EP_V8_FLAGS}`),
      `deno task ${name}: ${config.tasks[name]}`,
    );
  }
});
