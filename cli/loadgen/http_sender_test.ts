import assert from "node:assert/strict";
import { runLoad } from "./run_load.ts";

const enc = new TextEncoder();

/**
 * A raw HTTP server answering every request on a connection with `answer(path)`, closing
 * after it when it says so.
 */
function rawServer(answer: (path: string) => { bytes: string; close?: boolean }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            let end;
            while ((end = text.indexOf("\r\n\r\n")) >= 0) {
              const path = text.slice(text.indexOf(" ") + 1, text.indexOf(" HTTP/"));
              text = text.slice(end + 4);
              const a = answer(path);
              await conn.write(enc.encode(a.bytes));
              if (a.close) throw new Error("closing");
            }
          }
        } catch {
          // closed
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    addr: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

Deno.test("the HTTP load generator reads chunked, close-delimited and error responses, and refuses garbage", async () => {
  const server = rawServer((path) => {
    if (path === "/chunked") {
      return {
        bytes: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Slept-Us: 2004\r\n\r\n" +
          "3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
      };
    }
    if (path === "/close") return { bytes: "HTTP/1.1 200 OK\r\n\r\nbody until close", close: true };
    if (path === "/busy") {
      return {
        bytes: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n" +
          "Connection: close\r\n\r\nbusy\n",
        close: true,
      };
    }
    if (path === "/twice") { // one request, two responses: the second was never asked for
      const one = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      return { bytes: one + one };
    }
    return { bytes: "SSH-2.0-OpenSSH_9.2\r\n\r\n" };
  });
  try {
    const run = (path: string) =>
      runLoad({
        target: { protocol: "http", addr: server.addr, service: "x", path },
        mode: "closed",
        connections: 2,
        durationMs: 150,
      });
    const chunked = await run("/chunked");
    assert.ok(chunked.ok > 0 && chunked.ok === chunked.sent, JSON.stringify(chunked.errors));
    const close = await run("/close");
    assert.ok(close.ok > 0 && close.ok === close.sent, JSON.stringify(close.errors));
    const busy = await run("/busy");
    assert.ok(busy.sent > 0);
    assert.equal(busy.errors["http_503"], busy.sent);
    const twice = await run("/twice");
    assert.ok(twice.ok > 0 && (twice.errors["bad_response"] ?? 0) === 0);
    assert.equal(
      twice.ok,
      twice.sent,
      "each request answered once; the extra bytes drop the connection",
    );
    const garbage = await run("/garbage");
    assert.ok(garbage.sent > 0);
    assert.equal(garbage.errors["bad_response"], garbage.sent);
  } finally {
    server.close();
  }
});
