/**
 * Seeded, bounded fuzzing of the EP decoder: mutated golden inputs, random bytes and random
 * split points. Failures print the seed and the input in hex so they can be replayed.
 */
import assert from "node:assert/strict";
import { EpDecoder } from "./ep_decoder.ts";
import { EpEncoder } from "./ep_encoder.ts";
import { type Frame, HEADER_SIZE, isServiceName } from "./ep_frames.ts";
import { ErrorCode, type ProtocolError } from "./errors.ts";
import { mulberry32, type Rng } from "../tests/fuzz/_mutate.ts";

const int = (rng: Rng, n: number) => Math.floor(rng() * n);

function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
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

const golden = JSON.parse(
  await Deno.readTextFile(new URL("../tests/testdata/ep_golden.json", import.meta.url)),
) as {
  frames: { hex: string }[];
  badRequests: { hex: string }[];
  malformed: { hex: string }[];
  v2: { frames: { hex: string }[]; malformed: { hex: string }[] };
};

const CORPUS: Uint8Array[] = [
  ...golden.frames.map((v) => fromHex(v.hex)),
  ...golden.badRequests.map((v) => fromHex(v.hex)),
  ...golden.malformed.map((v) => fromHex(v.hex)),
];
CORPUS.push(concat(golden.frames.map((v) => fromHex(v.hex))));
/** Version 2's inputs: its own vectors and version 1's (most decode alike). */
const CORPUS_V2: Uint8Array[] = [
  ...CORPUS,
  ...golden.v2.frames.map((v) => fromHex(v.hex)),
  ...golden.v2.malformed.map((v) => fromHex(v.hex)),
  concat(golden.v2.frames.map((v) => fromHex(v.hex))),
];

function mutate(rng: Rng, input: Uint8Array): Uint8Array {
  let b: Uint8Array = input.slice();
  const rounds = rng() < 0.5 ? 1 : 1 + int(rng, 4);
  for (let r = 0; r < rounds; r++) {
    const op = int(rng, 8);
    if (op === 0 && b.length > 0) { // flip one bit
      b[int(rng, b.length)] ^= 1 << int(rng, 8);
    } else if (op === 1 && b.length > 0) { // random byte
      b[int(rng, b.length)] = int(rng, 256);
    } else if (op === 2) { // truncate
      b = b.slice(0, int(rng, b.length + 1));
    } else if (op === 3) { // insert random bytes
      const at = int(rng, b.length + 1);
      const ins = Uint8Array.from({ length: 1 + int(rng, 8) }, () => int(rng, 256));
      b = concat([b.subarray(0, at), ins, b.subarray(at)]);
    } else if (op === 4 && b.length >= 4) { // random payload length in the first header
      const v = rng() < 0.5 ? int(rng, 64) : int(rng, 2 ** 32);
      new DataView(b.buffer, b.byteOffset).setUint32(0, v);
    } else if (op === 5 && b.length > 0) { // delete a range
      const at = int(rng, b.length);
      b = concat([b.subarray(0, at), b.subarray(at + 1 + int(rng, 8))]);
    } else if (op === 6) { // splice another corpus entry
      const other = CORPUS[int(rng, CORPUS.length)];
      b = concat([b.subarray(0, int(rng, b.length + 1)), other]);
    } else if (op === 7 && b.length > 4) { // a u16 or u8 field set to an extreme
      const at = int(rng, b.length - 1);
      b[at] = rng() < 0.5 ? 0xff : 0;
      if (rng() < 0.5) b[at + 1] = rng() < 0.5 ? 0xff : 0;
    }
  }
  return b;
}

interface Run {
  events: (Frame | { error: number })[];
}

/**
 * Decodes `input` in chunks cut at `cuts`, checking the per-push invariants: no exception,
 * at most one error and nothing after it, and bounded buffering.
 */
function run(input: Uint8Array, cuts: number[], maxPayload: number, version = 1): Run {
  const events: (Frame | { error: number })[] = [];
  let errors = 0;
  const decoder = new EpDecoder({
    frame(f) {
      assert.equal(errors, 0, "no frame after an error");
      events.push("body" in f ? { ...f, body: f.body.slice() } : f);
    },
    error(err: ProtocolError) {
      errors++;
      assert.equal(errors, 1, "exactly one error");
      assert.equal(typeof err.code, "number");
      events.push({ error: err.code });
    },
  }, { maxPayload, version });
  let prev = 0;
  for (const cut of [...cuts, input.length]) {
    decoder.push(input.subarray(prev, cut));
    prev = cut;
    assert.ok(decoder.buffered <= HEADER_SIZE + maxPayload, "bounded buffering");
    assert.equal(decoder.failed, errors === 1);
  }
  return { events };
}

function randomCuts(rng: Rng, n: number): number[] {
  const k = int(rng, Math.min(n, 16) + 1);
  return Array.from({ length: k }, () => int(rng, n + 1)).sort((a, b) => a - b);
}

/** Accepted frames re-encode to exactly the bytes they came from (the encoding is canonical). */
function checkCanonical(input: Uint8Array, events: Run["events"], encoder: EpEncoder): void {
  let offset = 0;
  for (const e of events) {
    if ("error" in e && !("type" in e)) return;
    const f = e as Frame;
    if (f.type === "request" && !isServiceName(f.service)) return; // decodes; refused as BAD_REQUEST
    const bytes = encoder.encode(f);
    assert.equal(toHex(input.subarray(offset, offset + bytes.length)), toHex(bytes), f.type);
    offset += bytes.length;
  }
}

/** What the fuzz inputs reached, so a run that explores nothing fails. */
const reached = { frames: 0, codes: new Set<number>() };

function fuzzOne(rng: Rng, input: Uint8Array, label: string, version = 1): void {
  const maxPayload = rng() < 0.25 ? 64 + int(rng, 256) : 16 * 1024 * 1024;
  try {
    const whole = run(input, [], maxPayload, version);
    for (const e of whole.events) {
      if ("type" in e) reached.frames++;
      else reached.codes.add(e.error);
    }
    const split = run(input, randomCuts(rng, input.length), maxPayload, version);
    assert.deepEqual(split.events, whole.events, "split and whole decode alike");
    checkCanonical(input, whole.events, new EpEncoder({ maxPayload, version }));
  } catch (err) {
    throw new Error(`${label}: input ${toHex(input)}`, { cause: err });
  }
}

Deno.test("EP decoder survives mutated golden inputs split at random points", () => {
  const rng = mulberry32(0xe9_0001);
  for (let i = 0; i < 8000; i++) {
    const base = CORPUS[int(rng, CORPUS.length)];
    fuzzOne(rng, mutate(rng, base), `mutation ${i}`);
  }
  assert.ok(reached.frames > 600, `frames decoded: ${reached.frames}`);
  for (const code of [ErrorCode.MALFORMED, ErrorCode.FRAME_TOO_LARGE, ErrorCode.UNEXPECTED_FRAME]) {
    assert.ok(reached.codes.has(code), `error code ${code} reached`);
  }
});

Deno.test("EP decoder at version 2 survives mutated golden inputs (v1 and v2) split at random points", () => {
  const rng = mulberry32(0xe9_0004);
  const before = reached.frames;
  for (let i = 0; i < 4000; i++) {
    const base = CORPUS_V2[int(rng, CORPUS_V2.length)];
    fuzzOne(rng, mutate(rng, base), `v2 mutation ${i}`, 2);
  }
  assert.ok(reached.frames - before > 300, `frames decoded: ${reached.frames - before}`);
});

Deno.test("EP decoder survives random bytes split at random points", () => {
  const rng = mulberry32(0xe9_0002);
  for (let i = 0; i < 2000; i++) {
    const n = int(rng, 96);
    const input = Uint8Array.from({ length: n }, () => int(rng, 256));
    if (rng() < 0.5 && n >= HEADER_SIZE) {
      // A plausible header: small length, known type, clean flags, so payloads get parsed.
      new DataView(input.buffer).setUint32(0, int(rng, n - HEADER_SIZE + 8));
      input[4] = [1, 2, 3, 4, 5, 6, 7, 8, 0x10, 0x11, 0x12, 0x13][int(rng, 12)];
      input[5] = input[6] = input[7] = 0;
    }
    fuzzOne(rng, input, `random ${i}`);
  }
});

Deno.test("EP decoder fed a long stream byte by byte matches the whole-stream decode", () => {
  const rng = mulberry32(0xe9_0003);
  for (let i = 0; i < 20; i++) {
    const parts: Uint8Array[] = [];
    const valid = golden.frames.map((v) => fromHex(v.hex));
    for (let j = 0; j < 30; j++) parts.push(valid[int(rng, valid.length)]);
    parts.push(mutate(rng, CORPUS[int(rng, CORPUS.length)])); // usually ends in an error
    const input = concat(parts);
    const cuts = Array.from({ length: input.length }, (_, k) => k);
    const bytewise = run(input, cuts, 4096);
    assert.ok(bytewise.events.length >= 30);
    assert.deepEqual(bytewise.events, run(input, [], 4096).events);
  }
});
