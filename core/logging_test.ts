import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { configureLogging, consoleFormatter, jsonLinesFormatter } from "./logging.ts";
import { escapeControls } from "./escape.ts";
import { HandlerError } from "./errors.ts";
import { unsafeChars } from "../tests/_unsafe_chars.ts";

/** A record as `log.info("…{a}…", { a })` makes it. */
function record(template: string[], values: unknown[], level: LogRecord["level"] = "info") {
  const message: unknown[] = [];
  template.forEach((t, i) => {
    message.push(t);
    if (i < values.length) message.push(values[i]);
  });
  const properties: Record<string, unknown> = {};
  values.forEach((v, i) => properties[`v${i}`] = v);
  return {
    category: ["ep", "test"],
    level,
    message,
    rawMessage: template.join("{}"),
    timestamp: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
    properties,
  } as LogRecord;
}

/** The text a record is shown as (the console format string, `%%` back to `%`). */
function text(r: LogRecord): string {
  const [format] = consoleFormatter(r) as [string];
  // "%c<time> %c<level>%c %c<category> %c<message>", the message's "%" written "%%".
  const m = /^%c(.*?) %c(.*?)%c %c(.*?) %c/s.exec(format)!;
  return `${m[1]} ${m[2]} ${m[3]} ${format.slice(m[0].length).replaceAll("%%", "%")}`;
}

Deno.test("the text log shows values as they are, not quoted", () => {
  const t = text(record(["Balancer listening on ", ":", ""], ["127.0.0.1", 7070]));
  assert.match(t, /Balancer listening on 127\.0\.0\.1:7070$/);
  // Only what would not be seen is quoted: an empty value, spaces at the ends.
  assert.match(text(record(["name ", " end"], [""])), /name "" end$/);
  assert.match(text(record(["name ", " end"], [" x "])), /name " x " end$/);
});

Deno.test("the text log shows a Lua traceback's frames as indented lines after the message", () => {
  const err = new HandlerError("boom.lua:4: kaboom", {
    handlerErrorName: "LuaError",
    handlerStack: "LuaError: boom.lua:4: kaboom\nboom.lua:4: kaboom\nstack traceback:\n" +
      "\t[C]: in function 'error'\n\tboom.lua:4: in function <boom.lua:3>",
  });
  const lines = text(record(["Handler of ", " failed: ", ""], ["boom", err], "warning"))
    .split("\n");
  assert.match(lines[0], /Handler of boom failed: LuaError: boom\.lua:4: kaboom$/);
  assert.deepEqual(lines.slice(1), [
    "    stack traceback:",
    "    [C]: in function 'error'",
    "    boom.lua:4: in function <boom.lua:3>",
  ]);
});

Deno.test("the JSON log's message shows values as they are; the properties keep them typed", () => {
  const err = new Error("bad\nthing");
  const json = JSON.parse(
    jsonLinesFormatter(record(["on ", ":", " ", ""], ["127.0.0.1", 7070, err])),
  );
  assert.equal(json.message, "on 127.0.0.1:7070 Error: bad\nthing");
  assert.equal(json.properties.v1, 7070);
  assert.equal(json.properties.v2.message, "bad\nthing");
  assert.match(json.properties.v2.stack, /logging_test\.ts/);
});

Deno.test("configureLogging refuses an unknown level", async () => {
  await assert.rejects(() => configureLogging({ level: "loud", reset: true }), RangeError);
});

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

const PIECES = [
  "a",
  "127.0.0.1",
  " ",
  "\n",
  "\r\n",
  "\t",
  "\x1b[31m",
  "\u202e",
  "\u2028",
  "\x9b",
  "%",
  "%c",
  "\\",
  '"',
  "\n05:00:00.000 ERR ep·fake forged",
  "stack traceback:",
  "\n\tat x",
  "    at y (z.ts:1:1)",
  "\ud800",
  "é",
  "",
];

Deno.test("property: a record with any values is one inert line of text, an error's frames as indented lines, and one JSON line", () => {
  const rand = prng(Number(Deno.env.get("EP_FUZZ_SEED") ?? 0x10c5));
  const piece = () => {
    let s = "";
    for (let n = Math.floor(rand() * 5); n > 0; n--) {
      s += PIECES[Math.floor(rand() * PIECES.length)];
    }
    return s;
  };
  for (let i = 0; i < 2000; i++) {
    const values: unknown[] = [];
    for (let n = 1 + Math.floor(rand() * 3); n > 0; n--) {
      const r = rand();
      if (r < 0.5) values.push(piece());
      else if (r < 0.7) values.push(Math.floor(rand() * 1e6));
      else if (r < 0.85) {
        const e = new Error(piece());
        e.stack = `Error: ${e.message}\n${piece()}\n    at f (file:///x.ts:1:2)\n${piece()}`;
        values.push(e);
      } else {
        values.push(
          new HandlerError(piece(), {
            handlerErrorName: "LuaError",
            handlerStack: `LuaError: x\n${piece()}\nstack traceback:\n\t${piece()}\n\t${piece()}`,
          }),
        );
      }
    }
    const template = values.map(() => "v ").concat([""]);
    const r = record(template, values);
    const lines = text(r).split("\n");
    // The record's own line holds every value, escaped, unquoted (when visible).
    for (const v of values) {
      if (typeof v === "string" && v !== "" && v.trim() === v) {
        assert.ok(lines[0].includes(escapeControls(v)), lines[0]);
      }
    }
    for (const [n, line] of lines.entries()) {
      assert.deepEqual(unsafeChars(line), [], JSON.stringify(line));
      if (n > 0) assert.match(line, /^ {4}\S/, "a continuation line is indented");
    }
    const json = jsonLinesFormatter(r);
    assert.ok(json.endsWith("\n") && !json.slice(0, -1).includes("\n"));
    assert.deepEqual(unsafeChars(json.slice(0, -1)), []);
    JSON.parse(json);
  }
});
