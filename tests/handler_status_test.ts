/**
 * Handler statuses over real sockets: a Lua handler's status must be 200–599, with no body
 * on 204 and 304, whether it runs on the balancer's own handler threads (all-in-one) or
 * in a separate worker. Otherwise an HTTP client gets a 500 and an EP client an ERROR
 * handler_error, both with a one-line reason that says what was wrong.
 */
import assert from "node:assert/strict";
import { connect } from "../core/net/client.ts";
import { JobError } from "../core/job.ts";
import { Proc, waitStats } from "./_cluster.ts";
import { Raw } from "./_server_helpers.ts";
import { serve } from "../core/net/server.ts";

const CASES: [string, string][] = [
  ["0", "Handler returned status 0; allowed 200–599"],
  ["99", "Handler returned status 99; allowed 200–599"],
  ["100", "Handler returned status 100; allowed 200–599"],
  ["101", "Handler returned status 101; allowed 200–599"],
  ["600", "Handler returned status 600; allowed 200–599"],
  ["999", "Handler returned status 999; allowed 200–599"],
  ["70000", "Handler returned status 70000; allowed 200–599"],
  ["200.5", "Handler returned status 200.5; allowed 200–599"],
  ["204 x", "Handler returned a body with status 204; a 204 response has no body"],
  ["304 x", "Handler returned a body with status 304; a 304 response has no body"],
];

const STATUS_LUA = `return function(req)
  local s, b = req.body:match("^(%S+) ?(.*)$")
  return { status = tonumber(s), body = b }
end
`;

async function project(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/status.lua`, STATUS_LUA);
  await Deno.writeTextFile(
    `${dir}/main.lua`,
    `ep.listen { port = tonumber(ep.env("EP_PORT", "0")) }
if ep.env("EP_SERVE", "") == "1" then
  ep.threads(1)
  ep.service("status", "status.lua")
end
`,
  );
  await Deno.writeTextFile(
    `${dir}/worker.lua`,
    `ep.connect { ep.env("EP_CONNECT") }
ep.threads(1)
ep.service("status", "status.lua")
`,
  );
  return dir;
}

async function listening(dir: string, env: Record<string, string>) {
  const proc = new Proc(["run", `${dir}/main.lua`], { EP_PORT: "0", ...env });
  const m = await proc.waitFor(/listening on [^:]+:(\d+)/, 30_000);
  return { proc, port: Number(m[1]), addr: `127.0.0.1:${m[1]}` };
}

const dec = new TextDecoder();

/** Every case over HTTP (one keep-alive connection) and over EP. */
async function checkStatuses(port: number): Promise<void> {
  const raw = await Raw.open(port);
  try {
    for (const [body, message] of CASES) {
      const before = dec.decode(raw.bytes).length;
      await raw.send(
        `POST /status HTTP/1.1\r\nHost: h\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      const text = await raw.readUntil((t) => t.slice(before).endsWith("\n"), 10_000);
      const answer = text.slice(before);
      assert.match(answer, /^HTTP\/1\.1 500 Internal Server Error\r\n/, `${body}: ${answer}`);
      assert.ok(answer.endsWith(`\r\n\r\n${message}\n`), `${body}: ${answer}`);
    }
    for (const ok of ["200 fine", "204", "599 odd"]) {
      const before = dec.decode(raw.bytes).length;
      await raw.send(
        `POST /status HTTP/1.1\r\nHost: h\r\nContent-Length: ${ok.length}\r\n\r\n${ok}`,
      );
      const text = await raw.readUntil((t) => /\r\n\r\n/.test(t.slice(before)), 10_000);
      assert.match(text.slice(before), new RegExp(`^HTTP/1\\.1 ${ok.slice(0, 3)} `));
    }
  } finally {
    raw.close();
  }
  const client = await connect(`127.0.0.1:${port}`);
  try {
    for (const [body, message] of CASES) {
      await assert.rejects(client.request("status", body), (e: unknown) => {
        assert.ok(e instanceof JobError, String(e));
        assert.equal(e.kind, "handler_error");
        assert.equal(e.message, message);
        return true;
      });
    }
    assert.equal((await client.request("status", "201 made")).status, 201);
  } finally {
    client.close();
  }
}

Deno.test("handler status: a Lua handler on the balancer's own threads gets a clear error for a status outside 200–599 or a body on 204/304", async () => {
  const dir = await project();
  const b = await listening(dir, { EP_SERVE: "1" });
  try {
    await checkStatuses(b.port);
  } finally {
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("handler status: a Lua handler in a separate worker gets the same clear errors (the worker sends no REPLY EP cannot carry)", async () => {
  const dir = await project();
  const b = await listening(dir, {});
  const w = new Proc(["run", `${dir}/worker.lua`], { EP_CONNECT: b.addr });
  try {
    await waitStats(b.addr, (s) => s.providers.length === 1, 30_000);
    await checkStatuses(b.port);
  } finally {
    await w.stop();
    await b.proc.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("handler status: a TypeScript job handler served in process (no pool) gets the same clear errors over HTTP and EP", async () => {
  const server = serve({
    port: 0,
    handler: (job) => {
      const text = dec.decode(job.body);
      const sp = text.indexOf(" ");
      return {
        status: Number(sp < 0 ? text : text.slice(0, sp)),
        body: sp < 0 ? "" : text.slice(sp + 1),
      };
    },
  });
  try {
    await checkStatuses(server.addr.port);
  } finally {
    await server.close();
  }
});
