/**
 * One access rule for ep's status data, whichever way it is asked for: HTTP `/_ep/stats`
 * (and the page and metrics) and EP `STATS_REQUEST` answer the same peers, over real
 * sockets. A peer on another host is a real connection over a non-loopback address of this
 * machine when it has one, and an in-memory transport with a foreign address otherwise.
 */
import assert from "node:assert/strict";
import { Balancer } from "../core/balancer/balancer.ts";
import { EpConnection } from "../core/net/ep_conn.ts";
import type { Job } from "../core/job.ts";
import { MemoryTransport } from "../core/net/memory_transport.ts";
import { type Node, startNode } from "../core/node/node.ts";
import { type AccessOptions, Monitor } from "../core/observe/monitor.ts";
import { statusMain } from "../cli/status.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { EpPeer, isType } from "./fixtures/faults/_ep_peer.ts";
import { mulberry32, pick } from "./fuzz/_mutate.ts";

/** An IPv4 address of this machine that is not loopback, or null. */
function foreignAddress(): string | null {
  for (const i of Deno.networkInterfaces()) {
    if (i.family === "IPv4" && !i.address.startsWith("127.")) return i.address;
  }
  return null;
}

const FOREIGN = foreignAddress();

async function balancerNode(access: AccessOptions, hostname = "127.0.0.1"): Promise<Node> {
  return await startNode({ listen: { port: 0, hostname }, observe: { access } });
}

/** HTTP status of GET `path` from `host` (the source address is `host` too). */
async function httpStatus(host: string, port: number, path: string, token?: string) {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`http://${host}:${port}${path}`, { headers });
  await res.body?.cancel();
  return res.status;
}

/**
 * What EP STATS_REQUEST gets, asked twice on one connection with `token` in HELLO, then a
 * REQUEST on the same connection: `stats` or the ERROR code, and whether the connection
 * was still serving afterwards.
 */
async function epStats(host: string, port: number, token: string) {
  const peer = await EpPeer.open(`${host}:${port}`);
  try {
    await peer.hello(1, token, "stats-reader");
    const answers: (string | number)[] = [];
    for (const id of [7, 8]) {
      await peer.send({ type: "statsRequest", id });
      const f = await peer.waitFor(
        (f): f is Frame => (f.type === "stats" || f.type === "error") && f.id === id,
      );
      assert.ok(f, `an answer to STATS_REQUEST ${id}`);
      answers.push(f.type === "stats" ? "stats" : f.type === "error" ? f.code : "?");
    }
    assert.equal(answers[0], answers[1]);
    await peer.send({
      type: "request",
      id: 9,
      deadlineMs: 50,
      priority: 0,
      attempt: 0,
      queueDepth: 0,
      service: "nosuch",
      meta: [],
      body: new Uint8Array(0),
    });
    const after = await peer.waitFor(
      (f): f is Frame => (f.type === "error" || f.type === "reply") && f.id === 9,
    );
    return { stats: answers[0], kept: after !== null && !peer.eof };
  } finally {
    peer.close();
  }
}

Deno.test("status access: with a status token, EP STATS_REQUEST and /_ep/stats need it (missing, wrong, right)", async () => {
  const node = await balancerNode({ token: "st-s3cret" });
  const port = node.server!.addr.port;
  try {
    for (
      const [token, http, ep] of [
        ["", 401, ErrorCode.UNAUTHORIZED],
        ["wrong", 401, ErrorCode.UNAUTHORIZED],
        ["st-s3cret", 200, "stats"],
      ] as const
    ) {
      assert.equal(
        await httpStatus("127.0.0.1", port, "/_ep/stats", token),
        http,
        `HTTP "${token}"`,
      );
      const got = await epStats("127.0.0.1", port, token);
      assert.equal(got.stats, ep, `EP with token "${token}"`);
      assert.ok(got.kept, "the connection goes on after a refused STATS_REQUEST");
    }
  } finally {
    await node.close();
  }
});

Deno.test({
  name:
    "status access: from a non-loopback address, EP and HTTP are both refused by default, served with the token or when public",
  ignore: FOREIGN === null,
  async fn() {
    const host = FOREIGN!;
    const cases: [AccessOptions, string, number, string | number][] = [
      [{}, "", 403, ErrorCode.UNAUTHORIZED],
      [{ token: "t0k" }, "", 401, ErrorCode.UNAUTHORIZED],
      [{ token: "t0k" }, "t0k", 200, "stats"],
      [{ public: true }, "", 200, "stats"],
    ];
    for (const [access, token, http, ep] of cases) {
      const node = await balancerNode(access, host);
      const port = node.server!.addr.port;
      try {
        const what = `${JSON.stringify(access)} token "${token}"`;
        assert.equal(await httpStatus(host, port, "/_ep/stats", token), http, `HTTP ${what}`);
        assert.equal((await epStats(host, port, token)).stats, ep, `EP ${what}`);
      } finally {
        await node.close();
      }
    }
  },
});

/** An EP connection from `remote` (any address) to an EpConnection, in memory. */
function memoryPeer(remote: string, statsAccess: AccessOptions) {
  const server = new MemoryTransport(remote, 1 << 30);
  const client = new MemoryTransport("memory:server", 1 << 30);
  server.peer = client;
  client.peer = server;
  const frames: Frame[] = [];
  const dec = new EpDecoder({
    frame: (f) => frames.push(f),
    error: (e) => frames.push(e as never),
  });
  client.start({ data: (c) => dec.push(c), end: () => {} });
  new EpConnection(server, () => ({ body: "ok" }), { statsAccess, stats: () => ({ n: 1 }) })
    .start(encodePreface(1));
  const enc = new EpEncoder();
  return {
    frames,
    send: (f: Frame) => client.write(enc.encode(f)),
    settle: () => new Promise((r) => setTimeout(r, 1)),
  };
}

Deno.test("status access: EP STATS_REQUEST from a foreign address (in memory) follows the rule", async () => {
  for (
    const [access, token, want] of [
      [{}, "", ErrorCode.UNAUTHORIZED],
      [{ public: true }, "", "stats"],
      [{ token: "t" }, "t", "stats"],
      [{ token: "t" }, "x", ErrorCode.UNAUTHORIZED],
    ] as const
  ) {
    const p = memoryPeer("10.0.0.7:4000", access);
    p.send({
      type: "hello",
      role: 1,
      minVersion: 1,
      maxVersion: 1,
      heartbeatMs: 0,
      name: "far",
      token,
    });
    p.send({ type: "statsRequest", id: 3 });
    await p.settle();
    const answer = p.frames.find((f) => f.type !== "welcome");
    assert.ok(answer && (answer.type === "stats" || answer.type === "error"));
    assert.equal(answer.id, 3);
    assert.equal(answer.type === "stats" ? "stats" : answer.code, want, JSON.stringify(access));
  }
});

Deno.test("status access: property: for random rules, addresses and tokens, HTTP and EP decide alike", async () => {
  const rng = mulberry32(0x57a7_0001);
  const remotes = [
    "127.0.0.1:5000",
    "127.3.4.5:1",
    "[::1]:80",
    "[::ffff:127.0.0.1]:9",
    "10.0.0.7:4000",
    "[2001:db8::1]:4000",
    "128.0.0.1:1",
    "[::ffff:10.0.0.1]:2",
  ];
  const tokens = ["", "s3cret", "s3cre", "s3cret ", "S3CRET", "ünï", "other"];
  for (let i = 0; i < 300; i++) {
    const access: AccessOptions = {};
    if (rng() < 0.5) access.token = pick(rng, tokens);
    if (rng() < 0.5) access.public = rng() < 0.5;
    const remote = pick(rng, remotes);
    const token = pick(rng, tokens);
    const monitor = new Monitor({ access });
    // HTTP carries the token as a bearer or in the query; a header value cannot keep
    // surrounding whitespace (RFC 9110 OWS), so such a token goes in the query.
    const inQuery = token !== token.trim() || rng() < 0.5;
    const http = monitor.internal({
      service: "",
      protocol: "http",
      method: "GET",
      path: "/_ep/stats",
      query: token && inQuery ? `token=${encodeURIComponent(token)}` : "",
      headers: token && !inQuery ? [["authorization", `Bearer ${token}`]] : [],
      body: new Uint8Array(0),
      deadlineMs: 0,
      priority: 0,
      remote,
    }).status ?? 200;
    const p = memoryPeer(remote, monitor.access);
    p.send({
      type: "hello",
      role: 1,
      minVersion: 1,
      maxVersion: 1,
      heartbeatMs: 0,
      name: "p",
      token,
    });
    p.send({ type: "statsRequest", id: 1 });
    await p.settle();
    const ep = p.frames.find((f) => f.type === "stats" || f.type === "error");
    const what = `${JSON.stringify(access)} from ${remote} with "${token}"`;
    assert.ok(ep, what);
    assert.equal(ep.type === "stats", http === 200, `${what}: HTTP ${http}, EP ${ep.type}`);
    if (ep.type === "error") {
      assert.equal(ep.code, ErrorCode.UNAUTHORIZED);
      assert.ok(http === 401 || http === 403, what);
    }
    monitor.close();
  }
});

Deno.test("status access: the balancer's built-in /_ep/stats (no monitor) is served to loopback peers only", async () => {
  const balancer = new Balancer();
  try {
    const job = (remote: string): Job => ({
      service: "",
      protocol: "http",
      method: "GET",
      path: "/_ep/stats",
      query: "",
      headers: [],
      body: new Uint8Array(0),
      deadlineMs: 0,
      priority: 0,
      remote,
    });
    assert.equal((await balancer.submit(job("127.0.0.1:1"))).status ?? 200, 200);
    assert.equal((await balancer.submit(job("10.0.0.7:4000"))).status, 403);
    const health = { ...job("10.0.0.7:4000"), path: "/_ep/health" };
    assert.equal((await balancer.submit(health)).status ?? 200, 200);
  } finally {
    balancer.close();
  }
});

async function captured(fn: () => Promise<number>) {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await fn(), out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("status access: ep status presents the status token (--token or EP_STATUS_TOKEN)", async () => {
  const node = await startNode({
    listen: { port: 0 },
    clientToken: "client-only",
    observe: { access: { token: "st" } },
  });
  const addr = `127.0.0.1:${node.server!.addr.port}`;
  try {
    const byFlag = await captured(() => statusMain(["--addr", addr, "--token", "st", "--json"]));
    assert.equal(byFlag.code, 0, byFlag.err);
    assert.ok(JSON.parse(byFlag.out).totals, "stats over EP with --token");
    Deno.env.set("EP_STATUS_TOKEN", "st");
    try {
      const byEnv = await captured(() => statusMain(["--addr", addr, "--json"]));
      assert.equal(byEnv.code, 0, byEnv.err);
    } finally {
      Deno.env.delete("EP_STATUS_TOKEN");
    }
    const none = await captured(() => statusMain(["--addr", addr, "--timeout", "2000"]));
    assert.equal(none.code, 1);
    assert.match(none.err, /unauthorized|token/i);
    // Admitted with the status token, the connection reads stats and nothing else.
    const peer = await EpPeer.open(addr);
    try {
      await peer.hello(1, "st");
      await peer.send({
        type: "request",
        id: 5,
        deadlineMs: 1000,
        priority: 0,
        attempt: 0,
        queueDepth: 0,
        service: "echo",
        meta: [],
        body: new Uint8Array(0),
      });
      const refused = await peer.waitFor(isType("error"));
      assert.equal(refused?.id, 5);
      assert.equal(refused?.code, ErrorCode.UNAUTHORIZED);
    } finally {
      peer.close();
    }
  } finally {
    await node.close();
  }
});
