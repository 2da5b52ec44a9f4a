/**
 * Text cut or carried to fit a wire limit: a cut never splits a UTF-16 surrogate pair
 * (EP strings must be valid UTF-8, so a lone surrogate made an ERROR unencodable and the
 * exception escaped the read loop), and a message is bounded in bytes and kept on one line
 * before it goes into an EP ERROR frame.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { Proc, waitStats } from "./_cluster.ts";
import { Raw, startServer } from "./_server_helpers.ts";

const enc = new TextEncoder();

/** A REQUEST frame whose service field holds `service` as is (any bytes, any length). */
function requestFrame(id: number, service: Uint8Array): Uint8Array {
  const payload = 12 + 1 + service.length + 2; // fixed fields, str8, an empty meta
  const f = new Uint8Array(12 + payload);
  const v = new DataView(f.buffer);
  v.setUint32(0, payload);
  f[4] = 0x10; // REQUEST
  v.setUint32(8, id);
  f[24] = service.length;
  f.set(service, 25);
  return f;
}

Deno.test("EP: an invalid service name cut for its error message keeps surrogate pairs whole; the server answers BAD_REQUEST and stays up", async () => {
  const server = startServer();
  const raw = await Raw.open(server.addr.port);
  try {
    await raw.send(encodePreface(1));
    await raw.send(
      new EpEncoder().encode({
        type: "hello",
        role: 1,
        minVersion: 1,
        maxVersion: 1,
        heartbeatMs: 0,
        name: "raw",
        token: "",
      }).slice(),
    );
    // Valid UTF-8, not a service name; the emoji straddles every cut point near 64 units.
    for (let k = 55; k <= 70; k++) {
      await raw.send(requestFrame(k, enc.encode("a".repeat(k) + "\u{1f600}b")));
    }
    let frames: Frame[] = [];
    await raw.readUntil(() => {
      frames = [];
      new EpDecoder({ frame: (f) => frames.push(structuredClone(f)), error: () => {} })
        .push(raw.bytes);
      return frames.filter((f) => f.type === "error").length === 16;
    });
    const errors = frames.filter((f) => f.type === "error");
    assert.equal(errors.length, 16, JSON.stringify(frames));
    for (const err of errors) {
      assert.ok(err.type === "error");
      assert.equal(err.code, ErrorCode.BAD_REQUEST);
      assert.ok(err.message.isWellFormed(), JSON.stringify(err.message));
      assert.match(err.message, /^Invalid service name "a{55}/);
    }
    // Still serving.
    const client = await connect(`127.0.0.1:${server.addr.port}`);
    assert.equal((await client.request("echo", "up")).status, 200);
    client.close();
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("EP worker: a handler error message too long or with a CR for an ERROR frame reaches the client as a one-line handler_error", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/main.lua`,
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }\n`,
  );
  await Deno.writeTextFile(
    `${dir}/worker.lua`,
    `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("long", "long.lua")
ep.service("cr", "cr.lua")
ep.service("wide", "wide.lua")
`,
  );
  await Deno.writeTextFile(
    `${dir}/long.lua`,
    `return function() error(string.rep("x", 3000), 0) end`,
  );
  await Deno.writeTextFile(`${dir}/cr.lua`, `return function() error("before\\rafter", 0) end`);
  // 400 three-byte characters: 400 UTF-16 units, 1200 bytes (over ERROR's 1024).
  await Deno.writeTextFile(
    `${dir}/wide.lua`,
    `return function() error(string.rep("\u20ac", 400), 0) end`,
  );
  const b = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
  let w: Proc | null = null;
  try {
    const m = await b.waitFor(/listening on [^:]+:(\d+)/, 30_000);
    const addr = `127.0.0.1:${m[1]}`;
    w = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: addr });
    await waitStats(addr, (s) => s.providers.length === 1, 30_000);
    const client = await connect(addr);
    try {
      for (const service of ["long", "cr", "wide"]) {
        await assert.rejects(client.request(service, "", { timeoutMs: 5_000 }), (e: unknown) => {
          assert.ok(e instanceof JobError, String(e));
          assert.equal(e.kind, "handler_error", `${service}: ${e.message}`);
          assert.ok(!/[\r\n]/.test(e.message) && enc.encode(e.message).length <= 1024);
          return true;
        });
      }
    } finally {
      client.close();
    }
  } finally {
    await w?.stop();
    await b.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
