/**
 * The EP client against a scripted server over real sockets: heartbeats judged both ways,
 * a server's DRAIN, a connection-level ERROR.
 */
import assert from "node:assert/strict";
import { connect, ConnectionClosedError } from "../core/net/client.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { FakeEpServer } from "./_fake_ep_server.ts";
import { startServer } from "./_server_helpers.ts";

Deno.test("client: a server silent for 3 heartbeat intervals is dead: ERROR heartbeat_timeout, requests in flight fail with ConnectionClosedError", async () => {
  // WELCOME agrees to 100 ms heartbeats, then the server never sends another byte.
  const fake = new FakeEpServer({ heartbeatMs: 100, onRequest: () => null });
  const addr = fake.listen();
  const client = await connect(addr, { heartbeatMs: 100 });
  try {
    const err = await client.request("svc", "x", { timeoutMs: 3_000 }).then(() => null, (e) => e);
    assert.ok(err instanceof ConnectionClosedError, `got ${err}`);
    const conn = fake.conns[0];
    await conn.until((fs) => fs.some((f) => f.type === "error"));
    const error = conn.frames.find((f) => f.type === "error");
    assert.ok(error?.type === "error" && error.id === 0);
    assert.equal(error.code, ErrorCode.HEARTBEAT_TIMEOUT);
    // Meanwhile the client beat every interval, numbered from 0 (SPEC.md §6.5).
    const seqs = conn.frames.flatMap((f) => f.type === "heartbeat" ? [f.seq] : []);
    assert.ok(seqs.length >= 2, `beats: ${seqs}`);
    assert.deepEqual(seqs, seqs.map((_, i) => i));
  } finally {
    client.close();
    await fake.close();
  }
});

Deno.test("client: after a server's DRAIN no new request goes on that connection; the ones in flight are answered", async () => {
  const fake = new FakeEpServer({
    onRequest: (conn, f) => {
      // The first request is answered after a DRAIN (in that order on the wire).
      if (conn.requests.length === 1 && conn === fake.conns[0]) {
        conn.send({ type: "drain", graceMs: 1_000 });
      }
      return [{ type: "reply", id: f.id, status: 200, freeSlots: 0, meta: [], body: f.body }];
    },
  });
  const addr = fake.listen();
  const client = await connect(addr);
  try {
    const first = await client.request("svc", "one");
    assert.equal(new TextDecoder().decode(first.body), "one");
    const second = await client.request("svc", "two");
    assert.equal(new TextDecoder().decode(second.body), "two");
    assert.equal(fake.conns[0].requests.length, 1, "nothing sent after the DRAIN");
    assert.equal(fake.last.requests.map((r) => new TextDecoder().decode(r.body)).join(), "two");
  } finally {
    client.close();
    await fake.close();
  }
});

Deno.test("client: a connection-level ERROR fails the requests in flight with ConnectionClosedError (its cause the server's error)", async () => {
  const fake = new FakeEpServer({
    onRequest: (conn) => {
      conn.send({ type: "error", id: 0, code: ErrorCode.LIMIT_EXCEEDED, message: "Go away" });
      conn.t.end();
      return null;
    },
  });
  const addr = fake.listen();
  const client = await connect(addr);
  try {
    const err = await client.request("svc", "x", { timeoutMs: 3_000 }).then(() => null, (e) => e);
    assert.ok(err instanceof ConnectionClosedError, `got ${err}`);
    assert.match(err.message, /Go away/);
  } finally {
    client.close();
    await fake.close();
  }
});

Deno.test("client: ep's server agrees to no heartbeat interval shorter than its tick (250 ms) can keep, so an idle client never takes it for dead", async () => {
  const server = startServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`, { heartbeatMs: 100 });
  try {
    const agreed = client.welcome!.heartbeatMs;
    assert.ok(agreed >= 500, `agreed ${agreed} ms`);
    // Idle for more than three agreed intervals: heartbeats alone keep the connection.
    await new Promise((r) => setTimeout(r, 3 * agreed + 300));
    assert.equal(client.connects, 1);
    assert.equal((await client.request("echo", "still")).status, 200);
  } finally {
    client.close();
    await server.close();
  }
});
