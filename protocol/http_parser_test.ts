import assert from "node:assert/strict";
import type { HttpError } from "./errors.ts";
import {
  type HttpLimits,
  type HttpRequest,
  type HttpRequestHead,
  HttpRequestParser,
} from "./http_parser.ts";

/** Bytes of a string, one byte per char code (so tests can hold any byte). */
function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

type Event =
  | { kind: "head"; method: string; target: string }
  | { kind: "request"; req: HttpRequest; body: string }
  | { kind: "error"; status: number; message: string; close: boolean };

class Recorder {
  events: Event[] = [];
  parser: HttpRequestParser;
  constructor(limits?: Partial<HttpLimits>) {
    this.parser = new HttpRequestParser({
      head: (h: HttpRequestHead) =>
        this.events.push({ kind: "head", method: h.method, target: h.target }),
      request: (r: HttpRequest) =>
        this.events.push({ kind: "request", req: r, body: String.fromCharCode(...r.body) }),
      error: (e: HttpError) =>
        this.events.push({ kind: "error", status: e.status, message: e.message, close: e.close }),
    }, limits);
  }
  push(s: string | Uint8Array): this {
    this.parser.push(typeof s === "string" ? bytes(s) : s);
    return this;
  }
  get requests(): HttpRequest[] {
    return this.events.flatMap((e) => e.kind === "request" ? [e.req] : []);
  }
  get errors(): number[] {
    return this.events.flatMap((e) => e.kind === "error" ? [e.status] : []);
  }
}

function parse(s: string, limits?: Partial<HttpLimits>): Recorder {
  return new Recorder(limits).push(s);
}

/** Asserts that the input is refused with `status` (exactly one error, no request). */
function refuses(s: string, status: number, limits?: Partial<HttpLimits>): void {
  const r = parse(s, limits);
  assert.deepEqual(r.errors, [status], `${JSON.stringify(s)} → ${JSON.stringify(r.events)}`);
  assert.equal(r.requests.length, 0, JSON.stringify(s));
  assert.ok(r.parser.failed);
  const err = r.events.at(-1);
  assert.ok(err?.kind === "error" && err.close);
}

function one(s: string, limits?: Partial<HttpLimits>): HttpRequest {
  const r = parse(s, limits);
  assert.deepEqual(r.errors, [], JSON.stringify(r.events));
  assert.equal(r.requests.length, 1, JSON.stringify(r.events));
  return r.requests[0];
}

const H = "Host: a\r\n";

// --- request line -----------------------------------------------------------------------

Deno.test("HTTP parser reads a simple GET with its fields", () => {
  const r = new Recorder().push(
    "GET /user/login?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\n" +
      "Accept:  */*  \r\nX-Empty:\r\nX-Tab:\tv\t1\t\r\n\r\n",
  );
  assert.equal(r.events.length, 2);
  assert.equal(r.events[0].kind, "head");
  const q = r.requests[0];
  assert.equal(q.method, "GET");
  assert.equal(q.target, "/user/login?x=1&y=%20");
  assert.equal(q.path, "/user/login");
  assert.equal(q.query, "x=1&y=%20");
  assert.equal(q.version, "1.1");
  assert.deepEqual(q.headers, [
    ["host", "example.com"],
    ["accept", "*/*"],
    ["x-empty", ""],
    ["x-tab", "v\t1"],
  ]);
  assert.equal(q.keepAlive, true);
  assert.equal(q.expectContinue, false);
  assert.equal(q.contentLength, null);
  assert.equal(q.chunked, false);
  assert.equal(q.host, "example.com");
  assert.equal(q.body.length, 0);
  assert.deepEqual(q.trailers, []);
  assert.ok(r.parser.idle);
  assert.equal(r.parser.buffered, 0);
});

Deno.test("HTTP parser accepts any token as a method", () => {
  assert.equal(one(`PURGE /x HTTP/1.1\r\n${H}\r\n`).method, "PURGE");
  assert.equal(one(`get /x HTTP/1.1\r\n${H}\r\n`).method, "get");
  assert.equal(one(`M-SEARCH! /x HTTP/1.1\r\n${H}\r\n`).method, "M-SEARCH!");
});

Deno.test("HTTP parser keeps the order and duplicates of fields and lower-cases names", () => {
  const q = one(`GET / HTTP/1.1\r\nHOST: a\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: c=\xe9\r\n\r\n`);
  assert.deepEqual(q.headers, [["host", "a"], ["x-a", "1"], ["x-a", "2"], [
    "set-cookie",
    "c=\xe9",
  ]]);
});

Deno.test("HTTP parser refuses a malformed request line with 400", () => {
  for (
    const line of [
      "GET  / HTTP/1.1", // double SP
      "GET /  HTTP/1.1",
      " GET / HTTP/1.1",
      "GET / HTTP/1.1 ",
      "GET\t/ HTTP/1.1",
      "GET /",
      "GET / ",
      "GET",
      "G(T / HTTP/1.1", // not a token
      "GET / http/1.1",
      "GET / HTTP/1.1x",
      "GET / HTTP/1.",
      "GET / HTTP/",
      "GET / FTP/1.1",
      "GET / HTTP/1.1.1",
      "/ HTTP/1.1",
    ]
  ) refuses(`${line}\r\n${H}\r\n`, 400);
});

Deno.test("HTTP parser answers 505 to other HTTP versions", () => {
  for (const v of ["HTTP/2.0", "HTTP/2", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/1.10"]) {
    refuses(`GET / ${v}\r\n${H}\r\n`, 505);
  }
});

Deno.test("HTTP parser accepts HTTP/1.0 and HTTP/1.1", () => {
  assert.equal(one("GET / HTTP/1.0\r\n\r\n").version, "1.0");
  assert.equal(one(`GET / HTTP/1.1\r\n${H}\r\n`).version, "1.1");
});

Deno.test("HTTP parser refuses control bytes, spaces, fragments and non-ASCII in the target", () => {
  for (const t of ["/a b", "/a\tb", "/a\x00", "/a\x7f", "/a\x01b", "/\xe9", "/a#frag", "/a\x0bb"]) {
    refuses(`GET ${t} HTTP/1.1\r\n${H}\r\n`, 400);
  }
});

Deno.test("HTTP parser splits origin-form targets into path and query", () => {
  let q = one(`GET /a/b HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual([q.path, q.query], ["/a/b", ""]);
  q = one(`GET /a?b?c=/d HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual([q.path, q.query], ["/a", "b?c=/d"]);
  q = one(`GET /? HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual([q.path, q.query], ["/", ""]);
});

Deno.test("HTTP parser takes path, query and host from an absolute-form target", () => {
  let q = one("GET http://Other.example:8080/p/q?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.deepEqual([q.path, q.query, q.host], ["/p/q", "x=1", "Other.example:8080"]);
  q = one("GET HTTPS://h?x HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.deepEqual([q.path, q.query, q.host], ["/", "x", "h"]);
  q = one("GET http://[::1]:80 HTTP/1.0\r\n\r\n");
  assert.deepEqual([q.path, q.query, q.host], ["/", "", "[::1]:80"]);
  refuses("GET http:/h/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refuses("GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refuses("GET http://user@h/p HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refuses("GET ftp://h/p HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refuses("GET h/p HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  refuses("GET http://h/p HTTP/1.1\r\n\r\n", 400); // Host still required in 1.1
});

Deno.test("HTTP parser accepts asterisk-form only for OPTIONS", () => {
  const q = one(`OPTIONS * HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual([q.path, q.query, q.target], ["*", "", "*"]);
  refuses(`GET * HTTP/1.1\r\n${H}\r\n`, 400);
  refuses(`OPTIONS ** HTTP/1.1\r\n${H}\r\n`, 400);
});

Deno.test("HTTP parser refuses CONNECT: 501 for authority-form, 400 otherwise", () => {
  refuses(`CONNECT example.com:443 HTTP/1.1\r\n${H}\r\n`, 501);
  refuses(`CONNECT /x HTTP/1.1\r\n${H}\r\n`, 400);
  refuses(`GET example.com:443 HTTP/1.1\r\n${H}\r\n`, 400);
});

Deno.test("HTTP parser answers 414 as soon as the request line crosses the limit", () => {
  const limits = { maxRequestLine: 64 };
  // Exactly at the limit (CRLF included): accepted.
  const fit = `GET /${"a".repeat(48)} HTTP/1.1`;
  assert.equal(fit.length + 2, 64);
  one(`${fit}\r\n${H}\r\n`, limits);
  refuses(`GET /${"a".repeat(49)} HTTP/1.1\r\n${H}\r\n`, 414, limits);
  // No CRLF yet: refused once the partial line cannot fit any more (63 bytes could still
  // end with CR, then LF; 64 cannot).
  const r = new Recorder(limits).push(`GET /${"a".repeat(58)}`);
  assert.deepEqual(r.errors, []);
  r.push("a");
  assert.deepEqual(r.errors, [414]);
  // Default limit, fed in pieces without any CRLF.
  const d = new Recorder().push("GET /");
  for (let i = 0; i < 10 && d.errors.length === 0; i++) d.push("a".repeat(1000));
  assert.deepEqual(d.errors, [414]);
  assert.ok(d.parser.buffered <= 8192);
});

Deno.test("HTTP parser skips a bounded number of empty lines before a request line", () => {
  const r = parse(`\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal(r.requests.length, 1);
  refuses(`${"\r\n".repeat(9)}GET / HTTP/1.1\r\n${H}\r\n`, 400);
  refuses(`\nGET / HTTP/1.1\r\n${H}\r\n`, 400); // bare LF empty line
  const idle = new Recorder().push("\r\n");
  assert.equal(idle.parser.idle, false);
});

// --- header section ---------------------------------------------------------------------

Deno.test("HTTP parser refuses whitespace between a field name and the colon", () => {
  refuses(`GET / HTTP/1.1\r\n${H}X-A : 1\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n${H}X-A\t: 1\r\n\r\n`, 400);
});

Deno.test("HTTP parser refuses obs-fold and leading whitespace in field lines", () => {
  refuses(`GET / HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n${H}X-A: 1\r\n\t2\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n ${H}\r\n`, 400);
});

Deno.test("HTTP parser refuses bare CR and bare LF anywhere in the head", () => {
  for (
    const s of [
      `GET / HTTP/1.1\n${H}\r\n`,
      `GET / HTTP/1.1\r${H}\r\n`,
      `GET / HTTP/1.1\r\nHost: a\n\r\n`,
      `GET / HTTP/1.1\r\n${H}\n`,
      `GET / HTTP/1.1\r\n${H}X: a\rb\r\n\r\n`,
      `GET / HTTP/1.1\r\n${H}X: a\r\r\n\r\n`,
      `GET / HTTP/1.1\r\n${H}X\r: a\r\n\r\n`,
      `GET /\r HTTP/1.1\r\n${H}\r\n`,
      `GET / HTTP/1.1\r\n${H}\r\r\n`,
    ]
  ) refuses(s, 400);
});

Deno.test("HTTP parser refuses control bytes in field values but allows HTAB and obs-text", () => {
  for (const c of ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1f", "\x7f"]) {
    refuses(`GET / HTTP/1.1\r\n${H}X-A: a${c}b\r\n\r\n`, 400);
  }
  assert.deepEqual(one(`GET / HTTP/1.1\r\n${H}X-A: a\tb\xff\x80\r\n\r\n`).headers[1], [
    "x-a",
    "a\tb\xff\x80",
  ]);
});

Deno.test("HTTP parser refuses invalid field names", () => {
  refuses(`GET / HTTP/1.1\r\n${H}: v\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n${H}X(A): v\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n${H}X-A v\r\n\r\n`, 400);
  refuses(`GET / HTTP/1.1\r\n${H}X\xe9: v\r\n\r\n`, 400);
});

Deno.test("HTTP parser answers 431 for a header section over its byte limit", () => {
  const limits = { maxHeaderBytes: 64 };
  // Section = field lines with CRLFs + final CRLF.
  const fill = (n: number) => `X: ${"v".repeat(n - 5)}\r\n`;
  one(`GET / HTTP/1.1\r\n${H}${fill(64 - 9 - 2)}\r\n`, limits);
  refuses(`GET / HTTP/1.1\r\n${H}${fill(64 - 9 - 1)}\r\n`, 431, limits);
  // Detected before the line ends.
  const r = new Recorder(limits).push(`GET / HTTP/1.1\r\n${H}X: ${"v".repeat(60)}`);
  assert.deepEqual(r.errors, [431]);
  const d = new Recorder().push(`GET / HTTP/1.1\r\n${H}`);
  for (let i = 0; i < 100 && d.errors.length === 0; i++) d.push(`X-${i}: ${"v".repeat(500)}\r\n`);
  assert.deepEqual(d.errors, [431]);
});

Deno.test("HTTP parser answers 431 for too many header fields", () => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => `X-${i}: v\r\n`).join("");
  one(`GET / HTTP/1.1\r\n${fields(99)}${H}\r\n`);
  refuses(`GET / HTTP/1.1\r\n${fields(100)}${H}\r\n`, 431);
  one(`GET / HTTP/1.1\r\n${fields(2)}${H}\r\n`, { maxHeaderCount: 3 });
  refuses(`GET / HTTP/1.1\r\n${fields(3)}${H}\r\n`, 431, { maxHeaderCount: 3 });
});

Deno.test("HTTP parser requires exactly one Host in HTTP/1.1", () => {
  refuses("GET / HTTP/1.1\r\n\r\n", 400);
  refuses("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400);
  refuses("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  refuses("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
  refuses("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400);
  refuses("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
  assert.equal(one("GET / HTTP/1.1\r\nHost:\r\n\r\n").host, "");
  assert.equal(one("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").host, "[::1]:8080");
  assert.equal(one("GET / HTTP/1.0\r\n\r\n").host, null);
});

Deno.test("HTTP parser checks every request's Host on a kept connection, not only the first", () => {
  // The parser remembers the last valid Host of a connection: a repeat is accepted, any other
  // value is checked again.
  const r = parse(
    "GET /1 HTTP/1.1\r\nHost: a:1\r\n\r\n" + "GET /2 HTTP/1.1\r\nHost: a:1\r\n\r\n" +
      "GET /3 HTTP/1.1\r\nHost: b\r\n\r\n" + "GET /4 HTTP/1.1\r\nHost: a:1 x\r\n\r\n",
  );
  assert.deepEqual(r.requests.map((q) => [q.path, q.host]), [["/1", "a:1"], ["/2", "a:1"], [
    "/3",
    "b",
  ]]);
  assert.deepEqual(r.errors, [400]);
});

Deno.test('HTTP parser answers 400 to a Host that is not uri-host [ ":" port ] (RFC 9112 §3.2)', () => {
  const valid = [
    "",
    "a",
    "example.com",
    "example.com:8080",
    "h:", // RFC 3986 §3.2.3: the port may be empty
    "127.0.0.1",
    "127.0.0.1:9000",
    "999.1.1.1", // not an IPv4 address, but a valid reg-name
    "xn--bcher-kva.example",
    "a-b_c~d.e!$&'()*+,;=",
    "%41b%2f",
    "[::1]",
    "[::1]:80",
    "[::]",
    "[2001:db8::8:800:200c:417a]:443",
    "[1:2:3:4:5:6:7:8]",
    "[1:2:3:4:5:6:7::]",
    "[::2:3:4:5:6:7:8]",
    "[::ffff:192.0.2.1]",
    "[1:2:3:4:5:6:1.2.3.4]",
    "[v1.fe80::a+en1]",
    "[V7.x:y]",
  ];
  const invalid = [
    "127.0.0.1:9000:80",
    "a:b:c",
    "h:80x",
    "h:-1",
    "h:+80",
    ":80",
    ":",
    "h@x",
    "u@h:80",
    "h/p",
    "h?q",
    "h#f",
    "a b",
    "h\tx",
    "h\xe9",
    "\xc3\xa9.com",
    "h%",
    "h%4",
    "h%zz",
    "[::1",
    "::1",
    "[::1]x",
    "[::1]:8x",
    "[]",
    "[:]",
    "[:::]",
    "[1::2::3]",
    "[1:2:3:4:5:6:7:8:9]",
    "[1:2:3:4:5:6:7]",
    "[1:2:3:4:5:6:7:8::]",
    "[12345::]",
    "[1:]",
    "[g::]",
    "[::1.2.3]",
    "[::1.2.3.256]",
    "[::01.2.3.4]",
    "[1.2.3.4]",
    "[1.2.3.4::]",
    "[fe80::1%25eth0]",
    "[v1]",
    "[v.x]",
    "[v1.]",
    "[vz.x]",
    "[v1.x@]",
    "[a]",
    "h]",
    "[",
  ];
  for (const host of valid) {
    assert.equal(one(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`).host, host, JSON.stringify(host));
    // The authority of an absolute-form target follows the same rule (when not empty).
    if (host !== "") {
      assert.equal(
        one(`GET http://${host}/p HTTP/1.1\r\nHost: ${host}\r\n\r\n`).host,
        host,
        JSON.stringify(host),
      );
    }
  }
  for (const host of invalid) {
    const r = parse(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.deepEqual(r.errors, [400], JSON.stringify(host));
    const ev = r.events.at(-1);
    assert.ok(ev?.kind === "error" && /Host/.test(ev.message), JSON.stringify(host));
    if (!/[/?#\s]/.test(host)) {
      refuses(`GET http://${host}/p HTTP/1.1\r\nHost: h\r\n\r\n`, 400);
    }
  }
});

// --- body framing -----------------------------------------------------------------------

Deno.test("HTTP parser reads a Content-Length body", () => {
  const r = parse(`POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`);
  assert.deepEqual(r.events.map((e) => e.kind), ["head", "request"]);
  const q = r.requests[0];
  assert.equal(q.contentLength, 5);
  assert.equal(new TextDecoder().decode(q.body), "hello");
  const z = one(`POST /x HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`);
  assert.deepEqual([z.contentLength, z.body.length], [0, 0]);
  assert.equal(one(`POST /x HTTP/1.1\r\n${H}Content-Length: 007\r\n\r\n1234567`).body.length, 7);
});

Deno.test("HTTP parser emits head before the body arrives", () => {
  const r = new Recorder().push(`POST /x HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\n`);
  assert.deepEqual(r.events.map((e) => e.kind), ["head"]);
  assert.equal(r.parser.idle, false);
  r.push("ab");
  assert.equal(r.parser.buffered, 2);
  r.push("c");
  assert.deepEqual(r.events.map((e) => e.kind), ["head", "request"]);
  assert.ok(r.parser.idle);
});

Deno.test("HTTP parser gives each request its own body copy", () => {
  const input = bytes(`POST /x HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`);
  const r = new Recorder().push(input);
  input.fill(0);
  assert.equal(r.events[1].kind === "request" && r.events[1].body, "abc");
});

Deno.test("HTTP parser treats a request without framing as bodiless, GET/HEAD bodies by framing", () => {
  const r = parse(`POST /x HTTP/1.1\r\n${H}\r\nGET /y HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual(r.requests.map((q) => q.path), ["/x", "/y"]);
  const g = parse(`GET /x HTTP/1.1\r\n${H}Content-Length: 2\r\n\r\nabHEAD /y HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual(g.requests.map((q) => [q.method, q.body.length]), [["GET", 2], ["HEAD", 0]]);
});

Deno.test("HTTP parser refuses invalid Content-Length values", () => {
  for (
    const v of [
      "",
      "+5",
      "-1",
      "5a",
      "0x5",
      "5 5",
      "1_0",
      "5,5",
      "5, 5",
      "1e3",
      "99999999999999999",
    ]
  ) refuses(`POST / HTTP/1.1\r\n${H}Content-Length: ${v}\r\n\r\n`, 400);
});

Deno.test("HTTP parser refuses repeated Content-Length, even with identical values", () => {
  refuses(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, 400);
  refuses(`POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`, 400);
});

Deno.test("HTTP parser answers 413 when Content-Length is over the limit, before the body", () => {
  const r = new Recorder({ maxBodyBytes: 10 }).push(
    `POST / HTTP/1.1\r\n${H}Content-Length: 11\r\n`,
  );
  assert.deepEqual(r.errors, [413]);
  one(`POST / HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\n0123456789`, { maxBodyBytes: 10 });
  refuses(`POST / HTTP/1.1\r\n${H}Content-Length: 1048577\r\n\r\n`, 413);
});

Deno.test("HTTP parser refuses Transfer-Encoding with Content-Length (CL.TE and TE.CL)", () => {
  const cl = "Content-Length: 6\r\n";
  const te = "Transfer-Encoding: chunked\r\n";
  refuses(`POST / HTTP/1.1\r\n${H}${cl}${te}\r\n0\r\n\r\nG`, 400);
  refuses(`POST / HTTP/1.1\r\n${H}${te}${cl}\r\n0\r\n\r\nG`, 400);
  refuses(`POST / HTTP/1.1\r\n${H}Content-Length: 4\r\n${te}\r\n5c\r\nGPOST / HTTP/1.1\r\n`, 400);
});

Deno.test("HTTP parser refuses obfuscated Transfer-Encoding (TE.TE)", () => {
  const req = (te: string) => `POST / HTTP/1.1\r\n${H}${te}\r\n\r\n0\r\n\r\n`;
  for (
    const te of [
      "Transfer-Encoding: xchunked",
      "Transfer-Encoding: chunkedx",
      "Transfer-Encoding: chunked\x0b",
      "Transfer-Encoding: \x0bchunked",
      "Transfer-Encoding: chunked\xa0",
      "Transfer-Encoding : chunked",
      " Transfer-Encoding: chunked",
      "Transfer-Encoding:\n chunked",
      "X: y\nTransfer-Encoding: chunked",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
      "Transfer-Encoding: chunked, chunked",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
      "Transfer-Encoding: chunked, gzip",
      "Transfer-Encoding: identity",
      "Transfer-Encoding: gzip",
      "Transfer-Encoding: ",
      "Transfer-Encoding: chunked,",
      "Transfer-Encoding: ,chunked",
      'Transfer-Encoding: "chunked"',
      "Transfer-Encoding: chunked;q=1",
    ]
  ) refuses(req(te), 400);
});

Deno.test("HTTP parser answers 501 to codings before a final chunked", () => {
  refuses(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501);
  refuses(
    `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n`,
    501,
  );
});

Deno.test("HTTP parser accepts Transfer-Encoding chunked case-insensitively with OWS", () => {
  const q = one(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: \tChunKed \r\n\r\n0\r\n\r\n`);
  assert.equal(q.chunked, true);
  assert.equal(q.contentLength, null);
});

Deno.test("HTTP parser refuses Transfer-Encoding in HTTP/1.0", () => {
  refuses("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
});

// --- chunked ----------------------------------------------------------------------------

const TE = "Transfer-Encoding: chunked\r\n";
function chunked(body: string, limits?: Partial<HttpLimits>): Recorder {
  return parse(`POST /c HTTP/1.1\r\n${H}${TE}\r\n${body}`, limits);
}

Deno.test("HTTP parser decodes a chunked body with extensions and trailers", () => {
  const r = chunked(
    '5;a=b;c="x\\"y" ; d\r\nhello\r\nA \t; e = f\r\n, world!!!\r\n000\r\nX-T: 1\r\nX-U:  2 \r\n\r\n',
  );
  assert.deepEqual(r.errors, []);
  const q = r.requests[0];
  assert.equal(new TextDecoder().decode(q.body), "hello, world!!!");
  assert.deepEqual(q.trailers, [["x-t", "1"], ["x-u", "2"]]);
  assert.equal(q.headers.length, 2);
});

Deno.test("HTTP parser accepts upper- and lower-case hex chunk sizes", () => {
  const r = chunked(`1F\r\n${"a".repeat(31)}\r\n1f\r\n${"b".repeat(31)}\r\n0\r\n\r\n`);
  assert.equal(r.requests[0].body.length, 62);
});

Deno.test("HTTP parser refuses invalid chunk sizes", () => {
  for (
    const line of [
      "",
      " 5",
      "5 ",
      "+5",
      "-5",
      "0x5",
      "g",
      "5\t",
      "12345678901234567",
      "5;",
      "5;=x",
      "5;a=",
      '5;a="x',
      "5;a b",
      "5 ;a ",
      "5;a=b c",
      '5;a="\x01"',
      "5;a=\x7f",
    ]
  ) {
    const r = chunked(`${line}\r\nhello\r\n0\r\n\r\n`);
    assert.deepEqual(r.errors, [400], JSON.stringify(line));
  }
});

Deno.test("HTTP parser requires exactly CRLF after chunk data", () => {
  assert.deepEqual(chunked("5\r\nhelloX\r\n0\r\n\r\n").errors, [400]);
  assert.deepEqual(chunked("5\r\nhello\n0\r\n\r\n").errors, [400]);
  assert.deepEqual(chunked("5\r\nhello\rX0\r\n\r\n").errors, [400]);
  assert.deepEqual(chunked("5\r\nhello\r\n0\r\n\n").errors, [400]);
  assert.deepEqual(chunked("5\nhello\r\n0\r\n\r\n").errors, [400]);
});

Deno.test("HTTP parser applies the header rules and limits to trailers", () => {
  assert.deepEqual(chunked("0\r\nX : 1\r\n\r\n").errors, [400]);
  assert.deepEqual(chunked("0\r\nX: 1\r\n 2\r\n\r\n").errors, [400]);
  assert.deepEqual(chunked("0\r\nX: \x01\r\n\r\n").errors, [400]);
  const many = Array.from({ length: 4 }, (_, i) => `T-${i}: v\r\n`).join("");
  assert.deepEqual(chunked(`0\r\n${many}\r\n`, { maxHeaderCount: 4 }).errors, []);
  assert.deepEqual(chunked(`0\r\n${many}X: y\r\n\r\n`, { maxHeaderCount: 4 }).errors, [431]);
  assert.deepEqual(chunked(`0\r\nX: ${"v".repeat(100)}\r\n\r\n`, { maxHeaderBytes: 64 }).errors, [
    431,
  ]);
});

Deno.test("HTTP parser answers 413 when a chunked body grows over the limit", () => {
  const limits = { maxBodyBytes: 10 };
  assert.deepEqual(chunked("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limits).errors, []);
  const r = chunked("5\r\nhello\r\n6\r\n", limits);
  assert.deepEqual(r.errors, [413]); // as soon as the size line is read
  assert.deepEqual(chunked("ffffffffffffffff\r\n", limits).errors, [413]);
});

Deno.test("HTTP parser bounds chunk extensions with 413", () => {
  const limits = { maxChunkExtBytes: 32 };
  assert.deepEqual(chunked(`1;${"a".repeat(31)}\r\nx\r\n0\r\n\r\n`, limits).errors, []);
  assert.deepEqual(chunked(`1;${"a".repeat(32)}\r\nx\r\n0\r\n\r\n`, limits).errors, [413]);
  // Summed over the message.
  const small = "1;aaaaaaaaa\r\nx\r\n".repeat(4);
  assert.deepEqual(chunked(`${small}0\r\n\r\n`, limits).errors, [413]);
  // Detected without a CRLF in sight.
  const r = new Recorder(limits).push(`POST / HTTP/1.1\r\n${H}${TE}\r\n1;${"a".repeat(60)}`);
  assert.deepEqual(r.errors, [413]);
});

// --- connection options -----------------------------------------------------------------

Deno.test("HTTP parser decides keep-alive from the version and Connection", () => {
  const ka = (s: string) => one(s).keepAlive;
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}\r\n`), true);
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`), false);
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: Upgrade, CLOSE\r\n\r\n`), false);
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: foo\r\nConnection: close\r\n\r\n`), false);
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: keep-alive, close\r\n\r\n`), false);
  assert.equal(ka(`GET / HTTP/1.1\r\n${H}Connection: closed\r\n\r\n`), true);
  assert.equal(ka("GET / HTTP/1.0\r\n\r\n"), false);
  assert.equal(ka("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), true);
  assert.equal(ka("GET / HTTP/1.0\r\nConnection: x ,keep-alive\r\n\r\n"), true);
});

Deno.test("HTTP parser stops after a request that closes the connection", () => {
  const r = parse(`GET /a HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /b HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual(r.requests.map((q) => q.path), ["/a"]);
  assert.ok(r.parser.ended);
  assert.ok(!r.parser.failed);
  r.push("garbage");
  assert.equal(r.events.length, 2);
});

Deno.test("HTTP parser reports Expect: 100-continue and refuses other expectations with 417", () => {
  const r = new Recorder().push(
    `POST / HTTP/1.1\r\n${H}Expect: 100-Continue\r\nContent-Length: 2\r\n\r\n`,
  );
  assert.equal(r.events.length, 1);
  assert.equal(r.events[0].kind, "head");
  r.push("ok");
  assert.equal(r.requests[0].expectContinue, true);
  refuses(`POST / HTTP/1.1\r\n${H}Expect: 200-ok\r\nContent-Length: 2\r\n\r\nok`, 417);
  refuses(`POST / HTTP/1.1\r\n${H}Expect: 100-continue, x\r\n\r\n`, 417);
  assert.equal(one("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expectContinue, false);
  assert.equal(one("POST / HTTP/1.0\r\nExpect: whatever\r\n\r\n").expectContinue, false);
});

// --- streaming --------------------------------------------------------------------------

const PIPELINE = `POST /svc/a?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n` +
  `Expect: 100-continue\r\n\r\n` +
  `4;ext=1;q="a b"\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\n` +
  `X-Checksum: abc\r\n\r\n` +
  `\r\nPUT /svc/b HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world` +
  `GET /svc/c HTTP/1.0\r\nConnection: keep-alive\r\n\r\n` +
  `HEAD http://h2/svc/d HTTP/1.1\r\nHost: h\r\n\r\n` +
  `DELETE /svc/e HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;

function summary(r: Recorder): string {
  return JSON.stringify(r.events.map((e) => {
    if (e.kind !== "request") return e;
    const { req, body } = e;
    return { ...req, body, trailers: req.trailers };
  }));
}

Deno.test("HTTP parser reads a pipelined stream into requests in order", () => {
  const r = parse(PIPELINE);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.events.map((e) => e.kind), [
    "head",
    "request",
    "head",
    "request",
    "head",
    "request",
    "head",
    "request",
    "head",
    "request",
  ]);
  const q = r.requests;
  assert.deepEqual(q.map((x) => [x.method, x.path, x.host]), [
    ["POST", "/svc/a", "h"],
    ["PUT", "/svc/b", "h"],
    ["GET", "/svc/c", null],
    ["HEAD", "/svc/d", "h2"],
    ["DELETE", "/svc/e", "h"],
  ]);
  assert.equal(new TextDecoder().decode(q[0].body), "Wikipedia in\r\n\r\nchunks.");
  assert.deepEqual(q[0].trailers, [["x-checksum", "abc"]]);
  assert.equal(q[0].expectContinue, true);
  assert.equal(new TextDecoder().decode(q[1].body), "hello world");
  assert.deepEqual(q.map((x) => x.keepAlive), [true, true, true, true, false]);
  assert.ok(r.parser.ended);
});

Deno.test("HTTP parser gives the same events fed one byte at a time", () => {
  const whole = summary(parse(PIPELINE));
  const r = new Recorder();
  const b = bytes(PIPELINE);
  for (let i = 0; i < b.length; i++) {
    r.parser.push(b.subarray(i, i + 1));
    assert.ok(r.parser.buffered <= 8192 + 1024 * 1024);
  }
  assert.equal(summary(r), whole);
});

Deno.test("HTTP parser gives the same events split at every offset", () => {
  const whole = summary(parse(PIPELINE));
  const b = bytes(PIPELINE);
  for (let i = 0; i <= b.length; i++) {
    const r = new Recorder();
    r.parser.push(b.subarray(0, i));
    r.parser.push(b.subarray(i));
    assert.equal(summary(r), whole, `split at ${i}`);
  }
  // And at every pair of offsets on a shorter prefix (three pieces).
  const cut = b.subarray(0, 260);
  const ref = summary(new Recorder().push(cut));
  for (let i = 0; i <= cut.length; i += 3) {
    for (let j = i; j <= cut.length; j += 5) {
      const r = new Recorder();
      r.parser.push(cut.subarray(0, i));
      r.parser.push(cut.subarray(i, j));
      r.parser.push(cut.subarray(j));
      assert.equal(summary(r), ref, `split at ${i}, ${j}`);
    }
  }
});

Deno.test("HTTP parser reports the same error fed one byte at a time", () => {
  for (
    const s of [
      `GET / HTTP/1.1\r\n${H}X : y\r\n\r\n`,
      `POST / HTTP/1.1\r\n${H}${TE}\r\n5\r\nhelloXX`,
      `GET / HTTP/2.0\r\n${H}\r\n`,
      `GET /a HTTP/1.1\r\n${H}\r\nGET / HTTP/1.1\n`,
    ]
  ) {
    const whole = parse(s);
    const r = new Recorder();
    for (const c of s) r.push(c);
    assert.deepEqual(r.errors, whole.errors);
    assert.equal(summary(r), summary(whole));
  }
});

Deno.test("HTTP parser ignores input after an error", () => {
  const r = parse(`GET / HTTP/1.1\r\nX : y\r\n\r\nGET / HTTP/1.1\r\n${H}\r\n`);
  assert.deepEqual(r.errors, [400]);
  r.push(`GET / HTTP/1.1\r\n${H}\r\n`);
  assert.equal(r.events.length, 1);
  assert.ok(r.parser.failed && r.parser.idle);
  assert.equal(r.parser.buffered, 0);
});

Deno.test("HTTP parser is idle only between requests", () => {
  const r = new Recorder();
  assert.ok(r.parser.idle);
  r.push("G");
  assert.ok(!r.parser.idle);
  assert.equal(r.parser.buffered, 1);
  r.push(`ET / HTTP/1.1\r\n${H}\r\n`);
  assert.ok(r.parser.idle);
});

Deno.test("HTTP parser refuses invalid limits", () => {
  const sink = { head() {}, request() {}, error() {} };
  assert.throws(() => new HttpRequestParser(sink, { maxBodyBytes: -1 }), RangeError);
  assert.throws(() => new HttpRequestParser(sink, { maxHeaderCount: 1.5 }), RangeError);
  assert.throws(() => new HttpRequestParser(sink, { maxRequestLine: NaN }), RangeError);
});

Deno.test("HTTP parser reads a reused input buffer afresh on every push", () => {
  const r = new Recorder();
  const first = "GET /a HTTP/1.1\r\nHost: xx\r\nX-A: 11111\r\n";
  const second = "X-Bb: 22222\r\n\r\nGET /b HTTP/1.1\r\nHost: y";
  assert.equal(first.length, second.length);
  const buf = bytes(first); // the same object, different content on the next push
  r.parser.push(buf);
  buf.set(bytes(second));
  r.parser.push(buf);
  r.push("y\r\n\r\n");
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.requests.map((q) => [q.path, q.headers]), [
    ["/a", [["host", "xx"], ["x-a", "11111"], ["x-bb", "22222"]]],
    ["/b", [["host", "yy"]]],
  ]);
});

Deno.test("HTTP parser's Host check agrees with the RFC 3986 grammar, as a regular expression, on random values", () => {
  // RFC 3986 §3.2.2, transcribed.
  const h16 = "[0-9A-Fa-f]{1,4}";
  const dec = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9][0-9]|[0-9])";
  const v4 = `${dec}\\.${dec}\\.${dec}\\.${dec}`;
  const ls32 = `(?:${h16}:${h16}|${v4})`;
  const v6 = [
    `(?:${h16}:){6}${ls32}`,
    `::(?:${h16}:){5}${ls32}`,
    `(?:${h16})?::(?:${h16}:){4}${ls32}`,
    `(?:(?:${h16}:){0,1}${h16})?::(?:${h16}:){3}${ls32}`,
    `(?:(?:${h16}:){0,2}${h16})?::(?:${h16}:){2}${ls32}`,
    `(?:(?:${h16}:){0,3}${h16})?::${h16}:${ls32}`,
    `(?:(?:${h16}:){0,4}${h16})?::${ls32}`,
    `(?:(?:${h16}:){0,5}${h16})?::${h16}`,
    `(?:(?:${h16}:){0,6}${h16})?::`,
  ].join("|");
  const future = "[vV][0-9A-Fa-f]+\\.[A-Za-z0-9\\-._~!$&'()*+,;=:]+";
  const regName = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+"; // not empty here
  const oracle = new RegExp(`^(?:\\[(?:${v6}|${future})\\]|${regName})(?::[0-9]*)?$`);
  const valid = (s: string) => s === "" || oracle.test(s);

  let seed = 0x1234567;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const pick = <T>(xs: T[]): T => xs[rand(xs.length)];
  const group = () =>
    pick(["0", "1", "ff", "abcd", "12345", "g", "", "1.2.3.4", "256.1.1.1", "01.2.3.4"]);
  const v6ish = () => {
    const n = rand(10);
    let s = "";
    for (let i = 0; i < n; i++) s += (i > 0 ? pick([":", ":", "::", ":::"]) : "") + group();
    return pick(["", "::"]) + s + pick(["", "", "::", ":"]);
  };
  const part = () =>
    pick([
      () => `[${v6ish()}]`,
      () => `[${pick(["v", "V", "v1", "vz"])}${pick([".", ""])}${pick(["x", "a:b", "", "@"])}]`,
      () => pick(["a", "example.com", "127.0.0.1", "%41", "%4", "%", "h@x", "a b", "\xe9", "-._~"]),
      () => pick(["[", "]", ":", "[::1", "::1"]),
      () => "",
    ])();
  const port = () => pick(["", "", ":", ":80", ":8x", ":80:81", "::"]);
  let agreed = 0;
  let accepts = 0;
  for (let k = 0; k < 5000; k++) {
    const host = part() + port() + (rand(10) === 0 ? part() : "");
    if (/[\r\n\t ]$|^[\t ]/.test(host)) continue; // OWS is trimmed off a field value
    const r = parse(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const accepted = r.errors.length === 0;
    assert.equal(accepted, valid(host), JSON.stringify(host));
    agreed++;
    if (accepted) accepts++;
  }
  assert.ok(agreed > 4000);
  assert.ok(accepts > 500 && agreed - accepts > 500, `${accepts} of ${agreed} accepted`);
});
