import assert from "node:assert/strict";
import { EpDecoder, parsePreface } from "./ep_decoder.ts";
import { EpEncoder } from "./ep_encoder.ts";
import { type Frame, HEADER_SIZE, NOT_APPLICABLE, Role } from "./ep_frames.ts";
import { ErrorCode, FrameTooLargeError, type ProtocolError } from "./errors.ts";

const text = new TextEncoder();

type Event = { frame: Frame } | { error: number; message: string };

/** A decoder whose sink records events, copying bodies (they are views). */
function recorder(maxPayload?: number): { decoder: EpDecoder; events: Event[] } {
  const events: Event[] = [];
  const decoder = new EpDecoder({
    frame(f) {
      events.push({ frame: "body" in f ? { ...f, body: f.body.slice() } : f });
    },
    error(err: ProtocolError) {
      events.push({ error: err.code, message: err.message });
    },
  }, maxPayload === undefined ? undefined : { maxPayload });
  return { decoder, events };
}

function decode(chunks: Uint8Array[], maxPayload?: number): Event[] {
  const { decoder, events } = recorder(maxPayload);
  for (const c of chunks) decoder.push(c);
  return events;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function hex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
}

/** One frame of every type, several with bodies and meta, plus a 3000-byte body. */
const SAMPLE: Frame[] = [
  {
    type: "hello",
    role: Role.WORKER,
    minVersion: 1,
    maxVersion: 1,
    heartbeatMs: 5000,
    name: "wörker",
    token: "t",
  },
  {
    type: "welcome",
    version: 1,
    maxPayload: 1 << 20,
    heartbeatMs: 5000,
    prefetch: 2,
    serverName: "bal",
  },
  { type: "register", slots: 4, services: ["user", "money"] },
  { type: "ready", credit: 4 },
  { type: "heartbeat", seq: 1, freeSlots: 4, queueDepth: NOT_APPLICABLE },
  { type: "statsRequest", id: 9 },
  { type: "stats", id: 9, json: '{"q":"✓"}' },
  {
    type: "request",
    id: 1,
    deadlineMs: 100,
    priority: 3,
    attempt: 0,
    queueDepth: 0,
    service: "user",
    meta: [["ep-method", "GET"], ["x-e", "ü"], ["x-e", ""]],
    body: text.encode("hello"),
  },
  {
    type: "request",
    id: 2,
    deadlineMs: 0,
    priority: 0,
    attempt: 1,
    queueDepth: 5,
    service: "money",
    meta: [],
    body: new Uint8Array(3000).map((_, i) => i * 7),
  },
  { type: "cancel", id: 2 },
  {
    type: "reply",
    id: 1,
    status: 200,
    freeSlots: 3,
    meta: [["content-type", "text/plain"]],
    body: text.encode("hi"),
  },
  {
    type: "reply",
    id: 7,
    status: 503,
    freeSlots: NOT_APPLICABLE,
    meta: [],
    body: new Uint8Array(),
  },
  { type: "error", id: 2, code: ErrorCode.CANCELLED, message: "Cancelled by the client" },
  { type: "drain", graceMs: 1000 },
  { type: "admin", id: 10, json: '{"op":"drain","worker":"ß"}' },
  { type: "adminResult", id: 10, json: '{"worker":{}}' },
];

const encoder = new EpEncoder();
const STREAM = concat(SAMPLE.map((f) => encoder.encodeCopy(f)));
const EXPECTED: Event[] = SAMPLE.map((frame) => ({ frame }));

Deno.test("EP decoder decodes a multi-frame stream pushed whole", () => {
  assert.deepEqual(decode([STREAM]), EXPECTED);
});

Deno.test("EP decoder yields the same events fed one byte at a time", () => {
  const chunks = Array.from(STREAM, (b) => new Uint8Array([b]));
  assert.deepEqual(decode(chunks), EXPECTED);
});

Deno.test("EP decoder reassembles a stream split at every offset", () => {
  for (let i = 0; i <= STREAM.length; i++) {
    const events = decode([STREAM.subarray(0, i), STREAM.subarray(i)]);
    assert.deepEqual(events, EXPECTED, `split at ${i}`);
  }
});

Deno.test("EP decoder reassembles a stream split at every pair of offsets near frame bounds", () => {
  // Every (i, j) over the first 200 bytes, which span several headers and payloads.
  for (let i = 0; i < 200; i++) {
    for (let j = i; j < 200; j++) {
      const events = decode([STREAM.subarray(0, i), STREAM.subarray(i, j), STREAM.subarray(j)]);
      assert.deepEqual(events, EXPECTED, `split at ${i}, ${j}`);
    }
  }
});

Deno.test("EP decoder accepts empty chunks anywhere", () => {
  const empty = new Uint8Array(0);
  const chunks = [empty, STREAM.subarray(0, 5), empty, STREAM.subarray(5, 13), empty];
  chunks.push(STREAM.subarray(13), empty);
  assert.deepEqual(decode(chunks), EXPECTED);
});

Deno.test("EP decoder parses a frame that fits in one chunk in place", () => {
  const bytes = new EpEncoder().encodeCopy(SAMPLE[7]);
  let body: Uint8Array | undefined;
  new EpDecoder({
    frame(f) {
      if (f.type === "request") body = f.body;
    },
    error(err) {
      assert.fail(err.message);
    },
  }).push(bytes);
  assert.ok(body);
  assert.equal(body.buffer, bytes.buffer, "body is a view into the pushed chunk");
  assert.equal(body.byteOffset, bytes.length - 5);
});

Deno.test("EP decoder collects a split frame into one buffer sized from the header", () => {
  const frame = SAMPLE[8];
  assert.ok(frame.type === "request");
  const bytes = new EpEncoder().encodeCopy(frame);
  const { decoder, events } = recorder();
  decoder.push(bytes.subarray(0, 7));
  assert.equal(decoder.buffered, 7);
  decoder.push(bytes.subarray(7, 100));
  assert.equal(decoder.buffered, 100);
  for (let o = 100; o < bytes.length; o += 1000) decoder.push(bytes.subarray(o, o + 1000));
  assert.equal(decoder.buffered, 0);
  assert.deepEqual(events, [{ frame }]);
});

Deno.test("EP decoder delivers 1 MiB bodies pushed in 1000-byte chunks and whole", () => {
  const body = new Uint8Array(1 << 20).map((_, i) => i % 251);
  const frame: Frame = {
    type: "reply",
    id: 1,
    status: 200,
    freeSlots: 0,
    meta: [],
    body,
  };
  const small: Frame = { type: "stats", id: 2, json: "{}" };
  const bytes = concat([new EpEncoder().encodeCopy(frame), new EpEncoder().encodeCopy(small)]);
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < bytes.length; o += 1000) chunks.push(bytes.subarray(o, o + 1000));
  chunks.push(...[frame, small, frame].map((f) => new EpEncoder().encodeCopy(f)));
  assert.deepEqual(decode(chunks), [{ frame }, { frame: small }, { frame }, { frame: small }, {
    frame,
  }]);
});

Deno.test("EP decoder reports FRAME_TOO_LARGE from a header alone, before any payload", () => {
  const header = hex("40000000 10 00 0000 00000001"); // 1 GiB REQUEST
  const errors: ProtocolError[] = [];
  const decoder = new EpDecoder({
    frame: () => assert.fail("no frame"),
    error: (e) => errors.push(e),
  });
  decoder.push(header);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof FrameTooLargeError);
  assert.equal(errors[0].code, ErrorCode.FRAME_TOO_LARGE);
  assert.equal(errors[0].size, 1 << 30);
  assert.equal(errors[0].limit, 16 * 1024 * 1024);
  assert.ok(decoder.failed);
  assert.equal(decoder.buffered, 0);
});

Deno.test("EP decoder enforces a custom maxPayload at exactly the limit", () => {
  const frame = (n: number): Frame => ({
    type: "reply",
    id: 1,
    status: 200,
    freeSlots: 0,
    meta: [],
    body: new Uint8Array(n - 10),
  });
  const enc = new EpEncoder();
  assert.deepEqual(decode([enc.encodeCopy(frame(100))], 100), [{ frame: frame(100) }]);
  const events = decode([enc.encodeCopy(frame(101)).subarray(0, HEADER_SIZE)], 100);
  assert.equal(events.length, 1);
  assert.ok("error" in events[0] && events[0].error === ErrorCode.FRAME_TOO_LARGE);
});

Deno.test("EP decoder reports one error and ignores everything after it", () => {
  const good = new EpEncoder().encodeCopy({ type: "cancel", id: 1 });
  const bad = hex("00000000 13 01 0000 00000002"); // flags set
  const { decoder, events } = recorder();
  decoder.push(concat([good, bad, good]));
  decoder.push(good);
  decoder.push(bad);
  assert.equal(events.length, 2);
  assert.deepEqual(events[0], { frame: { type: "cancel", id: 1 } });
  assert.ok("error" in events[1] && events[1].error === ErrorCode.MALFORMED);
  assert.ok(decoder.failed);
});

Deno.test("EP decoder maps every malformed case to its code", () => {
  const req = (fields: string) => {
    const payload = hex(fields);
    return concat([
      hex(`${payload.length.toString(16).padStart(8, "0")} 10 00 0000 00000001`),
      payload,
    ]);
  };
  const reqHead = "00000000 00 00 0000 00000000 04 75736572"; // deadline .. service "user"
  const cases: [string, Uint8Array, number][] = [
    ["unknown type 0x14", hex("00000000 14 00 0000 00000000"), ErrorCode.UNEXPECTED_FRAME],
    ["unknown type 0x0f", hex("00000000 0f 00 0000 00000000"), ErrorCode.UNEXPECTED_FRAME],
    ["flags", hex("00000000 07 02 0000 00000001"), ErrorCode.MALFORMED],
    ["reserved", hex("00000000 07 00 0001 00000001"), ErrorCode.MALFORMED],
    ["short payload", req("00000000 00 00 0000 00000000 00 00"), ErrorCode.MALFORMED],
    ["string past payload", req("00000000 00 00 0000 00000000 09 7573 0000"), ErrorCode.MALFORMED],
    ["meta value past payload", req(`${reqHead} 0001 01 6b 0005 6869`), ErrorCode.MALFORMED],
    ["overlong UTF-8", req(`${reqHead} 0001 01 6b 0002 c1bf`), ErrorCode.MALFORMED],
    ["UTF-16 surrogate", req(`${reqHead} 0001 01 6b 0003 edbfbf`), ErrorCode.MALFORMED],
    ["above U+10FFFF", req(`${reqHead} 0001 01 6b 0004 f4908080`), ErrorCode.MALFORMED],
    ["truncated sequence", req(`${reqHead} 0001 01 6b 0002 e282`), ErrorCode.MALFORMED],
    ["lone continuation", req(`${reqHead} 0001 01 6b 0001 80`), ErrorCode.MALFORMED],
    ["high byte in short value", req(`${reqHead} 0001 01 6b 0003 6180 62`), ErrorCode.MALFORMED],
    ["meta key with space", req(`${reqHead} 0001 02 6120 0000`), ErrorCode.MALFORMED],
    ["meta key non-ASCII", req(`${reqHead} 0001 02 c3a9 0000`), ErrorCode.MALFORMED],
    [
      "token over 1024",
      (() => {
        const payload = concat([hex("01 01 01 00 00000000 00 0401"), new Uint8Array(1025)]);
        return concat([
          hex(`${payload.length.toString(16).padStart(8, "0")} 01 00 0000 00000000`),
          payload,
        ]);
      })(),
      ErrorCode.MALFORMED,
    ],
    ["ready trailing byte", hex("00000005 04 00 0000 00000000 00000001 00"), ErrorCode.MALFORMED],
    [
      "welcome trailing byte",
      hex("00000010 02 00 0000 00000000 01 00 0000 00010000 00000000 0000 00 00"),
      ErrorCode.MALFORMED,
    ],
    ["heartbeat short", hex("00000007 05 00 0000 00000000 00000000 000000"), ErrorCode.MALFORMED],
  ];
  for (const [name, bytes, code] of cases) {
    for (const step of [bytes.length, 1]) {
      const chunks: Uint8Array[] = [];
      for (let o = 0; o < bytes.length; o += step) chunks.push(bytes.subarray(o, o + step));
      const events = decode(chunks);
      assert.equal(events.length, 1, `${name}: ${JSON.stringify(events)}`);
      assert.ok("error" in events[0], name);
      assert.equal(events[0].error, code, `${name}: ${events[0].message}`);
    }
  }
});

Deno.test("EP decoder keeps a leading byte-order mark and decodes long and non-ASCII strings", () => {
  const long = "x".repeat(300) + "é";
  const frame: Frame = {
    type: "request",
    id: 5,
    deadlineMs: 0,
    priority: 0,
    attempt: 0,
    queueDepth: 0,
    service: "user",
    meta: [["a", "\uFEFF"], ["b", long], ["c", "a\u0000b"], ["d", "𝄞"]],
    body: new Uint8Array(),
  };
  assert.deepEqual(decode([new EpEncoder().encodeCopy(frame)]), [{ frame }]);
});

Deno.test("EP decoder marks itself failed and rethrows when the sink throws", () => {
  const bytes = concat([
    new EpEncoder().encodeCopy({ type: "cancel", id: 1 }),
    new EpEncoder().encodeCopy({ type: "cancel", id: 2 }),
  ]);
  let calls = 0;
  const decoder = new EpDecoder({
    frame() {
      calls++;
      throw new Error("boom");
    },
    error: () => assert.fail("no error event"),
  });
  assert.throws(() => decoder.push(bytes), /boom/);
  assert.ok(decoder.failed);
  decoder.push(bytes);
  assert.equal(calls, 1);
});

Deno.test("EP decoder rejects an invalid maxPayload option", () => {
  const sink = { frame() {}, error() {} };
  assert.throws(() => new EpDecoder(sink, { maxPayload: -1 }), RangeError);
  assert.throws(() => new EpDecoder(sink, { maxPayload: 1.5 }), RangeError);
  assert.throws(() => new EpDecoder(sink, { maxPayload: 2 ** 32 }), RangeError);
});

Deno.test("EP parsePreface reads the version or returns null", () => {
  assert.equal(parsePreface(hex("eb455001")), 1);
  assert.equal(parsePreface(hex("eb4550ff 0000")), 255);
  assert.equal(parsePreface(hex("eb455000")), 0);
  assert.equal(parsePreface(hex("eb4550")), null);
  assert.equal(parsePreface(hex("eb465001")), null);
  assert.equal(parsePreface(text.encode("GET / HTTP/1.1")), null);
  assert.equal(parsePreface(new Uint8Array()), null);
});
