import assert from "node:assert/strict";

const PROXY = new URL("./_floor_proxy.ts", import.meta.url).pathname;

/** Sends raw bytes on `conn` and reads until `done` says the text received is whole. */
async function exchange(conn: Deno.Conn, send: string, done: (text: string) => boolean) {
  if (send) await conn.write(new TextEncoder().encode(send));
  const buf = new Uint8Array(4096);
  let text = "";
  while (!done(text)) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return text;
}

Deno.test("floor proxy: forwards requests to its backend, connecting again to one that closed, and refuses bodies", async () => {
  // A backend that answers one request per connection and then closes it, as a server does
  // with a keep-alive connection idle for too long: the proxy must connect again.
  let served = 0;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const c of listener) {
      const head = await exchange(c, "", (t) => t.includes("\r\n\r\n"));
      const path = head.split(" ")[1];
      const body = `${++served} ${path}`;
      await c.write(new TextEncoder().encode(
        `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      ));
      c.close();
    }
  })();
  const backend = { addr: listener.addr as Deno.NetAddr };
  const proxy = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", PROXY, "--backend", `127.0.0.1:${backend.addr.port}`],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const lines = proxy.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = (await lines.read()).value ?? "";
    const port = Number(/port (\d+)/.exec(first)?.[1]);
    assert.ok(port > 0, `the proxy printed its port: "${first}"`);
    lines.releaseLock();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const ended = (body: string) => (t: string) => t.endsWith(body);
      const a = await exchange(conn, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n", ended("1 /one"));
      assert.match(a, /^HTTP\/1\.1 200 /);
      // A request split over two writes, on the same (kept-alive) connection.
      await conn.write(new TextEncoder().encode("GET /two HTTP/1.1\r\nHo"));
      const b = await exchange(conn, "st: x\r\n\r\n", ended("2 /two"));
      assert.match(b, /^HTTP\/1\.1 200 [^]*\r\n\r\n2 \/two$/);
      const c = await exchange(
        conn,
        "POST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        (t) => t.includes("\r\n\r\n"),
      );
      assert.match(c, /^HTTP\/1\.1 501 /);
      assert.equal(served, 2, "the request with a body never reached the backend");
    } finally {
      conn.close();
    }
  } finally {
    proxy.kill("SIGTERM");
    await proxy.status;
    await proxy.stdout.cancel().catch(() => {});
    listener.close();
    await accepting.catch(() => {});
  }
});
