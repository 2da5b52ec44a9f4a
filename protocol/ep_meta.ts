/**
 * Job metadata as bytes, for the handler-thread rings: `u16 count`, then per entry
 * `u8 key length, key, u16 value length, value` (UTF-8, big-endian lengths) — the same
 * layout as EP's `meta` (SPEC.md §2), so the two never disagree. HTTP jobs carry their
 * method, path and query as `ep-method`, `ep-path` and `ep-query` (SPEC.md §10).
 */
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Encodes `[key, value]` pairs. Keys longer than 255 bytes or values over 65535 throw RangeError. */
export function encodeMeta(pairs: readonly (readonly [string, string])[]): Uint8Array {
  if (pairs.length === 0) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 2;
  for (const [k, v] of pairs) {
    const kb = enc.encode(k);
    const vb = enc.encode(v);
    if (kb.length > 255 || vb.length > 0xffff) throw new RangeError(`Meta entry "${k}" too long`);
    parts.push(kb, vb);
    size += 3 + kb.length + vb.length;
  }
  const out = new Uint8Array(size);
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
