import assert from "node:assert/strict";
import { isLoopback } from "./access.ts";

Deno.test("isLoopback knows IPv4, IPv6 and mapped loopback addresses", () => {
  assert.ok(isLoopback("127.0.0.1:1"));
  assert.ok(isLoopback("127.8.9.10:1"));
  assert.ok(isLoopback("[::1]:1"));
  assert.ok(isLoopback("[::ffff:127.0.0.1]:1"));
  assert.ok(!isLoopback("[::10]:1"));
  assert.ok(!isLoopback("1.127.0.0:1"));
  assert.ok(!isLoopback("10.0.0.1:1"));
});
