/**
 * EP golden vectors (tests/testdata/ep_golden.json) and the hex examples of
 * protocol/SPEC.md, checked against the codec in both directions.
 */
import assert from "node:assert/strict";
import { EpDecoder, parsePreface } from "../protocol/ep_decoder.ts";
import { EpEncoder } from "../protocol/ep_encoder.ts";
import { type Frame, FrameType, isServiceName, PREFACE_SIZE } from "../protocol/ep_frames.ts";
import { ErrorCode, type ProtocolError } from "../protocol/errors.ts";
import golden from "./testdata/ep_golden.json" with { type: "json" };

type JsonFrame = Record<string, unknown> & { type: string; bodyText?: string; bodyHex?: string };

interface Golden {
  frames: { name: string; hex: string; frame: JsonFrame }[];
  badRequests: { name: string; hex: string; frame: JsonFrame; code: string }[];
  malformed: { name: string; hex: string; code: string; framesBefore: number }[];
  /** Version 2's vectors: decoded and encoded as version 2. */
  v2: Pick<Golden, "frames" | "malformed">;
}

const vectors = golden as unknown as Golden;

function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  assert.match(clean, /^([0-9a-f]{2})*$/, "hex is lower-case pairs");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The JSON form of a frame (bodyText / bodyHex) as a codec `Frame`. */
function toFrame(j: JsonFrame): Frame {
  const { bodyText, bodyHex, ...rest } = j;
  if (bodyText !== undefined) {
    return { ...rest, body: new TextEncoder().encode(bodyText) } as unknown as Frame;
  }
  if (bodyHex !== undefined) return { ...rest, body: fromHex(bodyHex) } as unknown as Frame;
  return rest as unknown as Frame;
}

type Event = { frame: Frame } | { error: number; message: string };

function decodeAll(bytes: Uint8Array, step = bytes.length, version = 1): Event[] {
  const events: Event[] = [];
  const decoder = new EpDecoder({
    frame(f) {
      events.push({ frame: "body" in f ? { ...f, body: f.body.slice() } : f });
    },
    error(err: ProtocolError) {
      events.push({ error: err.code, message: err.message });
    },
  }, { version });
  for (let i = 0; i < bytes.length; i += Math.max(step, 1)) {
    decoder.push(bytes.subarray(i, i + Math.max(step, 1)));
  }
  return events;
}

function codeOf(name: string): number {
  const code = (ErrorCode as Record<string, number>)[name.toUpperCase()];
  assert.notEqual(code, undefined, `unknown error code name "${name}"`);
  return code;
}

Deno.test("EP golden vectors cover every frame type", () => {
  const seen = new Set(vectors.frames.map((v) => v.frame.type));
  const kinds = [
    "hello",
    "welcome",
    "register",
    "ready",
    "heartbeat",
    "drain",
    "statsRequest",
    "stats",
    "admin",
    "adminResult",
    "request",
    "reply",
    "error",
    "cancel",
  ];
  assert.equal(kinds.length, Object.keys(FrameType).length);
  assert.deepEqual([...seen].sort(), kinds.sort());
});

for (const v of vectors.frames) {
  Deno.test(`EP golden "${v.name}" decodes to its frame and re-encodes to its hex`, () => {
    const bytes = fromHex(v.hex);
    const expected = toFrame(v.frame);
    assert.deepEqual(decodeAll(bytes), [{ frame: expected }]);
    assert.deepEqual(decodeAll(bytes, 1), [{ frame: expected }], "one byte at a time");
    assert.equal(toHex(new EpEncoder().encode(expected)), toHex(bytes));
  });
}

for (const v of vectors.badRequests) {
  Deno.test(`EP golden "${v.name}" decodes, but its service name is refused`, () => {
    const expected = toFrame(v.frame);
    assert.deepEqual(decodeAll(fromHex(v.hex)), [{ frame: expected }]);
    assert.equal(codeOf(v.code), ErrorCode.BAD_REQUEST);
    assert.ok(expected.type === "request" && !isServiceName(expected.service));
    assert.throws(() => new EpEncoder().encode(expected), RangeError);
  });
}

function checkMalformed(
  v: { name: string; hex: string; code: string; framesBefore: number },
  version: number,
): void {
  const bytes = fromHex(v.hex);
  for (const step of [bytes.length, 1, 5]) {
    const events = decodeAll(bytes, step, version);
    assert.equal(events.length, v.framesBefore + 1, `events with step ${step}`);
    assert.ok(events.slice(0, -1).every((e) => "frame" in e));
    const last = events[events.length - 1];
    assert.ok("error" in last, `last event is an error with step ${step}`);
    assert.equal(last.error, codeOf(v.code), last.message);
  }
}

for (const v of vectors.malformed) {
  Deno.test(`EP golden malformed "${v.name}" yields ${v.code} after ${v.framesBefore} frames`, () => {
    checkMalformed(v, 1);
  });
}

for (const v of vectors.v2.frames) {
  Deno.test(`EP v2 golden "${v.name}" decodes to its frame and re-encodes to its hex`, () => {
    const bytes = fromHex(v.hex);
    const expected = toFrame(v.frame);
    assert.deepEqual(decodeAll(bytes, bytes.length, 2), [{ frame: expected }]);
    assert.deepEqual(decodeAll(bytes, 1, 2), [{ frame: expected }], "one byte at a time");
    assert.equal(toHex(new EpEncoder({ version: 2 }).encode(expected)), toHex(bytes));
  });
}

for (const v of vectors.v2.malformed) {
  Deno.test(`EP v2 golden malformed "${v.name}" yields ${v.code} after ${v.framesBefore} frames`, () => {
    checkMalformed(v, 2);
  });
}

Deno.test("EP v2 golden vectors cover every frame type version 2 extends", () => {
  const seen = new Set(vectors.v2.frames.map((v) => v.frame.type));
  assert.deepEqual([...seen].sort(), ["heartbeat", "register", "request"]);
});

Deno.test("EP v2 reads every v1 frame but HEARTBEAT the same (what a peer may pipeline before WELCOME), a REQUEST with oldest wait 0", () => {
  for (const v of vectors.frames) {
    const bytes = fromHex(v.hex);
    if (v.frame.type === "heartbeat") {
      const [e] = decodeAll(bytes, bytes.length, 2);
      assert.ok("error" in e && e.error === ErrorCode.MALFORMED, v.name);
      continue;
    }
    const expected = toFrame(v.frame);
    if (expected.type === "request") expected.oldestWaitMs = 0;
    assert.deepEqual(decodeAll(bytes, bytes.length, 2), [{ frame: expected }], v.name);
  }
});

Deno.test("EP v1 encoding leaves the v2 fields out: the same bytes as without them", () => {
  const v1 = new EpEncoder();
  const plain = vectors.frames.find((v) => v.name === "request_dispatch_redelivery")!;
  const withWait = { ...toFrame(plain.frame), oldestWaitMs: 77 } as Frame;
  assert.equal(toHex(v1.encode(withWait)), toHex(fromHex(plain.hex)));
  const reg = vectors.frames.find((v) => v.name === "register")!;
  const withHedge = { ...toFrame(reg.frame), hedgeMs: [0, 50] } as Frame;
  assert.equal(toHex(v1.encode(withHedge)), toHex(fromHex(reg.hex)));
  const beat = vectors.frames.find((v) => v.name === "heartbeat_worker")!;
  const withBeat = { ...toFrame(beat.frame), oldestWaitMs: 5 } as Frame;
  assert.equal(toHex(v1.encode(withBeat)), toHex(fromHex(beat.hex)));
});

Deno.test("EP codec versions: 1 and 2 are spoken, anything else is refused", () => {
  const sink = { frame() {}, error() {} };
  for (const version of [0, 3, 1.5, NaN]) {
    assert.throws(() => new EpDecoder(sink, { version }), RangeError);
    assert.throws(() => new EpEncoder({ version }), RangeError);
  }
  const d = new EpDecoder(sink);
  assert.equal(d.version, 1);
  d.version = 2;
  assert.equal(d.version, 2);
  assert.throws(() =>
    new EpEncoder({ version: 2 }).encode({
      type: "register",
      slots: 1,
      services: ["a", "b"],
      hedgeMs: [1],
    }), RangeError);
  assert.throws(() =>
    new EpEncoder({ version: 2 }).encode({
      type: "request",
      id: 1,
      deadlineMs: 0,
      priority: 0,
      attempt: 0,
      queueDepth: 0,
      oldestWaitMs: 0x10000,
      service: "a",
      meta: [],
      body: new Uint8Array(0),
    }), RangeError);
});

/** The ```hex blocks of SPEC.md; `#` starts a comment. */
async function specHexBlocks(): Promise<{ title: string; bytes: Uint8Array }[]> {
  const spec = await Deno.readTextFile(new URL("../protocol/SPEC.md", import.meta.url));
  const blocks: { title: string; bytes: Uint8Array }[] = [];
  for (const m of spec.matchAll(/```hex\n([\s\S]*?)```/g)) {
    const lines = m[1].split("\n");
    const hex = lines.map((l) => l.replace(/#.*$/, "")).join("");
    blocks.push({ title: lines[0].trim(), bytes: fromHex(hex) });
  }
  return blocks;
}

Deno.test("EP SPEC.md hex examples decode without error and re-encode byte for byte", async () => {
  const blocks = await specHexBlocks();
  assert.ok(blocks.length >= 2, "SPEC.md has hex examples");
  for (const { title, bytes } of blocks) {
    let stream = bytes;
    // A block is version 1 unless its preface or its title (`(v2)`) says 2.
    let version = /\(v2\)/.test(title) ? 2 : 1;
    const preface = parsePreface(bytes);
    if (preface !== null) {
      assert.ok(preface === 1 || preface === 2, title);
      version = preface;
      stream = bytes.subarray(PREFACE_SIZE);
    }
    const events = decodeAll(stream, stream.length, version);
    assert.ok(events.length > 0, title);
    const encoder = new EpEncoder({ version });
    const parts: string[] = [];
    for (const e of events) {
      assert.ok("frame" in e, `${title}: ${"message" in e ? e.message : ""}`);
      parts.push(toHex(encoder.encode(e.frame)));
    }
    assert.equal(parts.join(""), toHex(stream), title);
  }
});
