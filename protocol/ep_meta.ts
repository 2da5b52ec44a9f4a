/**
 * Job metadata as bytes, for the handler-thread rings: `u16 count`, then per entry
 * `u8 key length, key, u16 value length, value` (UTF-8, big-endian lengths) — the same
 * layout as EP's `meta` (SPEC.md §2), so the two never disagree. HTTP jobs carry their
 * method, path and query as `ep-method`, `ep-path` and `ep-query` (SPEC.md §10).
 */
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Strings up to this many code units are copied by hand when ASCII (cheaper than a TextEncoder or TextDecoder call). */
const SHORT = 64;

/** `s`'s length when it is short ASCII (one byte per code unit), else -1. */
function asciiLength(s: string): number {
  const n = s.length;
  if (n > SHORT) return -1;
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return -1;
  return n;
}

/** Encodes `[key, value]` pairs. Keys longer than 255 bytes or values over 65535 throw RangeError. */
export function encodeMeta(pairs: readonly (readonly [string, string])[]): Uint8Array {
  if (pairs.length === 0) return new Uint8Array(0);
  // Short ASCII strings (nearly every key and value) are written by hand; the others are
  // encoded first.
  const parts: (string | Uint8Array)[] = [];
  let size = 2;
  for (const [k, v] of pairs) {
    const kb = asciiLength(k) < 0 ? enc.encode(k) : k;
    const vb = asciiLength(v) < 0 ? enc.encode(v) : v;
    if (kb.length > 255 || vb.length > 0xffff) throw new RangeError(`Meta entry "${k}" too long`);
    parts.push(kb, vb);
    size += 3 + kb.length + vb.length;
  }
  const out = new Uint8Array(size);
  out[0] = pairs.length >> 8;
  out[1] = pairs.length & 0xff;
  let o = 2;
  for (let i = 0; i < parts.length; i += 2) {
    const k = parts[i];
    const v = parts[i + 1];
    out[o++] = k.length;
    o = put(out, o, k);
    out[o++] = v.length >> 8;
    out[o++] = v.length & 0xff;
    o = put(out, o, v);
  }
  return out;
}

/** Writes `part` (short ASCII, or bytes) at `o`; returns the offset after it. */
function put(out: Uint8Array, o: number, part: string | Uint8Array): number {
  if (typeof part !== "string") {
    out.set(part, o);
    return o + part.length;
  }
  for (let i = 0; i < part.length; i++) out[o++] = part.charCodeAt(i);
  return o;
}

/** The UTF-8 text of `bytes[start, end)`: short ASCII by hand, the rest with TextDecoder. */
function text(bytes: Uint8Array, start: number, end: number): string {
  if (end - start <= SHORT) {
    let s = "";
    let i = start;
    for (; i < end; i++) {
      const c = bytes[i];
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === end) return s;
  }
  return dec.decode(bytes.subarray(start, end));
}

/** Decodes what {@linkcode encodeMeta} wrote; malformed bytes yield the entries read so far. */
export function decodeMeta(bytes: Uint8Array): [string, string][] {
  const out: [string, string][] = [];
  if (bytes.length < 2) return out;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint16(0);
  let o = 2;
  for (let i = 0; i < count; i++) {
    if (o + 1 > bytes.length) break;
    const kl = bytes[o++];
    if (o + kl + 2 > bytes.length) break;
    const k = text(bytes, o, o + kl);
    o += kl;
    const vl = view.getUint16(o);
    o += 2;
    if (o + vl > bytes.length) break;
    out.push([k, text(bytes, o, o + vl)]);
    o += vl;
  }
  return out;
}
