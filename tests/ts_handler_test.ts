/**
 * TypeScript handlers with the typed context, end to end through the library (`mod.ts`)
 * over real sockets: what a handler sees of an HTTP and an EP request, its signal at the
 * job's deadline and when its client cancels, `ctx.call` to another service (own balancer,
 * and an upstream), and handlers given as a map of functions, in a balancer and in a module
 * worker (where a redelivered job shows attempt 2). The same fixture runs as a module on a
 * handler thread and as functions on the main thread.
 */
import assert from "node:assert/strict";
import { connect, JobError, type NodeHandlers, startNode } from "../mod.ts";
import * as services from "./fixtures/context_services.ts";

const FIXTURE = new URL("./fixtures/context_services.ts", import.meta.url);
const enc = new TextEncoder();
const dec = new TextDecoder();

const MODES: Record<string, NodeHandlers> = {
  "module on a handler thread": { module: FIXTURE, threads: 1, concurrency: 4 },
  "functions on the main thread": { functions: { ...services }, concurrency: 4 },
};

/** Messages on a BroadcastChannel, awaited by their `event`. */
class Channel {
  readonly name = `ep-test-${crypto.randomUUID()}`;
  readonly #bc = new BroadcastChannel(this.name);
  readonly #seen: { event: string; [k: string]: unknown }[] = [];
  #wake: (() => void) | null = null;

  constructor() {
    this.#bc.onmessage = (e) => {
      this.#seen.push(e.data);
      this.#wake?.();
    };
  }

  /** The first message with `event`, waiting for it (up to 10 s). */
  async next(event: string): Promise<Record<string, unknown>> {
    const end = Date.now() + 10_000;
    for (;;) {
      const i = this.#seen.findIndex((m) => m.event === event);
      if (i >= 0) return this.#seen.splice(i, 1)[0];
      const left = end - Date.now();
      if (left <= 0) throw new Error(`No "${event}" message on ${this.name}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((r) => {
        this.#wake = r;
        timer = setTimeout(r, left);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
  }

  close(): void {
    this.#bc.close();
  }
}

for (const [mode, handlers] of Object.entries(MODES)) {
  Deno.test(`TS handler (${mode}) sees an HTTP request's method, path, query, headers, request id, attempt 1 and time left`, async () => {
    const node = await startNode({ listen: { port: 0 }, handlers });
    try {
      const res = await fetch(
        `http://127.0.0.1:${node.addr!.port}/look/a/b?q=1&q=two%20words`,
        {
          method: "POST",
          headers: {
            "x-request-id": "req-42",
            "X-Tenant": "beta",
            "ep-timeout": "5000",
            "ep-priority": "3",
          },
          body: "héllo",
        },
      );
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("x-service"), "look");
      const seen = await res.json();
      assert.ok(seen.deadlineMs > 0 && seen.deadlineMs <= 5000, `deadlineMs ${seen.deadlineMs}`);
      delete seen.deadlineMs;
      assert.deepEqual(seen, {
        service: "look",
        protocol: "http",
        method: "POST",
        path: "/look/a/b",
        query: "q=1&q=two%20words",
        q: ["1", "two words"],
        tenant: "beta",
        headerNames: ["x-request-id", "x-tenant"],
        epHeaders: 0,
        id: "req-42",
        attempt: 1,
        body: "héllo",
        aborted: false,
      });
    } finally {
      await node.close();
    }
  });

  Deno.test(`TS handler (${mode}) sees an EP request: method EP, its metadata, the balancer's request id`, async () => {
    const node = await startNode({ listen: { port: 0 }, handlers });
    const client = await connect(`127.0.0.1:${node.addr!.port}`);
    try {
      const reply = await client.request("look", "hi", {
        timeoutMs: 3000,
        meta: [["x-tenant", "gamma"]],
      });
      const seen = JSON.parse(dec.decode(reply.body));
      assert.equal(seen.protocol, "ep");
      assert.equal(seen.method, "EP");
      assert.equal(seen.path, "/look");
      assert.equal(seen.tenant, "gamma");
      assert.match(seen.id, /^[0-9a-f]{16}$/, "the balancer made a request id");
      assert.equal(seen.attempt, 1);
      assert.ok(seen.deadlineMs > 0 && seen.deadlineMs <= 3000);
      assert.deepEqual(reply.meta.find(([k]) => k === "x-service"), ["x-service", "look"]);
    } finally {
      client.close();
      await node.close();
    }
  });

  Deno.test(`TS handler (${mode}): its signal fires TimeoutError at the job's deadline (ep-timeout) and the client gets 504`, async () => {
    const node = await startNode({ listen: { port: 0 }, handlers });
    const channel = new Channel();
    try {
      const res = await fetch(`http://127.0.0.1:${node.addr!.port}/wait`, {
        headers: { "ep-timeout": "150", "x-channel": channel.name },
      });
      await res.body?.cancel();
      assert.equal(res.status, 504);
      assert.equal((await channel.next("started")).attempt, 1);
      assert.equal((await channel.next("aborted")).reason, "TimeoutError");
    } finally {
      channel.close();
      await node.close();
    }
  });

  Deno.test(`TS handler (${mode}): a deadline longer than setTimeout can hold (ep-timeout 2^32 - 1 ms) does not fire its signal early`, async () => {
    const node = await startNode({ listen: { port: 0 }, handlers });
    try {
      const res = await fetch(`http://127.0.0.1:${node.addr!.port}/pause?ms=40`, {
        headers: { "ep-timeout": String(2 ** 32 - 1) },
      });
      assert.equal(await res.text(), "running");
    } finally {
      await node.close();
    }
  });

  Deno.test(`TS handler (${mode}): its signal fires AbortError when the EP client cancels the request`, async () => {
    const node = await startNode({ listen: { port: 0 }, handlers });
    const channel = new Channel();
    const client = await connect(`127.0.0.1:${node.addr!.port}`);
    try {
      const ac = new AbortController();
      const request = client.request("wait", "", {
        timeoutMs: 20_000,
        meta: [["x-channel", channel.name]],
        signal: ac.signal,
      });
      await channel.next("started");
      ac.abort();
      await assert.rejects(request, (e) => e instanceof JobError && e.kind === "cancelled");
      assert.equal((await channel.next("aborted")).reason, "AbortError");
      // The slot came back: the node serves the next job.
      const reply = await client.request("look", "again", { timeoutMs: 5000 });
      assert.equal(JSON.parse(dec.decode(reply.body)).body, "again");
    } finally {
      client.close();
      channel.close();
      await node.close();
    }
  });

  Deno.test(`TS handler (${mode}): ctx.call reaches another service through the node's own balancer and through an upstream, and a failed call rejects with its kind`, async () => {
    const other = await startNode({
      listen: { port: 0 },
      handlers: { functions: { look: services.look } },
    });
    const node = await startNode({
      listen: { port: 0 },
      handlers,
      upstreams: { other: { servers: [`127.0.0.1:${other.addr!.port}`] } },
      tuning: { serviceGraceMs: 50 },
    });
    try {
      const base = `http://127.0.0.1:${node.addr!.port}`;
      const own = await fetch(`${base}/front`, {
        method: "POST",
        body: "via own",
        headers: { "ep-timeout": "4000" },
      });
      assert.equal(own.status, 200);
      assert.equal(own.headers.get("x-service"), "look");
      const seen = await own.json();
      assert.equal(seen.body, "via own");
      assert.equal(seen.tenant, "via-front", "the call's meta reaches the callee");
      assert.equal(seen.protocol, "ep");
      assert.ok(seen.deadlineMs > 0 && seen.deadlineMs <= 4000, "the call got the time left");

      const up = await fetch(`${base}/front?upstream=other`, { method: "POST", body: "far" });
      assert.equal(up.status, 200);
      assert.equal((await up.json()).body, "far");

      const lost = await fetch(`${base}/lost`);
      assert.equal(await lost.text(), "JobError no_service");
    } finally {
      await node.close();
      await other.close();
    }
  });
}

Deno.test("TS handlers as functions serve in a module worker, whose client cancel fires the handler's signal", async () => {
  const balancer = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${balancer.addr!.port}`;
  const worker = await startNode({
    connect: [addr],
    handlers: { functions: { ...services }, concurrency: 2 },
  });
  const channel = new Channel();
  const client = await connect(addr);
  try {
    const res = await fetch(`http://${addr}/look/x?q=w`, {
      headers: { "x-request-id": "via-worker" },
    });
    const seen = await res.json();
    assert.equal(seen.id, "via-worker");
    assert.deepEqual(seen.q, ["w"]);
    assert.equal(seen.attempt, 1);

    const ac = new AbortController();
    const request = client.request("wait", "", {
      timeoutMs: 20_000,
      meta: [["x-channel", channel.name]],
      signal: ac.signal,
    });
    await channel.next("started");
    ac.abort();
    await assert.rejects(request, (e) => e instanceof JobError && e.kind === "cancelled");
    assert.equal((await channel.next("aborted")).reason, "AbortError");
  } finally {
    client.close();
    channel.close();
    await worker.close();
    await balancer.close();
  }
});

Deno.test("TS handler sees attempt 2 when its job is redelivered after the worker that had it was lost", async () => {
  const balancer = await startNode({ listen: { port: 0 }, tuning: { retries: 1 } });
  const addr = `127.0.0.1:${balancer.addr!.port}`;
  const channel = new Channel();
  const first = await startNode({ connect: [addr], handlers: { functions: { ...services } } });
  let second: Awaited<ReturnType<typeof startNode>> | null = null;
  try {
    const res = fetch(`http://${addr}/wait`, { headers: { "x-channel": channel.name } });
    const started = await channel.next("started");
    assert.equal(started.attempt, 1);
    // The worker holding the job goes away: the balancer redelivers it.
    second = await startNode({
      connect: [addr],
      handlers: { functions: { wait: (req) => `attempt ${req.attempt} of ${req.id}` } },
    });
    await first.close();
    const answer = await res;
    assert.equal(answer.status, 200);
    assert.equal(await answer.text(), `attempt 2 of ${started.id}`);
  } finally {
    channel.close();
    await first.close();
    await second?.close();
    await balancer.close();
  }
});

Deno.test("startNode refuses handlers with both a module and functions, or neither", async () => {
  await assert.rejects(
    startNode({
      listen: { port: 0 },
      handlers: { module: FIXTURE, functions: {} } as unknown as NodeHandlers,
    }),
    (e) => e instanceof TypeError && /either a module or functions: "both"/.test(e.message),
  );
  await assert.rejects(
    startNode({ listen: { port: 0 }, handlers: {} as NodeHandlers }),
    (e) => e instanceof TypeError && /"neither"/.test(e.message),
  );
  assert.equal(enc.encode("x").length, 1);
});

Deno.test("mod.ts: handlers.hedge lets a balancer hedge a service's stalled job: its copy (attempt 2) answers, the original's signal fires; a bad value is refused", async () => {
  let stalled = false;
  let originalAborted = false;
  const node = await startNode({
    listen: { port: 0 },
    handlers: {
      functions: {
        slow: async (req) => {
          if (req.text() === "fast") return "fast";
          if (req.attempt > 1) return `copy ${req.attempt}`;
          stalled = true;
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 3_000);
            req.signal.addEventListener("abort", () => {
              originalAborted = true;
              clearTimeout(t);
              resolve();
            });
          });
          return "original";
        },
      },
      concurrency: 2,
      hedge: { slow: 50 },
    },
  });
  const client = await connect(`127.0.0.1:${node.addr!.port}`);
  try {
    // The budget: at most 5 % of a service's last 200 jobs are hedged, so the 20th may be.
    for (let i = 0; i < 19; i++) await client.request("slow", "fast");
    const t0 = performance.now();
    const reply = await client.request("slow", "", { timeoutMs: 10_000 });
    assert.equal(new TextDecoder().decode(reply.body), "copy 2");
    assert.ok(stalled, "the original ran");
    assert.ok(performance.now() - t0 < 2_500, "answered by the copy, not the original");
    for (let i = 0; i < 50 && !originalAborted; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(originalAborted, "the original's signal fired when the copy won");
  } finally {
    client.close();
    await node.close();
  }
  await assert.rejects(
    startNode({ listen: { port: 0 }, handlers: { functions: {}, hedge: { slow: 0 } } }),
    {
      name: "TypeError",
      message: 'Hedge of "slow" must be true or whole milliseconds from 1 to 4294967294: "0"',
    },
  );
});
