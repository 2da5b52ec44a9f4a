/**
 * Seeded fuzzing of the HTTP/1.1 parser: mutated valid requests and random bytes, pushed
 * whole and cut at random points. Properties: no exception, every push returns, at most
 * one error (last, status 400–505, closing), the same events whatever the cuts, buffered
 * bytes within the limits. Bounded: a fixed number of cases (under a second).
 */
import assert from "node:assert/strict";
import { type HttpLimits, HttpRequestParser } from "./http_parser.ts";

/** mulberry32: a small, fast, seeded PRNG (deterministic runs). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

const CORPUS = [
  "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
  "GET /user/1?x=2 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nUser-Agent: fuzz\r\n\r\n",
  "POST /svc HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
  "POST /svc HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
  '5;a=b;c="d e"\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n',
  "GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /y HTTP/1.0\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
  "GET http://h:8080/p?q HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
  "PUT /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" +
  "GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
  "\r\nDELETE /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
];

const PIECES = [
  "\r\n",
  "\r",
  "\n",
  " ",
  "\t",
  ":",
  ",",
  ";",
  "=",
  '"',
  "0",
  "f",
  "\x00",
  "\x0b",
  "\x7f",
  "\xff",
  "chunked",
  "Transfer-Encoding: chunked\r\n",
  "Transfer-Encoding: gzip, chunked\r\n",
  "Content-Length: 5\r\n",
  "Content-Length: 99999999\r\n",
  "Host: x\r\n",
  "Host: [::1]:80\r\n",
  "Host: a:b:c\r\n",
  "[",
  "]",
  "@",
  "%",
  "Connection: close\r\n",
  "Expect: 100-continue\r\n",
  "HTTP/1.1",
  "HTTP/2.0",
  "5\r\nhello\r\n",
  "0\r\n\r\n",
  "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
];

function mutate(rand: () => number, input: string): string {
  let s = input;
  const rounds = 1 + Math.floor(rand() * 4);
  for (let r = 0; r < rounds; r++) {
    const at = Math.floor(rand() * (s.length + 1));
    switch (Math.floor(rand() * 6)) {
      case 0: // replace a byte with any byte
        s = s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(at + 1);
        break;
      case 1: // insert an interesting piece
        s = s.slice(0, at) + PIECES[Math.floor(rand() * PIECES.length)] + s.slice(at);
        break;
      case 2: // delete a range
        s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rand() * 8));
        break;
      case 3: { // duplicate a range
        const len = Math.floor(rand() * 40);
        s = s.slice(0, at) + s.slice(at, at + len) + s.slice(at);
        break;
      }
      case 4: // truncate
        s = s.slice(0, at);
        break;
      default: // concatenate another request (pipelining)
        s += CORPUS[Math.floor(rand() * CORPUS.length)];
    }
  }
  return s;
}

function randomInput(rand: () => number): string {
  const len = Math.floor(rand() * 300);
  const alphabet = rand() < 0.5;
  let s = "";
  for (let i = 0; i < len; i++) {
    s += alphabet
      ? "GET /HTP1.\r\n: aH,;0f\t"[Math.floor(rand() * 21)]
      : String.fromCharCode(Math.floor(rand() * 256));
  }
  return s;
}

const SMALL: Partial<HttpLimits> = {
  maxRequestLine: 48,
  maxHeaderBytes: 96,
  maxHeaderCount: 4,
  maxBodyBytes: 16,
  maxChunkExtBytes: 12,
  maxEmptyLines: 2,
};

/** Runs the parser on `input` cut at `cuts`; checks the per-push invariants. */
function run(input: Uint8Array, cuts: number[], limits: Partial<HttpLimits> | undefined): string {
  const events: string[] = [];
  let errors = 0;
  let closed = false;
  const l = { maxRequestLine: 8192, maxHeaderBytes: 16384, maxBodyBytes: 1 << 20, ...limits };
  const parser = new HttpRequestParser({
    head(h) {
      assert.equal(errors, 0);
      assert.ok(!closed, "event after a closing request");
      events.push(`head ${h.method} ${h.target}`);
    },
    request(r) {
      assert.equal(errors, 0);
      assert.ok(!closed, "event after a closing request");
      assert.ok(r.body.length <= l.maxBodyBytes);
      if (r.contentLength !== null) assert.equal(r.body.length, r.contentLength);
      for (const [name] of r.headers) assert.match(name, /^[!#$%&'*+\-.^_`|~0-9a-z]+$/);
      closed = !r.keepAlive;
      events.push(JSON.stringify({ ...r, body: [...r.body] }));
    },
    error(e) {
      errors++;
      assert.equal(errors, 1, "more than one error");
      assert.ok(e.status >= 400 && e.status <= 505, `status ${e.status}`);
      assert.ok(e.close);
      events.push(`error ${e.status} ${e.message}`);
    },
  }, limits);
  const bound = Math.max(l.maxRequestLine, l.maxHeaderBytes, 16 + 2 + 4096) + l.maxBodyBytes;
  let from = 0;
  for (const to of [...cuts, input.length]) {
    parser.push(input.subarray(from, to));
    from = to;
    assert.ok(parser.buffered <= bound, `buffered ${parser.buffered} > ${bound}`);
    if (parser.failed) assert.equal(parser.buffered, 0);
  }
  return events.join("\n");
}

function cutsFor(rand: () => number, len: number): number[] {
  const n = Math.floor(rand() * 6);
  const cuts: number[] = [];
  for (let i = 0; i < n; i++) cuts.push(Math.floor(rand() * (len + 1)));
  return cuts.sort((a, b) => a - b);
}

Deno.test("HTTP parser survives seeded fuzzing with identical events at any cuts", () => {
  const rand = prng(0x5eed_4e9);
  let requests = 0;
  let errors = 0;
  for (let i = 0; i < 20000; i++) {
    const text = rand() < 0.8
      ? mutate(rand, CORPUS[Math.floor(rand() * CORPUS.length)])
      : randomInput(rand);
    const input = bytes(text);
    const limits = rand() < 0.3 ? SMALL : undefined;
    const whole = run(input, [], limits);
    const cut = run(input, cutsFor(rand, input.length), limits);
    assert.equal(cut, whole, `case ${i}: ${JSON.stringify(text)}`);
    if (i % 4 === 0) {
      // Byte by byte too, on a share of the cases.
      const all = Array.from({ length: input.length }, (_, k) => k);
      assert.equal(run(input, all, limits), whole, `case ${i} byte by byte`);
    }
    requests += (whole.match(/^\{/gm) ?? []).length;
    errors += whole.includes("\nerror ") || whole.startsWith("error ") ? 1 : 0;
  }
  // The mutations must reach both outcomes, or the fuzzer tests nothing.
  assert.ok(requests > 1000, `only ${requests} requests parsed`);
  assert.ok(errors > 1000, `only ${errors} errors`);
});

Deno.test("HTTP parser keeps only bounded bytes for long garbage streams", () => {
  const rand = prng(42);
  for (const limits of [undefined, SMALL]) {
    for (let round = 0; round < 20; round++) {
      const parser = new HttpRequestParser({ head() {}, request() {}, error() {} }, limits);
      // A head that never ends, or a body that never ends, fed in small pieces.
      const start = round % 2 === 0
        ? "GET / HTTP/1.1\r\nHost: h\r\n"
        : "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
      parser.push(bytes(start));
      for (let k = 0; k < 2000 && !parser.failed; k++) {
        const piece = round % 2 === 0
          ? `X-${k}: ${"v".repeat(Math.floor(rand() * 40))}\r\n`
          : `${Math.floor(rand() * 15).toString(16) || "1"};e=${k}\r\n`;
        parser.push(
          bytes(round % 2 === 0 ? piece : piece + "x".repeat(parseInt(piece, 16)) + "\r\n"),
        );
        assert.ok(parser.buffered <= 16384 + (1 << 20));
      }
      assert.ok(parser.failed, "the limits must stop an endless request");
    }
  }
});
