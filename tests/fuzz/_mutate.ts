/**
 * Shared helpers of ep's fuzzers: a seeded PRNG, byte mutations of golden inputs, random
 * split points, hex. Every fuzz case draws from its own PRNG seeded by `(seed, case)`, so a
 * failing case is replayed from those two numbers alone (`deno task fuzz --seed S --case I`).
 *
 * @module
 */

/** A PRNG: floats in [0, 1). */
export type Rng = () => number;

/**
 * mulberry32: a tiny seeded PRNG (the same sequence on every machine).
 *
 * @example
 * ```ts
 * import { mulberry32 } from "./_mutate.ts";
 * const a = mulberry32(7), b = mulberry32(7);
 * console.assert(a() === b());
 * ```
 */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The PRNG of one fuzz case: independent of every other case of the same seed. */
export function caseRng(seed: number, index: number): Rng {
  // splitmix32 of (seed, index): neighbouring cases get unrelated streams.
  let z = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return mulberry32((z ^ (z >>> 16)) >>> 0);
}

/** An integer in [0, n). */
export function int(rng: Rng, n: number): number {
  return Math.floor(rng() * n);
}

/** One element of a non-empty array. */
export function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[int(rng, items.length)];
}

/** Bytes as lower-case hex. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Hex (whitespace ignored) as bytes. */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  return new Uint8Array(clean.match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
}

/** Concatenates byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `length` random bytes. */
export function randomBytes(rng: Rng, length: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = int(rng, 256);
  return b;
}

/** What {@linkcode mutate} may splice in besides random bytes. */
export interface MutateOptions {
  /** Other inputs to splice in (pipelining, frames after frames). */
  corpus?: readonly Uint8Array[];
  /** Interesting byte strings to insert (`\r\n`, `Content-Length: 5\r\n`, ...). */
  pieces?: readonly Uint8Array[];
  /** Most mutation rounds (default 4). */
  maxRounds?: number;
}

/**
 * Mutates `input` with 1 to `maxRounds` edits: bit flip, random byte, truncation, insertion
 * of random bytes or of a piece, deletion or duplication of a range, an extreme u8/u16
 * value, splicing of another corpus entry. Never modifies `input`.
 *
 * @example
 * ```ts
 * import { mulberry32, mutate } from "./_mutate.ts";
 * const out = mutate(mulberry32(1), new Uint8Array([1, 2, 3]));
 * console.assert(out instanceof Uint8Array);
 * ```
 */
export function mutate(rng: Rng, input: Uint8Array, options: MutateOptions = {}): Uint8Array {
  let b: Uint8Array = input.slice();
  const rounds = 1 + int(rng, options.maxRounds ?? 4);
  for (let r = 0; r < rounds; r++) {
    const op = int(rng, 10);
    const at = int(rng, b.length + 1);
    if (op === 0 && b.length > 0) {
      b[int(rng, b.length)] ^= 1 << int(rng, 8);
    } else if (op === 1 && b.length > 0) {
      b[int(rng, b.length)] = int(rng, 256);
    } else if (op === 2) {
      b = b.slice(0, at);
    } else if (op === 3) {
      b = concat([b.subarray(0, at), randomBytes(rng, 1 + int(rng, 8)), b.subarray(at)]);
    } else if (op === 4 && options.pieces?.length) {
      b = concat([b.subarray(0, at), pick(rng, options.pieces), b.subarray(at)]);
    } else if (op === 5 && b.length > 0) {
      b = concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(rng, 8)))]);
    } else if (op === 6) {
      const len = int(rng, 40);
      b = concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
    } else if (op === 7 && b.length > 1) {
      const i = int(rng, b.length - 1);
      b[i] = rng() < 0.5 ? 0xff : 0;
      if (rng() < 0.5) b[i + 1] = rng() < 0.5 ? 0xff : 0;
    } else if (op === 8 && options.corpus?.length) {
      b = concat([b.subarray(0, at), pick(rng, options.corpus)]);
    } else {
      b[int(rng, b.length)] = int(rng, 256);
    }
  }
  return b;
}

/** Up to `max` sorted split points in [0, length]. */
export function randomCuts(rng: Rng, length: number, max = 16): number[] {
  const k = int(rng, Math.min(length, max) + 1);
  return Array.from({ length: k }, () => int(rng, length + 1)).sort((a, b) => a - b);
}

/** Every split point: the input fed one byte at a time. */
export function everyCut(length: number): number[] {
  return Array.from({ length }, (_, k) => k);
}

/** The chunks of `input` cut at `cuts` (sorted), the last one up to the end. */
export function chunks(input: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const cut of [...cuts, input.length]) {
    out.push(input.subarray(prev, cut));
    prev = cut;
  }
  return out;
}

/** Latin-1 bytes of a string (each char code taken as one byte). */
export function latin1(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}
