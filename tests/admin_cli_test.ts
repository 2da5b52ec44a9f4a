/**
 * The admin verbs as real commands (`deno run mod.ts <verb>`, as `deno task ep` runs them)
 * against a balancer with module workers started through the library: `ep workers`,
 * `ep drain`, `ep disable`, `ep enable`, `ep set … max_queue`, `ep errors`, `ep services`
 * and `ep status --watch`, with their exit codes and messages.
 */
import assert from "node:assert/strict";
import { connect, type Node, startNode } from "../mod.ts";
import { MOD, waitStats } from "./_cluster.ts";

const dec = new TextDecoder();

/** Runs `ep <args>` to its end; returns its exit code, stdout and stderr. */
async function ep(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
  }).output();
  return { code, out: dec.decode(stdout), err: dec.decode(stderr) };
}

async function cluster(): Promise<{ addr: string; nodes: Node[]; close(): Promise<void> }> {
  const b = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${b.addr!.port}`;
  const nodes: Node[] = [b];
  for (const name of ["w1", "w2"]) {
    nodes.push(
      await startNode({
        connect: [addr],
        name,
        handlers: { functions: { who: () => name, boom: () => Promise.reject(new Error("x")) } },
        descriptions: { who: { description: "Says who answered", version: "1.0" } },
      }),
    );
  }
  await waitStats(addr, (s) => s.providers.length === 2);
  return {
    addr,
    nodes,
    async close() {
      for (const n of nodes.reverse()) await n.close();
    },
  };
}

Deno.test("ep workers, drain, disable, enable: real commands act on a worker named as ep workers shows it", async () => {
  const c = await cluster();
  try {
    const list = await ep(["workers", "--addr", c.addr]);
    assert.equal(list.code, 0, list.err);
    const lines = list.out.trimEnd().split("\n");
    assert.match(
      lines[0],
      /^WORKER\s+ADDRESS\s+STATE\s+SINCE\s+BUSY\s+OK\s+FAILED\s+LAST ERROR\s+SERVICES$/,
    );
    assert.match(lines[1], /^w1\s+127\.0\.0\.1:\d+\s+ready\s+\d+s\s+0\/1\s+0\s+0\s+-\s+boom,who$/);
    assert.match(lines[2], /^w2\s+127\.0\.0\.1:\d+\s+ready\s/);

    const off = await ep(["disable", "w1", "--addr", c.addr]);
    assert.equal(off.code, 0, off.err);
    assert.match(off.out, /^w1 \(127\.0\.0\.1:\d+\): disabled\n$/);
    const drain = await ep(["drain", "w2", "--grace", "5000", "--addr", c.addr]);
    assert.match(drain.out, /^w2 \(127\.0\.0\.1:\d+\): drained\n$/);
    const after = await ep(["workers", "--addr", c.addr, "--json"]);
    const states = JSON.parse(after.out).workers.map((w: { label: string; state: string }) =>
      `${w.label}:${w.state}`
    );
    assert.deepEqual(states, ["w1:disabled", "w2:drained"]);
    const on = await ep(["enable", "w1", "--addr", c.addr]);
    assert.match(on.out, /^w1 \(127\.0\.0\.1:\d+\): ready\n$/);

    const nope = await ep(["drain", "w9", "--addr", c.addr]);
    assert.equal(nope.code, 1);
    assert.match(
      nope.err,
      /^ep drain: 127\.0\.0\.1:\d+: No worker "w9" is attached \(workers: w1 at 127\.0\.0\.1:\d+, w2 at 127\.0\.0\.1:\d+\)\n$/,
    );
    const usage = await ep(["drain", "--addr", c.addr]);
    assert.equal(usage.code, 2);
    assert.match(
      usage.err,
      /^ep drain: expects a worker: its name, its address or local \(ep drain --help\)\n$/,
    );
    const badGrace = await ep(["drain", "w1", "--grace", "soon", "--addr", c.addr]);
    assert.equal(badGrace.code, 2);
    assert.match(badGrace.err, /invalid --grace "soon": a whole number/);
  } finally {
    await c.close();
  }
});

Deno.test("ep set, errors, services: real commands; a refused setting exits 1 with the balancer's reason", async () => {
  const c = await cluster();
  const client = await connect(c.addr);
  try {
    const set = await ep(["set", "who", "max_queue", "50", "--addr", c.addr]);
    assert.equal(set.code, 0, set.err);
    assert.equal(set.out, "who: max_queue 50\n");
    const reset = await ep(["set", "who", "max_queue", "default", "--addr", c.addr]);
    assert.equal(reset.out, "who: max_queue 10,000\n");
    const unknown = await ep(["set", "nosuch", "max_queue", "5", "--addr", c.addr]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /No service "nosuch"/);
    const badKey = await ep(["set", "who", "timeout", "5", "--addr", c.addr]);
    assert.equal(badKey.code, 2);

    await client.request("boom", "", { timeoutMs: 5000 }).catch(() => {});
    await fetch(`http://${c.addr}/nosuch`, { headers: { "x-request-id": "cli-trace-1" } })
      .then((r) => r.body?.cancel());
    const errors = await ep(["errors", "--limit", "5", "--addr", c.addr]);
    assert.equal(errors.code, 0, errors.err);
    const rows = errors.out.trimEnd().split("\n");
    assert.match(rows[0], /^TIME \(UTC\)\s+SERVICE\s+ERROR\s+REQUEST ID\s+WORKER\s+MESSAGE$/);
    assert.match(
      rows[1],
      /^\d\d:\d\d:\d\d\.\d{3}\s+nosuch\s+no_service\s+cli-trace-1\s+-\s+No service "nosuch"$/,
    );
    assert.match(
      rows[2],
      /^\d\d:\d\d:\d\d\.\d{3}\s+boom\s+handler_error\s+([0-9a-f]{16})\s+127\.0\.0\.1:\d+ \(w[12]\)\s+Handler failed \(request \1\)$/,
    );

    const services = await ep(["services", "--addr", c.addr]);
    assert.equal(services.code, 0, services.err);
    assert.match(services.out, /^SERVICE\s+VERSION\s+WORKERS\s+QUEUE\s+MAX QUEUE\s+DESCRIPTION\n/);
    assert.match(services.out, /^boom\s+-\s+2\s+0\s+10,000\s+-$/m);
    assert.match(services.out, /^who\s+1\.0\s+2\s+0\s+10,000\s+Says who answered$/m);
  } finally {
    client.close();
    await c.close();
  }
});

Deno.test("ep status --watch redraws every second (clearing the screen) until stopped; --count ends it", async () => {
  const c = await cluster();
  try {
    const r = await ep(["status", "--watch", "--count", "2", "--addr", c.addr]);
    assert.equal(r.code, 0, r.err);
    const frames = r.out.split("\x1b[H\x1b[2J").filter(Boolean);
    assert.equal(frames.length, 2);
    for (const f of frames) {
      assert.match(
        f,
        /^ep status --watch · \d\d:\d\d:\d\d · every 1 s · Ctrl-C stops\nep (\S+ )?at 127\.0\.0\.1:\d+ · up /,
      );
      assert.match(f, /^WORKER\s+ADDRESS/m);
    }
    // Until a signal: SIGINT ends it with 0.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MOD, "status", "--watch", "--addr", c.addr],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while ((seen.match(/Ctrl-C stops/g) ?? []).length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    child.kill("SIGINT");
    const status = await child.status;
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    await child.stderr.cancel();
    assert.equal(status.code, 0);
    assert.ok((seen.match(/Ctrl-C stops/g) ?? []).length >= 2, seen);
    const bad = await ep(["status", "--count", "2", "--addr", c.addr]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--count needs --watch/);
  } finally {
    await c.close();
  }
});

Deno.test("admin verbs find the balancer as every command does: --port before the verb, EP_PORT, and a bad --port is a usage error", async () => {
  const c = await cluster();
  try {
    const port = c.addr.split(":")[1];
    const before = await ep(["--port", port, "workers"]);
    assert.equal(before.code, 0, before.err);
    assert.match(before.out, /^WORKER\s/);
    const env = await ep(["services"], { EP_PORT: port });
    assert.equal(env.code, 0, env.err);
    assert.match(env.out, /\bwho\b/);
    const bad = await ep(["workers", "--port", "abc"]);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^ep workers: .*"abc"/);
  } finally {
    await c.close();
  }
});
