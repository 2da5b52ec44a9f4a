/**
 * The strict response parser (`protocol/http_response_parser.ts`) against the load
 * generator's former hand-written one (`parseResponseHead` + `Content-Length` framing, as
 * its HTTP sender, now `cli/loadgen/http_sender.ts`, used it until it switched), on the
 * bench path: keep-alive responses as ep writes them, pushed one per chunk, as the load
 * generator receives them.
 *
 *   deno bench -A tests/bench/http_response_parser.bench.ts
 *
 * `deno bench` prints each group's ratio against its baseline (the old parser).
 *
 * @module
 */
import { HttpResponseParser } from "../../protocol/http_response_parser.ts";
import { writeResponse } from "../../protocol/http_writer.ts";

const dec = new TextDecoder();
const DATE = "Sun, 06 Nov 1994 08:49:37 GMT";

/** A response as ep writes it, copied out of the writer's slab. */
function response(headers: [string, string][], body: string): Uint8Array {
  return writeResponse({ status: 200, headers, body }, { keepAlive: true, date: DATE }).slice();
}

const HELLO = response([["content-type", "text/plain"]], "hello\n");
const SLEEP = response([["x-slept-us", "10123"]], "slept 10\n");
const BIG = response(
  [["content-type", "application/json"]],
  JSON.stringify({ a: "x".repeat(2000) }),
);

// --- the old parser, as the load generator's HTTP sender had it ------------------------------

function indexOfCrlfCrlf(buf: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(0, from); i + 3 < to; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

interface OldHead {
  status: number;
  headLength: number;
  contentLength: number;
  chunked: boolean;
  close: boolean;
  sleptUs: number;
}

function parseResponseHead(buf: Uint8Array, len: number): OldHead | null {
  const end = indexOfCrlfCrlf(buf, 0, len);
  if (end < 0) return null;
  const text = dec.decode(buf.subarray(0, end));
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new TypeError(`Bad status line "${lines[0].slice(0, 40)}"`);
  const head: OldHead = {
    status: Number(m[1]),
    headLength: end + 4,
    contentLength: -1,
    chunked: false,
    close: lines[0].startsWith("HTTP/1.0"),
    sleptUs: -1,
  };
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "content-length") head.contentLength = Number(value);
    else if (name === "transfer-encoding") head.chunked = /chunked/i.test(value);
    else if (name === "connection") head.close = /close/i.test(value);
    else if (name === "x-slept-us") head.sleptUs = Number(value);
  }
  return head;
}

/** The old per-connection read path: append to a buffer, parse the head, frame the body. */
class OldConn {
  buf = new Uint8Array(4096);
  len = 0;
  head: OldHead | null = null;
  done = 0;
  slept = 0;
  data(chunk: Uint8Array): void {
    if (this.len + chunk.length > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.len + chunk.length) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(chunk, this.len);
    this.len += chunk.length;
    this.head ??= parseResponseHead(this.buf, this.len);
    const h = this.head;
    if (!h) return;
    if (this.len < h.headLength + h.contentLength) return;
    this.done++;
    this.slept += h.sleptUs;
    this.head = null;
    this.len = 0;
  }
}

/** The new read path: the strict parser, as cli/loadgen/http_sender.ts uses it. */
function newConn() {
  const state = { done: 0, slept: 0 };
  const parser = new HttpResponseParser({
    response(r) {
      state.done++;
      let slept = -1;
      const h = r.headers;
      for (let i = 0; i < h.length; i++) if (h[i][0] === "x-slept-us") slept = Number(h[i][1]);
      state.slept += slept;
    },
    error(e) {
      throw e;
    },
  });
  return { state, parser };
}

for (const [name, bytes] of [["hello", HELLO], ["sleep", SLEEP], ["2 KiB body", BIG]] as const) {
  const old = new OldConn();
  Deno.bench(`old loadgen parser: ${name}`, { group: name, baseline: true }, () => {
    old.data(bytes);
  });
  const { parser } = newConn();
  Deno.bench(`HttpResponseParser: ${name}`, { group: name }, () => {
    parser.sent("GET");
    parser.push(bytes);
  });
}
