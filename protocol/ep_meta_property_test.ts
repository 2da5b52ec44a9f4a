/**
 * Properties of the ring metadata codec (`ep_meta.ts`): its hand-copied path for short
 * ASCII strings writes and reads exactly what the TextEncoder/TextDecoder path does, for
 * any strings (ASCII or not, lone surrogates, a byte-order mark, around the length where
 * the hand copy stops) and any bytes.
 */
import assert from "node:assert/strict";
import { decodeMeta, encodeMeta } from "./ep_meta.ts";
import { int, mulberry32, pick, randomBytes, type Rng, toHex } from "../tests/fuzz/_mutate.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The codec written with TextEncoder/TextDecoder only: what the fast path must equal. */
function referenceEncode(pairs: readonly (readonly [string, string])[]): Uint8Array {
  if (pairs.length === 0) return new Uint8Array(0);
  const parts = pairs.flatMap(([k, v]) => [enc.encode(k), enc.encode(v)]);
  const out = new Uint8Array(2 + parts.reduce((n, p) => n + p.length, 0) + pairs.length * 3);
  const view = new DataView(out.buffer);
  view.setUint16(0, pairs.length);
  let o = 2;
  for (let i = 0; i < parts.length; i += 2) {
    out[o++] = parts[i].length;
    out.set(parts[i], o);
    o += parts[i].length;
    view.setUint16(o, parts[i + 1].length);
    o += 2;
    out.set(parts[i + 1], o);
    o += parts[i + 1].length;
  }
  return out;
}

function referenceDecode(bytes: Uint8Array): [string, string][] {
  const out: [string, string][] = [];
  if (bytes.length < 2) return out;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint16(0);
  let o = 2;
  for (let i = 0; i < count; i++) {
    if (o + 1 > bytes.length) break;
    const kl = bytes[o++];
    if (o + kl + 2 > bytes.length) break;
    const k = dec.decode(bytes.subarray(o, o + kl));
    o += kl;
    const vl = view.getUint16(o);
    o += 2;
    if (o + vl > bytes.length) break;
    out.push([k, dec.decode(bytes.subarray(o, o + vl))]);
    o += vl;
  }
  return out;
}

const UNITS = [
  "a",
  "Z",
  "0",
  "-",
  " ",
  "\0",
  "\x7f",
  "\x80",
  "é",
  "\u00ff",
  "€",
  "\ufeff",
  "\ud83d\ude00",
  "\ud800",
  "\udc00",
];

/** A string of random units, often ASCII only, with lengths around 64 code units. */
function randomString(rng: Rng, maxUnits: number): string {
  const ascii = rng() < 0.6;
  const n = rng() < 0.3 ? 60 + int(rng, 10) : int(rng, maxUnits);
  let s = "";
  for (let i = 0; i < n; i++) s += ascii ? String.fromCharCode(int(rng, 0x80)) : pick(rng, UNITS);
  return s;
}

Deno.test("encodeMeta writes the same bytes as TextEncoder for any strings", () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const rng = mulberry32(seed);
    const pairs: [string, string][] = [];
    for (let i = int(rng, 6); i > 0; i--) {
      pairs.push([randomString(rng, 40), randomString(rng, 90)]);
    }
    const got = encodeMeta(pairs);
    assert.equal(toHex(got), toHex(referenceEncode(pairs)), `seed ${seed}`);
    assert.deepEqual(decodeMeta(got), referenceDecode(got), `seed ${seed}`);
  }
});

Deno.test("decodeMeta reads any bytes as TextDecoder does", () => {
  for (let seed = 1; seed <= 2000; seed++) {
    const rng = mulberry32(seed);
    // Well-formed layout with random key and value bytes (ASCII or not), then cut anywhere.
    const entries = int(rng, 5);
    const parts: number[] = [0, entries];
    for (let i = 0; i < entries; i++) {
      const k = randomBytes(rng, int(rng, 70)).map((b) => (rng() < 0.8 ? b & 0x7f : b));
      const v = randomBytes(rng, int(rng, 130)).map((b) => (rng() < 0.8 ? b & 0x7f : b));
      parts.push(k.length, ...k, v.length >> 8, v.length & 0xff, ...v);
    }
    const bytes = new Uint8Array(parts).subarray(
      0,
      rng() < 0.2 ? int(rng, parts.length) : parts.length,
    );
    assert.deepEqual(decodeMeta(bytes), referenceDecode(bytes), `seed ${seed}: ${toHex(bytes)}`);
  }
});

Deno.test("encodeMeta still refuses a key over 255 bytes or a value over 65535", () => {
  assert.throws(() => encodeMeta([["k".repeat(256), ""]]), RangeError);
  assert.throws(() => encodeMeta([["é".repeat(128), ""]]), RangeError);
  assert.throws(() => encodeMeta([["k", "v".repeat(65536)]]), RangeError);
  assert.equal(encodeMeta([["k".repeat(255), "v".repeat(65535)]]).length, 2 + 3 + 255 + 65535);
});
