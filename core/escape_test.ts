import assert from "node:assert/strict";
import { ESCAPE_CONTROLS_JS, escapeControls, hasControls, inertJson, oneLine } from "./escape.ts";
import { int, mulberry32, pick, type Rng } from "../tests/fuzz/_mutate.ts";
import { unsafeChars } from "../tests/_unsafe_chars.ts";

/** Inverse of escapeControls, for the property test. */
function unescape(s: string): string {
  return s.replace(/\\(\\|x([0-9a-f]{2})|u\{([0-9a-f]+)\})/g, (_, all, x, u) => {
    if (all === "\\") return "\\";
    return String.fromCharCode(parseInt(x ?? u, 16));
  });
}

const PIECES: readonly string[] = [
  "\x1b[31m",
  "\x1b[2J\x1b[H",
  "\x1b]0;title\x07",
  "\x9b31m",
  "\r\n",
  "\n",
  "\t",
  "\u2028",
  "\u2029",
  "\u202e",
  "\u202d",
  "\u2066",
  "\u2069",
  "\u200f",
  "\u061c",
  "\\",
  "\\x1b",
  "\\u{202e}",
  "x",
  "u{",
  "}",
  "worker-1",
  "ü",
  "😀",
  "\ud800",
  "\udfff",
  "\ud83d",
  "{name}",
  "%c",
];

function randomString(rng: Rng): string {
  let s = "";
  const n = int(rng, 12);
  for (let i = 0; i < n; i++) {
    const kind = int(rng, 4);
    if (kind === 0) s += pick(rng, PIECES);
    else if (kind === 1) s += String.fromCharCode(int(rng, 0x100)); // every C0, DEL, C1
    else if (kind === 2) s += String.fromCharCode(0x2000 + int(rng, 0x80)); // punctuation block
    else s += String.fromCharCode(int(rng, 0x10000)); // anything, lone surrogates included
  }
  return s;
}

Deno.test("escapeControls, inertJson: random strings of controls, ANSI, separators and bidi come out inert and recoverable", () => {
  const rng = mulberry32(0xe5c_0001);
  const seen = new Map<string, string>();
  for (let i = 0; i < 20_000; i++) {
    const s = randomString(rng);
    const shown = escapeControls(s);
    assert.deepEqual(unsafeChars(shown), [], `escaped ${JSON.stringify(s)}`);
    assert.equal(hasControls(s), unsafeChars(s).length > 0);
    assert.equal(hasControls(shown), false);
    const json = inertJson(JSON.stringify({ s }));
    assert.deepEqual(unsafeChars(json), [], "inert JSON");
    assert.equal(JSON.parse(json).s, s, "the same JSON value");
    assert.equal(unescape(shown), s, `recovered ${JSON.stringify(s)}`);
    const before = seen.get(shown);
    assert.ok(before === undefined || before === s, "two strings shown alike");
    seen.set(shown, s);
  }
});

Deno.test("escapeControls: every code unit below 0x100 that is a control is escaped, others kept", () => {
  for (let c = 0; c < 0x100; c++) {
    const ch = String.fromCharCode(c);
    const control = c < 0x20 || (c >= 0x7f && c <= 0x9f);
    const shown = escapeControls(ch);
    if (control) assert.equal(shown, "\\x" + c.toString(16).padStart(2, "0"));
    else if (ch === "\\") assert.equal(shown, "\\\\");
    else assert.equal(shown, ch);
  }
  assert.equal(escapeControls("😀 ünï"), "😀 ünï", "pairs and letters stay");
});

Deno.test("ESCAPE_CONTROLS_JS (the status page's copy) behaves as escapeControls", () => {
  const fn = new Function(ESCAPE_CONTROLS_JS + "; return escapeControls;")() as (
    s: string,
  ) => string;
  const rng = mulberry32(0xe5c_0003);
  for (let i = 0; i < 5_000; i++) {
    const s = randomString(rng);
    assert.equal(fn(s), escapeControls(s));
  }
});

Deno.test("oneLine: a reason keeps no control, separator or bidi character", () => {
  const rng = mulberry32(0xe5c_0002);
  for (let i = 0; i < 5_000; i++) {
    const line = oneLine(randomString(rng));
    assert.deepEqual(
      unsafeChars(line).filter((c) => !/^d[89a-f]/.test(c)),
      [],
      JSON.stringify(line),
    );
    assert.ok(line.length <= 200);
  }
});
