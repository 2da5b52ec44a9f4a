/**
 * Private byte-level helpers shared by the EP decoder and encoder: big-endian reads,
 * character-class tables and the shared UTF-8 decoder. Not part of the public API.
 *
 * @module
 */

/** Reads a big-endian u16 at `o`. The caller has checked the bounds. */
export function readU16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

/** Reads a big-endian u32 at `o`. The caller has checked the bounds. */
export function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/**
 * Meta key bytes: lower-case HTTP token characters (RFC 9110 §5.6.2 tchar without
 * `A-Z`). 1 = allowed.
 */
export const META_KEY_BYTE: Uint8Array = /* @__PURE__ */ (() => {
  const t = new Uint8Array(256);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  for (const ch of "!#$%&'*+-.^_`|~") t[ch.charCodeAt(0)] = 1;
  return t;
})();

/** Service name bytes: 1 = `[a-z0-9]` (may start a name), 2 = `[_.-]` (may not). */
export const SERVICE_BYTE: Uint8Array = /* @__PURE__ */ (() => {
  const t = new Uint8Array(256);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  t[0x2d] = 2; // '-'
  t[0x2e] = 2; // '.'
  t[0x5f] = 2; // '_'
  return t;
})();

/**
 * The one UTF-8 decoder: `fatal` so invalid UTF-8 (overlong forms, surrogates, truncated
 * sequences) throws, `ignoreBOM` so a leading U+FEFF is kept and strings round-trip.
 */
export const utf8Decoder: TextDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The one UTF-8 encoder. */
export const utf8Encoder: TextEncoder = new TextEncoder();

/** Longest string the ASCII path handles; longer text goes to the UTF-8 decoder. */
const SHORT = 32;

/**
 * Recently decoded short ASCII strings, by a hash of their bytes. Keys, service names and
 * common values repeat from frame to frame, so a hit returns the same string without
 * building a new one. Bounded: 512 slots of at most 32 characters.
 */
const recent: string[] = new Array(512).fill("");

/**
 * Decodes `b[start, end)` when it is short and all ASCII (the common case for keys,
 * service names and small values), reusing a recently decoded equal string; otherwise
 * returns `undefined` so the caller uses the fatal UTF-8 decoder.
 */
export function asciiString(b: Uint8Array, start: number, end: number): string | undefined {
  const n = end - start;
  if (n === 0) return "";
  if (n > SHORT) return undefined;
  const slot = (n * 31 + b[start] * 7 + b[end - 1] * 3 + b[start + (n >> 1)]) & 511;
  const hit = recent[slot];
  if (hit.length === n) {
    let i = 0;
    while (i < n && hit.charCodeAt(i) === b[start + i]) i++;
    if (i === n) return hit;
  }
  let s = "";
  for (let i = start; i < end; i++) {
    const c = b[i];
    if (c >= 0x80) return undefined;
    s += String.fromCharCode(c);
  }
  recent[slot] = s;
  return s;
}
