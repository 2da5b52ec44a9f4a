/**
 * ep's fuzz targets, shared by `deno task fuzz` (`tests/fuzz/main.ts`, for a duration) and
 * `tests/fuzz/fuzz_test.ts` (a fixed, small number of cases in `deno task test`).
 *
 * | target   | runs                      | invariants                                                |
 * | -------- | ------------------------- | --------------------------------------------------------- |
 * | `sniff`  | in process                | no exception; decides within `SNIFF_MAX_BYTES`; the same decision whatever the split points |
 * | `ep`     | in process                | no exception; at most one error, last; same events whole, split and byte by byte; buffering ≤ header + max payload |
 * | `http`   | in process                | no exception; at most one error (400–505, closing), last; same events whatever the cuts; bounded buffering |
 * | `writer` | in process                | the HTTP writer refuses exactly the invalid responses (RangeError/TypeError); the rest parse back (strict response parser, any cuts) to the same status, reason, fields and body bytes, nothing left over |
 * | `socket` | a real server, real TCP   | every connection ends (answered and closed, or timed out); what it got back is a clean HTTP response, EP frames, or a TLS/HTTP/2 refusal; a witness client is served between batches; no connection left open |
 *
 * A case throws {@linkcode FuzzFailure} (with its input) when an invariant breaks.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Client, connect } from "../../core/net/client.ts";
import { EpDecoder } from "../../protocol/ep_decoder.ts";
import { encodePreface, EpEncoder } from "../../protocol/ep_encoder.ts";
import { type Frame, HEADER_SIZE, isServiceName } from "../../protocol/ep_frames.ts";
import { type HttpLimits, HttpRequestParser } from "../../protocol/http_parser.ts";
import { HttpResponseParser } from "../../protocol/http_response_parser.ts";
import { refusal, sniff, SNIFF_MAX_BYTES, type SniffResult } from "../../protocol/sniff.ts";
import { startServer } from "../_server_helpers.ts";
import { writerCase } from "./_writer_target.ts";
import {
  chunks,
  concat,
  everyCut,
  fromHex,
  int,
  latin1,
  mutate,
  pick,
  randomBytes,
  randomCuts,
  type Rng,
  toHex,
} from "./_mutate.ts";

/** An invariant broke for `input`. */
export class FuzzFailure extends Error {
  /** The input of the failing case. */
  readonly input: Uint8Array;
  /** Creates the failure. */
  constructor(message: string, input: Uint8Array, options?: ErrorOptions) {
    super(message, options);
    this.name = "FuzzFailure";
    this.input = input;
  }
}

/** A fuzz target. */
export interface FuzzTarget {
  /** Its name on the command line. */
  readonly name: string;
  /** Cases run at once (socket-level targets overlap connections). */
  readonly concurrency: number;
  /** Starts what the target needs (a server). */
  setup(): Promise<void>;
  /** One case; throws {@linkcode FuzzFailure} when an invariant breaks. */
  run(rng: Rng): void | Promise<void>;
  /** Checks run between batches (other connections unaffected). */
  between(batch: number): Promise<void>;
  /** Stops what it started and checks what is left (no connection left open). */
  teardown(): Promise<void>;
}

const enc = new TextEncoder();
const epEncoder = new EpEncoder();

/** Runs `check(input)`; wraps any exception as a {@linkcode FuzzFailure}. */
function guarded(input: Uint8Array, check: () => void): void {
  try {
    check();
  } catch (err) {
    throw new FuzzFailure((err as Error).message, input, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------
// Corpora

const golden = JSON.parse(
  await Deno.readTextFile(new URL("../testdata/ep_golden.json", import.meta.url)),
) as { frames: { hex: string }[]; badRequests: { hex: string }[]; malformed: { hex: string }[] };

const EP_FRAMES = golden.frames.map((v) => fromHex(v.hex));
const EP_CORPUS: Uint8Array[] = [
  ...EP_FRAMES,
  ...golden.badRequests.map((v) => fromHex(v.hex)),
  ...golden.malformed.map((v) => fromHex(v.hex)),
  concat(EP_FRAMES),
];

const HTTP_CORPUS = [
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
].map(latin1);

const HTTP_PIECES = [
  "\r\n",
  "\r",
  "\n",
  " ",
  "\t",
  ":",
  ";",
  '"',
  "0",
  "f",
  "\x00",
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
  "Host: [v1.x]\r\n",
  "Host: h%41:\r\n",
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
].map(latin1);

function epConversation(): Uint8Array {
  const hello = epEncoder.encodeCopy({
    type: "hello",
    role: 1,
    minVersion: 1,
    maxVersion: 1,
    heartbeatMs: 0,
    name: "fuzz",
    token: "",
  });
  const request = epEncoder.encodeCopy({
    type: "request",
    id: 1,
    deadlineMs: 500,
    priority: 0,
    attempt: 0,
    queueDepth: 0,
    service: "echo",
    meta: [["k", "v"]],
    body: enc.encode("body"),
  });
  return concat([encodePreface(1), hello, request]);
}

const SNIFF_CORPUS: Uint8Array[] = [
  ...HTTP_CORPUS,
  epConversation(),
  latin1("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
  latin1("PRI /x HTTP/1.1\r\n"),
  new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x10]),
  latin1("SSH-2.0-OpenSSH_9.2\r\n"),
  latin1("M-SEARCH * HTTP/1.1\r\n"),
  latin1("X".repeat(SNIFF_MAX_BYTES - 1) + " / HTTP/1.1"),
];

// ---------------------------------------------------------------------------------------
// sniff

/** The sniffer decides within its bound and independently of how the bytes were split. */
export function sniffTarget(): FuzzTarget {
  return inProcess("sniff", (rng) => {
    const input = rng() < 0.8
      ? mutate(rng, pick(rng, SNIFF_CORPUS), { pieces: HTTP_PIECES })
      : randomBytes(rng, int(rng, 48));
    guarded(input, () => {
      // What the server passes: the bytes so far, at most SNIFF_MAX_BYTES + 4.
      const whole = sniff(input.subarray(0, SNIFF_MAX_BYTES + 4));
      if (input.length >= SNIFF_MAX_BYTES) {
        assert.notEqual(whole, "more", "undecided with SNIFF_MAX_BYTES bytes");
      }
      // The server decides at the first chunk after which sniff says something: any split
      // must lead to the same decision.
      let first: SniffResult = "more";
      for (const cut of [...randomCuts(rng, input.length, 6), input.length]) {
        const r = sniff(input.subarray(0, Math.min(cut, SNIFF_MAX_BYTES + 4)));
        if (r !== "more") {
          first = r;
          break;
        }
      }
      assert.equal(first, whole, "decision depends on the split points");
      refusal(whole);
    });
  });
}

// ---------------------------------------------------------------------------------------
// EP decoder

type EpEvent = Frame | { error: number };

function decodeEp(input: Uint8Array, cuts: readonly number[], maxPayload: number): EpEvent[] {
  const events: EpEvent[] = [];
  let errors = 0;
  const decoder = new EpDecoder({
    frame(f) {
      assert.equal(errors, 0, "no frame after an error");
      events.push("body" in f ? { ...f, body: f.body.slice() } : f);
    },
    error(err) {
      errors++;
      assert.equal(errors, 1, "exactly one error");
      assert.equal(typeof err.code, "number");
      events.push({ error: err.code });
    },
  }, { maxPayload });
  for (const chunk of chunks(input, cuts)) {
    decoder.push(chunk);
    assert.ok(decoder.buffered <= HEADER_SIZE + maxPayload, "bounded buffering");
    assert.equal(decoder.failed, errors === 1);
  }
  return events;
}

/** The EP decoder: the same events whole, split and byte by byte; one error at most. */
export function epTarget(): FuzzTarget {
  return inProcess("ep", (rng) => {
    let input: Uint8Array;
    if (rng() < 0.8) {
      input = mutate(rng, pick(rng, EP_CORPUS), { corpus: EP_CORPUS });
      if (rng() < 0.2 && input.length >= 4) {
        // A random declared length in the first header.
        const v = rng() < 0.5 ? int(rng, 64) : int(rng, 2 ** 32);
        new DataView(input.buffer, input.byteOffset).setUint32(0, v);
      }
    } else {
      input = randomBytes(rng, int(rng, 96));
      if (rng() < 0.5 && input.length >= HEADER_SIZE) {
        // A plausible header, so that payload parsers are reached.
        new DataView(input.buffer).setUint32(0, int(rng, input.length - HEADER_SIZE + 8));
        input[4] = pick(rng, [1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x11, 0x12, 0x13]);
        input[5] = input[6] = input[7] = 0;
      }
    }
    const maxPayload = rng() < 0.25 ? 64 + int(rng, 256) : 16 * 1024 * 1024;
    const bytewise = rng() < 0.1;
    guarded(input, () => {
      const whole = decodeEp(input, [], maxPayload);
      assert.deepEqual(decodeEp(input, randomCuts(rng, input.length), maxPayload), whole);
      if (bytewise) assert.deepEqual(decodeEp(input, everyCut(input.length), maxPayload), whole);
      // Accepted frames re-encode to the bytes they came from (the encoding is canonical).
      const encoder = new EpEncoder({ maxPayload });
      let offset = 0;
      for (const e of whole) {
        if (!("type" in e)) break;
        if (e.type === "request" && !isServiceName(e.service)) break;
        const bytes = encoder.encode(e);
        assert.equal(toHex(input.subarray(offset, offset + bytes.length)), toHex(bytes), e.type);
        offset += bytes.length;
      }
    });
  });
}

// ---------------------------------------------------------------------------------------
// HTTP parser

const SMALL_LIMITS: Partial<HttpLimits> = {
  maxRequestLine: 48,
  maxHeaderBytes: 96,
  maxHeaderCount: 4,
  maxBodyBytes: 16,
  maxChunkExtBytes: 12,
  maxEmptyLines: 2,
};

function parseHttp(
  input: Uint8Array,
  cuts: readonly number[],
  limits: Partial<HttpLimits> | undefined,
): string {
  const events: string[] = [];
  let errors = 0;
  let closed = false;
  const l = { maxRequestLine: 8192, maxHeaderBytes: 16384, maxBodyBytes: 1 << 20, ...limits };
  const parser = new HttpRequestParser({
    head(h) {
      assert.equal(errors, 0, "head after an error");
      assert.ok(!closed, "event after a closing request");
      events.push(`head ${h.method} ${h.target}`);
    },
    request(r) {
      assert.equal(errors, 0, "request after an error");
      assert.ok(!closed, "event after a closing request");
      assert.ok(r.body.length <= l.maxBodyBytes, "body over the limit");
      if (r.contentLength !== null) assert.equal(r.body.length, r.contentLength);
      closed = !r.keepAlive;
      events.push(JSON.stringify({ ...r, body: [...r.body] }));
    },
    error(e) {
      errors++;
      assert.equal(errors, 1, "more than one error");
      assert.ok(e.status >= 400 && e.status <= 505, `status ${e.status}`);
      assert.ok(e.close, "an error closes");
      assert.doesNotMatch(e.message, /[\r\n]/, "one-line reason");
      events.push(`error ${e.status} ${e.message}`);
    },
  }, limits);
  const bound = Math.max(l.maxRequestLine, l.maxHeaderBytes, 16 + 2 + 4096) + l.maxBodyBytes;
  for (const chunk of chunks(input, cuts)) {
    parser.push(chunk);
    assert.ok(parser.buffered <= bound, `buffered ${parser.buffered} > ${bound}`);
    if (parser.failed) assert.equal(parser.buffered, 0);
  }
  return events.join("\n");
}

/** The HTTP/1.1 parser: the same events whatever the cuts; one closing error at most. */
export function httpTarget(): FuzzTarget {
  return inProcess("http", (rng) => {
    const input = rng() < 0.8
      ? mutate(rng, pick(rng, HTTP_CORPUS), { corpus: HTTP_CORPUS, pieces: HTTP_PIECES })
      : rng() < 0.5
      ? randomBytes(rng, int(rng, 300))
      : latin1(
        Array.from({ length: int(rng, 300) }, () => "GET /HTP1.\r\n: aH,;0f\t"[int(rng, 21)]).join(
          "",
        ),
      );
    const limits = rng() < 0.3 ? SMALL_LIMITS : undefined;
    const bytewise = rng() < 0.2;
    guarded(input, () => {
      const whole = parseHttp(input, [], limits);
      assert.equal(parseHttp(input, randomCuts(rng, input.length, 6), limits), whole);
      if (bytewise) assert.equal(parseHttp(input, everyCut(input.length), limits), whole);
    });
  });
}

/** The HTTP response writer, checked against the strict response parser. */
export function writerTarget(): FuzzTarget {
  return inProcess("writer", (rng) => {
    const { input, check } = writerCase(rng);
    guarded(input, check);
  });
}

// ---------------------------------------------------------------------------------------
// Socket level

const SOCKET_CORPUS: Uint8Array[] = [
  latin1("GET /echo?x HTTP/1.1\r\nHost: a\r\n\r\n"),
  latin1("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcd"),
  latin1(
    "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\n",
  ),
  latin1("GET /sleep?ms=5 HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n"),
  latin1("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
  new Uint8Array([0x16, 0x03, 0x01, 0x00, 0x10]),
  epConversation(),
];

/** Checks that what a server sent back is a clean answer of one protocol. */
function checkAnswer(input: Uint8Array, out: Uint8Array): void {
  if (out.length === 0) return;
  const kind = sniff(input.subarray(0, SNIFF_MAX_BYTES + 4));
  if (kind === "tls" || kind === "h2") {
    assert.equal(toHex(out), toHex(refusal(kind)), "the refusal of the sniffer");
  } else if (kind === "ep") {
    // The server's frames decode cleanly: its framing never breaks, whatever we sent.
    let failed = "";
    const frames: Frame[] = [];
    const decoder = new EpDecoder({
      frame: (f) => frames.push(f),
      error: (e) => failed = e.message,
    });
    decoder.push(out);
    assert.equal(failed, "", "server frames decode");
    assert.equal(decoder.buffered, 0, "no partial frame from the server");
    for (const f of frames) {
      if (f.type === "error") assert.doesNotMatch(f.message, /[\r\n]/, "one-line message");
    }
  } else {
    checkHttpAnswer(input, out);
  }
}

/**
 * What the server sent back to HTTP input parses, with the strict response parser, as
 * exactly one response per request it could read (the same parser as the server's), plus
 * one refusal when the input was malformed, or possibly one 408 when it stopped inside a
 * request: nothing more, nothing less, no partial response, nothing left over.
 */
function checkHttpAnswer(input: Uint8Array, out: Uint8Array): void {
  const methods: string[] = [];
  let refused = false;
  const requests = new HttpRequestParser({
    head: () => {},
    request: (r) => methods.push(r.method),
    error: () => refused = true,
  });
  requests.push(input);
  const complete = methods.length;
  const responses: number[] = [];
  const errors: string[] = [];
  const parser = new HttpResponseParser({
    response: (r) => responses.push(r.status),
    error: (e) => errors.push(e.message),
  });
  for (const m of methods) parser.sent(m);
  parser.sent("GET"); // a refusal or a timeout answer, if any
  parser.push(out);
  parser.end();
  const answered = refused ? complete + 1 : responses.length;
  assert.equal(
    responses.length,
    answered,
    `responses ${responses} to ${methods} (refused: ${refused})`,
  );
  assert.ok(
    answered === complete || answered === complete + 1,
    `${answered} answers to ${complete}`,
  );
  // The placeholder for a refusal may stay unanswered (the connection then closes before
  // it, or after a response that ended it); nothing else may go wrong.
  const unanswered = "Connection closed before the response";
  assert.deepEqual(
    errors.filter((e) => !(answered === complete && e === unanswered)),
    [],
    "a clean HTTP response stream",
  );
}

/** Bounded reads until EOF or the deadline. */
async function readAll(conn: Deno.TcpConn, ms: number): Promise<{ out: Uint8Array; eof: boolean }> {
  const parts: Uint8Array[] = [];
  const deadline = Date.now() + ms;
  const buf = new Uint8Array(65536);
  let eof = false;
  let total = 0;
  while (Date.now() < deadline && total < 4 << 20) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf).catch(() => null),
      new Promise<"t">((r) => timer = setTimeout(() => r("t"), deadline - Date.now())),
    ]);
    clearTimeout(timer);
    if (n === "t") break;
    if (n === null) {
      eof = true;
      break;
    }
    parts.push(buf.slice(0, n));
    total += n;
  }
  return { out: concat(parts), eof };
}

/**
 * Mutated and random input over real sockets against an in-process server with short
 * timeouts; a witness EP client is served between batches.
 */
export function socketTarget(): FuzzTarget {
  let server: ReturnType<typeof startServer> | null = null;
  let witness: Client | null = null;
  return {
    name: "socket",
    concurrency: 32,
    async setup() {
      server = startServer({
        sniffTimeoutMs: 300,
        http: { headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 },
        ep: { helloTimeoutMs: 300, idleTimeoutMs: 1_500 },
      });
      // Heartbeats every 500 ms (dead after 1.5 s): a GC pause of the fuzzer itself must not
      // look like a server fault.
      witness = await connect(`127.0.0.1:${server.addr.port}`, { heartbeatMs: 500 });
    },
    async run(rng) {
      const input = rng() < 0.8
        ? mutate(rng, pick(rng, SOCKET_CORPUS), { corpus: SOCKET_CORPUS, pieces: HTTP_PIECES })
        : randomBytes(rng, 1 + int(rng, 64));
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server!.addr.port });
      try {
        const cuts = randomCuts(rng, input.length, 3);
        for (const chunk of chunks(input, cuts)) {
          if (chunk.length === 0) continue;
          let off = 0;
          while (off < chunk.length) off += await conn.write(chunk.subarray(off));
        }
        const { out, eof } = await readAll(conn, 3000);
        guarded(input, () => {
          assert.ok(eof, "the connection was left open");
          checkAnswer(input, out);
        });
      } catch (err) {
        if (err instanceof FuzzFailure) throw err;
        // The server may close first (a refusal) and our write gets a reset: that is fine.
        if (
          !(err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe)
        ) {
          throw new FuzzFailure((err as Error).message, input, { cause: err });
        }
      } finally {
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    },
    async between(batch) {
      const reply = await witness!.request("echo", `ok${batch}`, { timeoutMs: 5_000 });
      assert.equal(new TextDecoder().decode(reply.body), `ok${batch}`, "witness served");
    },
    async teardown() {
      try {
        if (server) {
          const deadline = Date.now() + 3000;
          while (server.counters.open > 1 && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 20));
          }
          assert.equal(server.counters.open, 1, "only the witness connection is left open");
        }
      } finally {
        witness?.close();
        await server?.close();
        server = null;
        witness = null;
      }
    },
  };
}

function inProcess(name: string, run: (rng: Rng) => void): FuzzTarget {
  return {
    name,
    concurrency: 1,
    setup: () => Promise.resolve(),
    run,
    between: () => Promise.resolve(),
    teardown: () => Promise.resolve(),
  };
}

/** Every target, by name. */
export const TARGETS: Readonly<Record<string, () => FuzzTarget>> = Object.freeze({
  sniff: sniffTarget,
  ep: epTarget,
  http: httpTarget,
  writer: writerTarget,
  socket: socketTarget,
});
