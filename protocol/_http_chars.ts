/**
 * Private byte tables for the HTTP/1.1 parser and writer (RFC 9110 §5.6, RFC 9112).
 * Each table has 256 entries indexed by byte value; non-zero means "allowed". Not part
 * of the public API.
 *
 * @module
 */

function table(fill: (t: Uint8Array) => void): Uint8Array {
  const t = new Uint8Array(256);
  fill(t);
  return t;
}

function range(t: Uint8Array, from: number, to: number, v = 1): void {
  for (let c = from; c <= to; c++) t[c] = v;
}

function chars(t: Uint8Array, s: string, v = 1): void {
  for (let i = 0; i < s.length; i++) t[s.charCodeAt(i)] = v;
}

/**
 * `tchar` (RFC 9110 §5.6.2): the bytes of a token (methods, field names, codings).
 * 1 = allowed, 2 = an upper-case letter (allowed; the name needs lower-casing).
 *
 * @example
 * ```ts
 * import { TOKEN } from "./_http_chars.ts";
 * console.assert(TOKEN[0x41] === 2 && TOKEN[0x20] === 0);
 * ```
 */
export const TOKEN: Uint8Array = /* @__PURE__ */ table((t) => {
  range(t, 0x30, 0x39);
  range(t, 0x61, 0x7a);
  range(t, 0x41, 0x5a, 2);
  chars(t, "!#$%&'*+-.^_`|~");
});

/**
 * Field value bytes (RFC 9110 §5.5): HTAB, SP, VCHAR and obs-text (0x80–0xFF). Every
 * other control byte (0x00–0x1F, 0x7F), CR and LF included, is refused. Also the bytes of
 * a `quoted-pair`'s second byte.
 *
 * @example
 * ```ts
 * import { FIELD_VALUE } from "./_http_chars.ts";
 * console.assert(FIELD_VALUE[0x09] === 1 && FIELD_VALUE[0x0b] === 0);
 * ```
 */
export const FIELD_VALUE: Uint8Array = /* @__PURE__ */ table((t) => {
  t[0x09] = 1;
  range(t, 0x20, 0x7e);
  range(t, 0x80, 0xff);
});

/**
 * `qdtext` (RFC 9110 §5.6.4): what a quoted string holds besides `quoted-pair`s.
 *
 * @example
 * ```ts
 * import { QDTEXT } from "./_http_chars.ts";
 * console.assert(QDTEXT[0x22] === 0 && QDTEXT[0x5c] === 0 && QDTEXT[0x61] === 1);
 * ```
 */
export const QDTEXT: Uint8Array = /* @__PURE__ */ table((t) => {
  t[0x09] = 1;
  t[0x20] = 1;
  t[0x21] = 1;
  range(t, 0x23, 0x5b);
  range(t, 0x5d, 0x7e);
  range(t, 0x80, 0xff);
});

/**
 * Request-target bytes: visible ASCII (0x21–0x7E) except `#` (a fragment is never sent).
 * Controls, SP, DEL and non-ASCII bytes are refused; percent-encoding is not checked.
 *
 * @example
 * ```ts
 * import { TARGET } from "./_http_chars.ts";
 * console.assert(TARGET[0x2f] === 1 && TARGET[0x23] === 0 && TARGET[0x20] === 0);
 * ```
 */
export const TARGET: Uint8Array = /* @__PURE__ */ table((t) => {
  range(t, 0x21, 0x7e);
  t[0x23] = 0;
});

/**
 * Bytes of a `Host` value or an authority (RFC 3986 `host [":" port]`): unreserved,
 * sub-delims, `%`, `:`, `[` and `]`. Refuses `/ ? # @`, whitespace and controls.
 *
 * @example
 * ```ts
 * import { HOST } from "./_http_chars.ts";
 * console.assert(HOST[0x3a] === 1 && HOST[0x40] === 0);
 * ```
 */
export const HOST: Uint8Array = /* @__PURE__ */ table((t) => {
  range(t, 0x30, 0x39);
  range(t, 0x41, 0x5a);
  range(t, 0x61, 0x7a);
  chars(t, "-._~!$&'()*+,;=%:[]");
});

/**
 * Hexadecimal digit values, -1 for any other byte.
 *
 * @example
 * ```ts
 * import { HEX } from "./_http_chars.ts";
 * console.assert(HEX[0x66] === 15 && HEX[0x67] === -1);
 * ```
 */
export const HEX: Int8Array = /* @__PURE__ */ (() => {
  const t = new Int8Array(256).fill(-1);
  for (let c = 0; c < 10; c++) t[0x30 + c] = c;
  for (let c = 0; c < 6; c++) {
    t[0x41 + c] = 10 + c;
    t[0x61 + c] = 10 + c;
  }
  return t;
})();

/**
 * Decodes bytes `[start, end)` as a byte string (Latin-1: byte `b` becomes U+00bb).
 * Lossless for any byte; the parser only calls it on finished, validated fields.
 *
 * @example
 * ```ts
 * import { latin1 } from "./_http_chars.ts";
 * console.assert(latin1(new Uint8Array([0x47, 0x45, 0x54]), 0, 3) === "GET");
 * ```
 */
export function latin1(buf: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= 0) return "";
  if (n === 1) return String.fromCharCode(buf[start]);
  if (n <= 8192) {
    return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
  }
  let s = "";
  for (let i = start; i < end; i += 8192) {
    const j = Math.min(end, i + 8192);
    s += String.fromCharCode.apply(null, buf.subarray(i, j) as unknown as number[]);
  }
  return s;
}

function isWs(b: number): boolean {
  return b === 0x20 || b === 0x09;
}

/**
 * Checks `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )` over
 * `buf[i, end)` (RFC 9112 §7.1.1), for the request and response parsers.
 *
 * @example
 * ```ts
 * import { chunkExtensions } from "./_http_chars.ts";
 * const ext = new TextEncoder().encode(';a=b;c="d e"');
 * console.assert(chunkExtensions(ext, 0, ext.length));
 * ```
 */
export function chunkExtensions(buf: Uint8Array, i: number, end: number): boolean {
  while (i < end) {
    while (i < end && isWs(buf[i])) i++;
    if (i === end || buf[i] !== 0x3b /* ; */) return false;
    i++;
    while (i < end && isWs(buf[i])) i++;
    const ns = i;
    while (i < end && TOKEN[buf[i]] !== 0) i++;
    if (i === ns) return false;
    let j = i;
    while (j < end && isWs(buf[j])) j++;
    if (j === end || buf[j] !== 0x3d /* = */) continue;
    i = j + 1;
    while (i < end && isWs(buf[i])) i++;
    if (i < end && buf[i] === 0x22 /* " */) {
      i++;
      for (;;) {
        if (i >= end) return false;
        const b = buf[i];
        if (b === 0x22) {
          i++;
          break;
        }
        if (b === 0x5c /* \\ */) {
          if (i + 1 >= end || FIELD_VALUE[buf[i + 1]] === 0) return false;
          i += 2;
        } else if (QDTEXT[b] !== 0) i++;
        else return false;
      }
    } else {
      const vs = i;
      while (i < end && TOKEN[buf[i]] !== 0) i++;
      if (i === vs) return false;
    }
  }
  return true;
}
