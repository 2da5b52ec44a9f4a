/**
 * Handler internals do not reach clients: a handler that throws (TypeScript) or raises (Lua)
 * is answered, by default, with a generic message and the request id (`Handler failed
 * (request <id>)`; HTTP 500 with `x-request-id`, EP ERROR handler_error); the handler's own
 * message goes to the log of the process that ran it, with the request id. `exposeErrors`
 * (node option), `ep.config { expose_errors = true }` and `--expose-errors` keep the
 * handler's message for development. Real sockets and processes.
 */
import assert from "node:assert/strict";
import { connect, JobError, startNode } from "../mod.ts";
import { Proc, SERVICES, waitStats } from "./_cluster.ts";

const GENERIC = /^Handler failed \(request ([0-9a-f]{16})\)$/;

function boom(): never {
  throw new Error("secret detail: db password hunter2");
}

Deno.test("handler errors (all-in-one, TS functions): the client gets a generic message with the request id, HTTP and EP; exposeErrors keeps the message", async () => {
  const node = await startNode({ listen: { port: 0 }, handlers: { functions: { boom } } });
  const open = await startNode({
    listen: { port: 0 },
    handlers: { functions: { boom } },
    exposeErrors: true,
  });
  const client = await connect(`127.0.0.1:${node.addr!.port}`);
  try {
    const res = await fetch(`http://127.0.0.1:${node.addr!.port}/boom`, { method: "POST" });
    assert.equal(res.status, 500);
    const text = (await res.text()).trim();
    const id = res.headers.get("x-request-id");
    assert.match(text, GENERIC);
    assert.equal(GENERIC.exec(text)![1], id, "the message names the request id of the header");
    const e = await client.request("boom", "", { timeoutMs: 5000 }).then(() => null, (x) => x);
    assert.ok(e instanceof JobError && e.kind === "handler_error");
    assert.match(e.message, GENERIC);
    assert.ok(!e.message.includes("hunter2"));

    const dev = await fetch(`http://127.0.0.1:${open.addr!.port}/boom`, { method: "POST" });
    assert.equal(dev.status, 500);
    assert.equal((await dev.text()).trim(), "secret detail: db password hunter2");
  } finally {
    client.close();
    await node.close();
    await open.close();
  }
});

Deno.test("handler errors (module worker process): the worker answers the generic message and logs the detail with the request id", async () => {
  const b = await startNode({ listen: { port: 0 } });
  const addr = `127.0.0.1:${b.addr!.port}`;
  const w = new Proc([
    "worker",
    "--connect",
    addr,
    "--handlers",
    SERVICES,
    "--threads",
    "1",
    "--log-level",
    "info",
  ]);
  try {
    await waitStats(addr, (s) => s.providers.length === 1);
    const res = await fetch(`http://${addr}/fail`, {
      method: "POST",
      headers: { "x-request-id": "trace-77" },
    });
    assert.equal(res.status, 500);
    assert.equal((await res.text()).trim(), "Handler failed (request trace-77)");
    assert.equal(res.headers.get("x-request-id"), "trace-77");
    await w.waitFor(/trace-77[^\n]*boom|boom[^\n]*trace-77/);
  } finally {
    await w.stop();
    await b.close();
  }
});

Deno.test("handler errors (Lua, ep run): a Lua error is answered generically with the request id; ep.config { expose_errors = true } and --expose-errors keep it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ep-handlererr-" });
  const script = (extra: string) =>
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
ep.threads(1)
${extra}
ep.service("boom", "handlererr.lua")
`;
  await Deno.writeTextFile(
    `${dir}/handlererr.lua`,
    `return function(req)\n  error("kaboom")\nend\n`,
  );
  await Deno.writeTextFile(`${dir}/main.lua`, script(""));
  await Deno.writeTextFile(`${dir}/dev.lua`, script("ep.config { expose_errors = true }"));
  const start = async (args: string[]) => {
    const proc = new Proc(["run", ...args], { EP_PORT: "0" });
    const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 20_000);
    return { proc, url: `http://127.0.0.1:${m[1]}` };
  };
  const runs = [
    await start([`${dir}/main.lua`]),
    await start([`${dir}/dev.lua`]),
    await start([`${dir}/main.lua`, "--expose-errors"]),
  ];
  try {
    const [prod, dev, flag] = runs;
    const res = await fetch(`${prod.url}/boom`, { method: "POST" });
    assert.equal(res.status, 500);
    const text = (await res.text()).trim();
    assert.match(text, GENERIC);
    const id = res.headers.get("x-request-id")!;
    await prod.proc.waitFor(new RegExp(`${id}[^\\n]*kaboom|kaboom[^\\n]*${id}`));
    for (const r of [dev, flag]) {
      const open = await fetch(`${r.url}/boom`, { method: "POST" });
      assert.equal(open.status, 500);
      assert.equal((await open.text()).trim(), "handlererr.lua:2: kaboom");
    }
  } finally {
    for (const r of runs) await r.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
