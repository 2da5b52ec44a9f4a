/**
 * The runtime admin API over real sockets, against a balancer and module workers started
 * through the library (`mod.ts`): HTTP `/_ep/admin/…` and `/_ep/services`, and EP ADMIN
 * frames (SPEC.md §6.12), with their access rule, refusals and effects on dispatch. The
 * rules themselves are pinned in `core/balancer/balancer_test.ts` and
 * `core/observe/admin_test.ts`.
 */
import assert from "node:assert/strict";
import { connect, JobError, type Node, startNode } from "../mod.ts";
import { EpDecoder } from "../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../protocol/ep_encoder.ts";
import type { Frame } from "../protocol/ep_frames.ts";
import { ErrorCode } from "../protocol/errors.ts";
import { Raw } from "./_server_helpers.ts";

const dec = new TextDecoder();

type Json = Record<string, unknown>;
interface WorkerRow extends Json {
  name: string;
  label: string | null;
  address: string;
  state: string;
  history: { state: string; at: number }[];
}

/** A balancer and the module workers started for a test, closed together. */
class Cluster {
  readonly nodes: Node[] = [];
  constructor(readonly balancer: Node, readonly addr: string) {}

  static async start(status?: { token?: string }): Promise<Cluster> {
    const b = await startNode({ listen: { port: 0 }, status });
    return new Cluster(b, `127.0.0.1:${b.addr!.port}`);
  }

  /** A worker named `name` serving `who` (answers its name) and `slow` (sleeps the body's ms). */
  async worker(name: string, descriptions?: Json): Promise<Node> {
    const node = await startNode({
      connect: [this.addr],
      name,
      handlers: {
        functions: {
          who: () => name,
          slow: (req) => new Promise((r) => setTimeout(() => r(name), Number(req.text()))),
        },
        concurrency: 1,
      },
      descriptions: descriptions as never,
    });
    this.nodes.push(node);
    return node;
  }

  url(path: string): string {
    return `http://${this.addr}${path}`;
  }

  async get(path: string, headers: HeadersInit = {}): Promise<{ status: number; body: string }> {
    const res = await fetch(this.url(path), { headers });
    return { status: res.status, body: await res.text() };
  }

  async post(
    path: string,
    body: unknown,
    headers: Record<string, string> = { "content-type": "application/json" },
  ): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(this.url(path), {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.status, body: await res.text(), headers: res.headers };
  }

  async workers(): Promise<WorkerRow[]> {
    const r = await this.get("/_ep/admin/workers");
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body).workers;
  }

  async waitWorkers(n: number): Promise<WorkerRow[]> {
    const end = Date.now() + 10_000;
    for (;;) {
      const w = await this.workers();
      if (w.length === n) return w;
      if (Date.now() > end) throw new Error(`${w.length} workers, not ${n}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    for (const n of this.nodes) await n.close();
    await this.balancer.close();
  }
}

Deno.test("admin over HTTP: workers by name; disable, enable and drain act on the named worker at once and show in its state history", async () => {
  const c = await Cluster.start();
  const client = await connect(c.addr);
  try {
    await c.worker("w1");
    await c.worker("w2");
    const rows = await c.waitWorkers(2);
    assert.deepEqual(rows.map((w) => w.label).sort(), ["w1", "w2"]);
    assert.ok(rows.every((w) => w.state === "ready" && /^127\.0\.0\.1:\d+$/.test(w.address)));

    const off = await c.post("/_ep/admin/disable", { worker: "w1" });
    assert.equal(off.status, 200, off.body);
    assert.equal(off.headers.get("content-type"), "application/json");
    const w1 = JSON.parse(off.body).worker as WorkerRow;
    assert.equal(w1.label, "w1");
    assert.equal(w1.state, "disabled");
    // Every job goes to w2 now.
    const who = await Promise.all(
      Array.from({ length: 6 }, () => client.request("who", "", { timeoutMs: 5000 })),
    );
    assert.deepEqual(new Set(who.map((r) => dec.decode(r.body))), new Set(["w2"]));

    // By its address too; enable puts it back.
    const on = await c.post("/_ep/admin/enable", { worker: w1.address });
    assert.equal(JSON.parse(on.body).worker.state, "ready");
    const drained = await c.post("/_ep/admin/drain", { worker: "w2", grace_ms: 1000 });
    assert.equal(JSON.parse(drained.body).worker.state, "drained", "it held nothing");
    const who2 = await Promise.all(
      Array.from({ length: 4 }, () => client.request("who", "", { timeoutMs: 5000 })),
    );
    assert.deepEqual(new Set(who2.map((r) => dec.decode(r.body))), new Set(["w1"]));

    const after = await c.workers();
    const h1 = after.find((w) => w.label === "w1")!.history.map((h) => h.state);
    assert.deepEqual(h1, ["ready", "disabled", "ready"]);
    assert.deepEqual(after.find((w) => w.label === "w2")!.history.map((h) => h.state), [
      "ready",
      "drained",
    ]);
  } finally {
    client.close();
    await c.close();
  }
});

Deno.test("admin over HTTP: unknown and ambiguous worker names, unknown operations, arguments and services are refused with a one-line reason", async () => {
  const c = await Cluster.start();
  try {
    await c.worker("w1");
    await c.worker("w1");
    await c.worker("solo");
    const rows = await c.waitWorkers(3);
    const nope = await c.post("/_ep/admin/disable", { worker: "nope" });
    assert.equal(nope.status, 404);
    assert.match(
      nope.body,
      /^No worker "nope" is attached \(workers: (w1|solo) at 127\.0\.0\.1:\d+, .+\)\n$/,
    );
    const twice = await c.post("/_ep/admin/drain", { worker: "w1" });
    assert.equal(twice.status, 409);
    assert.match(twice.body, /^Worker name "w1" is ambiguous: w1 at .+, w1 at .+ have it/);
    // Named by its address, one of them is found.
    const addr = rows.find((w) => w.label === "w1")!.address;
    assert.equal((await c.post("/_ep/admin/disable", { worker: addr })).status, 200);

    const cases: [string, unknown, number, RegExp][] = [
      ["/_ep/admin/disable", {}, 400, /^A "worker" name is needed, got "undefined"/],
      ["/_ep/admin/drain", { worker: "solo", grace_ms: -1 }, 400, /^Invalid grace_ms "-1"/],
      [
        "/_ep/admin/drain",
        { worker: "solo", grace: 5 },
        400,
        /^Unknown argument "grace" of "drain": it takes worker, grace_ms/,
      ],
      [
        "/_ep/admin/set",
        { service: "who", key: "max_queue", value: "10" },
        400,
        /^Invalid value "10"/,
      ],
      [
        "/_ep/admin/set",
        { service: "who", key: "timeout", value: 1 },
        400,
        /^Unknown setting "timeout"/,
      ],
      [
        "/_ep/admin/set",
        { service: "nosuch", key: "max_queue", value: 1 },
        404,
        /^No service "nosuch"\n$/,
      ],
      ["/_ep/admin/disable", "[1]", 400, /^An admin operation's body is a JSON object/],
      ["/_ep/admin/disable", "{", 400, /^An admin operation's body is a JSON object/],
      ["/_ep/admin/reboot", {}, 404, /^No ep endpoint "\/_ep\/admin\/reboot"/],
    ];
    for (const [path, body, status, re] of cases) {
      const r = await c.post(path, body);
      assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${r.body}`);
      assert.match(r.body, re);
      assert.equal(r.body.split("\n").length, 2, "one line");
    }
  } finally {
    await c.close();
  }
});

Deno.test("admin over HTTP: a mutation needs POST with a JSON body, and no other site's Origin; reads need GET", async () => {
  const c = await Cluster.start();
  try {
    await c.worker("w1");
    await c.waitWorkers(1);
    const get = await c.get("/_ep/admin/disable?worker=w1");
    assert.equal(get.status, 405);
    const form = await c.post("/_ep/admin/disable", "worker=w1", {
      "content-type": "application/x-www-form-urlencoded",
    });
    assert.equal(form.status, 415);
    assert.match(form.body, /needs a JSON body \(content-type: application\/json\)/);
    const cross = await c.post("/_ep/admin/disable", { worker: "w1" }, {
      "content-type": "application/json",
      "origin": "http://evil.example",
    });
    assert.equal(cross.status, 403);
    const same = await c.post("/_ep/admin/disable", { worker: "w1" }, {
      "content-type": "application/json; charset=utf-8",
      "origin": `http://${c.addr}`,
    });
    assert.equal(same.status, 200, same.body);
    const postRead = await c.post("/_ep/admin/workers", {});
    assert.equal(postRead.status, 405);
    assert.equal(postRead.headers.get("allow"), "GET, HEAD");
    assert.equal((await c.get("/_ep/admin/workers")).status, 200);
  } finally {
    await c.close();
  }
});

Deno.test("admin over HTTP: with a status token, every admin request needs it (Bearer), reads and mutations alike", async () => {
  const c = await Cluster.start({ token: "s3cret" });
  try {
    await c.worker("w1");
    assert.equal((await c.get("/_ep/admin/workers")).status, 401);
    assert.equal((await c.get("/_ep/services")).status, 401);
    assert.equal((await c.post("/_ep/admin/disable", { worker: "w1" })).status, 401);
    const auth = { authorization: "Bearer s3cret" };
    const end = Date.now() + 10_000;
    let rows: WorkerRow[] = [];
    while (rows.length === 0 && Date.now() < end) {
      rows = JSON.parse((await c.get("/_ep/admin/workers", auth)).body).workers;
    }
    const ok = await c.post("/_ep/admin/disable", { worker: "w1" }, {
      "content-type": "application/json",
      ...auth,
    });
    assert.equal(ok.status, 200, ok.body);
  } finally {
    await c.close();
  }
});

Deno.test("admin: set max_queue bounds a service's queue at once: the next job past it is refused overloaded", async () => {
  const c = await Cluster.start();
  const client = await connect(c.addr);
  try {
    await c.worker("w1"); // one slot
    await c.waitWorkers(1);
    const set = await client.admin({ op: "set", service: "slow", key: "max_queue", value: 1 });
    assert.deepEqual(set, { service: "slow", key: "max_queue", value: 1 });
    // One runs, prefetched ones wait in the worker; fill until the queue holds one.
    const runs: Promise<unknown>[] = [];
    let refused: JobError | null = null;
    for (let i = 0; i < 20 && !refused; i++) {
      const p = client.request("slow", "300", { timeoutMs: 10_000 });
      runs.push(p.catch((e) => {
        refused ??= e;
      }));
      await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(runs);
    assert.ok(refused, "a job past the bound is refused");
    assert.equal((refused as JobError).kind, "overloaded");
    assert.equal((refused as JobError).message, 'Queue for "slow" is full');
    const back = await client.admin({ op: "set", service: "slow", key: "max_queue", value: null });
    assert.deepEqual(back, { service: "slow", key: "max_queue", value: 10_000 });
  } finally {
    client.close();
    await c.close();
  }
});

Deno.test("admin: errors lists the last errors with the request id the client was given", async () => {
  const c = await Cluster.start();
  try {
    const res = await fetch(c.url("/nosuch"), {
      method: "POST",
      body: "x",
      headers: { "x-request-id": "trace-42" },
    });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get("x-request-id"), "trace-42");
    await res.body?.cancel();
    const r = await c.get("/_ep/admin/errors?limit=5");
    assert.equal(r.status, 200);
    const [e] = JSON.parse(r.body).errors;
    assert.equal(e.requestId, "trace-42");
    assert.equal(e.kind, "no_service");
    assert.equal(e.service, "nosuch");
    assert.equal(e.message, 'No service "nosuch"');
    assert.equal((await c.get("/_ep/admin/errors?limit=0")).status, 400);
  } finally {
    await c.close();
  }
});

Deno.test("services: /_ep/services and EP describe each service as its workers say (their STATS after REGISTER)", async () => {
  const c = await Cluster.start();
  const client = await connect(c.addr);
  try {
    await c.worker("w1", {
      who: { description: "Says which worker answered", version: "1.2.0" },
      slow: { version: "0.9" },
    });
    await c.worker("w2", { who: { version: "1.3.0" } });
    await c.waitWorkers(2);
    const end = Date.now() + 10_000;
    let services: Json[] = [];
    for (;;) {
      const r = await c.get("/_ep/services");
      assert.equal(r.status, 200);
      services = JSON.parse(r.body).services;
      const who = services.find((s) => s.name === "who");
      if ((who?.versions as string[] | undefined)?.length === 2) break;
      if (Date.now() > end) throw new Error(r.body);
      await new Promise((r) => setTimeout(r, 20));
    }
    const who = services.find((s) => s.name === "who")!;
    assert.equal(who.description, "Says which worker answered");
    assert.equal(who.version, null, "its workers differ");
    assert.deepEqual(who.versions, ["1.2.0", "1.3.0"]);
    assert.equal((who.instances as Json[]).length, 2);
    const slow = services.find((s) => s.name === "slow")!;
    assert.deepEqual([slow.description, slow.version], [null, "0.9"]);
    // The same over EP.
    const viaEp = await client.admin({ op: "services" }) as { services: Json[] };
    assert.deepEqual(viaEp.services.map((s) => s.name), ["slow", "who"]);
    // And in the stats the page draws.
    const stats = await client.stats() as { services: Json[] };
    assert.equal(stats.services.find((s) => s.name === "slow")!.version, "0.9");
  } finally {
    client.close();
    await c.close();
  }
});

/** Preface, HELLO (`role`, `token`) and `frames`, then the frames the server answers. */
async function rawExchange(
  port: number,
  role: 1 | 2,
  token: string,
  frames: Frame[],
  until: (got: Frame[]) => boolean,
): Promise<Frame[]> {
  const enc = new EpEncoder();
  const raw = await Raw.open(port);
  try {
    const parts = [
      encodePreface(1),
      enc.encodeCopy({
        type: "hello",
        role,
        minVersion: 1,
        maxVersion: 1,
        heartbeatMs: 0,
        name: "raw",
        token,
      }),
      ...frames.map((f) => enc.encodeCopy(f)),
    ];
    for (const p of parts) await raw.send(p);
    const got: Frame[] = [];
    const decoder = new EpDecoder({
      frame: (f) => got.push(f),
      error: (e) => assert.fail(e.message),
    });
    let seen = 0;
    const end = Date.now() + 5000;
    while (!until(got) && Date.now() < end) {
      const chunk = new Uint8Array(65536);
      const n = await raw.conn.read(chunk);
      if (n === null) break;
      decoder.push(chunk.subarray(0, n));
      seen += n;
    }
    return got;
  } finally {
    raw.conn.close();
  }
}

Deno.test("admin over EP: ADMIN is answered ADMIN_RESULT with its id; a refusal is ERROR with its id and the connection goes on", async () => {
  const c = await Cluster.start();
  const port = Number(c.addr.split(":")[1]);
  try {
    await c.worker("w1");
    await c.waitWorkers(1);
    const got = await rawExchange(port, 1, "", [
      { type: "admin", id: 7, json: '{"op":"workers"}' },
      { type: "admin", id: 8, json: '{"op":"reboot"}' },
      { type: "admin", id: 9, json: "[" },
      { type: "admin", id: 10, json: '{"op":"disable","worker":"w1"}' },
    ], (g) => g.length >= 5);
    assert.deepEqual(got.map((f) => f.type), [
      "welcome",
      "adminResult",
      "error",
      "error",
      "adminResult",
    ]);
    const [, workers, reboot, bracket, disabled] = got;
    assert.ok(workers.type === "adminResult" && workers.id === 7);
    assert.equal(JSON.parse(workers.json).workers[0].label, "w1");
    assert.ok(reboot.type === "error" && reboot.id === 8 && reboot.code === ErrorCode.BAD_REQUEST);
    assert.match(reboot.message, /^Unknown admin operation "reboot": one of workers, services/);
    assert.ok(
      bracket.type === "error" && bracket.id === 9 && bracket.code === ErrorCode.BAD_REQUEST,
    );
    assert.ok(disabled.type === "adminResult" && disabled.id === 10);
    assert.equal(JSON.parse(disabled.json).worker.state, "disabled");

    // The client library's admin(), then a job on the same connection.
    const client = await connect(c.addr);
    try {
      const e = await client.admin({ op: "enable", worker: "w9" }).then(() => null, (x) => x);
      assert.ok(e instanceof JobError && e.kind === "bad_request");
      assert.match(e.message, /^No worker "w9" is attached \(workers: w1 at /);
      const on = await client.admin({ op: "enable", worker: "w1" }) as { worker: WorkerRow };
      assert.equal(on.worker.state, "ready");
      assert.equal((await client.request("who", "", { timeoutMs: 5000 })).status, 200);
    } finally {
      client.close();
    }
  } finally {
    await c.close();
  }
});

Deno.test("admin over EP: refused without the status token (ERROR unauthorized with the id); a worker's ADMIN closes its connection", async () => {
  const c = await Cluster.start({ token: "s3cret" });
  const port = Number(c.addr.split(":")[1]);
  try {
    const refused = await rawExchange(port, 1, "", [
      { type: "admin", id: 3, json: '{"op":"workers"}' },
      { type: "admin", id: 4, json: '{"op":"workers"}' },
    ], (g) => g.length >= 3);
    assert.deepEqual(refused.map((f) => f.type), ["welcome", "error", "error"]);
    assert.ok(refused[1].type === "error" && refused[1].id === 3);
    assert.equal(refused[1].code, ErrorCode.UNAUTHORIZED);
    const admitted = await rawExchange(port, 1, "s3cret", [
      { type: "admin", id: 5, json: '{"op":"errors","limit":3}' },
    ], (g) => g.length >= 2);
    assert.ok(admitted[1].type === "adminResult" && admitted[1].id === 5);
    assert.deepEqual(JSON.parse(admitted[1].json), { errors: [] });
    const worker = await rawExchange(port, 2, "", [
      { type: "admin", id: 6, json: '{"op":"workers"}' },
    ], (g) => g.some((f) => f.type === "error"));
    const last = worker.at(-1)!;
    assert.ok(last.type === "error" && last.id === 0 && last.code === ErrorCode.UNEXPECTED_FRAME);
    assert.match(last.message, /^Frame ADMIN is not allowed from a worker/);
  } finally {
    await c.close();
  }
});
