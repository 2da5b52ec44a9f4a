/**
 * The surviving client over in-memory transports: failover, reconnection with back-off,
 * retries within the deadline, DRAIN, and a seeded property test over random server events.
 */
import assert from "node:assert/strict";
import { Client, connect, type ConnectOptions } from "./client.ts";
import { ConnectionClosedError, JobError, ServerUnreachableError } from "../errors.ts";
import { ErrorCode } from "../../protocol/errors.ts";
import type { Frame } from "../../protocol/ep_frames.ts";
import { FakeEpServer, type FakeRequest } from "../../tests/_fake_ep_server.ts";

const dec = new TextDecoder();

/** Fake servers by address, and a `dial` that reaches them in memory. */
function cluster(...names: string[]): {
  servers: Record<string, FakeEpServer>;
  addrs: string[];
  dial: (addr: string) => Promise<import("./transport.ts").Transport>;
} {
  const servers: Record<string, FakeEpServer> = {};
  const addrs = names.map((n, i) => {
    const addr = `10.0.0.${i + 1}:7070`;
    servers[addr] = new FakeEpServer({ name: n });
    return addr;
  });
  return { servers, addrs, dial: (addr) => servers[addr].dial(addr) };
}

const reply = (f: FakeRequest, body: Uint8Array | string = f.body): Frame => ({
  type: "reply",
  id: f.id,
  status: 200,
  freeSlots: 0,
  meta: [],
  body: typeof body === "string" ? new TextEncoder().encode(body) : body,
});

const error = (f: FakeRequest, code: number, message = "no"): Frame => ({
  type: "error",
  id: f.id,
  code,
  message,
});

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const base = (
  c: ReturnType<typeof cluster>,
  more: Partial<ConnectOptions> = {},
): ConnectOptions => ({
  servers: c.addrs,
  dial: c.dial,
  heartbeatMs: 0,
  reconnect: { minMs: 10, maxMs: 40 },
  ...more,
});

Deno.test("client: connects to the first server that answers, in the order given", async () => {
  const c = cluster("a", "b", "c");
  c.servers[c.addrs[0]].down = true;
  const client = await connect(base(c));
  try {
    assert.equal(client.server, c.addrs[1]);
    assert.equal(dec.decode((await client.request("svc", "hi")).body), "hi");
    assert.equal(c.servers[c.addrs[1]].last.requests.length, 1);
  } finally {
    client.close();
  }
});

Deno.test("client: when no server answers, connect fails: one server with its own error, several with ServerUnreachableError naming each", async () => {
  const c = cluster("a", "b");
  for (const a of c.addrs) c.servers[a].down = true;
  const one = await connect(c.addrs[0], { dial: c.dial }).then(() => null, (e) => e);
  assert.ok(one instanceof Deno.errors.ConnectionRefused, `got ${one}`);
  const both = await connect(base(c)).then(() => null, (e) => e);
  assert.ok(both instanceof ServerUnreachableError, `got ${both}`);
  assert.ok(both.message.includes(c.addrs[0]) && both.message.includes(c.addrs[1]), both.message);
  assert.ok(both.cause instanceof Deno.errors.ConnectionRefused);
});

Deno.test("client: a lost connection fails its requests in flight with ConnectionClosedError; the next request goes to the next server", async () => {
  const c = cluster("a", "b");
  const [a, b] = c.addrs.map((x) => c.servers[x]);
  a.onRequest = () => null; // held
  const client = await connect(base(c));
  try {
    const inFlight = client.request("svc", "one").then(() => null, (e) => e);
    await a.last.until((fs) => fs.some((f) => f.type === "request"));
    a.dropAll();
    const err = await inFlight;
    assert.ok(err instanceof ConnectionClosedError && !(err instanceof ServerUnreachableError));
    assert.equal(dec.decode((await client.request("svc", "two")).body), "two");
    assert.equal(client.server, c.addrs[1]);
    assert.equal(b.last.requests.length, 1);
    assert.equal(client.connects, 2);
  } finally {
    client.close();
  }
});

Deno.test("client: with every server down, requests fail at once with ServerUnreachableError, rounds of dials are spaced by the back-off, and the client reconnects by itself", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  const client = await connect(base(c, { reconnect: { minMs: 30, maxMs: 60 } }));
  try {
    a.down = true;
    a.dropAll();
    await until(() => client.server === null && a.dials >= 2, "the first reconnect round");
    const dialsBefore = a.dials;
    const errors = await Promise.all(
      Array.from({ length: 50 }, () => client.request("svc", "x").then(() => null, (e) => e)),
    );
    for (const e of errors) assert.ok(e instanceof ServerUnreachableError, `got ${e}`);
    // Fifty requests made no dial of their own: only the back-off timer dials.
    assert.ok(a.dials - dialsBefore <= 1, `${a.dials - dialsBefore} dials`);
    a.down = false;
    await until(() => client.server !== null, "the reconnection");
    assert.equal(dec.decode((await client.request("svc", "back")).body), "back");
  } finally {
    client.close();
  }
});

Deno.test("client: reconnect: false: after the connection is lost every request fails with ConnectionClosedError and nothing is dialled", async () => {
  const c = cluster("a", "b");
  const client = await connect(base(c, { reconnect: false }));
  try {
    const dials = c.servers[c.addrs[1]].dials;
    c.servers[c.addrs[0]].dropAll();
    await until(() => client.server === null, "the loss");
    const err = await client.request("svc").then(() => null, (e) => e);
    assert.ok(err instanceof ConnectionClosedError, `got ${err}`);
    assert.equal(c.servers[c.addrs[1]].dials, dials);
  } finally {
    client.close();
  }
});

Deno.test("client: reconnect attempts: after that many failed rounds the client gives up and closes", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  const client = await connect(base(c, { reconnect: { minMs: 5, maxMs: 5, attempts: 3 } }));
  try {
    a.down = true;
    a.dropAll();
    await until(() => a.dials >= 5, "4 rounds");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(a.dials, 5, "the first connection, then 1 + 3 rounds");
    a.down = false;
    const err = await client.request("svc").then(() => null, (e) => e);
    assert.ok(err instanceof ServerUnreachableError && /Gave up/.test(err.message), `got ${err}`);
  } finally {
    client.close();
  }
});

Deno.test("client: a request waiting for a connection is bounded by its deadline and its signal", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  const client = await connect(base(c, { connectTimeoutMs: 10_000 }));
  try {
    a.mute = true; // the next connection is never welcomed: the round hangs
    a.dropAll();
    await until(() => a.conns.length === 2, "the reconnect");
    const late = await client.request("svc", "x", { timeoutMs: 50 }).then(() => null, (e) => e);
    assert.ok(late instanceof JobError && late.kind === "timeout", `got ${late}`);
    const ac = new AbortController();
    const p = client.request("svc", "x", { signal: ac.signal }).then(() => null, (e) => e);
    ac.abort();
    const aborted = await p;
    assert.ok(aborted instanceof JobError && aborted.kind === "cancelled", `got ${aborted}`);
  } finally {
    client.close();
  }
});

Deno.test("client: retry: an overloaded request is sent again and succeeds; every try carries the same x-request-id", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  let n = 0;
  a.onRequest = (_c, f) => [n++ < 2 ? error(f, ErrorCode.OVERLOADED, "Queue full") : reply(f)];
  const client = await connect(base(c, { retry: { attempts: 3, backoffMs: 1 } }));
  try {
    assert.equal(dec.decode((await client.request("svc", "x")).body), "x");
    assert.equal(client.retries, 2);
    const ids = a.last.requests.map((r) => r.meta.find(([k]) => k === "x-request-id")?.[1]);
    assert.equal(ids.length, 3);
    assert.ok(ids[0] && ids.every((id) => id === ids[0]), JSON.stringify(ids));
    // The caller's own id is kept.
    await client.request("svc", "y", { meta: [["x-request-id", "mine"]] });
    const mine = a.last.requests.slice(3).map((r) => r.meta.filter(([k]) => k === "x-request-id"));
    assert.deepEqual(mine, [[["x-request-id", "mine"]]]);
  } finally {
    client.close();
  }
});

Deno.test("client: without retry, or for a kind not listed, a failed request fails after one try", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  a.onRequest = (
    _c,
    f,
  ) => [error(f, f.service === "busy" ? ErrorCode.OVERLOADED : ErrorCode.HANDLER_ERROR)];
  const plain = await connect(base(c));
  const retrying = await connect(base(c, { retry: { attempts: 5, backoffMs: 1 } }));
  try {
    const e1 = await plain.request("busy").then(() => null, (e) => e);
    assert.ok(e1 instanceof JobError && e1.kind === "overloaded");
    const e2 = await retrying.request("boom").then(() => null, (e) => e);
    assert.ok(e2 instanceof JobError && e2.kind === "handler_error");
    assert.equal(retrying.retries, 0);
    assert.equal(a.conns.reduce((n, cn) => n + cn.requests.length, 0), 2);
  } finally {
    plain.close();
    retrying.close();
  }
});

Deno.test("client: retries never exceed the deadline: each try is sent with the time left, and the last error is reported", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  a.onRequest = (_c, f) => [error(f, ErrorCode.OVERLOADED, "Queue full")];
  const client = await connect(
    base(c, { retry: { attempts: 1_000, backoffMs: 5, maxBackoffMs: 20 } }),
  );
  try {
    const err = await client.request("svc", "x", { timeoutMs: 300 }).then(() => null, (e) => e);
    // The deadline passes in a back-off (the last error is reported) or, on a loaded
    // machine, while a try is in flight (that try times out): never a try past it.
    assert.ok(
      err instanceof JobError && (err.kind === "overloaded" || err.kind === "timeout"),
      `got ${err}`,
    );
    const deadlines = a.last.requests.map((r) => r.deadlineMs);
    assert.ok(deadlines.length > 2 && deadlines.length < 1_000, `${deadlines.length} tries`);
    assert.ok(deadlines[0] <= 300);
    for (let i = 1; i < deadlines.length; i++) {
      assert.ok(deadlines[i] < deadlines[i - 1], `deadlines ${deadlines}`);
    }
    assert.equal(client.retries, deadlines.length - 1);
  } finally {
    client.close();
  }
});

Deno.test("client: a retry whose back-off outlasts the deadline is not sent and not counted", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  a.onRequest = (_c, f) => {
    // Once the answer is out, hold the event loop past the deadline: the back-off timer
    // (40 ms, chosen with 80 ms left) fires late, after the deadline.
    setTimeout(() => {
      const until = performance.now() + 150;
      while (performance.now() < until) {
        // A busy event loop.
      }
    }, 5);
    return [error(f, ErrorCode.OVERLOADED, "Queue full")];
  };
  const client = await connect(
    base(c, { retry: { attempts: 5, backoffMs: 40, maxBackoffMs: 40 } }),
  );
  try {
    const err = await client.request("svc", "x", { timeoutMs: 120 }).then(() => null, (e) => e);
    assert.ok(err instanceof JobError && err.kind === "timeout", `got ${err}`);
    assert.equal(a.last.requests.length, 1, "only the first try was sent");
    assert.equal(client.retries, 0, "no retry was sent, none is counted");
  } finally {
    client.close();
  }
});

Deno.test("client: retry on closed: a request lost with its connection is sent again on the next server", async () => {
  const c = cluster("a", "b");
  const [a, b] = c.addrs.map((x) => c.servers[x]);
  a.onRequest = (conn) => {
    conn.t.close();
    return null;
  };
  const client = await connect(base(c, { retry: { attempts: 2, backoffMs: 1 } }));
  try {
    assert.equal(dec.decode((await client.request("svc", "x")).body), "x");
    assert.equal(a.last.requests.length, 1);
    assert.equal(b.last.requests.length, 1);
    assert.equal(client.retries, 1);
  } finally {
    client.close();
  }
});

Deno.test("client: a server's DRAIN: requests in flight there are answered, new ones go to the next server, and the drained connection is closed after its last answer", async () => {
  const c = cluster("a", "b");
  const [a, b] = c.addrs.map((x) => c.servers[x]);
  const held: FakeRequest[] = [];
  a.onRequest = (_c, f) => {
    held.push(f);
    return null;
  };
  const client = await connect(base(c));
  try {
    const first = client.request("svc", "one");
    await a.last.until((fs) => fs.some((f) => f.type === "request"));
    a.last.send({ type: "drain", graceMs: 5_000 });
    await new Promise((r) => setTimeout(r, 0)); // the client reads it
    const second = await client.request("svc", "two");
    assert.equal(dec.decode(second.body), "two");
    assert.equal(client.server, c.addrs[1]);
    assert.equal(b.last.requests.length, 1);
    assert.equal(a.last.t.closed, false, "kept open for its request in flight");
    a.last.send(reply(held[0]));
    assert.equal(dec.decode((await first).body), "one");
    await until(() => a.last.t.closed, "the drained connection closed");
    assert.equal(a.last.requests.length, 1);
  } finally {
    client.close();
  }
});

Deno.test("client: close ends everything: requests in flight and waiting reject, no more dials", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  a.onRequest = () => null;
  const client = await connect(base(c));
  const inFlight = client.request("svc").then(() => null, (e) => e);
  await a.last.until((fs) => fs.some((f) => f.type === "request"));
  client.close();
  const err = await inFlight;
  assert.ok(err instanceof ConnectionClosedError && err.message === "Client closed");
  const after = await client.request("svc").then(() => null, (e) => e);
  assert.ok(after instanceof ConnectionClosedError);
  const dials = a.dials;
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(a.dials, dials);
});

Deno.test("client: bad options are refused when the client is made", () => {
  assert.throws(() => new Client({ servers: [] }), RangeError);
  assert.throws(() => new Client({ servers: ["nohost"] }), TypeError);
  assert.throws(
    // deno-lint-ignore no-explicit-any
    () => new Client({ servers: ["127.0.0.1:1"], retry: { on: ["sometimes" as any] } }),
    /Invalid retry kind "sometimes"/,
  );
  assert.throws(
    () => new Client({ servers: ["127.0.0.1:1"], retry: { attempts: -1 } }),
    /Invalid retry.attempts -1/,
  );
});

// ---- property: random server events, every request settles once, DRAIN is honoured

/** A seeded generator (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

for (const withRetry of [false, true]) {
  Deno.test(`client (property, ${withRetry ? "with" : "without"} retry): under random drops, drains, refusals and answers every request settles, none goes on a drained connection, ${withRetry ? "tries stay within attempts + 1" : "none is sent twice"}`, async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const r = rng(seed * 7919 + (withRetry ? 1 : 0));
      const c = cluster("a", "b", "c");
      const fakes = c.addrs.map((x) => c.servers[x]);
      // Per connection, the index of the frame list at which the fake sent DRAIN.
      const drainedAt = new Map<unknown, number>();
      const held: { conn: import("../../tests/_fake_ep_server.ts").FakeConn; f: FakeRequest }[] =
        [];
      for (const fake of fakes) {
        fake.onRequest = (conn, f) => {
          const x = r();
          if (x < 0.4) return [reply(f)];
          if (x < 0.55) return [error(f, ErrorCode.OVERLOADED)];
          if (x < 0.65) return [error(f, ErrorCode.WORKER_LOST)];
          held.push({ conn, f });
          return null;
        };
      }
      const attempts = 3;
      const client = await connect(base(c, {
        connectTimeoutMs: 200,
        retry: withRetry ? { attempts, backoffMs: 1, maxBackoffMs: 4 } : undefined,
      }));
      const outcomes: (string | null)[] = [];
      const pending: Promise<void>[] = [];
      for (let step = 0; step < 60; step++) {
        const x = r();
        if (x < 0.45) {
          const i = outcomes.length;
          outcomes.push(null);
          pending.push(
            client.request("svc", `r${i}`, { timeoutMs: 400 }).then(
              () => void (outcomes[i] = "ok"),
              (e) => {
                assert.ok(
                  e instanceof JobError || e instanceof ConnectionClosedError,
                  `request ${i} failed with ${e}`,
                );
                assert.equal(outcomes[i], null, `request ${i} settled twice`);
                outcomes[i] = e instanceof JobError ? e.kind : e.name;
              },
            ),
          );
        } else if (x < 0.6 && held.length > 0) {
          const { conn, f } = held.splice(Math.floor(r() * held.length), 1)[0];
          conn.send(reply(f));
        } else if (x < 0.68) {
          const fake = fakes[Math.floor(r() * fakes.length)];
          const conn = fake.conns.filter((cn) => !cn.t.closed).at(-1);
          conn?.t.close();
        } else if (x < 0.76) {
          const fake = fakes[Math.floor(r() * fakes.length)];
          const conn = fake.conns.filter((cn) => !cn.t.closed).at(-1);
          if (conn && !drainedAt.has(conn)) {
            drainedAt.set(conn, conn.frames.length);
            conn.send({ type: "drain", graceMs: 1_000 });
          }
        } else if (x < 0.84) {
          const fake = fakes[Math.floor(r() * fakes.length)];
          fake.down = !fake.down;
        }
        await new Promise((res) => setTimeout(res, r() * 6));
      }
      for (const fake of fakes) fake.down = false;
      for (const { conn, f } of held.splice(0)) conn.send(reply(f));
      await Promise.all(pending);
      const where = `seed ${seed}: ${JSON.stringify(outcomes)}`;
      assert.ok(outcomes.every((o) => o !== null), where);
      // Nothing went on a connection after its DRAIN: the test sends DRAIN between turns,
      // when every earlier write of the client has been delivered.
      for (const [conn, at] of drainedAt) {
        const fc = conn as import("../../tests/_fake_ep_server.ts").FakeConn;
        const after = fc.frames.slice(at).filter((f) => f.type === "request").length;
        assert.equal(after, 0, `${where}: ${after} requests after DRAIN`);
      }
      const bodies = fakes.flatMap((f) => f.conns.flatMap((cn) => cn.requests))
        .map((q) => dec.decode(q.body));
      const tries = new Map<string, number>();
      for (const b of bodies) tries.set(b, (tries.get(b) ?? 0) + 1);
      for (const [b, n] of tries) {
        assert.ok(n <= (withRetry ? attempts + 1 : 1), `${where}: ${b} sent ${n} times`);
      }
      assert.equal(client.inFlight, 0, where);
      client.close();
    }
  });
}

Deno.test("client: requests in flight arm one timer for the earliest deadline, no periodic poll; a request past its deadline is rejected timeout and cancelled", async () => {
  const c = cluster("a");
  const a = c.servers[c.addrs[0]];
  const client = await connect(base(c));
  const realInterval = globalThis.setInterval;
  const realTimeout = globalThis.setTimeout;
  const intervals: number[] = [];
  const timeouts: number[] = [];
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    intervals.push(ms);
    return realInterval(fn, ms);
  }) as typeof setInterval;
  globalThis.setTimeout = ((fn: () => void, ms: number) => {
    timeouts.push(ms);
    return realTimeout(fn, ms);
  }) as typeof setTimeout;
  try {
    a.onRequest = () => null; // held: never answered
    const slow = client.request("svc", "x", { timeoutMs: 60_000 }).catch((e) => e);
    const soon = client.request("svc", "y", { timeoutMs: 40 }).catch((e) => e);
    const later = client.request("svc", "z", { timeoutMs: 50_000 }).catch((e) => e);
    assert.deepEqual(intervals, [], "no periodic poll");
    assert.equal(timeouts.filter((ms) => ms > 50 && ms <= 60_000).length, 1, `${timeouts}`);
    const err = await soon;
    assert.ok(err instanceof JobError && err.kind === "timeout", String(err));
    const id = a.last.requests.find((f) => dec.decode(f.body) === "y")!.id;
    await until(
      () => a.last.frames.some((f) => f.type === "cancel" && f.id === id),
      "CANCEL for the timed-out request",
    );
    client.close();
    for (const e of [await slow, await later]) assert.ok(e instanceof Error);
  } finally {
    globalThis.setInterval = realInterval;
    globalThis.setTimeout = realTimeout;
    client.close();
  }
});
