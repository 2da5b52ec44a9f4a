import assert from "node:assert/strict";
import type { HttpResponseError } from "./errors.ts";
import {
  type HttpResponse,
  type HttpResponseHead,
  type HttpResponseLimits,
  HttpResponseParser,
} from "./http_response_parser.ts";

/** Bytes of a byte string (one byte per char code, so tests can hold any byte). */
function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

type Event =
  | { kind: "head"; status: number }
  | { kind: "interim"; status: number }
  | { kind: "response"; res: HttpResponse; body: string }
  | { kind: "error"; message: string };

class Recorder {
  events: Event[] = [];
  parser: HttpResponseParser;
  constructor(methods: string[] = ["GET"], limits?: Partial<HttpResponseLimits>) {
    this.parser = new HttpResponseParser({
      head: (h: HttpResponseHead) => this.events.push({ kind: "head", status: h.status }),
      interim: (h: HttpResponseHead) => this.events.push({ kind: "interim", status: h.status }),
      response: (r: HttpResponse) =>
        this.events.push({ kind: "response", res: r, body: String.fromCharCode(...r.body) }),
      error: (e: HttpResponseError) => {
        assert.equal(e.name, "HttpResponseError");
        this.events.push({ kind: "error", message: e.message });
      },
    }, limits);
    for (const m of methods) this.parser.sent(m);
  }
  push(s: string | Uint8Array): this {
    this.parser.push(typeof s === "string" ? bytes(s) : s);
    return this;
  }
  get responses(): { res: HttpResponse; body: string }[] {
    return this.events.flatMap((e) => e.kind === "response" ? [e] : []);
  }
  get errors(): string[] {
    return this.events.flatMap((e) => e.kind === "error" ? [e.message] : []);
  }
  /** The events as plain data (bodies as strings), for comparing runs. */
  get plain(): string {
    return JSON.stringify(
      this.events.map((e) =>
        e.kind === "response" ? { ...e, res: { ...e.res, body: undefined } } : e
      ),
    );
  }
}

function one(s: string, method = "GET"): { res: HttpResponse; body: string } {
  const r = new Recorder([method]).push(s);
  assert.deepEqual(r.errors, [], s);
  assert.equal(r.responses.length, 1, JSON.stringify(r.events));
  return r.responses[0];
}

/** Asserts that the input is refused (exactly one error, last, no response). */
function refuses(s: string, pattern: RegExp, limits?: Partial<HttpResponseLimits>): void {
  const r = new Recorder(["GET"], limits).push(s);
  assert.equal(r.errors.length, 1, `${JSON.stringify(s)} → ${JSON.stringify(r.events)}`);
  assert.match(r.errors[0], pattern, JSON.stringify(s));
  assert.equal(r.responses.length, 0, JSON.stringify(s));
  assert.equal(r.events.at(-1)?.kind, "error");
  assert.ok(r.parser.failed);
}

const OK = "HTTP/1.1 200 OK\r\n";

Deno.test("HTTP response parser reads a Content-Length response with its fields", () => {
  const { res, body } = one(
    `${OK}Content-Type: text/plain\r\nX-A:  1 \r\nContent-Length: 5\r\n\r\nhello`,
  );
  assert.equal(res.version, "1.1");
  assert.equal(res.status, 200);
  assert.equal(res.reason, "OK");
  assert.deepEqual(res.headers, [["content-type", "text/plain"], ["x-a", "1"], [
    "content-length",
    "5",
  ]]);
  assert.equal(res.contentLength, 5);
  assert.equal(res.chunked, false);
  assert.equal(res.keepAlive, true);
  assert.equal(body, "hello");
  assert.deepEqual(res.trailers, []);
});

Deno.test("HTTP response parser keeps reasons and field values as byte strings, exactly", () => {
  const { res } = one(
    "HTTP/1.1 299 \tTr\xe8s  bien \r\nX-V: a\xe9\x80\xff\tb\r\nContent-Length: 0\r\n\r\n",
  );
  assert.equal(res.reason, "\tTr\xe8s  bien ");
  assert.deepEqual(res.headers[0], ["x-v", "a\xe9\x80\xff\tb"]);
  assert.equal(one("HTTP/1.1 204 \r\n\r\n").res.reason, "");
});

Deno.test("HTTP response parser gives the same events fed one byte at a time and split at every offset", () => {
  const input = `${OK}Content-Length: 3\r\n\r\nabc` +
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\ndef\r\n0\r\nT: v\r\n\r\n" +
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX: \xe9\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n" +
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
  const methods = ["GET", "GET", "POST", "HEAD", "GET"];
  const whole = new Recorder(methods).push(input);
  assert.deepEqual(whole.errors, []);
  assert.deepEqual(whole.responses.map((r) => r.body), ["abc", "def", "", "", "hi"]);
  assert.deepEqual(whole.events.filter((e) => e.kind === "interim").length, 1);
  assert.ok(whole.parser.ended, "HTTP/1.0 without keep-alive ends the connection");
  const b = bytes(input);
  const byByte = new Recorder(methods);
  for (let i = 0; i < b.length; i++) byByte.push(b.subarray(i, i + 1));
  assert.equal(byByte.plain, whole.plain);
  for (let cut = 1; cut < b.length; cut++) {
    const r = new Recorder(methods).push(b.subarray(0, cut)).push(b.subarray(cut));
    assert.equal(r.plain, whole.plain, `cut at ${cut}`);
  }
});

Deno.test("HTTP response parser hands a body found whole in one chunk as a view, else its own copy", () => {
  const b = bytes(`${OK}Content-Length: 3\r\n\r\nabc`);
  let body: Uint8Array | null = null;
  const p = new HttpResponseParser({
    response: (r) => body = r.body,
    error: (e) => assert.fail(e),
  });
  p.sent("GET");
  p.push(b);
  assert.equal(body!.buffer, b.buffer);
  p.sent("GET");
  const c = bytes(`${OK}Content-Length: 3\r\n\r\nxyz`);
  p.push(c.subarray(0, c.length - 1));
  p.push(c.subarray(c.length - 1));
  assert.notEqual(body!.buffer, c.buffer);
  assert.equal(String.fromCharCode(...body!), "xyz");
});

Deno.test("HTTP response parser reads no body for HEAD, 1xx, 204 and 304, whatever the framing fields", () => {
  const r = new Recorder(["HEAD", "GET", "GET"]).push(
    `${OK}Content-Length: 1234\r\n\r\n` +
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n" +
      "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
  );
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.responses.map((x) => [x.res.status, x.res.contentLength, x.body]), [
    [200, 1234, ""],
    [304, 7, ""],
    [204, null, ""],
  ]);
  assert.ok(r.parser.idle);
});

Deno.test("HTTP response parser reads a chunked body with extensions and trailers", () => {
  const { res, body } = one(
    `${OK}Transfer-Encoding: Chunked\r\n\r\n5;a=b;c="d e"\r\nhello\r\n` +
      "a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
  );
  assert.equal(res.chunked, true);
  assert.equal(body, "hello0123456789");
  assert.deepEqual(res.trailers, [["x-t", "1"]]);
});

Deno.test("HTTP response parser reads a body delimited by the end of the connection", () => {
  const r = new Recorder().push(`${OK}X: y\r\n\r\npart one `).push("and two");
  assert.equal(r.responses.length, 0);
  r.parser.end();
  assert.deepEqual(r.errors, []);
  assert.equal(r.responses[0].body, "part one and two");
  assert.equal(r.responses[0].res.keepAlive, false);
  assert.ok(r.parser.ended);
});

Deno.test("HTTP response parser decides keep-alive from the version and Connection", () => {
  const ka = (s: string) => one(s).res.keepAlive;
  assert.equal(ka(`${OK}Content-Length: 0\r\n\r\n`), true);
  assert.equal(ka(`${OK}Connection: close\r\nContent-Length: 0\r\n\r\n`), false);
  assert.equal(ka(`${OK}Connection: x, CLOSE\r\nContent-Length: 0\r\n\r\n`), false);
  assert.equal(ka("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), false);
  assert.equal(ka("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"), true);
  // Bytes after a response that ended the connection are an error.
  const r = new Recorder(["GET", "GET"]).push(
    `${OK}Connection: close\r\nContent-Length: 0\r\n\r\n${OK}Content-Length: 0\r\n\r\n`,
  );
  assert.equal(r.responses.length, 1);
  assert.match(r.errors[0], /after the response that ended the connection/);
});

Deno.test("HTTP response parser refuses a malformed status line", () => {
  for (
    const line of [
      "HTTP/1.1 200\r\n", // the SP after the code is required
      "HTTP/1.1 20 OK\r\n",
      "HTTP/1.1 2000 OK\r\n",
      "HTTP/1.1 099 X\r\n",
      "HTTP/1.1 600 X\r\n",
      "HTTP/1.1 999 X\r\n",
      "http/1.1 200 OK\r\n",
      "HTTP/2 200 OK\r\n",
      "HTTP/1.2 200 OK\r\n",
      "HTTP/1.1  200 OK\r\n",
      "HTTP/1.1 2x0 OK\r\n",
      "HTTP/1.1 200 O\x00K\r\n",
      "HTTP/1.1 200 O\x7fK\r\n",
      "HTTP/1.1 200 O\rK\r\n",
      " HTTP/1.1 200 OK\r\n",
      "\r\n",
    ]
  ) refuses(`${line}Content-Length: 0\r\n\r\n`, /status line|bare LF/);
});

Deno.test("HTTP response parser refuses bad field lines", () => {
  refuses(`${OK}X : v\r\n\r\n`, /field name/);
  refuses(`${OK}: v\r\n\r\n`, /field name/);
  refuses(`${OK}X\xe9: v\r\n\r\n`, /field name/);
  refuses(`${OK}X: a\r\n b\r\n\r\n`, /folding/);
  refuses(`${OK}X: a\x00b\r\n\r\n`, /field value/);
  refuses(`${OK}X: a\x7fb\r\n\r\n`, /field value/);
  refuses(`${OK}X: a\rb\r\n\r\n`, /field value/);
  refuses(`${OK}X: a\nContent-Length: 0\r\n\r\n`, /bare LF/);
});

Deno.test("HTTP response parser refuses ambiguous framing", () => {
  refuses(`${OK}Content-Length: 1\r\nContent-Length: 1\r\n\r\nx`, /Multiple Content-Length/);
  refuses(`${OK}Content-Length: 1, 1\r\n\r\nx`, /Invalid Content-Length/);
  refuses(`${OK}Content-Length: -1\r\n\r\n`, /Invalid Content-Length/);
  refuses(`${OK}Content-Length: \r\n\r\n`, /Invalid Content-Length/);
  refuses(`${OK}Content-Length: 99999999999999999999\r\n\r\n`, /too large/);
  refuses(`${OK}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n`, /Both/);
  refuses(`${OK}Transfer-Encoding: gzip, chunked\r\n\r\n`, /Unsupported Transfer-Encoding/);
  refuses(`${OK}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`, /Unsupported/);
  refuses(`${OK}Transfer-Encoding: gzip\r\n\r\n`, /Unsupported/);
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\nz\r\n`, /chunk size/);
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\n1 \r\nx\r\n0\r\n\r\n`, /chunk extension/);
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n`, /CRLF/);
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\n${"1".repeat(17)}\r\n`, /chunk size/);
});

Deno.test("HTTP response parser enforces its limits before buffering", () => {
  refuses(`HTTP/1.1 200 ${"x".repeat(100)}`, /Status line exceeds 64/, { maxStatusLine: 64 });
  refuses(`${OK}X: ${"v".repeat(100)}`, /Header section exceeds 64/, { maxHeaderBytes: 64 });
  refuses(`${OK}A: 1\r\nB: 2\r\nC: 3\r\n\r\n`, /More than 2 header fields/, { maxHeaderCount: 2 });
  refuses(`${OK}Content-Length: 11\r\n\r\n`, /body exceeds 10 bytes/, { maxBodyBytes: 10 });
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n`, /body exceeds 10/, {
    maxBodyBytes: 10,
  });
  refuses(`${OK}\r\n${"x".repeat(11)}`, /body exceeds 10/, { maxBodyBytes: 10 });
  refuses(`${OK}Transfer-Encoding: chunked\r\n\r\n1;${"a".repeat(20)}\r\n`, /Chunk extensions/, {
    maxChunkExtBytes: 8,
  });
  assert.throws(
    () => new HttpResponseParser({ response() {}, error() {} }, { maxBodyBytes: -1 }),
    RangeError,
  );
});

Deno.test("HTTP response parser matches responses to the requests announced, in order", () => {
  const none = new Recorder([]).push(`${OK}Content-Length: 0\r\n\r\n`);
  assert.match(none.errors[0], /without a request/);
  const r = new Recorder(["GET"]);
  assert.equal(r.parser.waiting, 1);
  r.push(`${OK}Content-Length: 0\r\n\r\n`);
  assert.equal(r.parser.waiting, 0);
  r.push(`${OK}Content-Length: 0\r\n\r\n`);
  assert.match(r.errors[0], /without a request/);
  const upgrade = new Recorder().push("HTTP/1.1 101 Switching Protocols\r\n\r\n");
  assert.match(upgrade.errors[0], /101/);
});

Deno.test("HTTP response parser reports a connection closed before or inside a response", () => {
  const before = new Recorder();
  before.parser.end();
  assert.match(before.errors[0], /closed before the response/);
  const inHead = new Recorder().push("HTTP/1.1 200 OK\r\nX: y");
  inHead.parser.end();
  assert.match(inHead.errors[0], /closed inside a response/);
  const inBody = new Recorder().push(`${OK}Content-Length: 5\r\n\r\nab`);
  inBody.parser.end();
  assert.match(inBody.errors[0], /closed inside a response/);
  const clean = new Recorder().push(`${OK}Content-Length: 0\r\n\r\n`);
  clean.parser.end();
  assert.deepEqual(clean.errors, []);
  assert.ok(clean.parser.ended);
});

Deno.test("HTTP response parser ignores input after an error", () => {
  const r = new Recorder(["GET", "GET"]).push("HTTP/1.1 200\r\n\r\n");
  r.push(`${OK}Content-Length: 0\r\n\r\n`);
  r.parser.end();
  assert.equal(r.events.length, 1);
  assert.ok(r.parser.failed && r.parser.idle);
});

Deno.test("HTTP response parser reads a reused input buffer afresh on every push", () => {
  const got: string[] = [];
  const p = new HttpResponseParser({
    response: (r) => got.push(`${r.headers[0][1]}:${String.fromCharCode(...r.body)}`),
    error: (e) => assert.fail(e),
  });
  const buf = new Uint8Array(64);
  for (const v of ["aaaa", "bbbb", "\xe9\xe9\xe9\xe9"]) {
    p.sent("GET");
    const b = bytes(`${OK}X: ${v}\r\nContent-Length: 1\r\n\r\nz`);
    buf.set(b);
    p.push(buf.subarray(0, b.length));
  }
  assert.deepEqual(got, ["aaaa:z", "bbbb:z", "\xe9\xe9\xe9\xe9:z"]);
});
