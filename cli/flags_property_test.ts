/**
 * Property of the class "a bad setting silently becomes a default, NaN or somebody else's
 * error" (`EP_THREADS=abc` meant the default, `--port abc` became `Invalid port: NaN`,
 * `EP_PORT=abc` a Lua `got nil`): whatever text a flag or an environment variable holds,
 * each setting's parser either returns a value its command can use as it is, or throws a
 * `ConfigValueError` whose one-line message starts with where the text came from and quotes
 * it inertly. Seeded (`EP_FUZZ_SEED` changes it).
 */
import assert from "node:assert/strict";
import {
  clientAddr,
  parseAddress,
  parseAddressList,
  parseBool,
  parseCount,
  parseHost,
  parseLogLevel,
  parseMs,
  parsePort,
  parseThreads,
  roleSettings,
} from "./flags.ts";
import { ConfigValueError, quote } from "./errors.ts";
import { unsafeChars } from "../tests/_unsafe_chars.ts";

const SEED = Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x5e77);
const CASES = 3000;

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Pieces a value is made of: digits, signs, dots, exponents, spaces, separators, letters,
// controls, and text that looks like what a setting takes.
const PIECES = [
  "0",
  "1",
  "7",
  "9",
  "65535",
  "65536",
  "99999",
  "-",
  "+",
  ".",
  "e",
  "E",
  " ",
  "\t",
  "\n",
  ":",
  ",",
  "[",
  "]",
  "::1",
  "127.0.0.1",
  "localhost",
  "abc",
  "x",
  "0x10",
  "Infinity",
  "NaN",
  "\x00",
  "\x1b[31m",
  "\u202e",
  "\u2028",
  "é",
  "debug",
  "info",
  "loud",
  "true",
  "no",
  "",
  "/",
  "@",
];

function text(rand: () => number): string {
  let s = "";
  const n = Math.floor(rand() * 5);
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(rand() * PIECES.length)];
  return s;
}

type Check = (value: unknown, text: string) => void;

const PARSERS: [string, (text: string, source: string) => unknown, Check][] = [
  ["port", parsePort, (v) => assert.ok(Number.isInteger(v) && (v as number) <= 65535)],
  ["threads", parseThreads, (v) => assert.ok(v === undefined || Number.isInteger(v))],
  [
    "count",
    (t, s) => parseCount(t, s, 1, "jobs"),
    (v) => assert.ok(Number.isSafeInteger(v) && (v as number) >= 1),
  ],
  ["ms", parseMs, (v) => assert.ok(Number.isFinite(v) && (v as number) > 0)],
  ["host", parseHost, (v) => assert.ok(typeof v === "string" && v !== "" && !/\s/.test(v))],
  [
    "address",
    parseAddress,
    (v) => assert.ok(typeof v === "string" && /:\d{1,5}$/.test(v) && !/\s/.test(v)),
  ],
  [
    "address list",
    parseAddressList,
    (v) => assert.ok(Array.isArray(v) && v.length > 0 && v.every((a) => /:\d{1,5}$/.test(a))),
  ],
  ["log level", parseLogLevel, (v) => assert.ok(typeof v === "string")],
  ["bool", parseBool, (v) => assert.ok(typeof v === "boolean")],
];

function assertRefusal(err: unknown, source: string, t: string, what: string): void {
  assert.ok(err instanceof ConfigValueError, `${what} ${JSON.stringify(t)}: ${err}`);
  assert.ok(err.message.startsWith(`${source} ${quote(t)} is not `), err.message);
  assert.deepEqual(unsafeChars(err.message), [], err.message);
  assert.equal(err.source, source);
  assert.equal(err.value, t);
}

Deno.test("property: every setting's parser returns a usable value or one ConfigValueError naming the source and quoting the text", () => {
  const rand = prng(SEED);
  for (let i = 0; i < CASES; i++) {
    const t = text(rand);
    for (const [what, parse, usable] of PARSERS) {
      const source = rand() < 0.5 ? "--x" : "EP_X";
      let value: unknown;
      try {
        value = parse(t, source);
      } catch (err) {
        assertRefusal(err, source, t, what);
        continue;
      }
      usable(value, t);
      // Nothing a terminal would act on gets through.
      assert.deepEqual(
        unsafeChars(JSON.stringify(value) ?? ""),
        [],
        `${what} ${JSON.stringify(t)}`,
      );
    }
  }
});

Deno.test("property: the role and client settings resolve to usable values, or list every bad one", () => {
  const rand = prng(SEED ^ 0xabcdef);
  const names = ["EP_PORT", "EP_HOST", "EP_CONNECT", "EP_THREADS", "EP_LOG_LEVEL", "EP_LOG_JSON"];
  for (let i = 0; i < CASES / 3; i++) {
    const vars: Record<string, string> = {};
    for (const n of names) if (rand() < 0.5) vars[n] = text(rand);
    const env = (n: string) => vars[n];
    const { settings, problems } = roleSettings({}, env);
    const bad = new Set(problems.map((p) => p.source));
    for (const p of problems) assertRefusal(p, p.source, vars[p.source], p.source);
    if (!bad.has("EP_PORT")) assert.ok(Number.isInteger(settings.port));
    if (!bad.has("EP_THREADS")) {
      assert.ok(settings.threads === undefined || settings.threads > 0);
    }
    if (!bad.has("EP_CONNECT")) assert.ok(settings.connect.length > 0);
    let addr: string | undefined;
    try {
      addr = clientAddr({}, env);
    } catch (err) {
      assert.ok(err instanceof ConfigValueError);
      assert.ok(bad.has(err.source), `${err.source} refused by clientAddr only`);
    }
    if (addr !== undefined) assert.match(addr, /:\d{1,5}$/);
  }
});
