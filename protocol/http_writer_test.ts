import assert from "node:assert/strict";
import { HttpError } from "./errors.ts";
import { CONTINUE_100, errorResponse, httpDate, writeResponse } from "./http_writer.ts";

const DATE = "Sun, 06 Nov 1994 08:49:37 GMT";
const dec = new TextDecoder();
const text = (b: Uint8Array) => dec.decode(b);

Deno.test("HTTP writer writes status line, fields, Date, Content-Length and body", () => {
  const out = writeResponse(
    { status: 200, headers: [["Content-Type", "text/plain"], ["X-A", "1"]], body: "hello" },
    { keepAlive: true, date: DATE },
  );
  assert.equal(
    text(out),
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n" +
      `Date: ${DATE}\r\nContent-Length: 5\r\n\r\nhello`,
  );
});

Deno.test("HTTP writer dates a response by the caller's clock reading when given one", () => {
  const at = Date.UTC(2026, 11, 6, 17, 0, 0, 500);
  const s = text(writeResponse({ status: 200 }, { keepAlive: true, now: at }));
  assert.match(s, /\r\nDate: Sun, 06 Dec 2026 17:00:00 GMT\r\n/);
  // Without it the clock is read: the current second (or the next, across a tick).
  const before = Math.floor(Date.now() / 1000) * 1000;
  const d = /\r\nDate: ([^\r]+)\r\n/.exec(
    text(writeResponse({ status: 200 }, { keepAlive: true })),
  );
  const sent = Date.parse(d![1]);
  assert.ok(sent >= before && sent <= before + 2000, d![1]);
});

Deno.test("HTTP writer accepts headers as a record and bytes as the body", () => {
  const out = writeResponse(
    { status: 201, headers: { "x-b": "2" }, body: new Uint8Array([1, 2, 3]) },
    { keepAlive: true, date: DATE },
  );
  const s = text(out.subarray(0, out.length - 3));
  assert.equal(s, `HTTP/1.1 201 Created\r\nx-b: 2\r\nDate: ${DATE}\r\nContent-Length: 3\r\n\r\n`);
  assert.deepEqual([...out.subarray(out.length - 3)], [1, 2, 3]);
});

Deno.test("HTTP writer sends Connection: close when not kept alive", () => {
  const s = text(writeResponse({ status: 404 }, { keepAlive: false, date: DATE }));
  assert.equal(
    s,
    `HTTP/1.1 404 Not Found\r\nConnection: close\r\nDate: ${DATE}\r\nContent-Length: 0\r\n\r\n`,
  );
});

Deno.test("HTTP writer sends Connection: keep-alive only to kept HTTP/1.0 clients", () => {
  const v10 = text(writeResponse({ status: 200 }, { keepAlive: true, version: "1.0", date: DATE }));
  assert.ok(v10.startsWith("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"));
  const v11 = text(writeResponse({ status: 200 }, { keepAlive: true, version: "1.1", date: DATE }));
  assert.ok(!v11.includes("Connection"));
  const close10 = text(
    writeResponse({ status: 200 }, { keepAlive: false, version: "1.0", date: DATE }),
  );
  assert.ok(close10.includes("Connection: close\r\n"));
});

Deno.test("HTTP writer sends no body bytes for HEAD but keeps Content-Length", () => {
  const s = text(
    writeResponse({ status: 200, body: "héllo" }, { keepAlive: true, head: true, date: DATE }),
  );
  assert.equal(s, `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nContent-Length: 6\r\n\r\n`);
  const given = text(writeResponse(
    { status: 200, headers: [["Content-Length", "1234"]] },
    { keepAlive: true, head: true, date: DATE },
  ));
  assert.equal(given, `HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nContent-Length: 1234\r\n\r\n`);
});

Deno.test("HTTP writer encodes string bodies as UTF-8 with their byte length", () => {
  const out = writeResponse({ status: 200, body: "héllo 😀" }, { keepAlive: true, date: DATE });
  const s = text(out);
  assert.ok(s.includes("Content-Length: 11\r\n\r\nhéllo 😀"), s);
  assert.equal(out.length, s.indexOf("\r\n\r\n") + 4 + 11); // the head is ASCII
  // Short bodies are written byte by byte, longer ones by the encoder: a non-ASCII character
  // first, last or alone is caught by both.
  for (const n of [1, 63, 64, 65, 200, 5000]) {
    for (const body of ["é" + "a".repeat(n), "a".repeat(n) + "é", "a".repeat(n)]) {
      const bytes = new TextEncoder().encode(body);
      const got = text(writeResponse({ status: 200, body }, { keepAlive: true, date: DATE }));
      assert.ok(got.endsWith(`Content-Length: ${bytes.length}\r\n\r\n${body}`), `${n}`);
    }
  }
});

/** Bytes as a byte string (Latin-1): byte `b` becomes U+00bb. */
function latin1(b: Uint8Array): string {
  let s = "";
  for (const c of b) s += String.fromCharCode(c);
  return s;
}

/** A byte string as bytes; throws on a code unit above 0xFF. */
function bytesOf(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    assert.ok(c <= 0xff, `code unit ${c} in a byte string`);
    b[i] = c;
  }
  return b;
}

Deno.test("HTTP writer sizes the head in bytes: a non-ASCII field value cannot push the body into the head (response splitting)", () => {
  // What the echo service sends back for `Content-Type: a\xe9\xe9\xe9` (a byte string from
  // the parser) and a body that would become header fields if it overwrote the head's end.
  const attack = "\nSet-Cookie: x\r\n\r\n";
  for (const body of [new TextEncoder().encode(attack), attack, attack.repeat(100)]) {
    const out = writeResponse(
      { status: 200, headers: [["content-type", "a\xe9\xe9\xe9"]], body },
      { keepAlive: true, date: DATE },
    );
    const size = typeof body === "string" ? body.length : body.length;
    assert.equal(
      latin1(out),
      `HTTP/1.1 200 OK\r\ncontent-type: a\xe9\xe9\xe9\r\nDate: ${DATE}\r\n` +
        `Content-Length: ${size}\r\n\r\n${typeof body === "string" ? body : attack}`,
    );
  }
});

Deno.test("HTTP writer writes field names, values and reasons byte for byte as Latin-1", () => {
  const out = writeResponse(
    { status: 200, reason: "Tr\xe8s bien", headers: [["x-name", "Zo\xeb \xff\x80"]], body: "ab€" },
    { keepAlive: true, date: DATE },
  );
  assert.deepEqual(
    out,
    bytesOf(
      `HTTP/1.1 200 Tr\xe8s bien\r\nx-name: Zo\xeb \xff\x80\r\nDate: ${DATE}\r\n` +
        "Content-Length: 5\r\n\r\nab\xe2\x82\xac",
    ),
  );
  // Every head and body size, through the slab and past it (4 KiB), ASCII or not.
  for (const n of [0, 1, 100, 1024, 1025, 4000, 5000]) {
    const value = "\xe9".repeat(n);
    const body = "\u00e9".repeat(n); // a text body: two UTF-8 bytes per character
    const o = writeResponse({ status: 200, headers: [["x", value]], body }, {
      keepAlive: true,
      date: DATE,
    });
    const want = `HTTP/1.1 200 OK\r\nx: ${value}\r\nDate: ${DATE}\r\nContent-Length: ${
      2 * n
    }\r\n\r\n`;
    assert.equal(latin1(o.subarray(0, want.length)), want);
    assert.equal(dec.decode(o.subarray(want.length)), body);
    assert.equal(o.length, want.length + 2 * n);
  }
});

Deno.test("HTTP writer refuses field values, reasons and dates that are not field-value bytes", () => {
  const bad = ["a\x01b", "\x7f", "a\x1fb", "\x0b", "\x0c", "Zo\u00eb\u0100", "€", "\ud800", "😀"];
  for (const v of bad) {
    assert.throws(
      () => writeResponse({ status: 200, headers: [["x", v]] }, { keepAlive: true }),
      TypeError,
      JSON.stringify(v),
    );
    assert.throws(() => writeResponse({ status: 200, reason: v }, { keepAlive: true }), TypeError);
    assert.throws(() => writeResponse({ status: 200 }, { keepAlive: true, date: v }), TypeError);
  }
  for (const name of ["n\xe9", "\u0100", "a\x7f", "a\tb"]) {
    assert.throws(
      () => writeResponse({ status: 200, headers: [[name, "v"]] }, { keepAlive: true }),
      TypeError,
    );
  }
  // HTAB, SP, VCHAR and obs-text are field-value bytes.
  const ok = writeResponse(
    { status: 200, headers: [["x", "\t a\x80\xff~ "]], reason: "\ta ~\xff" },
    { keepAlive: true, date: DATE },
  );
  assert.ok(latin1(ok).startsWith("HTTP/1.1 200 \ta ~\xff\r\nx: \t a\x80\xff~ \r\n"));
});

Deno.test("HTTP writer owns framing and hop-by-hop fields", () => {
  const s = text(writeResponse({
    status: 200,
    headers: [
      ["Connection", "keep-alive, x"],
      ["Keep-Alive", "timeout=5"],
      ["Transfer-Encoding", "chunked"],
      ["Content-Length", "99"],
      ["TE", "trailers"],
      ["Trailer", "x"],
      ["Upgrade", "h2c"],
      ["Proxy-Connection", "close"],
      ["X-Kept", "yes"],
    ],
    body: "abc",
  }, { keepAlive: false, date: DATE }));
  assert.equal(
    s,
    "HTTP/1.1 200 OK\r\nConnection: close\r\nX-Kept: yes\r\n" +
      `Date: ${DATE}\r\nContent-Length: 3\r\n\r\nabc`,
  );
});

Deno.test("HTTP writer keeps a caller Date", () => {
  const s = text(writeResponse({ status: 200, headers: [["date", "x"]] }, { keepAlive: true }));
  assert.equal(s, "HTTP/1.1 200 OK\r\ndate: x\r\nContent-Length: 0\r\n\r\n");
});

Deno.test("HTTP writer adds a current IMF-fixdate Date when none is given", () => {
  const s = text(writeResponse({ status: 200 }, { keepAlive: true }));
  const m = /\r\nDate: ([^\r]+)\r\n/.exec(s);
  assert.ok(m);
  assert.match(m[1], /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
  assert.ok(Math.abs(Date.parse(m[1]) - Date.now()) < 2000);
  const again = httpDate(); // the same cached second, or the next one
  assert.ok(again === m[1] || Date.parse(again) - Date.parse(m[1]) === 1000, again);
  assert.equal(httpDate(784111777000), DATE);
});

Deno.test("HTTP writer omits body and Content-Length for 204, keeps a given one for 304", () => {
  assert.equal(
    text(writeResponse({ status: 204 }, { keepAlive: true, date: DATE })),
    `HTTP/1.1 204 No Content\r\nDate: ${DATE}\r\n\r\n`,
  );
  assert.equal(
    text(writeResponse({ status: 304 }, { keepAlive: true, date: DATE })),
    `HTTP/1.1 304 Not Modified\r\nDate: ${DATE}\r\n\r\n`,
  );
  assert.equal(
    text(writeResponse({ status: 304, headers: [["content-length", "7"]] }, {
      keepAlive: true,
      date: DATE,
    })),
    `HTTP/1.1 304 Not Modified\r\nDate: ${DATE}\r\nContent-Length: 7\r\n\r\n`,
  );
  assert.throws(() => writeResponse({ status: 204, body: "x" }, { keepAlive: true }), TypeError);
  assert.throws(() => writeResponse({ status: 304, body: "x" }, { keepAlive: true }), TypeError);
});

Deno.test("HTTP writer uses a custom reason and a blank one for unknown statuses", () => {
  assert.ok(
    text(writeResponse({ status: 200, reason: "Fine" }, { keepAlive: true, date: DATE }))
      .startsWith("HTTP/1.1 200 Fine\r\n"),
  );
  assert.ok(
    text(writeResponse({ status: 299 }, { keepAlive: true, date: DATE })).startsWith(
      "HTTP/1.1 299 \r\n",
    ),
  );
  // A custom reason does not pollute the cache.
  assert.ok(
    text(writeResponse({ status: 200 }, { keepAlive: true, date: DATE })).startsWith(
      "HTTP/1.1 200 OK\r\n",
    ),
  );
});

Deno.test("HTTP writer refuses response splitting with TypeError", () => {
  const w = (headers: [string, string][]) => () =>
    writeResponse({ status: 200, headers }, { keepAlive: true });
  assert.throws(w([["x", "a\r\nSet-Cookie: evil"]]), TypeError);
  assert.throws(w([["x", "a\nb"]]), TypeError);
  assert.throws(w([["x", "a\rb"]]), TypeError);
  assert.throws(w([["x", "a\0b"]]), TypeError);
  assert.throws(w([["x\r\ny", "a"]]), TypeError);
  assert.throws(w([["x y", "a"]]), TypeError);
  assert.throws(w([["", "a"]]), TypeError);
  assert.throws(w([["x:", "a"]]), TypeError);
  assert.throws(w([["content-length", "1\r\n"]]), TypeError);
  assert.throws(w([["content-length", "-1"]]), TypeError);
  assert.throws(
    () => writeResponse({ status: 200, reason: "OK\r\nX: y" }, { keepAlive: true }),
    TypeError,
  );
  assert.throws(
    () => writeResponse({ status: 200 }, { keepAlive: true, date: "x\r\ny: z" }),
    TypeError,
  );
});

Deno.test("HTTP writer refuses statuses outside 200–599 with RangeError", () => {
  for (const status of [0, 99, 100, 199, 600, 999, 1000, 200.5, NaN]) {
    assert.throws(() => writeResponse({ status }, { keepAlive: true }), RangeError);
  }
});

Deno.test("HTTP writer's errorResponse writes the reason as text and closes", () => {
  const s = text(errorResponse(new HttpError(431, "Too many header fields"), { date: DATE }));
  assert.equal(
    s,
    "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n" +
      `Content-Type: text/plain; charset=utf-8\r\nDate: ${DATE}\r\nContent-Length: 23\r\n\r\n` +
      "Too many header fields\n",
  );
  const kept = text(errorResponse(new HttpError(404, "No such thing", { close: false }), {
    date: DATE,
  }));
  assert.ok(!kept.includes("Connection"));
  const forced = text(errorResponse(new HttpError(404, "x", { close: false }), {
    keepAlive: false,
    date: DATE,
  }));
  assert.ok(forced.includes("Connection: close"));
  const oneLine = text(errorResponse(new HttpError(400, "a\r\nb"), { date: DATE }));
  assert.ok(oneLine.endsWith("\r\n\r\na b\n"));
  const head = text(errorResponse(new HttpError(400, "bad"), { head: true, date: DATE }));
  assert.ok(head.endsWith("Content-Length: 4\r\n\r\n"));
});

Deno.test("HTTP writer's CONTINUE_100 is the interim response", () => {
  assert.equal(text(CONTINUE_100), "HTTP/1.1 100 Continue\r\n\r\n");
});

Deno.test("HTTP writer's responses stay intact after many later writes", () => {
  const outs: Uint8Array[] = [];
  for (let i = 0; i < 3000; i++) {
    const body = i % 3 === 0 ? "x".repeat(i % 500) : new Uint8Array(i % 700).fill(i & 0xff);
    outs.push(writeResponse({ status: 200, body }, { keepAlive: true, date: DATE }));
  }
  for (let i = 0; i < outs.length; i++) {
    const s = text(outs[i]);
    const len = i % 3 === 0 ? i % 500 : i % 700;
    assert.ok(s.startsWith(`HTTP/1.1 200 OK\r\nDate: ${DATE}\r\nContent-Length: ${len}\r\n\r\n`));
    const body = outs[i].subarray(outs[i].length - len);
    const want = i % 3 === 0 ? 0x78 : i & 0xff;
    assert.ok(body.every((b) => b === want), `response ${i}`);
  }
});

Deno.test("HTTP writer writes large bodies whole", () => {
  const big = new Uint8Array(100_000).fill(7);
  const out = writeResponse({ status: 200, body: big }, { keepAlive: true, date: DATE });
  assert.equal(out.length - 100_000, text(out).indexOf("\r\n\r\n") + 4);
  assert.ok(out.subarray(out.length - 100_000).every((b) => b === 7));
  const s = "é".repeat(3000); // a large non-ASCII string body
  const o2 = text(writeResponse({ status: 200, body: s }, { keepAlive: true, date: DATE }));
  assert.ok(o2.endsWith(`Content-Length: 6000\r\n\r\n${s}`));
});

Deno.test("HTTP writer writes each field as it checked it: a value that changes when read again cannot split the response", () => {
  let reads = 0;
  const field = ["x-a", ""] as [string, string];
  Object.defineProperty(field, 1, {
    get: () => reads++ === 0 ? "ok" : "ok\r\nX-Injected: 1",
  });
  const record = {} as Record<string, string>;
  let recordReads = 0;
  Object.defineProperty(record, "x-b", {
    enumerable: true,
    get: () => recordReads++ === 0 ? "fine" : "fine\r\n\r\nbody",
  });
  for (const headers of [[field], record]) {
    const s = text(
      writeResponse({ status: 200, headers, body: "x" }, { keepAlive: true, date: DATE }),
    );
    assert.ok(!s.includes("Injected") && !s.includes("\r\n\r\nbody"), s);
    assert.match(s, /^HTTP\/1\.1 200 OK\r\nx-[ab]: (ok|fine)\r\nDate: /);
  }
  assert.equal(reads, 1);
  assert.equal(recordReads, 1);
});
