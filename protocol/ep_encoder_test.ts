import assert from "node:assert/strict";
import { EpDecoder } from "./ep_decoder.ts";
import { encodePreface, EpEncoder } from "./ep_encoder.ts";
import {
  type Frame,
  HEADER_SIZE,
  type HelloFrame,
  NOT_APPLICABLE,
  PREFACE,
  type RequestFrame,
  Role,
  type RoleValue,
} from "./ep_frames.ts";
import { ErrorCode, FrameTooLargeError } from "./errors.ts";

function decodeOne(bytes: Uint8Array): Frame {
  const frames: Frame[] = [];
  new EpDecoder({
    frame(f) {
      frames.push("body" in f ? { ...f, body: f.body.slice() } : f);
    },
    error(err) {
      assert.fail(`decode error ${err.code}: ${err.message}`);
    },
  }).push(bytes);
  assert.equal(frames.length, 1);
  return frames[0];
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const hello: HelloFrame = {
  type: "hello",
  role: Role.CLIENT,
  minVersion: 1,
  maxVersion: 1,
  heartbeatMs: 0,
  name: "c",
  token: "",
};

const request: RequestFrame = {
  type: "request",
  id: 1,
  deadlineMs: 0,
  priority: 0,
  attempt: 0,
  queueDepth: 0,
  service: "user",
  meta: [],
  body: new Uint8Array(),
};

Deno.test("EP encoder round-trips every frame type through the decoder", () => {
  const frames: Frame[] = [
    { ...hello, role: Role.WORKER, minVersion: 1, maxVersion: 255, heartbeatMs: 0xffffffff },
    {
      type: "welcome",
      version: 255,
      maxPayload: 0xffffffff,
      heartbeatMs: 1,
      prefetch: 0xffff,
      serverName: "ß",
    },
    { type: "register", slots: 0xffffffff, services: ["a", "0.b_c-d", "z".repeat(64)] },
    { type: "ready", credit: 0 },
    { type: "heartbeat", seq: 0, freeSlots: NOT_APPLICABLE, queueDepth: 0 },
    { type: "drain", graceMs: 0xffffffff },
    { type: "statsRequest", id: 0 },
    { type: "stats", id: 0xffffffff, json: "" },
    { type: "admin", id: 0, json: '{"op":"workers"}' },
    { type: "adminResult", id: 0xffffffff, json: "" },
    {
      ...request,
      id: 0xffffffff,
      priority: 255,
      attempt: 255,
      meta: [["k", "v".repeat(0xffff)]],
      body: new Uint8Array([0, 1, 2]),
    },
    { type: "reply", id: 3, status: 599, freeSlots: 1, meta: [["a", ""]], body: new Uint8Array() },
    { type: "error", id: 0, code: 0xffff, message: "é".repeat(512) },
    { type: "cancel", id: 1 },
  ];
  const enc = new EpEncoder();
  for (const f of frames) assert.deepEqual(decodeOne(enc.encode(f)), f, f.type);
});

Deno.test("EP encoder writes the header: length, type, zero flags and reserved, id", () => {
  const bytes = new EpEncoder().encode({ type: "cancel", id: 0x01020304 });
  assert.equal(toHex(bytes), "000000001300000001020304");
  const ready = new EpEncoder().encode({ type: "ready", credit: 0xa0b0c0d0 });
  assert.equal(toHex(ready), "0000000404000000" + "00000000" + "a0b0c0d0");
});

Deno.test("EP encoder reuses its buffer: encode returns a view, encodeCopy owned bytes", () => {
  const enc = new EpEncoder();
  const a = enc.encode({ type: "cancel", id: 1 });
  const b = enc.encode({ type: "cancel", id: 2 });
  assert.equal(a.buffer, b.buffer, "same backing buffer");
  assert.equal(a[11], 2, "the first view now shows the second frame");
  const c = enc.encodeCopy({ type: "cancel", id: 3 });
  enc.encode({ type: "cancel", id: 4 });
  assert.equal(c[11], 3);
  assert.notEqual(c.buffer, a.buffer);
});

Deno.test("EP encoder grows its buffer for a large frame and shrinks afterwards", () => {
  const enc = new EpEncoder();
  const body = new Uint8Array(1 << 20).fill(7);
  const big = enc.encode({ ...request, body });
  assert.equal(big.length, HEADER_SIZE + 12 + 5 + 2 + body.length);
  const small = enc.encode({ type: "cancel", id: 1 });
  assert.ok(small.buffer.byteLength < 1 << 20, "the big buffer is not retained");
  assert.equal(big[big.length - 1], 7, "the earlier view keeps its bytes");
});

Deno.test("EP encoder mixes ASCII and multi-byte text in one string", () => {
  const f: Frame = { ...hello, name: "abc é 𝄞 ✓", token: "Ω".repeat(512) };
  const bytes = new EpEncoder().encode(f);
  assert.deepEqual(decodeOne(bytes), f);
  assert.equal(bytes[HEADER_SIZE + 8], new TextEncoder().encode(f.name).length);
});

Deno.test("EP encoder refuses strings over their byte limits", () => {
  const enc = new EpEncoder();
  assert.doesNotThrow(() => enc.encode({ ...hello, name: "é".repeat(127) + "x" })); // 255 bytes
  assert.throws(() => enc.encode({ ...hello, name: "é".repeat(128) }), RangeError); // 256 bytes
  assert.throws(() => enc.encode({ ...hello, name: "x".repeat(256) }), RangeError);
  assert.doesNotThrow(() => enc.encode({ ...hello, name: "🚀".repeat(63) + "abc" })); // 255
  assert.throws(() => enc.encode({ ...hello, name: "🚀".repeat(64) }), RangeError); // 256
  assert.throws(() => enc.encode({ ...hello, token: "t".repeat(1025) }), RangeError);
  assert.throws(() => enc.encode({ ...hello, token: "é".repeat(513) }), RangeError);
  assert.throws(
    () => enc.encode({ type: "error", id: 1, code: 1, message: "m".repeat(1025) }),
    RangeError,
  );
  assert.throws(
    () => enc.encode({ ...request, meta: [["k", "v".repeat(0x10000)]] }),
    RangeError,
  );
});

Deno.test("EP encoder refuses invalid fields with RangeError", () => {
  const enc = new EpEncoder();
  const bad: [string, Frame][] = [
    ["role 3", { ...hello, role: 3 as RoleValue }],
    ["min version 0", { ...hello, minVersion: 0 }],
    ["min above max", { ...hello, minVersion: 2, maxVersion: 1 }],
    ["version 256", { ...hello, maxVersion: 256 }],
    ["negative u32", { ...hello, heartbeatMs: -1 }],
    ["u32 overflow", { ...hello, heartbeatMs: 2 ** 32 }],
    ["fractional", { type: "ready", credit: 1.5 }],
    ["NaN", { type: "drain", graceMs: NaN }],
    ["job id 0", { ...request, id: 0 }],
    ["cancel id 0", { type: "cancel", id: 0 }],
    ["reply id 0", {
      type: "reply",
      id: 0,
      status: 200,
      freeSlots: 0,
      meta: [],
      body: new Uint8Array(),
    }],
    ["priority 256", { ...request, priority: 256 }],
    ["bad service", { ...request, service: "User" }],
    ["empty service", { ...request, service: "" }],
    ["service 65 bytes", { ...request, service: "a".repeat(65) }],
    ["meta key upper", { ...request, meta: [["Host", "x"]] }],
    ["meta key empty", { ...request, meta: [["", "x"]] }],
    ["meta key colon", { ...request, meta: [[":path", "/"]] }],
    ["meta key non-ASCII", { ...request, meta: [["é", "x"]] }],
    ["meta 257", {
      ...request,
      meta: Array.from({ length: 257 }, (): [string, string] => ["k", ""]),
    }],
    ["status 199", {
      type: "reply",
      id: 1,
      status: 199,
      freeSlots: 0,
      meta: [],
      body: new Uint8Array(),
    }],
    ["status 600", {
      type: "reply",
      id: 1,
      status: 600,
      freeSlots: 0,
      meta: [],
      body: new Uint8Array(),
    }],
    ["newline", { type: "error", id: 1, code: 1, message: "a\nb" }],
    ["carriage return", { type: "error", id: 1, code: 1, message: "a\rb" }],
    ["code 65536", { type: "error", id: 1, code: 65536, message: "" }],
    ["lone surrogate", { ...hello, name: "a\uD800" }],
    ["lone surrogate in stats", { type: "stats", id: 1, json: "\uDC00" }],
    ["lone surrogate in admin", { type: "admin", id: 1, json: "\uD800" }],
    ["admin id over u32", { type: "admin", id: 2 ** 32, json: "{}" }],
    ["register duplicate", { type: "register", slots: 1, services: ["a", "a"] }],
    ["register 257", {
      type: "register",
      slots: 1,
      services: Array.from({ length: 257 }, (_, i) => `s${i}`),
    }],
    ["welcome small max", {
      type: "welcome",
      version: 1,
      maxPayload: 65535,
      heartbeatMs: 0,
      prefetch: 0,
      serverName: "",
    }],
    ["welcome version 0", {
      type: "welcome",
      version: 0,
      maxPayload: 65536,
      heartbeatMs: 0,
      prefetch: 0,
      serverName: "",
    }],
  ];
  for (const [name, f] of bad) assert.throws(() => enc.encode(f), RangeError, name);
  assert.throws(() => enc.encode({ type: "nope" } as unknown as Frame), TypeError);
  // The encoder is still usable after refusing.
  assert.deepEqual(decodeOne(enc.encode({ type: "cancel", id: 5 })), { type: "cancel", id: 5 });
});

Deno.test("EP encoder throws FrameTooLargeError over maxPayload, which is settable", () => {
  const enc = new EpEncoder({ maxPayload: 100 });
  const fits = { ...request, body: new Uint8Array(100 - 19) };
  assert.equal(enc.encode(fits).length, HEADER_SIZE + 100);
  try {
    enc.encode({ ...request, body: new Uint8Array(82) });
    assert.fail("expected FrameTooLargeError");
  } catch (e) {
    assert.ok(e instanceof FrameTooLargeError);
    assert.equal(e.code, ErrorCode.FRAME_TOO_LARGE);
    assert.equal(e.size, 101);
    assert.equal(e.limit, 100);
  }
  assert.throws(
    () => enc.encode({ type: "stats", id: 1, json: "x".repeat(101) }),
    FrameTooLargeError,
  );
  assert.throws(() => enc.encode({ ...hello, token: "t".repeat(100) }), FrameTooLargeError);
  enc.maxPayload = 1000;
  assert.equal(enc.maxPayload, 1000);
  assert.doesNotThrow(() => enc.encode({ ...request, body: new Uint8Array(82) }));
  assert.throws(() => (enc.maxPayload = -1), RangeError);
  assert.throws(() => new EpEncoder({ maxPayload: 2 ** 32 }), RangeError);
});

Deno.test("EP encodePreface writes 0xEB 'E' 'P' and the version", () => {
  assert.deepEqual(Array.from(encodePreface(1)), [...PREFACE]);
  assert.equal(toHex(encodePreface(7)), "eb455007");
  assert.throws(() => encodePreface(0), RangeError);
  assert.throws(() => encodePreface(256), RangeError);
});
