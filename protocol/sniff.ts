/**
 * Protocol sniffing: one TCP port serves EP and HTTP/1.1, told apart by the first bytes the
 * client sends. The sniffer is a pure function over the bytes received so far, so a client
 * that sends one byte at a time is handled by calling it again with more.
 *
 * @module
 */

/** What the first bytes of a connection say about its protocol. */
export type SniffResult =
  /** Not enough bytes yet to decide. */
  | "more"
  /**
   * EP: `0xEB 'E' 'P' <version>`, whatever the version byte: the EP connection answers
   * version 0 with ERROR `unsupported_version` (SPEC.md §3), so it is not refused here.
   */
  | "ep"
  /** An HTTP/1.x request line start: a method token followed by a space. */
  | "http"
  /** A TLS handshake record (`0x16 0x03`): refused, ep speaks plain text. */
  | "tls"
  /** The HTTP/2 connection preface (`PRI * HTTP/2.0`): refused, ep speaks HTTP/1.1. */
  | "h2"
  /** Anything else: closed and counted. */
  | "unknown";

/** The longest method token the sniffer accepts before the first space. */
export const MAX_METHOD_LENGTH = 20;

/** Bytes the sniffer may need before it can decide: a longest method plus its space. */
export const SNIFF_MAX_BYTES: number = MAX_METHOD_LENGTH + 1;

const EP_MAGIC0 = 0xeb;
const H2_PREFIX = new TextEncoder().encode("PRI * HTTP/2");

/** tchar per RFC 9110 §5.6.2, as a 256-entry table. */
const TCHAR = /* @__PURE__ */ (() => {
  const t = new Uint8Array(256);
  for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  for (const ch of "!#$%&'*+-.^_`|~") t[ch.charCodeAt(0)] = 1;
  return t;
})();

/**
 * Decides a connection's protocol from the bytes received so far.
 *
 * Returns `"more"` while the bytes are a valid prefix of more than one possibility; the
 * caller waits for more data (bounded by {@linkcode SNIFF_MAX_BYTES} and a timeout).
 *
 * @example
 * ```ts
 * import { sniff } from "./sniff.ts";
 * const enc = new TextEncoder();
 * console.assert(sniff(enc.encode("GET / HTTP/1.1\r\n")) === "http");
 * console.assert(sniff(enc.encode("GE")) === "more");
 * console.assert(sniff(new Uint8Array([0xeb, 0x45, 0x50, 1])) === "ep");
 * console.assert(sniff(new Uint8Array([0x16, 0x03, 0x01])) === "tls");
 * ```
 */
export function sniff(bytes: Uint8Array): SniffResult {
  const n = bytes.length;
  if (n === 0) return "more";
  const b0 = bytes[0];
  if (b0 === EP_MAGIC0) {
    if (n >= 2 && bytes[1] !== 0x45) return "unknown";
    if (n >= 3 && bytes[2] !== 0x50) return "unknown";
    return n < 4 ? "more" : "ep";
  }
  if (b0 === 0x16) {
    if (n < 2) return "more";
    return bytes[1] === 0x03 ? "tls" : "unknown";
  }
  // HTTP/2 preface "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": PRI is also a valid method token,
  // so look far enough to tell the preface from an HTTP/1.1 request using method PRI.
  let h2 = true;
  const m = Math.min(n, H2_PREFIX.length);
  for (let i = 0; i < m; i++) {
    if (bytes[i] !== H2_PREFIX[i]) {
      h2 = false;
      break;
    }
  }
  if (h2) return n >= H2_PREFIX.length ? "h2" : "more";
  const limit = Math.min(n, MAX_METHOD_LENGTH + 1);
  for (let i = 0; i < limit; i++) {
    const c = bytes[i];
    if (c === 0x20) return i > 0 ? "http" : "unknown";
    if (TCHAR[c] !== 1) return "unknown";
  }
  return n > MAX_METHOD_LENGTH ? "unknown" : "more";
}

/**
 * What a server sends before closing a connection refused by the sniffer, so that the
 * client reports a clear reason rather than a reset: a TLS `handshake_failure` alert for
 * TLS, an HTTP/2 SETTINGS frame followed by GOAWAY(`HTTP_1_1_REQUIRED`) for the HTTP/2
 * preface, nothing otherwise.
 *
 * @example
 * ```ts
 * import { refusal } from "./sniff.ts";
 * console.assert(refusal("tls")[0] === 0x15);
 * console.assert(refusal("unknown").length === 0);
 * ```
 */
export function refusal(kind: SniffResult): Uint8Array {
  switch (kind) {
    case "tls":
      // Alert record: content type 21, TLS 1.0 record version, length 2, fatal(2),
      // handshake_failure(40).
      return new Uint8Array([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]);
    case "h2":
      return new Uint8Array([
        // SETTINGS, empty, stream 0.
        0x00,
        0x00,
        0x00,
        0x04,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        // GOAWAY, length 8, stream 0, last stream 0, error HTTP_1_1_REQUIRED (0xd).
        0x00,
        0x00,
        0x08,
        0x07,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x0d,
      ]);
    default:
      return new Uint8Array(0);
  }
}
