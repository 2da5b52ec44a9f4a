/**
 * The `writer` fuzz target: a property of the HTTP response writer, checked against the
 * strict response parser. A random response (statuses, reasons, field names and values
 * with non-ASCII, controls and code units above 0xFF, string and byte bodies, HEAD,
 * keep-alive or not, HTTP/1.0 or 1.1) is either refused by the writer (`RangeError` for
 * the status, `TypeError` for the rest, exactly when an independent oracle says it is
 * invalid) or parses back, whatever the chunk boundaries, to exactly the status, reason,
 * fields (byte strings) and body bytes that were asked for, with nothing left over: two
 * responses written back to back parse as two.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type HttpResponse, HttpResponseParser } from "../../protocol/http_response_parser.ts";
import {
  type HttpResponseInit,
  STATUS_TEXT,
  writeResponse,
  type WriteResponseOptions,
} from "../../protocol/http_writer.ts";
import { chunks, concat, int, pick, randomBytes, randomCuts, type Rng } from "./_mutate.ts";

const utf8 = new TextEncoder();

/** Characters the strings are drawn from: valid and invalid for a header, by kind. */
const ALPHABETS = [
  "abcXYZ019-_.!#$%&'*+^`|~", // token characters
  ' \t"(),/:;<=>?@[\\]{}', // separators, SP, HTAB
  "\xe9\xff\x80\xa0\xc3\xa9", // obs-text (Latin-1 bytes)
  "\r\n\x00\x01\x0b\x1f\x7f", // controls and DEL: never field-value bytes
  "\u0100\u20ac\u{1f600}\ud800\udc00\ufffd", // code units above 0xFF (and lone surrogates)
];

function randomString(rng: Rng, max: number, bad: number): string {
  const n = int(rng, max + 1);
  let s = "";
  for (let i = 0; i < n; i++) {
    // Mostly printable; `bad` is the chance of a character from the invalid alphabets.
    const a = rng() < bad ? ALPHABETS[3 + int(rng, 2)] : ALPHABETS[int(rng, 3)];
    s += a[int(rng, a.length)];
  }
  return s;
}

const NAMES = [
  "Content-Type",
  "x-a",
  "X-Request-Id",
  "Date",
  "date",
  "Content-Length",
  "content-length",
  "Connection",
  "Keep-Alive",
  "Transfer-Encoding",
  "TE",
  "Trailer",
  "Upgrade",
  "Proxy-Connection",
  "Set-Cookie",
];

// --- the oracle: what the writer must accept, written independently of it --------------

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (const c of s) if (!TCHAR.includes(c)) return false;
  return true;
}

/** HTAB, SP, VCHAR and obs-text only (RFC 9110 §5.5, RFC 9112 §4 for the reason). */
function isFieldBytes(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!(c === 0x09 || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff))) return false;
  }
  return true;
}

const OWNED = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "proxy-connection",
  "content-length",
]);

/** Stands for the writer's own current date (NUL: never in an accepted value). */
const NOW = "\0now";
const IMF_FIXDATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

function trimOws(s: string): string {
  return s.replace(/^[ \t]+|[ \t]+$/g, "");
}

interface Case {
  res: HttpResponseInit;
  opts: WriteResponseOptions;
}

/** "range", "type", or null when the writer must accept the case. */
function expectedRefusal(c: Case): "range" | "type" | null {
  const { res, opts } = c;
  if (!Number.isInteger(res.status) || res.status < 200 || res.status > 599) return "range";
  if (res.reason !== undefined && !isFieldBytes(res.reason)) return "type";
  if (opts.date !== undefined && !isFieldBytes(opts.date)) return "type";
  for (const [name, value] of fieldsOf(res)) {
    if (!isToken(name) || !isFieldBytes(value)) return "type";
    if (name.toLowerCase() === "content-length" && !/^[0-9]+$/.test(value)) return "type";
  }
  const len = bodyBytes(res).length;
  if ((res.status === 204 || res.status === 304) && len > 0) return "type";
  return null;
}

function fieldsOf(res: HttpResponseInit): [string, string][] {
  const h = res.headers;
  if (h === undefined) return [];
  return Array.isArray(h) ? h : Object.entries(h);
}

function bodyBytes(res: HttpResponseInit): Uint8Array {
  const b = res.body;
  return b === undefined ? new Uint8Array(0) : typeof b === "string" ? utf8.encode(b) : b;
}

/** The response the parser must see for an accepted case. */
function expectedResponse(c: Case): {
  status: number;
  reason: string;
  fields: [string, string][];
  body: Uint8Array;
  keepAlive: boolean;
} {
  const { res, opts } = c;
  const head = opts.head === true;
  const fields: [string, string][] = [];
  if (!opts.keepAlive) fields.push(["connection", "close"]);
  else if (opts.version === "1.0") fields.push(["connection", "keep-alive"]);
  let callerDate = false;
  let callerLength: string | null = null;
  for (const [name, value] of fieldsOf(res)) {
    const n = name.toLowerCase();
    if (n === "date") callerDate = true;
    if (n === "content-length") callerLength = value;
    if (!OWNED.has(n)) fields.push([n, trimOws(value)]);
  }
  if (!callerDate) fields.push(["date", opts.date === undefined ? NOW : trimOws(opts.date)]);
  const body = bodyBytes(res);
  const s = res.status;
  if (s !== 204) {
    if (body.length === 0 && callerLength !== null && (head || s === 304)) {
      fields.push(["content-length", callerLength]);
    } else if (s !== 304) fields.push(["content-length", String(body.length)]);
  }
  return {
    status: s,
    reason: res.reason ?? STATUS_TEXT[s] ?? "",
    fields,
    body: head || s === 204 || s === 304 ? new Uint8Array(0) : body,
    keepAlive: opts.keepAlive,
  };
}

// --- cases ------------------------------------------------------------------------------

function randomCase(rng: Rng): Case {
  const bad = rng() < 0.5 ? 0 : 0.05; // half the cases hold only valid characters
  const status = rng() < 0.9
    ? 200 + int(rng, 400)
    : pick(rng, [0, 99, 100, 101, 199, 600, 999, 1000, 250.5, NaN]);
  const res: HttpResponseInit = { status };
  if (rng() < 0.3) res.reason = randomString(rng, 20, bad);
  const n = int(rng, 7);
  const headers: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const name = rng() < 0.6
      ? pick(rng, NAMES)
      : rng() < 0.9
      ? randomString(rng, 12, 0).replace(/[^!#$%&'*+\-.^_`|~0-9A-Za-z]/g, "") || "x"
      : randomString(rng, 8, 0.5);
    const lower = name.toLowerCase();
    const value = lower === "content-length" && rng() < 0.8
      ? String(int(rng, 5000))
      : randomString(rng, 40, bad);
    headers.push([name, value]);
  }
  if (headers.length > 0) {
    res.headers = rng() < 0.8 ? headers : Object.fromEntries(headers);
  }
  const b = int(rng, 6);
  if (b === 1) res.body = randomString(rng, 60, 0).replace(/[\x80-\xff]/g, "a"); // ASCII text
  else if (b === 2) res.body = randomString(rng, 3000, 0.2); // any text, lone surrogates too
  else if (b === 3) res.body = randomBytes(rng, int(rng, 100));
  else if (b === 4) res.body = randomBytes(rng, int(rng, 6000)); // past the 4 KiB slab items
  else if (b === 5) res.body = "";
  const opts: WriteResponseOptions = {
    keepAlive: rng() < 0.7,
    head: rng() < 0.2,
    version: pick(rng, ["1.0", "1.1", undefined] as const),
  };
  if (rng() < 0.2) opts.date = randomString(rng, 30, bad);
  return { res, opts };
}

/** A case as JSON for a failure report (bytes as arrays, strings escaped). */
function describe(c: Case): Uint8Array {
  return utf8.encode(JSON.stringify(c, (_k, v) => v instanceof Uint8Array ? [...v] : v));
}

function parseAll(
  bytes: Uint8Array,
  methods: string[],
  cuts: number[],
): { responses: HttpResponse[]; errors: string[]; parser: HttpResponseParser } {
  const responses: HttpResponse[] = [];
  const errors: string[] = [];
  const parser = new HttpResponseParser({
    response: (r) => responses.push({ ...r, body: r.body.slice() }),
    error: (e) => errors.push(e.message),
  });
  for (const m of methods) parser.sent(m);
  for (const chunk of chunks(bytes, cuts)) if (chunk.length > 0) parser.push(chunk);
  return { responses, errors, parser };
}

const FOLLOWER: Case = {
  res: { status: 200, headers: [["x-next", "yes"]], body: "next" },
  opts: { keepAlive: true, date: "d" },
};

/** Checks one case; throws an `AssertionError` when the property does not hold. */
export function checkWriterCase(c: Case, rng: Rng): void {
  const refusal = expectedRefusal(c);
  let out: Uint8Array;
  try {
    out = writeResponse(c.res, c.opts).slice(); // a copy: slab views are reused
  } catch (err) {
    assert.ok(err instanceof RangeError || err instanceof TypeError, String(err));
    assert.equal(err instanceof RangeError ? "range" : "type", refusal, (err as Error).message);
    return;
  }
  assert.equal(refusal, null, "the writer accepted an invalid response");
  const want = expectedResponse(c);
  // The response, then another on the same connection when this one keeps it.
  const next = want.keepAlive ? writeResponse(FOLLOWER.res, FOLLOWER.opts) : null;
  const bytes = next ? concat([out, next]) : out;
  const methods = [c.opts.head ? "HEAD" : "GET", ...(next ? ["GET"] : [])];
  const { responses, errors, parser } = parseAll(bytes, methods, randomCuts(rng, bytes.length, 8));
  assert.deepEqual(errors, []);
  assert.equal(responses.length, methods.length, "as many responses as were written");
  assert.equal(parser.waiting, 0);
  assert.ok(parser.idle, "nothing left over");
  const got = responses[0];
  assert.equal(got.version, "1.1");
  assert.equal(got.status, want.status);
  assert.equal(got.reason, want.reason);
  assert.equal(got.keepAlive, want.keepAlive);
  const fields = got.headers.map(([k, v], i): [string, string] => {
    if (want.fields[i]?.[1] !== NOW || k !== "date") return [k, v];
    assert.match(v, IMF_FIXDATE);
    return [k, NOW];
  });
  assert.deepEqual(fields, want.fields);
  assert.deepEqual(got.body, want.body);
  if (next) {
    assert.equal(responses[1].status, 200);
    assert.deepEqual(responses[1].headers[0], ["x-next", "yes"]);
    assert.equal(new TextDecoder().decode(responses[1].body), "next");
  }
}

/** A random case and its check; the input of a failure is the case as JSON. */
export function writerCase(rng: Rng): { input: Uint8Array; check: () => void } {
  const c = randomCase(rng);
  return { input: describe(c), check: () => checkWriterCase(c, rng) };
}
