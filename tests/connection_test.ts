/**
 * Connection-level behaviour over real sockets: big replies reach a prompt client, timers
 * that judge a peer do not count the time ep itself was not reading, and the EP preface is
 * answered as SPEC.md §3 says.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import type { Job, JobResult } from "../core/job.ts";
import { serve, type ServeOptions } from "../core/net/server.ts";
import { newTransportCounters, TcpTransport } from "../core/net/transport.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { Raw, startServer, statusLines } from "./_server_helpers.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();
const MiB = 1 << 20;

/** The byte at offset `i` of a {@linkcode patterned} body. */
const at = (i: number) => (i * 7 + 13 + (i >>> 16)) & 0xff;

/** `n` bytes that differ from any shifted or truncated copy of themselves. */
function patterned(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = at(i);
  return b;
}

/** Whether `b` is exactly {@linkcode patterned}(n). */
function intact(b: Uint8Array, n: number): boolean {
  if (b.length !== n) return false;
  for (let i = 0; i < n; i++) if (b[i] !== at(i)) return false;
  return true;
}

/** `bytes`: replies with as many patterned bytes as the body (EP) or `?n=` (HTTP) says. */
function bigServer(options: Partial<ServeOptions> = {}) {
  const handler = (job: Job): JobResult => {
    const n = Number(new URLSearchParams(job.query).get("n") ?? dec.decode(job.body));
    return { body: patterned(n) };
  };
  return serve({ port: 0, handler, ...options });
}

/** Reads one HTTP/1.1 response with a Content-Length from `conn`, keeping the leftover. */
class HttpReader {
  #chunks: Uint8Array[] = [];
  #len = 0;
  constructor(readonly conn: Deno.Conn) {}

  async #fill(need: number): Promise<void> {
    while (this.#len < need) {
      const buf = new Uint8Array(1 << 20);
      const n = await this.conn.read(buf);
      if (n === null) throw new Error(`EOF after ${this.#len} bytes, wanted ${need}`);
      this.#chunks.push(buf.subarray(0, n));
      this.#len += n;
    }
  }

  #take(n: number): Uint8Array {
    const all = new Uint8Array(this.#len);
    let off = 0;
    for (const c of this.#chunks) {
      all.set(c, off);
      off += c.length;
    }
    this.#chunks = [all.subarray(n)];
    this.#len -= n;
    return all.subarray(0, n);
  }

  async response(): Promise<{ status: number; body: Uint8Array }> {
    let headEnd = -1;
    while (headEnd < 0) {
      await this.#fill(this.#len + 1);
      const all = this.#take(this.#len);
      this.#chunks = [all];
      this.#len = all.length;
      // The head is ASCII: latin1 keeps one character per byte.
      headEnd = new TextDecoder("latin1").decode(all).indexOf("\r\n\r\n");
    }
    const head = dec.decode(this.#take(headEnd + 4));
    const status = Number(head.slice(9, 12));
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1]);
    await this.#fill(length);
    return { status, body: this.#take(length) };
  }
}

const BIG = [12 * MiB, 16 * MiB - 100];

Deno.test("EP: replies of 12 MiB and 16 MiB - 100 bytes reach a prompt client intact, one by one and pipelined", async () => {
  const server = bigServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`, { timeoutMs: 20_000 });
  try {
    for (const n of BIG) {
      const r = await client.request("bytes", String(n));
      assert.equal(r.status, 200);
      assert.ok(intact(r.body, n), `a reply of ${n} bytes arrives intact (${r.body.length})`);
    }
    // Pipelined, with small replies between the big ones: all of it comes out at once.
    const sizes = [BIG[0], ...Array(200).fill(1024), BIG[1]];
    const all = await Promise.all(sizes.map((n) => client.request("bytes", String(n))));
    all.forEach((r, i) => assert.ok(intact(r.body, sizes[i]), `pipelined reply ${i} intact`));
    assert.equal(server.counters.transport.stuckClosed, 0);
  } finally {
    client.close();
    await server.close();
  }
});

Deno.test("HTTP: replies of 12 MiB and 16 MiB - 100 bytes reach a prompt client intact, one by one and pipelined", async () => {
  const server = bigServer();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  const reader = new HttpReader(conn);
  const get = (n: number) => `GET /bytes?n=${n} HTTP/1.1\r\nHost: x\r\n\r\n`;
  try {
    for (const n of BIG) {
      await conn.write(enc.encode(get(n)));
      const r = await reader.response();
      assert.equal(r.status, 200);
      assert.ok(intact(r.body, n), `a response of ${n} bytes arrives intact (${r.body.length})`);
    }
    await conn.write(enc.encode(BIG.map(get).join("")));
    for (const n of BIG) assert.ok(intact((await reader.response()).body, n));
    assert.equal(server.counters.transport.stuckClosed, 0);
  } finally {
    conn.close();
    await server.close();
  }
});

Deno.test("transport: a peer that lets output pile up is still cut once the unread backlog passes maxBuffered", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const accepted = await listener.accept();
  const counters = newTransportCounters();
  const t = new TcpTransport(accepted, {
    limits: { highWater: 64 << 10, maxBuffered: 4 * MiB, stuckTimeoutMs: 60_000 },
    counters,
  });
  let ended: Error | undefined;
  t.start({ data: () => {}, end: (e) => ended = e });
  try {
    // One write far over both limits is taken: the peer had nothing unread before it.
    t.write(new Uint8Array(16 * MiB));
    assert.equal(t.closed, false, "a big write to a peer that kept up is accepted");
    // The peer never reads: what piles up behind is its backlog, 3 MiB here...
    for (let i = 0; i < 3; i++) t.write(new Uint8Array(MiB));
    assert.equal(t.closed, false, "a backlog under maxBuffered is kept");
    // ...and one more whole reply still fits behind it: the write is not the peer's fault.
    t.write(new Uint8Array(16 * MiB));
    assert.equal(t.closed, false, "one reply always fits");
    // Now the peer has left more than maxBuffered unread: the next write closes.
    t.write(new Uint8Array(1));
    assert.equal(t.closed, true, "closed once the unread backlog passes maxBuffered");
    assert.equal(ended?.name, "SlowPeerError");
    assert.equal(counters.stuckClosed, 1);
  } finally {
    t.close();
    peer.close();
    listener.close();
  }
});

Deno.test("transport: a peer that takes a big reply slowly but steadily is not cut as stuck", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peer = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const counters = newTransportCounters();
  const t = new TcpTransport(await listener.accept(), {
    limits: { highWater: 64 << 10, stuckTimeoutMs: 300 },
    counters,
  });
  t.start({ data: () => {}, end: () => {} });
  try {
    // 32 MiB read 1 MiB every 40 ms: over highWater for about a second, never idle for
    // as long as the stuck timeout.
    t.write(new Uint8Array(32 * MiB));
    const buf = new Uint8Array(MiB);
    let got = 0;
    while (got < 32 * MiB) {
      let chunk = 0;
      while (chunk < MiB) {
        const n = await peer.read(buf.subarray(0, MiB - chunk));
        if (n === null) throw new Error(`EOF after ${got + chunk} bytes`);
        chunk += n;
      }
      got += chunk;
      await new Promise((r) => setTimeout(r, 40));
    }
    assert.equal(t.closed, false);
    assert.equal(counters.stuckClosed, 0);
  } finally {
    t.close();
    peer.close();
    listener.close();
  }
});

Deno.test("transport: its reading clock stops while output backpressure pauses reading", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peerConn = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const t = new TcpTransport(await listener.accept(), {
    limits: { highWater: 64 << 10, stuckTimeoutMs: 60_000 },
  });
  t.start({ data: () => {}, end: () => {} });
  try {
    const t0 = Date.now();
    // Far more than the kernel's buffers take while the peer does not read: paused.
    t.write(new Uint8Array(32 * MiB));
    await new Promise((r) => setTimeout(r, 300));
    const whilePaused = t.readingMs(Date.now());
    assert.ok(t.buffered > 64 << 10, "still over highWater");
    assert.ok(whilePaused < 150, `clock ran ${whilePaused} ms of ${Date.now() - t0} while paused`);
    // The peer reads everything: ep reads again and the clock runs.
    const buf = new Uint8Array(MiB);
    let got = 0;
    while (got < 32 * MiB) got += (await peerConn.read(buf)) ?? Infinity;
    await new Promise((r) => setTimeout(r, 300));
    const after = t.readingMs(Date.now());
    assert.ok(after - whilePaused >= 250, `clock ran ${after - whilePaused} ms while reading`);
  } finally {
    t.close();
    peerConn.close();
    listener.close();
  }
});

Deno.test("HTTP: pipelined requests are not timed out while ep itself holds reading (maxPipelined)", async () => {
  // Read 512 bytes at a time: a request straddles every read; ep pauses after 4 waiting
  // answers, and the services take longer than the head timeout.
  const server = startServer({
    http: { headersTimeoutMs: 200, requestTimeoutMs: 400, maxPipelined: 4 },
    transport: { readBufferSize: 512 },
  });
  const raw = await Raw.open(server.addr.port);
  try {
    const req = "GET /sleep?ms=700 HTTP/1.1\r\nHost: x\r\n\r\n";
    const n = 20;
    await raw.send(req.repeat(n - 1) + req.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
    const { text, eof } = await raw.readToEnd(15_000);
    assert.deepEqual(statusLines(text), Array(n).fill("200"), text.slice(0, 300));
    assert.ok(eof);
    assert.equal(server.counters.http.rejected, 0);
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("EP: a client with more jobs in flight than maxInFlight keeps beating and is not dropped", async () => {
  const server = startServer({ ep: { maxInFlight: 4 } });
  // Heartbeats every 500 ms (the least a server agrees to): three missed intervals are
  // 1.5 s, less than one job.
  const client = await connect(`127.0.0.1:${server.addr.port}`, { heartbeatMs: 500 });
  try {
    assert.equal(client.welcome?.heartbeatMs, 500);
    const replies = await Promise.all(
      Array.from({ length: 6 }, () => client.request("sleep", "1700", { timeoutMs: 20_000 })),
    );
    for (const r of replies) assert.equal(dec.decode(r.body), "slept 1700\n");
  } finally {
    client.close();
    await server.close();
  }
});

/** Decodes every frame the server sent on `raw`. */
function framesOf(bytes: Uint8Array): Frame[] {
  const out: Frame[] = [];
  new EpDecoder({
    frame: (f) => out.push(structuredClone(f)),
    error: (e) => {
      throw e;
    },
  }).push(bytes);
  return out;
}

Deno.test("EP: preface version 0 is answered ERROR unsupported_version (id 0) and a close, also one byte at a time", async () => {
  const server = startServer();
  const hello = new EpEncoder().encode({
    type: "hello",
    role: 1,
    minVersion: 1,
    maxVersion: 1,
    heartbeatMs: 0,
    name: "v0",
    token: "",
  }).slice();
  try {
    for (const bytewise of [false, true]) {
      const raw = await Raw.open(server.addr.port);
      const preface = [0xeb, 0x45, 0x50, 0x00];
      if (bytewise) {
        for (const b of preface) {
          await raw.send(new Uint8Array([b]));
          await new Promise((r) => setTimeout(r, 20));
        }
      } else {
        await raw.send(new Uint8Array(preface));
      }
      await raw.send(hello).catch(() => {});
      const { eof } = await raw.readToEnd(3000);
      raw.close();
      assert.ok(eof, "closed");
      const frames = framesOf(raw.bytes);
      assert.equal(frames.length, 1, JSON.stringify(frames));
      const f = frames[0];
      assert.ok(f.type === "error", `got ${f.type}`);
      assert.equal(f.id, 0);
      assert.equal(f.code, ErrorCode.UNSUPPORTED_VERSION);
      assert.match(f.message, /version "?0"?/);
    }
  } finally {
    await server.close();
  }
});

Deno.test("client: a request of 12 MiB leaves a client whose server reads promptly", async () => {
  const server = startServer();
  const client = await connect(`127.0.0.1:${server.addr.port}`, { timeoutMs: 20_000 });
  try {
    const body = patterned(12 * MiB);
    const r = await client.request("echo", body);
    assert.ok(intact(r.body, 12 * MiB));
  } finally {
    client.close();
    await server.close();
  }
});
