/**
 * Security promises: worker and client auth (constant-time token compare), limits on frame
 * size, services per worker and queued jobs, and no traceback, file path or internal
 * address in any error a client can see, over HTTP and EP. The non-loopback rules (workers
 * need a token; `/_ep/` is restricted) run with a client in a network namespace.
 *
 * Not here because ep has no such limit yet: connections per listener (see RELIABILITY.md).
 */
import assert from "node:assert/strict";
import { Balancer } from "../core/balancer/balancer.ts";
import type { Provider } from "../core/balancer/provider.ts";
import { workerHost } from "../core/balancer/worker_link.ts";
import { type Client, connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { startNode } from "../core/node/node.ts";
import { serve } from "../core/net/server.ts";
import { timingSafeEqualString } from "../core/net/_timing_safe.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { MAX_SERVICES } from "../protocol/ep_frames.ts";
import { Proc, waitStats } from "./_cluster.ts";
import { netnsUnavailable, NsProc, Topology } from "./_netns.ts";
import { EpPeer, isType } from "./fixtures/faults/_ep_peer.ts";
import { Raw, startServer, statusLines } from "./_server_helpers.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FAULT_SERVICES = new URL("./fixtures/faults/services.ts", import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A client-facing message: one line, no stack frame, no traceback, no file path (of the
 * repository, a temp dir, or any absolute path), no `host:port` of anything.
 */
function assertClean(message: string, what: string, extra: string[] = []): void {
  const ctx = `${what}: ${JSON.stringify(message)}`;
  assert.doesNotMatch(message, /[\r\n]./, `one line, ${ctx}`);
  assert.doesNotMatch(
    message,
    /^\s*at\s|\sat\s\S+:\d+:\d+|\(\S+:\d+:\d+\)/,
    `no stack frame, ${ctx}`,
  );
  assert.doesNotMatch(message, /traceback/i, `no traceback, ${ctx}`);
  assert.doesNotMatch(
    message,
    /file:\/\/|(?:^|[\s"'(])\/(?:work|tmp|home|root|usr|var|etc|proc)\b/,
    `no path, ${ctx}`,
  );
  assert.ok(!message.includes(REPO), `no repository path, ${ctx}`);
  assert.ok(!message.includes(Deno.cwd()), `no working directory, ${ctx}`);
  for (const s of extra) assert.ok(!message.includes(s), `no ${s}, ${ctx}`);
  assert.doesNotMatch(
    message,
    /\b\d{1,3}(?:\.\d{1,3}){3}:\d+|\[[0-9a-f:]+\]:\d+/i,
    `no address, ${ctx}`,
  );
}

Deno.test("security: token comparison is exact (equal, prefix, suffix, length, unicode)", () => {
  assert.ok(timingSafeEqualString("", ""));
  assert.ok(timingSafeEqualString("s3cret", "s3cret"));
  assert.ok(timingSafeEqualString("pässwörd", "pässwörd"));
  for (
    const [a, b] of [
      ["s3cret", "s3cres"],
      ["s3cret", "S3cret"],
      ["s3cret", "s3cre"],
      ["s3cret", "s3cret\0"],
      ["s3cret", ""],
      ["", "x"],
      ["pässwörd", "passwörd"],
      ["\u00e9", "e\u0301"],
    ]
  ) {
    assert.ok(!timingSafeEqualString(a, b), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    assert.ok(!timingSafeEqualString(b, a), `${JSON.stringify(b)} vs ${JSON.stringify(a)}`);
  }
  // Differing in the first or the last byte is judged the same way: every byte is visited.
  const t = "x".repeat(64);
  assert.ok(!timingSafeEqualString(t, "y" + t.slice(1)));
  assert.ok(!timingSafeEqualString(t, t.slice(1) + "y"));
});

Deno.test("security: worker and client tokens over EP: wrong ones refused (unauthorized, closed), right ones welcomed", async () => {
  const balancer = new Balancer({});
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), token: "w-s3cret", clientToken: "c-s3cret" },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  try {
    for (
      const [role, token, ok] of [
        [2, "wrong", false],
        [2, "", false],
        [2, "w-s3cret", true],
        [1, "c-s3cret-", false],
        [1, "w-s3cret", false],
        [1, "c-s3cret", true],
      ] as const
    ) {
      const peer = await EpPeer.open(addr);
      await peer.hello(role, token);
      if (role === 2) await peer.send({ type: "register", slots: 1, services: ["x"] });
      const first = await peer.waitFor((f): f is typeof f =>
        f.type === "welcome" || f.type === "error"
      );
      const what = `role ${role} token ${JSON.stringify(token)}`;
      if (ok) {
        assert.equal(first?.type, "welcome", what);
      } else {
        assert.ok(first && first.type === "error", what);
        assert.deepEqual([first.id, first.code], [0, ErrorCode.UNAUTHORIZED], what);
        assertClean(first.message, what, ["w-s3cret", "c-s3cret"]);
        assert.ok(await peer.waitEof(), `closed: ${what}`);
      }
      peer.close();
    }
    // The refused worker never became a provider; the welcomed one did, and left.
    assert.equal(balancer.stats().providers.length, 0);
  } finally {
    balancer.close();
    await server.close();
  }
});

Deno.test("security: frame size, services per worker: over the limit is refused before buffering, and closed", async () => {
  const balancer = new Balancer({});
  const server = serve({
    port: 0,
    handler: balancer.handler,
    ep: { workers: workerHost(balancer), maxPayload: 65_536 },
  });
  const addr = `127.0.0.1:${server.addr.port}`;
  try {
    // A REQUEST header declaring one byte over max_payload: refused at the header.
    let peer = await EpPeer.open(addr);
    await peer.hello(1);
    const header = new Uint8Array(12);
    new DataView(header.buffer).setUint32(0, 65_537);
    header[4] = 0x10;
    header[11] = 1;
    await peer.sendRaw(header);
    let err = await peer.waitFor(isType("error"));
    assert.deepEqual([err?.id, err?.code], [0, ErrorCode.FRAME_TOO_LARGE]);
    assertClean(err!.message, "frame_too_large");
    assert.ok(await peer.waitEof());
    peer.close();

    // Before HELLO the peer is a stranger: its first frame may not exceed 64 KiB
    // (SPEC.md §9.1), so 12 bytes cannot make the server reserve a large payload buffer.
    peer = await EpPeer.open(addr);
    const early = new Uint8Array(12);
    new DataView(early.buffer).setUint32(0, 16 << 20);
    early[4] = 0x01;
    await peer.sendRaw(early);
    err = await peer.waitFor(isType("error"));
    assert.deepEqual([err?.id, err?.code], [0, ErrorCode.FRAME_TOO_LARGE]);
    assert.ok(await peer.waitEof());
    peer.close();

    // REGISTER with MAX_SERVICES + 1 services (the encoder refuses to write it: raw bytes).
    peer = await EpPeer.open(addr);
    await peer.hello(2);
    const names = Array.from({ length: MAX_SERVICES + 1 }, (_, i) => `s${i}`);
    const parts = [new Uint8Array([0, 0, 0, 1, (names.length >> 8) & 0xff, names.length & 0xff])];
    for (const n of names) parts.push(new Uint8Array([n.length, ...enc.encode(n)]));
    const payload = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let o = 0;
    for (const p of parts) {
      payload.set(p, o);
      o += p.length;
    }
    const frame = new Uint8Array(12 + payload.length);
    new DataView(frame.buffer).setUint32(0, payload.length);
    frame[4] = 0x03;
    frame.set(payload, 12);
    await peer.sendRaw(frame);
    err = await peer.waitFor(isType("error"));
    assert.deepEqual([err?.id, err?.code], [0, ErrorCode.MALFORMED]);
    assert.match(err!.message, /256/);
    assert.ok(await peer.waitEof());
    peer.close();
    assert.equal(balancer.stats().providers.length, 0, "never registered");

    // Exactly MAX_SERVICES is fine.
    peer = await EpPeer.open(addr);
    await peer.hello(2);
    await peer.send({ type: "register", slots: 1, services: names.slice(0, MAX_SERVICES) });
    assert.equal((await peer.waitFor(isType("welcome")))?.type, "welcome");
    const deadline = Date.now() + 2_000;
    while (balancer.stats().providers.length === 0 && Date.now() < deadline) await sleep(10);
    assert.equal(balancer.stats().providers[0].services.length, MAX_SERVICES);
    peer.close();
  } finally {
    balancer.close();
    await server.close();
  }
});

Deno.test("security: after HELLO, frames up to max_payload pass, even pipelined in the same write", async () => {
  const server = startServer();
  const peer = await EpPeer.open(`127.0.0.1:${server.addr.port}`);
  try {
    const hello = peer.encode({
      type: "hello",
      role: 1,
      minVersion: 1,
      maxVersion: 1,
      heartbeatMs: 0,
      name: "big",
      token: "",
    });
    const body = new Uint8Array(200 << 10).fill(0x62);
    const request = peer.encode({
      type: "request",
      id: 1,
      deadlineMs: 5_000,
      priority: 0,
      attempt: 0,
      queueDepth: 0,
      service: "echo",
      meta: [],
      body,
    });
    const both = new Uint8Array(hello.length + request.length);
    both.set(hello);
    both.set(request, hello.length);
    await peer.sendRaw(both);
    const reply = await peer.waitFor(isType("reply"));
    assert.equal(reply?.body.length, body.length);
  } finally {
    peer.close();
    await server.close();
  }
});

Deno.test("security: a full queue refuses new jobs overloaded (EP and HTTP 503), and no more is buffered", async () => {
  const balancer = new Balancer({ maxQueue: 3 });
  // A provider that never has credit: jobs for "s" queue up.
  const stuck: Provider = {
    name: "stuck",
    services: new Set(["s"]),
    slots: 1,
    credit: 0,
    draining: false,
    dispatch() {},
    cancel() {},
  };
  balancer.addProvider(stuck);
  const server = serve({ port: 0, handler: balancer.handler });
  const addr = `127.0.0.1:${server.addr.port}`;
  const client = await connect(addr);
  try {
    const queued = [1, 2, 3].map(() =>
      client.request("s", "", { timeoutMs: 10_000 }).catch((e) => e)
    );
    await sleep(50);
    assert.equal(balancer.queueDepth("s"), 3);
    await assert.rejects(client.request("s"), (e: unknown) => {
      assert.ok(e instanceof JobError && e.kind === "overloaded", String(e));
      assertClean(e.message, "overloaded (EP)");
      return true;
    });
    const res = await fetch(`http://${addr}/s`);
    assert.equal(res.status, 503);
    assertClean((await res.text()).trim(), "overloaded (HTTP)");
    assert.equal(balancer.queueDepth("s"), 3, "the queue stays at its bound");
    balancer.close();
    for (const q of await Promise.all(queued)) assert.equal((q as JobError).kind, "shutting_down");
  } finally {
    client.close();
    balancer.close();
    await server.close();
  }
});

Deno.test("security: no traceback, file path or internal address in any error a client sees (HTTP and EP)", async () => {
  const node = await startNode({
    listen: { port: 0 },
    balancer: { retries: 0, maxQueue: 2, serviceGraceMs: 0 },
  });
  const addr = `127.0.0.1:${node.server!.addr.port}`;
  const url = `http://${addr}`;
  const w = new Proc([
    "worker",
    "--connect",
    addr,
    "--handlers",
    FAULT_SERVICES,
    "--threads",
    "1",
    "--concurrency",
    "1",
  ]);
  const dir = await Deno.makeTempDir({ prefix: "ep-security-" });
  await Deno.mkdir(`${dir}/services`);
  await Deno.writeTextFile(
    `${dir}/main.lua`,
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
ep.threads(1)
ep.service("inline", function() error("kaput") end)
ep.service("file", "services/file.lua")
ep.service("nilcall", "services/nilcall.lua")
ep.service("errtable", function() error({ code = 7 }) end)
`,
  );
  await Deno.writeTextFile(
    `${dir}/services/file.lua`,
    `return function() error("in a file") end\n`,
  );
  await Deno.writeTextFile(
    `${dir}/services/nilcall.lua`,
    `return function(req) local t = nil; return t.x + 1 end\n`,
  );
  const lua = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0" });
  const clients: Client[] = [];
  const seen: string[] = [];
  const extra = [dir];
  const check = (message: string, what: string) => {
    seen.push(what);
    assertClean(message, what, extra);
  };
  const epError = async (c: Client, what: string, svc: string, body = "", timeoutMs = 10_000) => {
    try {
      await c.request(svc, body, { timeoutMs });
      assert.fail(`${what}: expected an error`);
    } catch (e) {
      assert.ok(e instanceof JobError, `${what}: ${e}`);
      check(e.message, `${what} (EP ${e.kind})`);
      return e;
    }
  };
  const httpError = async (what: string, path: string, init?: RequestInit, base = url) => {
    const res = await fetch(`${base}${path}`, init);
    const text = await res.text();
    assert.ok(res.status >= 400, `${what}: status ${res.status}`);
    check(text.trim(), `${what} (HTTP ${res.status})`);
    return res.status;
  };
  try {
    await waitStats(addr, (s) => s.providers.length === 1, 20_000);
    const m = await lua.waitFor(/listening on [^:]+:(\d+)/, 20_000);
    const luaAddr = `127.0.0.1:${m[1]}`;
    const c = await connect(addr);
    clients.push(c);

    // Refusals before any handler runs.
    await epError(c, "bad service name", "no such name!");
    await epError(c, "no_service", "nothing-here");
    assert.equal(await httpError("no_service", "/nothing-here"), 503);
    assert.ok([404, 503].includes(await httpError("no ep endpoint", "/_ep/nothing")));
    // Handler errors, TypeScript.
    assert.equal((await epError(c, "TS throw", "fail")).kind, "handler_error");
    assert.equal((await epError(c, "TS TypeError", "typeerror")).kind, "handler_error");
    assert.equal(await httpError("TS throw", "/fail"), 500);
    assert.equal(await httpError("TS TypeError", "/typeerror"), 500);
    // A reply too large for the handler thread's ring.
    await epError(c, "reply too large", "big", "4096");
    // Timeouts, running and queued (one slot: the second waits behind the first).
    const running = epError(c, "timeout running", "sleep", "1500", 300);
    const queuedT = epError(c, "timeout queued", "sleep", "1", 200);
    assert.equal((await running).kind, "timeout");
    assert.equal((await queuedT).kind, "timeout");
    assert.equal(
      await httpError("timeout", "/sleep", {
        method: "POST",
        body: "1500",
        headers: { "ep-timeout": "200" },
      }),
      504,
    );
    // The slot is free again once the first job's handler (it ignores its signal) ends: the
    // balancer counts it until the worker answers (SPEC.md §9.6), and the worker answers
    // when that job's own slot is free, whatever the other timed-out jobs do.
    await waitStats(addr, (s) => s.providers.every((p) => p.busy === 0));
    // Overloaded: one running, one prefetched, two queued (max_queue 2), the rest refused.
    const hold = [1, 2, 3, 4, 5, 6].map(() =>
      c.request("sleep", "300", { timeoutMs: 10_000 }).catch(() => {})
    );
    await sleep(100);
    assert.equal((await epError(c, "overloaded", "sleep", "1")).kind, "overloaded");
    assert.equal(await httpError("overloaded", "/sleep", { method: "POST", body: "1" }), 503);
    await Promise.all(hold);
    // Worker lost (retries 0): kill -9 the worker while it holds the job.
    const lost = epError(c, "worker_lost", "sleep", "5000");
    await waitStats(addr, (s) => s.providers.some((p) => p.busy === 1));
    w.kill("SIGKILL");
    assert.equal((await lost).kind, "worker_lost");
    // Lua handler errors: inline, from a file, a runtime error, an error value that is a table.
    const cl = await connect(luaAddr);
    clients.push(cl);
    for (const svc of ["inline", "file", "nilcall", "errtable"]) {
      assert.equal((await epError(cl, `Lua ${svc}`, svc)).kind, "handler_error");
      assert.equal(await httpError(`Lua ${svc}`, `/${svc}`, undefined, `http://${luaAddr}`), 500);
    }
    assert.match(lua.output, /traceback/, "the traceback went to the log instead");
    // Bad framing: EP and HTTP.
    for (
      const [what, bytes] of [
        ["unknown frame type", new Uint8Array([0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 0, 0, 0])],
        ["frame too large", new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 0, 0, 0, 1])],
        ["nonzero flags", new Uint8Array([0, 0, 0, 4, 0x05, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])],
      ] as const
    ) {
      const peer = await EpPeer.open(addr);
      await peer.hello(1);
      await peer.sendRaw(bytes);
      const err = await peer.waitFor(isType("error"));
      assert.ok(err && err.id === 0, what);
      check(err.message, `EP ${what}`);
      peer.close();
    }
    const versions = await EpPeer.open(addr);
    await versions.sendRaw(versions.encode({
      type: "hello",
      role: 1,
      minVersion: 7,
      maxVersion: 9,
      heartbeatMs: 0,
      name: "v",
      token: "",
    }));
    const verr = await versions.waitFor(isType("error"));
    assert.equal(verr?.code, ErrorCode.UNSUPPORTED_VERSION);
    check(verr!.message, "EP unsupported version");
    versions.close();
    for (
      const req of [
        "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        `GET /${"a".repeat(9000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        "GET /echo HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
        "GET /echo HTTP/9.9\r\nHost: x\r\n\r\n",
      ]
    ) {
      const raw = await Raw.open(node.server!.addr.port);
      await raw.send(req);
      const { text } = await raw.readToEnd();
      raw.close();
      const [status] = statusLines(text);
      assert.ok(Number(status) >= 400, text);
      check(text.split("\r\n\r\n")[1]?.trim() ?? "", `HTTP parse error ${status}`);
    }
    assert.ok(seen.length >= 30, `${seen.length} errors checked`);
  } finally {
    for (const c of clients) c.close();
    await w.stop();
    await lua.stop();
    await node.close();
    await Deno.remove(dir, { recursive: true });
  }
});

const why = await netnsUnavailable();
if (why) console.warn(`security_test: namespace tests skipped: ${why}`);

Deno.test({
  name: "security: from another host, workers need a token and /_ep/ is restricted",
  ignore: why !== null,
  async fn() {
    const topo = await Topology.create(2, [{ name: "b", n: 1 }, { name: "c", n: 2 }]);
    const procs: NsProc[] = [];
    try {
      const b = topo.host("b");
      // No token: loopback workers only. Bound to every address of its host.
      const bal = new NsProc(b, ["balancer", "--host", "0.0.0.0", "--port", "7070"]);
      procs.push(bal);
      await bal.waitFor(/listening on/, 30_000);
      const remote = new NsProc(topo.host("c"), [
        "worker",
        "--connect",
        `${b.addr}:7070`,
        "--handlers",
        FAULT_SERVICES,
        "--threads",
        "1",
      ]);
      procs.push(remote);
      const refused = await remote.waitFor(/refused us: (.*)/, 30_000);
      assert.match(refused[1], /need a token/);
      assertClean(refused[1], "refusal of a remote worker");
      // The same worker over the balancer host's loopback is accepted.
      const local = new NsProc(b, [
        "worker",
        "--connect",
        "127.0.0.1:7070",
        "--handlers",
        FAULT_SERVICES,
        "--threads",
        "1",
      ]);
      procs.push(local);
      await local.waitFor(/Registered with balancer/, 30_000);

      // /_ep/: health for everyone; the page, stats and metrics only from loopback.
      const curl = async (host: string, target: string, token?: string) => {
        const auth = token ? ["-H", `Authorization: Bearer ${token}`] : [];
        const out = await new Deno.Command("ip", {
          args: [
            "netns",
            "exec",
            host,
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            ...auth,
            target,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        return Number(dec.decode(out.stdout));
      };
      const c = topo.host("c").ns;
      const fromRemote = (port: number, path: string, token?: string) =>
        curl(c, `http://${b.addr}:${port}${path}`, token);
      const fromLocal = (port: number, path: string, token?: string) =>
        curl(b.ns, `http://127.0.0.1:${port}${path}`, token);
      assert.equal(await fromRemote(7070, "/_ep/health"), 200);
      for (const path of ["/_ep/stats", "/_ep/metrics", "/_ep/"]) {
        assert.equal(await fromRemote(7070, path), 403, `${path} from another host`);
        assert.equal(await fromLocal(7070, path), 200, `${path} from loopback`);
      }
      // With a status token: required from everyone, loopback included.
      const tokened = new NsProc(b, [
        "balancer",
        "--host",
        "0.0.0.0",
        "--port",
        "7071",
        "--status-token",
        "st-s3cret",
      ]);
      procs.push(tokened);
      await tokened.waitFor(/listening on/, 30_000);
      assert.equal(await fromRemote(7071, "/_ep/health"), 200);
      for (const path of ["/_ep/stats", "/_ep/metrics"]) {
        assert.equal(await fromRemote(7071, path), 401, `${path} without the token`);
        assert.equal(await fromRemote(7071, path, "wrong"), 401, `${path} with a wrong token`);
        assert.equal(await fromLocal(7071, path), 401, `${path} from loopback without the token`);
        assert.equal(await fromRemote(7071, path, "st-s3cret"), 200, `${path} with the token`);
      }
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await topo.destroy();
    }
  },
});
