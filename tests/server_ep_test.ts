import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { Raw, startServer, statusLines } from "./_server_helpers.ts";

const dec = new TextDecoder();

/** Decodes every frame in `bytes` (the server's output on a raw connection). */
function framesOf(bytes: Uint8Array): Frame[] {
  const out: Frame[] = [];
  const d = new EpDecoder({
    frame: (f) => out.push(structuredClone(f)),
    error: (e) => {
      throw e;
    },
  });
  d.push(bytes);
  return out;
}

const hello: Frame = {
  type: "hello",
  role: 1,
  minVersion: 1,
  maxVersion: 1,
  heartbeatMs: 0,
  name: "raw",
  token: "",
};

Deno.test("EP: the client gets replies, pipelined, matched by id", async () => {
  const server = startServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`);
  try {
    assert.equal(client.welcome?.version, 1);
    const replies = await Promise.all(
      Array.from({ length: 2000 }, (_, i) => client.request("echo", `m${i}`)),
    );
    replies.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(dec.decode(r.body), `m${i}`);
    });
    // A slow job does not hold up the ones behind it (answers may come out of order).
    const slow = client.request("sleep", "100");
    const fast = await client.request("hello");
    assert.equal(dec.decode(fast.body), "hello\n");
    assert.equal(dec.decode((await slow).body), "slept 100\n");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("EP: errors carry codes; timeouts reject and cancel", async () => {
  const server = startServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`);
  try {
    await assert.rejects(client.request("nothing"), (e: unknown) => {
      assert.ok(e instanceof JobError);
      assert.equal(e.code, ErrorCode.NO_SERVICE);
      assert.equal(e.message, 'No service "nothing"');
      return true;
    });
    const t0 = Date.now();
    await assert.rejects(client.request("sleep", "2000", { timeoutMs: 100 }), (e: unknown) => {
      assert.ok(e instanceof JobError && e.kind === "timeout");
      return true;
    });
    assert.ok(Date.now() - t0 < 1000);
    // The connection is still good after a cancelled request.
    assert.equal(dec.decode((await client.request("echo", "after")).body), "after");
    // An AbortSignal cancels: at once when already aborted, or mid-flight.
    await assert.rejects(
      client.request("echo", "x", { signal: AbortSignal.abort() }),
      (e: unknown) => e instanceof JobError && e.kind === "cancelled",
    );
    const ac = new AbortController();
    const mid = client.request("sleep", "2000", { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(mid, (e: unknown) => e instanceof JobError && e.kind === "cancelled");
    assert.equal(dec.decode((await client.request("echo", "again")).body), "again");
    assert.equal(client.inFlight, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("EP: a wrong token is refused with UNAUTHORIZED and a close", async () => {
  const server = startServer({ ep: { clientToken: "s3cret" } });
  try {
    await assert.rejects(
      connect(`127.0.0.1:${server.addr.port}`, { token: "wrong" }),
      (e: unknown) => e instanceof JobError && e.code === ErrorCode.UNAUTHORIZED,
    );
    const ok = await connect(`127.0.0.1:${server.addr.port}`, { token: "s3cret" });
    assert.equal(dec.decode((await ok.request("echo", "in")).body), "in");
    ok.close();
  } finally {
    await server.close();
  }
});

Deno.test("EP: malformed input gets a connection-level ERROR frame and a close", async () => {
  const server = startServer();
  const enc = new EpEncoder();
  try {
    // 1. A request before HELLO.
    let raw = await Raw.open(server.addr.port);
    await raw.send(encodePreface(1));
    await raw.send(
      enc.encode({
        type: "request",
        id: 1,
        deadlineMs: 0,
        priority: 0,
        attempt: 0,
        queueDepth: 0,
        service: "echo",
        meta: [],
        body: new Uint8Array(0),
      }).slice(),
    );
    let end = await raw.readToEnd();
    assert.ok(end.eof);
    let frames = framesOf(raw.bytes);
    assert.equal(frames.length, 1);
    assert.deepEqual(
      frames[0].type === "error" && [frames[0].id, frames[0].code],
      [0, ErrorCode.UNEXPECTED_FRAME],
    );
    raw.close();

    // 2. A frame header declaring 1 GiB: refused before any payload is sent.
    raw = await Raw.open(server.addr.port);
    await raw.send(encodePreface(1));
    await raw.send(enc.encode(hello).slice());
    await raw.send(new Uint8Array([0x40, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 1]));
    end = await raw.readToEnd();
    assert.ok(end.eof);
    frames = framesOf(raw.bytes);
    assert.equal(frames[0].type, "welcome");
    assert.deepEqual(
      frames[1].type === "error" && [frames[1].id, frames[1].code],
      [0, ErrorCode.FRAME_TOO_LARGE],
    );
    raw.close();

    // 3. Unsupported version range.
    raw = await Raw.open(server.addr.port);
    await raw.send(encodePreface(9));
    await raw.send(enc.encode({ ...hello, minVersion: 9, maxVersion: 9 }).slice());
    end = await raw.readToEnd();
    assert.ok(end.eof);
    frames = framesOf(raw.bytes);
    assert.equal(frames[0].type === "error" && frames[0].code, ErrorCode.UNSUPPORTED_VERSION);
    raw.close();
  } finally {
    await server.close();
  }
});

Deno.test("EP: a silent peer is dropped after three missed heartbeats", async () => {
  const server = startServer({ ep: { maxHeartbeatMs: 100 } });
  const enc = new EpEncoder();
  const raw = await Raw.open(server.addr.port);
  try {
    await raw.send(encodePreface(1));
    await raw.send(enc.encode({ ...hello, heartbeatMs: 100 }).slice());
    const t0 = Date.now();
    const end = await raw.readToEnd(3000);
    assert.ok(end.eof, "closed");
    assert.ok(Date.now() - t0 >= 250, "not before three intervals");
    const frames = framesOf(raw.bytes);
    assert.equal(frames[0].type, "welcome");
    assert.ok(frames.some((f) => f.type === "heartbeat"), "server beats while idle");
    const last = frames[frames.length - 1];
    assert.equal(last.type === "error" && last.code, ErrorCode.HEARTBEAT_TIMEOUT);
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("one port: HTTP and EP clients served at the same time", async () => {
  const server = startServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`);
  try {
    const work: Promise<string>[] = [];
    for (let i = 0; i < 50; i++) {
      work.push(client.request("echo", `ep${i}`).then((r) => dec.decode(r.body)));
      work.push(
        fetch(`${server.url}/echo`, { method: "POST", body: `http${i}` }).then((r) => r.text()),
      );
    }
    const got = await Promise.all(work);
    for (let i = 0; i < 50; i++) {
      assert.equal(got[2 * i], `ep${i}`);
      assert.equal(got[2 * i + 1], `http${i}`);
    }
    assert.equal(server.counters.connections.ep, 1);
    assert.ok(server.counters.connections.http >= 1);
    const stats = await client.stats();
    assert.equal(typeof stats, "object");
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("sniffer: TLS, HTTP/2, garbage and silence are refused and counted", async () => {
  const server = startServer({ sniffTimeoutMs: 300 });
  try {
    // TLS ClientHello start → a TLS alert, then close.
    let raw = await Raw.open(server.addr.port);
    await raw.send(new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x50, 0x01]));
    let end = await raw.readToEnd();
    assert.ok(end.eof);
    assert.deepEqual([...raw.bytes], [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]);
    raw.close();
    // HTTP/2 prior knowledge → GOAWAY(HTTP_1_1_REQUIRED); curl reports it and fails.
    const out = await new Deno.Command("curl", {
      args: ["-sS", "--http2-prior-knowledge", `${server.url}/hello`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.success, false);
    // Garbage → closed at once, nothing written.
    raw = await Raw.open(server.addr.port);
    await raw.send("\x00\x01garbage");
    end = await raw.readToEnd();
    assert.ok(end.eof);
    assert.equal(raw.bytes.length, 0);
    raw.close();
    // One byte at a time still works.
    raw = await Raw.open(server.addr.port);
    for (const ch of "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") {
      await raw.send(ch);
    }
    end = await raw.readToEnd();
    assert.deepEqual(statusLines(end.text), ["200"]);
    raw.close();
    // Silence → closed after the sniff timeout.
    raw = await Raw.open(server.addr.port);
    const t0 = Date.now();
    end = await raw.readToEnd(3000);
    assert.ok(end.eof && Date.now() - t0 >= 250);
    raw.close();
    assert.deepEqual(server.counters.sniffRejected, { tls: 1, h2: 1, unknown: 1, timeout: 1 });
  } finally {
    await server.close();
  }
});

Deno.test("EP: an invalid service name is answered BAD_REQUEST; the connection stays usable", async () => {
  const server = startServer();
  const enc = new EpEncoder();
  const raw = await Raw.open(server.addr.port);
  try {
    await raw.send(encodePreface(1));
    await raw.send(enc.encode(hello).slice());
    const bad = enc.encode({
      type: "request",
      id: 5,
      deadlineMs: 0,
      priority: 0,
      attempt: 0,
      queueDepth: 0,
      service: "echo",
      meta: [],
      body: new Uint8Array(0),
    }).slice();
    // Patch the service name "echo" → "ECHO" (valid UTF-8, invalid name) behind the encoder.
    const at = bad.indexOf(0x65); // 'e'
    bad.set(new TextEncoder().encode("ECHO"), at);
    await raw.send(bad);
    await raw.send(
      enc.encode({
        type: "request",
        id: 6,
        deadlineMs: 0,
        priority: 0,
        attempt: 0,
        queueDepth: 0,
        service: "echo",
        meta: [],
        body: new TextEncoder().encode("fine"),
      }).slice(),
    );
    await raw.readUntil(() => framesOfSafe(raw.bytes).length >= 3);
    const frames = framesOfSafe(raw.bytes);
    assert.equal(frames[1].type === "error" && frames[1].id, 5);
    assert.equal(frames[1].type === "error" && frames[1].code, ErrorCode.BAD_REQUEST);
    assert.equal(frames[2].type === "reply" && dec.decode(frames[2].body), "fine");
  } finally {
    raw.close();
    await server.close();
  }
});

function framesOfSafe(bytes: Uint8Array): Frame[] {
  try {
    return framesOf(bytes);
  } catch {
    return [];
  }
}
