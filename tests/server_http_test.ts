import assert from "node:assert/strict";
import { Raw, startServer, statusLines } from "./_server_helpers.ts";

Deno.test("HTTP: fetch reaches echo, hello, health; unknown service is 503 with a reason", async () => {
  const server = startServer();
  try {
    let res = await fetch(`${server.url}/echo`, { method: "POST", body: "ping" });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ping");
    res = await fetch(`${server.url}/echo?hello%20there`);
    assert.equal(await res.text(), "hello there");
    res = await fetch(`${server.url}/hello`);
    assert.equal(await res.text(), "hello\n");
    res = await fetch(`${server.url}/_ep/health`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).status, "ok");
    res = await fetch(`${server.url}/nothing/here`);
    assert.equal(res.status, 503);
    assert.equal(await res.text(), 'No service "nothing"\n');
    res = await fetch(`${server.url}/`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /^No service named in the path\n$/);
  } finally {
    await server.close();
  }
});

Deno.test("HTTP: curl with keep-alive, HTTP/1.0, chunked upload and HEAD", async () => {
  const server = startServer();
  const curl = async (...args: string[]) => {
    const out = await new Deno.Command("curl", { args: ["-sS", ...args], stdout: "piped" })
      .output();
    assert.ok(out.success, `curl ${args.join(" ")} failed`);
    return new TextDecoder().decode(out.stdout);
  };
  try {
    assert.equal(await curl(`${server.url}/echo`, "-d", "hi"), "hi");
    // Two URLs on one curl: the second reuses the connection (keep-alive).
    const two = await curl("-v", `${server.url}/hello`, `${server.url}/hello`, "--stderr", "-");
    assert.match(two, /Re-using existing connection|Reusing existing/);
    assert.equal(await curl("--http1.0", `${server.url}/echo`, "-d", "old"), "old");
    assert.equal(
      await curl(`${server.url}/echo`, "-H", "Transfer-Encoding: chunked", "-d", "chunky"),
      "chunky",
    );
    const head = await curl("-I", `${server.url}/hello`);
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /content-length: 6\r\n/i);
    // Expect: 100-continue is honoured (curl sends it for bodies over 1 MiB by default; force it).
    assert.equal(
      await curl(`${server.url}/echo`, "-H", "Expect: 100-continue", "-d", "cont"),
      "cont",
    );
  } finally {
    await server.close();
  }
});

Deno.test("HTTP: pipelined requests are answered in order, even when the first is slowest", async () => {
  const server = startServer();
  const raw = await Raw.open(server.addr.port);
  try {
    await raw.send(
      "GET /sleep?ms=80 HTTP/1.1\r\nHost: x\r\n\r\n" +
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
        "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    const { text, eof } = await raw.readToEnd();
    assert.ok(eof, "closed after Connection: close");
    assert.deepEqual(statusLines(text), ["200", "200", "200"]);
    const bodies = text.split(/\r\n\r\n/).slice(1).map((s) => s.split("HTTP/1.1")[0]);
    assert.deepEqual(bodies, ["slept 80\n", "abc", "hello\n"]);
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("HTTP: smuggling attempts get 400 with a reason and a close", async () => {
  const server = startServer();
  const cases = [
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "GET /echo HTTP/1.1\r\nHost: x\r\nFoo : bar\r\n\r\n",
    "GET /echo HTTP/1.1\r\nHost: x\r\nFoo: bar\r\n baz\r\n\r\n",
    "GET /echo HTTP/1.1\nHost: x\n\n",
    "GET /echo HTTP/1.1\r\n\r\n",
  ];
  try {
    for (const req of cases) {
      const raw = await Raw.open(server.addr.port);
      await raw.send(req + "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
      const { text, eof } = await raw.readToEnd();
      raw.close();
      assert.ok(eof, `closed after: ${JSON.stringify(req)}`);
      const statuses = statusLines(text);
      assert.equal(statuses.length, 1, `one answer only for ${JSON.stringify(req)}: ${text}`);
      assert.ok(statuses[0] === "400" || statuses[0] === "501", text);
      const body = text.split("\r\n\r\n")[1];
      assert.match(body, /^[^\r\n]+\n$/, "a one-line reason");
    }
  } finally {
    await server.close();
  }
});

Deno.test("HTTP: limits answer 414, 431, 413 before reading everything", async () => {
  const server = startServer({
    http: { limits: { maxRequestLine: 256, maxHeaderBytes: 1024, maxBodyBytes: 1000 } },
  });
  const cases: [string, string][] = [
    [`GET /echo?${"a".repeat(300)} HTTP/1.1\r\nHost: x\r\n\r\n`, "414"],
    [`GET /echo HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(2000)}\r\n\r\n`, "431"],
    ["POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", "413"],
  ];
  try {
    for (const [req, want] of cases) {
      const raw = await Raw.open(server.addr.port);
      await raw.send(req);
      const { text, eof } = await raw.readToEnd();
      raw.close();
      assert.ok(eof);
      assert.deepEqual(statusLines(text), [want], text);
    }
  } finally {
    await server.close();
  }
});

Deno.test("HTTP: a slowloris gets 408 and a close; others are served meanwhile", async () => {
  const server = startServer({ http: { headersTimeoutMs: 300 } });
  const slow = await Raw.open(server.addr.port);
  try {
    await slow.send("GET /hello HTTP/1.1\r\nHost: x\r\n");
    const drip = setInterval(() => slow.send("X-A: b\r\n").catch(() => {}), 50);
    const res = await fetch(`${server.url}/hello`);
    assert.equal(await res.text(), "hello\n");
    const { text, eof } = await slow.readToEnd(3000);
    clearInterval(drip);
    assert.ok(eof, "slowloris closed");
    assert.deepEqual(statusLines(text), ["408"]);
  } finally {
    slow.close();
    await server.close();
  }
});

Deno.test("HTTP: an idle keep-alive connection is closed after the idle timeout", async () => {
  const server = startServer({ http: { idleTimeoutMs: 300 } });
  const raw = await Raw.open(server.addr.port);
  try {
    await raw.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    const { text, eof } = await raw.readToEnd(3000);
    assert.deepEqual(statusLines(text), ["200"]);
    assert.ok(eof, "closed when idle");
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("HTTP: a client that never reads is cut off; other clients are unaffected", async () => {
  const server = startServer({
    transport: { highWater: 64 << 10, maxBuffered: 1 << 20, stuckTimeoutMs: 500 },
  });
  const raw = await Raw.open(server.addr.port);
  try {
    // Ask for 256 responses of 64 KiB and never read them.
    const req = "GET /big?kb=64 HTTP/1.1\r\nHost: x\r\n\r\n";
    raw.send(req.repeat(256)).catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    const res = await fetch(`${server.url}/hello`);
    assert.equal(await res.text(), "hello\n");
    assert.ok(Date.now() - t0 < 1000, "others served promptly");
    const deadline = Date.now() + 5000;
    while (server.counters.transport.stuckClosed === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(server.counters.transport.stuckClosed, 1);
  } finally {
    raw.close();
    await server.close();
  }
});

Deno.test("server: connections past maxConnections are closed at once and counted", async () => {
  const server = startServer({ maxConnections: 2 });
  const held = [await Raw.open(server.addr.port), await Raw.open(server.addr.port)];
  try {
    await held[0].send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    await held[0].readUntil((t) => t.includes("hello\n"));
    const extra = await Raw.open(server.addr.port);
    await extra.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n").catch(() => {});
    const { text, eof } = await extra.readToEnd();
    extra.close();
    assert.ok(eof);
    assert.equal(text, "");
    assert.equal(server.counters.refused, 1);
    // A slot frees when a connection closes.
    held[1].close();
    const deadline = Date.now() + 2000;
    while (server.counters.open > 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const again = await Raw.open(server.addr.port);
    await again.send("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.deepEqual(statusLines((await again.readToEnd()).text), ["200"]);
    again.close();
  } finally {
    for (const h of held) h.close();
    await server.close();
  }
});

Deno.test("server: no tick timer while it has no connection; the first starts it, and it stops once the last has closed", async () => {
  const realSet = globalThis.setInterval;
  const realClear = globalThis.clearInterval;
  const armed = new Set<ReturnType<typeof setInterval>>();
  globalThis.setInterval = ((fn: () => void, ms: number) => {
    const id = realSet(fn, ms);
    armed.add(id);
    return id;
  }) as typeof setInterval;
  globalThis.clearInterval = ((id: ReturnType<typeof setInterval>) => {
    armed.delete(id);
    realClear(id);
  }) as typeof clearInterval;
  const server = startServer();
  try {
    assert.equal(armed.size, 0, "an idle server holds no timer");
    const raw = await Raw.open(server.addr.port);
    await raw.send("GET /echo HTTP/1.1\r\nhost: x\r\n\r\n");
    await raw.readUntil((t) => statusLines(t).length === 1);
    assert.equal(armed.size, 1, "a connection: one tick timer (timeouts, heartbeats)");
    const raw2 = await Raw.open(server.addr.port);
    await raw2.send("GET /echo HTTP/1.1\r\nhost: x\r\n\r\n");
    await raw2.readUntil((t) => statusLines(t).length === 1);
    assert.equal(armed.size, 1, "still one for two connections");
    raw.close();
    raw2.close();
    const end = Date.now() + 5000;
    while (armed.size > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(armed.size, 0, "the last connection gone: the timer stops");
  } finally {
    globalThis.setInterval = realSet;
    globalThis.clearInterval = realClear;
    await server.close();
  }
});
