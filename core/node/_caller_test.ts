import assert from "node:assert/strict";
import { Caller } from "./_caller.ts";
import { JobError } from "../errors.ts";
import type { PoolCall } from "../threads/pool_types.ts";
import { FakeEpServer } from "../../tests/_fake_ep_server.ts";

const call = (over: Partial<PoolCall> = {}): PoolCall => ({
  thread: 0,
  service: "svc",
  body: new TextEncoder().encode("x"),
  timeoutMs: 300,
  meta: [],
  ...over,
});

Deno.test("caller: a call to an upstream that accepts but never answers HELLO ends at the call's deadline as timeout", async () => {
  const fake = new FakeEpServer();
  fake.mute = true;
  const addr = fake.listen();
  const caller = new Caller(null, null, { far: { servers: [addr] } });
  try {
    const err = await caller.call(call({ upstream: "far" })).then(() => null, (e) => e);
    assert.ok(err instanceof JobError, `got ${err}`);
    assert.equal(err.kind, "timeout", err.message);
  } finally {
    caller.close();
    await fake.close();
  }
});
