import assert from "node:assert/strict";
import { HttpConnection } from "./http_conn.ts";
import type { Job, JobResult } from "../job.ts";
import { memoryPair } from "./memory_transport.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

function collect(t: { written: Uint8Array[] }): string {
  return t.written.map((b) => dec.decode(b)).join("");
}

Deno.test("HTTP connection answers pipelined requests in order when handlers finish out of order", async () => {
  const [client, server] = memoryPair(1); // deliver one byte at a time
  const resolvers: ((r: JobResult) => void)[] = [];
  const conn = new HttpConnection(server, (job: Job) => {
    if (job.service === "slow") return new Promise((r) => resolvers.push(r));
    return { body: job.service };
  }, {});
  conn.start();
  client.start({ data: () => {}, end: () => {} });
  client.write(enc.encode(
    "GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\n\r\n",
  ));
  while (resolvers.length === 0) await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(server.written.length, 0, "the fast answer waits for the slow one");
  resolvers[0]({ body: "slow-done" });
  await new Promise((r) => setTimeout(r, 1));
  const out = collect(server);
  assert.ok(out.indexOf("slow-done") < out.indexOf("\r\n\r\nfast"), out);
  assert.equal(out.match(/HTTP\/1\.1 200/g)?.length, 2);
});

Deno.test("HTTP connection pauses reading past maxPipelined unanswered requests", async () => {
  const [client, server] = memoryPair();
  const pending: ((r: JobResult) => void)[] = [];
  const conn = new HttpConnection(server, () => new Promise((r) => pending.push(r)), {
    maxPipelined: 4,
  });
  conn.start();
  client.write(enc.encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\n".repeat(6)));
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(pending.length, 6);
  assert.ok(server.paused, "reading paused");
  for (const r of pending) r({ body: "ok" });
  await new Promise((r) => setTimeout(r, 1));
  assert.ok(!server.paused, "reading resumed");
  assert.equal(collect(server).match(/HTTP\/1\.1 200/g)?.length, 6);
});

Deno.test("HTTP connection turns a thrown handler error into 500 without leaking it", async () => {
  const [client, server] = memoryPair();
  const conn = new HttpConnection(server, () => {
    throw new Error("secret /etc/passwd detail");
  }, {});
  conn.start();
  client.write(enc.encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"));
  await new Promise((r) => setTimeout(r, 1));
  const out = collect(server);
  assert.match(out, /^HTTP\/1\.1 500 /);
  assert.ok(!out.includes("secret"), out);
  assert.match(out, /\r\n\r\nInternal error\n$/);
});

Deno.test("HTTP connection answers 500 when a handler returns a status HTTP cannot carry", async () => {
  const [client, server] = memoryPair();
  const conn = new HttpConnection(server, () => ({ status: 101, body: "x" }), {});
  conn.start();
  client.write(enc.encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n"));
  await new Promise((r) => setTimeout(r, 1));
  assert.equal(collect(server).match(/HTTP\/1\.1 500 /g)?.length, 2);
});

Deno.test("HTTP connection tells its watchers once when the client leaves with a request unanswered, and nobody when every request was answered", async () => {
  for (const unanswered of [true, false]) {
    const [client, server] = memoryPair();
    let told = 0;
    const conn: HttpConnection = new HttpConnection(server, (job: Job) => {
      job.origin!.watch!(() => told++);
      job.origin!.watch!(() => told++); // another listener: kept too
      return unanswered ? new Promise<JobResult>(() => {}) : { body: "ok" };
    }, {});
    conn.start();
    client.start({ data: () => {}, end: () => {} });
    client.write(enc.encode("GET /x HTTP/1.1\r\nHost: a\r\n\r\n"));
    await new Promise((r) => setTimeout(r, 1));
    assert.equal(told, 0, "nobody told while the client is there");
    client.close();
    await new Promise((r) => setTimeout(r, 1));
    assert.ok(conn.abandoned);
    assert.equal(told, unanswered ? 2 : 0, unanswered ? "each listener once" : "nobody waits");
  }
});
