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
 * `reg-name` bytes besides `pct-encoded` (RFC 3986 §3.2.2): unreserved and sub-delims.
 *
 * @example
 * ```ts
 * import { REG_NAME } from "./_http_chars.ts";
 * console.assert(REG_NAME[0x2d] === 1 && REG_NAME[0x3a] === 0 && REG_NAME[0x40] === 0);
 * ```
 */
export const REG_NAME: Uint8Array = /* @__PURE__ */ table((t) => {
  range(t, 0x30, 0x39);
  range(t, 0x41, 0x5a);
  range(t, 0x61, 0x7a);
  chars(t, "-._~!$&'()*+,;=");
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

/** The code unit of `s` at `i` as a table index: 0x100 for anything past a byte. */
function at(s: string, i: number): number {
  const c = s.charCodeAt(i);
  return c > 0xff ? 0x100 : c;
}

function isHex(s: string, i: number): boolean {
  const c = at(s, i);
  return c < 0x100 && HEX[c] >= 0;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** `dec-octet "." dec-octet "." dec-octet "." dec-octet` over `s[a, b)` (RFC 3986 §3.2.2). */
function isIpv4(s: string, a: number, b: number): boolean {
  let parts = 0;
  let i = a;
  while (parts < 4) {
    const start = i;
    let v = 0;
    while (i < b && isDigit(s.charCodeAt(i)) && i - start < 3) {
      v = v * 10 + s.charCodeAt(i++) - 0x30;
    }
    const n = i - start;
    // 0–255, no leading zero.
    if (n === 0 || v > 255 || (n > 1 && s.charCodeAt(start) === 0x30)) return false;
    parts++;
    if (parts < 4) {
      if (i >= b || s.charCodeAt(i) !== 0x2e) return false;
      i++;
    }
  }
  return i === b;
}

/** `IPv6address` over `s[a, b)` (RFC 3986 §3.2.2): 8 groups, or fewer around one `::`. */
function isIpv6(s: string, a: number, b: number): boolean {
  let groups = 0;
  let elided = false;
  let i = a;
  if (b - a >= 2 && s.charCodeAt(a) === 0x3a && s.charCodeAt(a + 1) === 0x3a) {
    elided = true;
    i = a + 2;
  }
  while (i < b) {
    let j = i;
    while (j < b && isHex(s, j)) j++;
    if (j < b && s.charCodeAt(j) === 0x2e) { // the last 32 bits as an IPv4 address
      if (!isIpv4(s, i, b)) return false;
      groups += 2;
      break;
    }
    if (j - i < 1 || j - i > 4) return false;
    groups++;
    if (j === b) break;
    if (s.charCodeAt(j) !== 0x3a) return false;
    if (j + 1 < b && s.charCodeAt(j + 1) === 0x3a) {
      if (elided) return false;
      elided = true;
      i = j + 2;
    } else {
      i = j + 1;
      if (i === b) return false; // a trailing single colon
    }
  }
  return elided ? groups <= 7 : groups === 8;
}

/**
 * `IP-literal` without its brackets over `s[a, b)`: an `IPv6address` or an `IPvFuture`
 * (`v` 1*HEXDIG `.` 1*( unreserved / sub-delims / `:` )). Zone identifiers are refused
 * (RFC 6874 §4: not to be sent in a Host field).
 */
function isIpLiteral(s: string, a: number, b: number): boolean {
  const c = s.charCodeAt(a);
  if (c !== 0x76 && c !== 0x56) return isIpv6(s, a, b); // not "v"
  let i = a + 1;
  while (i < b && isHex(s, i)) i++;
  if (i === a + 1 || i >= b - 1 || s.charCodeAt(i) !== 0x2e) return false;
  for (i++; i < b; i++) {
    const d = at(s, i);
    if (d !== 0x3a && REG_NAME[d] !== 1) return false;
  }
  return true;
}

/**
 * Whether `s` is a valid `Host` field value or request-target authority without userinfo
 * (RFC 9110 §7.2, RFC 3986 §3.2.2–3.2.3): `uri-host [ ":" port ]`, where `uri-host` is an
 * `IP-literal` in brackets, or a `reg-name` (unreserved, sub-delims and `%XX`; an IPv4
 * address is one), and `port` is digits. The whole value may be empty (a request whose
 * target has no authority), but a port needs a host (RFC 9110 §4.2.1: no empty host). An
 * empty port (`h:`) is allowed, as RFC 3986 allows it.
 *
 * @example
 * ```ts
 * import { isHost } from "./_http_chars.ts";
 * console.assert(isHost("example.com:8080") && isHost("[::1]:80") && isHost(""));
 * console.assert(!isHost("a:b:c") && !isHost("[::1") && !isHost("h@x") && !isHost(":80"));
 * ```
 */
export function isHost(s: string): boolean {
  const n = s.length;
  if (n === 0) return true;
  let i = 0;
  if (s.charCodeAt(0) === 0x5b) { // "["
    const close = s.indexOf("]");
    if (close < 2 || !isIpLiteral(s, 1, close)) return false;
    i = close + 1;
  } else {
    while (i < n && s.charCodeAt(i) !== 0x3a) {
      if (s.charCodeAt(i) === 0x25) { // "%" HEXDIG HEXDIG
        if (!isHex(s, i + 1) || !isHex(s, i + 2)) return false;
        i += 3;
      } else if (REG_NAME[at(s, i)] === 1) i++;
      else return false;
    }
    if (i === 0) return false; // a port without a host
  }
  if (i === n) return true;
  if (s.charCodeAt(i) !== 0x3a) return false; // something after "]"
  for (let j = i + 1; j < n; j++) if (!isDigit(s.charCodeAt(j))) return false;
  return true;
}

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
