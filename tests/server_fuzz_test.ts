import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import { Raw, startServer } from "./_server_helpers.ts";
import { mulberry32 as prng, mutate as mutateWith } from "./fuzz/_mutate.ts";

const enc = new TextEncoder();
const epEnc = new EpEncoder();

function seeds(): Uint8Array[] {
  const ep = (...parts: Uint8Array[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };
  const hello = epEnc.encodeCopy({
    type: "hello",
    role: 1,
    minVersion: 1,
    maxVersion: 1,
    heartbeatMs: 0,
    name: "fuzz",
    token: "",
  });
  const request = epEnc.encodeCopy({
    type: "request",
    id: 1,
    deadlineMs: 500,
    priority: 0,
    attempt: 0,
    queueDepth: 0,
    service: "echo",
    meta: [["k", "v"]],
    body: enc.encode("body"),
  });
  return [
    enc.encode("GET /echo?x HTTP/1.1\r\nHost: a\r\n\r\n"),
    enc.encode("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd"),
    enc.encode(
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\n",
    ),
    enc.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x10]),
    ep(encodePreface(1), hello, request),
  ];
}

Deno.test("fuzz: mutated and random input over real sockets never hangs or hurts others", async () => {
  const server = startServer({
    sniffTimeoutMs: 300,
    http: { headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 },
    ep: { helloTimeoutMs: 300, idleTimeoutMs: 300 },
  });
  const witness = await connect(`127.0.0.1:${server.addr.port}`, { heartbeatMs: 100 });
  const rand = prng(Number(Deno.env.get("EP_FUZZ_SEED") ?? 20261126));
  const corpus = seeds();
  const cases = Number(Deno.env.get("EP_FUZZ_CASES") ?? 120);
  try {
    const batch = 20;
    for (let i = 0; i < cases; i += batch) {
      await Promise.all(Array.from({ length: batch }, async (_, j) => {
        const input = (i + j) % 5 === 4
          ? crypto.getRandomValues(new Uint8Array(1 + Math.floor(rand() * 64)))
          : mutateWith(rand, corpus[Math.floor(rand() * corpus.length)], { corpus });
        const raw = await Raw.open(server.addr.port);
        try {
          // Split at a random point to exercise reassembly.
          const cut = Math.floor(rand() * input.length);
          await raw.send(input.subarray(0, cut));
          await raw.send(input.subarray(cut));
          // Every connection ends: answered and closed, or closed by a timeout.
          const { eof } = await raw.readToEnd(3000);
          assert.ok(eof, `connection left open for input ${JSON.stringify([...input])}`);
        } catch (err) {
          if (
            !(err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe)
          ) {
            throw err;
          }
        } finally {
          raw.close();
        }
      }));
      // A well-behaved client is served between every batch.
      const reply = await witness.request("echo", `ok${i}`);
      assert.equal(new TextDecoder().decode(reply.body), `ok${i}`);
    }
    const deadline = Date.now() + 2000;
    while (server.counters.open > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(server.counters.open, 1, "only the witness connection is left open");
  } finally {
    witness.close();
    await server.close();
  }
});
