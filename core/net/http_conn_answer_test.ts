/**
 * The answer path of {@linkcode HttpConnection}: what a client sees when a handler's
 * response cannot be written as HTTP (a 500 with a one-line reason naming the fault, the
 * detail logged), and that nothing of the refused response reaches the wire.
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { HttpConnection } from "./http_conn.ts";
import type { JobResult } from "../job.ts";
import { memoryPair } from "./memory_transport.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

async function answer(res: JobResult): Promise<{ out: string; logs: string[] }> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { buffer: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["ep", "http"], lowestLevel: "debug", sinks: ["buffer"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: [] },
    ],
  });
  try {
    const [client, server] = memoryPair();
    new HttpConnection(server, () => res, {}).start();
    client.write(
      enc.encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"),
    );
    await new Promise((r) => setTimeout(r, 1));
    const out = server.written.map((b) => dec.decode(b)).join("");
    const logs = records.map((r) =>
      r.message.map((m) => m instanceof Error ? `${m.name}: ${m.message}` : String(m)).join("")
    );
    return { out, logs };
  } finally {
    await reset();
  }
}

Deno.test("HTTP connection answers 500 with a reason naming the fault when a handler's header cannot be written, and logs it", async () => {
  const cases: [JobResult, RegExp][] = [
    [{ headers: [["x", "a\r\nSet-Cookie: evil"]], body: "b" }, /header "x"/],
    [{ headers: [["x", "caf\u00e9 \u20ac"]], body: "b" }, /header "x"/],
    [{ headers: [["x\u00e9", "v"]], body: "b" }, /header name/],
    [{ headers: [["x", "\x7f"]] }, /header "x"/],
  ];
  for (const [res, what] of cases) {
    const { out, logs } = await answer(res);
    const bodies = [
      ...out.matchAll(/HTTP\/1\.1 500 Internal Server Error\r\n[^]*?\r\n\r\n(.*)\n/g),
    ];
    assert.equal(bodies.length, 2, out);
    for (const m of bodies) {
      assert.match(m[1], /^Invalid response from the handler: /, m[1]);
      assert.match(m[1], what);
    }
    assert.ok(!out.includes("Set-Cookie: evil\r\n"), out);
    assert.ok(logs.some((l) => what.test(l)), logs.join("\n"));
  }
});

Deno.test("HTTP connection answers 500 with a reason naming the status when a handler returns one HTTP cannot carry", async () => {
  for (const status of [0, 99, 101, 600, 999, 70000]) {
    const { out, logs } = await answer({ status, body: "x" });
    const m = /^HTTP\/1\.1 500 [^]*?\r\n\r\n(.*)\n/.exec(out);
    assert.ok(m, out);
    assert.equal(m[1], `Handler returned status ${status}; allowed 200–599`);
    assert.ok(logs.some((l) => l.includes(m[1])), logs.join("\n"));
  }
  const { out } = await answer({ status: 204, body: "x" });
  assert.match(
    out,
    /\r\n\r\nHandler returned a body with status 204; a 204 response has no body\n/,
  );
});
