import assert from "node:assert/strict";
import { callMain, EXIT } from "../cli/call.ts";
import { JobError, type JobHandler } from "../core/job.ts";
import { serve } from "../core/net/server.ts";
import { ErrorCode } from "../protocol/errors.ts";

const dec = new TextDecoder();
const enc = new TextEncoder();

const timers = new Set<ReturnType<typeof setTimeout>>();

const handler: JobHandler = (job) => {
  switch (job.service) {
    case "echo":
      return { body: job.body };
    case "method":
      return { body: job.method };
    case "headers":
      return { body: JSON.stringify(job.headers.filter(([k]) => k.startsWith("x-"))) };
    case "slow":
      return new Promise((r) => {
        const t = setTimeout(() => r({ body: "late" }), 800);
        timers.add(t);
      });
    case "timeout":
      throw new JobError(ErrorCode.TIMEOUT, "Timed out waiting in the queue");
    case "full":
      throw new JobError(ErrorCode.OVERLOADED, 'Queue for "full" is full');
    case "lost":
      throw new JobError(ErrorCode.WORKER_LOST, "Worker lost while running the job");
    case "boom":
      throw new JobError(ErrorCode.HANDLER_ERROR, "boom");
    default:
      throw new JobError(ErrorCode.NO_SERVICE, `No service "${job.service}"`);
  }
};

/** Runs `ep call` in-process against a fresh server; returns exit code, stdout, stderr. */
async function run(args: string[], stdin?: Uint8Array) {
  const server = serve({ port: 0, handler });
  let out = new Uint8Array(0);
  const err: string[] = [];
  try {
    const code = await callMain([...args, "--addr", `127.0.0.1:${server.addr.port}`], {
      out: (b) => {
        const joined = new Uint8Array(out.length + b.length);
        joined.set(out);
        joined.set(b, out.length);
        out = joined;
      },
      err: (line) => void err.push(line),
      stdin: () => new Blob([(stdin ?? new Uint8Array(0)).slice()]).stream(),
    });
    return { code, out: dec.decode(out), err: err.join("\n") };
  } finally {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    await server.close();
  }
}

for (const http of [false, true]) {
  const via = http ? "HTTP" : "EP";
  const flag = http ? ["--http"] : [];

  Deno.test(`ep call over ${via} prints the reply body and exits 0`, async () => {
    const r = await run(["echo", "hello", ...flag]);
    assert.equal(r.code, EXIT.ok);
    assert.equal(r.out, "hello");
  });

  Deno.test(`ep call over ${via} exits with a distinct code per failure`, async () => {
    const cases: [string, number][] = [
      ["timeout", EXIT.timeout],
      ["full", EXIT.overloaded],
      ["nosuch", EXIT.noService],
      ["lost", EXIT.workerLost],
      ["boom", EXIT.error],
    ];
    for (const [service, code] of cases) {
      const r = await run([service, ...flag]);
      assert.equal(r.code, code, `${service}: ${r.err}`);
      assert.equal(r.out, "");
      assert.ok(r.err.length > 0);
    }
  });

  Deno.test(`ep call over ${via} gives up after --timeout`, async () => {
    const r = await run(["slow", "--timeout", "100", ...flag]);
    assert.equal(r.code, EXIT.timeout, r.err);
  });

  Deno.test(`ep call over ${via} sends --header fields`, async () => {
    const r = await run(["headers", "--header", "x-a: 1", "--header", "X-B:two", ...flag]);
    assert.equal(r.code, EXIT.ok, r.err);
    assert.deepEqual(JSON.parse(r.out), [["x-a", "1"], ["x-b", "two"]]);
  });

  Deno.test(`ep call over ${via} reads the body from @file and from stdin`, async () => {
    const file = await Deno.makeTempFile();
    try {
      await Deno.writeFile(file, enc.encode("from a file\n"));
      assert.equal((await run(["echo", `@${file}`, ...flag])).out, "from a file\n");
    } finally {
      await Deno.remove(file);
    }
    assert.equal((await run(["echo", "-", ...flag], enc.encode("from stdin"))).out, "from stdin");
  });

  Deno.test(`ep call over ${via} exits 7 when the connection is refused`, async () => {
    const server = serve({ port: 0, handler });
    const port = server.addr.port;
    await server.close();
    const err: string[] = [];
    const code = await callMain(["echo", ...flag, "--addr", `127.0.0.1:${port}`], {
      err: (l) => void err.push(l),
    });
    assert.equal(code, EXIT.refused);
    assert.match(err.join(), /cannot connect/);
  });
}

Deno.test("ep call --http uses GET without a body and POST with one", async () => {
  assert.equal((await run(["method", "--http"])).out, "GET");
  assert.equal((await run(["method", "x", "--http"])).out, "POST");
});

Deno.test("ep call rejects bad usage with exit 2 and documents its exit codes", async () => {
  const err: string[] = [];
  const io = { err: (l: string) => void err.push(l) };
  assert.equal(await callMain([], io), EXIT.usage);
  assert.equal(await callMain(["echo", "--header", "nocolon"], io), EXIT.usage);
  // A header that would split the request head it is written into.
  assert.equal(await callMain(["echo", "--header", "x: a\r\nX-Evil: 1"], io), EXIT.usage);
  assert.equal(await callMain(["echo", "--header", "x: a\nb"], io), EXIT.usage);
  assert.equal(await callMain(["echo", "--header", "x y: a"], io), EXIT.usage);
  assert.match(err.at(-1) ?? "", /not a token/);
  assert.equal(await callMain(["echo", "--timeout", "soon"], io), EXIT.usage);
  assert.equal(await callMain(["echo", "a", "b"], io), EXIT.usage);
  assert.equal(await callMain(["echo", "--nope"], io), EXIT.usage);
  let help = "";
  assert.equal(await callMain(["--help"], { out: (b) => void (help += dec.decode(b)) }), EXIT.ok);
  for (const code of Object.values(EXIT)) assert.match(help, new RegExp(`^  ${code}  `, "m"));
});

/** A raw server answering one request with `bytes`, then closing. */
function rawServer(bytes: string): { addr: string; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of listener) {
      await conn.read(new Uint8Array(65536)).catch(() => null);
      await conn.write(enc.encode(bytes)).catch(() => 0);
      conn.close();
    }
  })().catch(() => {});
  return {
    addr: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: () => listener.close(),
  };
}

Deno.test("ep call --http reads chunked and close-delimited bodies and refuses a malformed response", async () => {
  const cases: [string, number, RegExp][] = [
    [
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
      EXIT.ok,
      /^abcde$/,
    ],
    ["HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", EXIT.ok, /^until the end$/],
    ["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", EXIT.error, /closed inside a response/],
    ["", EXIT.error, /closed before the response/],
    ["HTTP/1.1 200 OK\r\nX: a\nB: c\r\n\r\n", EXIT.error, /bare LF/],
    ["SSH-2.0-OpenSSH_9.2\r\n\r\n", EXIT.error, /Malformed status line/],
  ];
  for (const [bytes, code, want] of cases) {
    const server = rawServer(bytes);
    let out = "";
    const err: string[] = [];
    try {
      const got = await callMain(["echo", "--http", "--addr", server.addr], {
        out: (b) => void (out += dec.decode(b)),
        err: (line) => void err.push(line),
      });
      assert.equal(got, code, `${JSON.stringify(bytes)}: ${err.join("\n")}`);
      assert.match(code === EXIT.ok ? out : err.join("\n"), want);
    } finally {
      server.close();
    }
  }
});
