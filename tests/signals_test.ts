/**
 * What a running ep does on each signal, for every way of running it (`ep balancer`,
 * `ep worker`, `ep run <script>`): SIGTERM (and SIGINT) drain, SIGHUP reloads service code
 * and never stops the process. A service manager (systemd, Docker) relies on both.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { balancer, Proc, waitStats, worker } from "./_cluster.ts";
import { Raw } from "./_server_helpers.ts";

const dec = new TextDecoder();
const MAIN_LUA = new URL("../scripts/main.lua", import.meta.url).pathname;

/** An EP client (role 1) or worker (role 2) over a raw socket, welcomed. */
async function rawEp(port: number, role: 1 | 2): Promise<Raw> {
  const raw = await Raw.open(port);
  const enc = new EpEncoder();
  await raw.send(encodePreface(1));
  await raw.send(
    enc.encode({
      type: "hello",
      role,
      minVersion: 1,
      maxVersion: 1,
      heartbeatMs: role === 2 ? 5_000 : 0,
      name: "raw",
      token: "",
    }).slice(),
  );
  if (role === 2) {
    await raw.send(enc.encode({ type: "register", slots: 1, services: ["other"] }).slice());
  }
  await raw.readUntil(() => raw.bytes.length > 0);
  return raw;
}

function framesOf(bytes: Uint8Array): Frame[] {
  const frames: Frame[] = [];
  new EpDecoder({ frame: (f) => void frames.push(f), error: () => {} }).push(bytes);
  return frames;
}

/** Starts `ep run scripts/main.lua` (all-in-one, Lua services) on a free port. */
async function allInOne(): Promise<{ proc: Proc; addr: string; port: number }> {
  const proc = new Proc(["run", MAIN_LUA], { EP_PORT: "0", EP_THREADS: "1" });
  const m = await proc.waitFor(/listening on [^:]+:(\d+)/);
  return { proc, addr: `127.0.0.1:${m[1]}`, port: Number(m[1]) };
}

for (const kind of ["ep balancer", "ep run scripts/main.lua"] as const) {
  Deno.test(`signals: SIGTERM drains ${kind}: a job in flight is answered, its EP clients are sent DRAIN, new connections are refused, exit 0`, async () => {
    const b = kind === "ep balancer" ? await balancer() : await allInOne();
    const w = kind === "ep balancer" ? worker([b.addr]) : null;
    try {
      if (w) await waitStats(b.addr, (s) => s.providers.length === 1);
      const client = await connect(b.addr, { reconnect: false });
      const watcher = await rawEp(b.port, 1);
      const rawWorker = await rawEp(b.port, 2);
      const slow = client.request("sleep", "1200", { timeoutMs: 10_000 }).then(
        (r) => r,
        (e) => e,
      );
      // An HTTP keep-alive request in flight too.
      const http = await Raw.open(b.port);
      await http.send("POST /sleep HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\n1000");
      await new Promise((r) => setTimeout(r, 300));
      b.proc.kill("SIGTERM");
      const reply = await slow;
      assert.ok(!(reply instanceof Error), `the job in flight failed: ${reply}`);
      assert.match(dec.decode(reply.body), /^(\d+|slept 1200\n)$/);
      const answered = await http.readToEnd(10_000);
      assert.match(answered.text, /^HTTP\/1\.1 200 /);
      assert.match(answered.text, /\r\nconnection: close\r\n/i);
      assert.ok(answered.eof, "closed after its answer");
      http.close();
      const end = await watcher.readToEnd(10_000);
      assert.ok(end.eof, "the idle client's connection was closed");
      const types = framesOf(watcher.bytes).map((f) => f.type);
      assert.deepEqual(types.filter((t) => t !== "heartbeat"), ["welcome", "drain"]);
      watcher.close();
      // A worker is told the balancer is going away (DRAIN) before its connection closes.
      const workerEnd = await rawWorker.readToEnd(10_000);
      assert.ok(workerEnd.eof);
      const toWorker = framesOf(rawWorker.bytes).map((f) => f.type);
      assert.equal(toWorker.filter((t) => t !== "heartbeat").at(-1), "drain", `${toWorker}`);
      rawWorker.close();
      await assert.rejects(connect(b.addr, { reconnect: false }), "no new connection");
      client.close();
      const status = await b.proc.exited;
      assert.equal(status.code, 0, b.proc.output);
      if (w) {
        // The real worker takes the close for a balancer going away, not for one lost.
        await w.waitFor(/Balancer \S+ went away/);
        assert.doesNotMatch(w.output, /Lost balancer/, w.output);
      }
    } finally {
      await b.proc.stop();
      await w?.stop();
    }
  });
}

Deno.test("signals: a second SIGTERM while draining stops at once", async () => {
  const b = await balancer();
  const w = worker([b.addr]);
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1);
    const client = await connect(b.addr, { reconnect: false });
    const slow = client.request("sleep", "8000", { timeoutMs: 20_000 }).then(() => null, (e) => e);
    await new Promise((r) => setTimeout(r, 300));
    b.proc.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 300));
    b.proc.kill("SIGTERM");
    const status = await b.proc.exited;
    // The drain would have waited for the 8 s job; the second signal cut it short.
    assert.ok((await slow) instanceof Error, "the job in flight was cut short");
    assert.equal(status.code, 0, b.proc.output);
    client.close();
  } finally {
    await b.proc.stop();
    await w.stop();
  }
});

for (const role of ["balancer", "worker"] as const) {
  Deno.test(`signals: SIGHUP does not stop ep ${role}; it keeps serving`, async () => {
    const b = await balancer();
    const w = worker([b.addr]);
    try {
      await waitStats(b.addr, (s) => s.providers.length === 1);
      const target = role === "balancer" ? b.proc : w;
      target.kill("SIGHUP");
      const outcome = await Promise.race([
        target.exited.then((st) => `exited (code ${st.code}, signal ${st.signal})`),
        target.waitFor(/reload/i).then(() => "reloading"),
      ]);
      assert.equal(outcome, "reloading", target.output);
      const client = await connect(b.addr);
      try {
        assert.equal((await client.request("sleep", "1")).status, 200);
      } finally {
        client.close();
      }
      await waitStats(b.addr, (s) => s.providers.length === 1);
      const exited = await Promise.race([
        target.exited.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 300)),
      ]);
      assert.equal(exited, false, `ep ${role} stopped on SIGHUP:\n${target.output}`);
    } finally {
      await b.proc.stop();
      await w.stop();
    }
  });
}
