/**
 * Making text that came from a peer safe to show or to send on: a worker's HELLO name, a
 * service or path, an error message. {@linkcode escapeControls} is for people (logs,
 * `ep status` tables, the status page, metrics labels); {@linkcode oneLine} is for reasons
 * sent back on the wire.
 *
 * @module
 */

// C0 controls, DEL, C1 controls, ALM, LRM/RLM, line and paragraph separators, the bidi
// embeddings/overrides and isolates, lone surrogates; and the backslash, which escapes.
const UNSAFE =
  // deno-lint-ignore no-control-regex
  /[\\\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function escapeOne(c: string): string {
  if (c === "\\") return "\\\\";
  const code = c.charCodeAt(0);
  return code < 0x100
    ? "\\x" + code.toString(16).padStart(2, "0")
    : "\\u{" + code.toString(16) + "}";
}

/**
 * Shows a string that came from a peer as one line of inert text: every character that
 * could move the cursor, change colours, start a new line or reorder what is displayed
 * (C0 and C1 controls, DEL, U+2028/U+2029, bidirectional formatting characters, lone
 * surrogates) is written as `\xNN` or `\u{NNNN}`, and a backslash as `\\`, so that the
 * original can be recovered exactly and two different strings never look the same.
 *
 * @example
 * ```ts
 * import { escapeControls } from "./escape.ts";
 * console.assert(escapeControls("w1\n\x1b[31m") === "w1\\x0a\\x1b[31m");
 * console.assert(escapeControls("a\u202eb\\") === "a\\u{202e}b\\\\");
 * console.assert(escapeControls("plain ünïcode") === "plain ünïcode");
 * ```
 */
export function escapeControls(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/**
 * {@linkcode escapeControls} as browser JavaScript source (it defines `escapeControls`), for
 * pages that show peer strings: the status page embeds it, so it shows them exactly as the
 * CLI and the logs do.
 *
 * @example
 * ```ts
 * import { ESCAPE_CONTROLS_JS } from "./escape.ts";
 * const fn = new Function(ESCAPE_CONTROLS_JS + "; return escapeControls;")();
 * console.assert(fn("a\nb") === "a\\x0ab");
 * ```
 */
export const ESCAPE_CONTROLS_JS: string = [
  `var UNSAFE = ${UNSAFE};`,
  escapeOne.toString(),
  escapeControls.toString(),
].join("\n");

/**
 * Whether `text` holds a character {@linkcode escapeControls} would escape, other than the
 * backslash: text already shown through it never does.
 *
 * @example
 * ```ts
 * import { escapeControls, hasControls } from "./escape.ts";
 * console.assert(hasControls("a\nb") && !hasControls(escapeControls("a\nb")));
 * ```
 */
export function hasControls(text: string): boolean {
  UNSAFE.lastIndex = 0;
  for (let m = UNSAFE.exec(text); m !== null; m = UNSAFE.exec(text)) {
    if (m[0] !== "\\") return true;
  }
  return false;
}

// What JSON.stringify leaves raw of the above (it escapes C0, quotes, backslashes and lone
// surrogates itself).
const RAW_IN_JSON = /[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

/**
 * JSON text (from `JSON.stringify`) made inert on a terminal: the characters
 * {@linkcode escapeControls} escapes that JSON leaves raw (DEL, C1 controls, U+2028/U+2029,
 * bidi formatting characters) are written as `\uXXXX`. It parses to the same value.
 *
 * @example
 * ```ts
 * import { inertJson } from "./escape.ts";
 * const json = inertJson(JSON.stringify({ name: "a\u202eb\x9b" }));
 * console.assert(json === '{"name":"a\\u202eb\\u009b"}');
 * console.assert(JSON.parse(json).name === "a\u202eb\x9b");
 * ```
 */
export function inertJson(json: string): string {
  return json.replace(RAW_IN_JSON, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

// What a one-line reason may not carry: the characters above but the backslash.
// deno-lint-ignore no-control-regex
const NOT_IN_LINE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]+/g;

/**
 * Makes a message safe as a one-line reason on the wire (an HTTP error body, an EP ERROR
 * message): control characters (C0, DEL, C1), line and paragraph separators and bidi
 * formatting characters become spaces, the length is bounded.
 *
 * @example
 * ```ts
 * import { oneLine } from "./escape.ts";
 * console.assert(oneLine("bad\r\nthing ") === "bad thing");
 * ```
 */
export function oneLine(message: string, max = 200): string {
  let s = message.replace(NOT_IN_LINE, " ").trim();
  if (s.length > max) {
    let cut = Math.max(0, max - 3);
    const last = s.charCodeAt(cut - 1);
    if (last >= 0xd800 && last <= 0xdbff) cut--; // keep a surrogate pair whole
    s = s.slice(0, cut) + "...";
  }
  // EP strings must be valid UTF-8: a lone surrogate would make the frame unencodable.
  return s.toWellFormed();
}
