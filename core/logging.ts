/**
 * The one LogTape setup ep uses: the CLI's main thread and every handler thread (whose
 * `ep.log` and Lua errors must reach the same console at the same level).
 *
 * Values are shown as they are, not quoted (`listening on 127.0.0.1:7070`), as in nginx's
 * and HAProxy's logs. They often come from peers (a worker's name, a path, an error
 * message), so both formatters keep every record inert: the text one shows each value and
 * message part through `escapeControls` (one line: a newline in a value is `\x0a`), the JSON
 * one writes what JSON leaves raw as `\uXXXX`. The one exception is an error's code
 * locations (JavaScript stack frames, a Lua traceback's frames): they follow the record as
 * lines indented by four spaces, each escaped, so that nothing in them can start a line of
 * its own.
 *
 * @module
 */
import {
  configure,
  defaultConsoleFormatter,
  getConfig,
  getConsoleSink,
  getLogger,
  jsonLinesFormatter as logtapeJsonLines,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";
import { escapeControls, hasControls, inertJson } from "./escape.ts";
import { HandlerError } from "./errors.ts";

const LEVELS: readonly string[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** Options for {@linkcode configureLogging}. */
export interface LoggingOptions {
  /** Lowest level logged for `["ep"]` (default `info`); an unknown level is a `RangeError`. */
  level?: string;
  /** JSON lines instead of text. */
  json?: boolean;
  /** Also log `["ep", "access"]` (one line per job) at info. */
  access?: boolean;
  /** Replace an existing configuration (the CLI) or keep it (a handler thread). */
  reset?: boolean;
}

/**
 * A value as the text log shows it: as it is, every peer-supplied character inert. An
 * error's code locations go to `frames`, shown after the record's line.
 */
function showValue(v: unknown, frames: string[]): string {
  if (typeof v === "string") {
    // Only an empty value, or one with spaces at its ends, would not be seen: quoted.
    // (A quote inside is `\"`: escapeControls wrote every backslash as `\\`.)
    const shown = escapeControls(v);
    return v === "" || v.trim() !== v ? `"${shown.replaceAll('"', '\\"')}"` : shown;
  }
  if (v instanceof Error) {
    // The message may be a peer's: one escaped line.
    for (const l of codeLocations(v)) frames.push(`\n    ${escapeControls(l)}`);
    return escapeControls(`${errorName(v)}: ${v.message}`);
  }
  return escapeControls(Deno.inspect(v, { colors: false, breakLength: Infinity }));
}

/** The name an error is shown with: a handler's own (`LuaError`), else the error's. */
function errorName(err: Error): string {
  return err instanceof HandlerError ? err.handlerErrorName : err.name;
}

/**
 * An error's code locations, trimmed: JavaScript's stack frames (`at f (file:1:2)`), or a Lua
 * traceback from its `stack traceback:` line on. The message the stack repeats first is not
 * among them.
 */
function codeLocations(err: Error): string[] {
  const stack = (err.stack ?? "").split("\n");
  const lua = stack.findIndex((l) => l === "stack traceback:");
  if (lua >= 0) return stack.slice(lua).map((l) => l.trim()).filter(Boolean);
  return stack.filter((l) => /^\s+at /.test(l)).map((l) => l.trim());
}

/** The message of a record with each value as the JSON log shows it: as it is. */
function jsonMessage(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    if (i % 2 === 0) text += String(part);
    else if (typeof part === "string") text += part;
    else if (part instanceof Error) text += `${errorName(part)}: ${part.message}`;
    else text += Deno.inspect(part, { colors: false, breakLength: Infinity });
  }
  return text;
}

/**
 * LogTape's console layout (time, level, category, message), with the message's parts and
 * values rendered here through `escapeControls`: a record is one line whatever its values
 * hold, followed by its errors' code locations, each on a line indented by four spaces.
 */
export function consoleFormatter(record: LogRecord): readonly unknown[] {
  let text = "";
  const frames: string[] = [];
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    // Template parts are code, or text a module rendered and escaped itself (the access
    // log); one that was not is escaped here.
    const t = String(part);
    text += i % 2 === 1 ? showValue(part, frames) : hasControls(t) ? escapeControls(t) : t;
  }
  text += frames.join("");
  // The text becomes part of a console format string: `%` must stay literal.
  return defaultConsoleFormatter({ ...record, message: [text.replaceAll("%", "%%")] });
}

/**
 * LogTape's JSON lines, with the message's values as they are (not JSON-quoted inside the
 * message; the properties keep them typed, an error with its stack) and what JSON leaves raw
 * (C1, U+2028, bidi) as `\uXXXX`.
 */
export function jsonLinesFormatter(record: LogRecord): string {
  return inertJson(logtapeJsonLines({ ...record, message: [jsonMessage(record)] }));
}

let jsonLines = false;

/**
 * Configures LogTape with a console sink for category `["ep"]`.
 *
 * @throws {RangeError} on a level that is not one of trace, debug, info, warning, error,
 * fatal.
 */
export async function configureLogging(o: LoggingOptions = {}): Promise<void> {
  if (!o.reset && getConfig()) return;
  if (o.level !== undefined && !LEVELS.includes(o.level)) {
    throw new RangeError(
      `Unknown log level ${JSON.stringify(o.level)}: expected one of ${LEVELS.join(", ")}`,
    );
  }
  const lowestLevel = (o.level ?? "info") as LogLevel;
  jsonLines = o.json ?? false;
  await configure({
    reset: o.reset ?? false,
    sinks: {
      console: o.json
        ? getConsoleSink({ formatter: jsonLinesFormatter })
        : getConsoleSink({ formatter: consoleFormatter }),
    },
    loggers: [
      { category: ["ep"], lowestLevel, sinks: ["console"] },
      ...(o.access
        ? [{
          category: ["ep", "access"],
          lowestLevel: "info" as const,
          sinks: ["console" as const],
          parentSinks: "override" as const,
        }]
        : []),
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}

const cliLog = getLogger(["ep", "cli"]);

/**
 * A line for the operator from the command line (a banner, a reason it cannot start): as it
 * is on stdout (`error`: stderr), or, when the log is JSON lines, a record of category
 * `ep.cli` like every other line, with `properties`.
 *
 * @example
 * ```ts ignore
 * import { announce } from "./logging.ts";
 * announce("ep listening on 127.0.0.1:7070", { properties: { port: 7070 } });
 * ```
 */
export function announce(
  line: string,
  o: { error?: boolean; properties?: Record<string, unknown> } = {},
): void {
  if (jsonLines) {
    const properties = { ...o.properties, line };
    if (o.error) cliLog.error("{line}", properties);
    else cliLog.info("{line}", properties);
  } else if (o.error) console.error(line);
  else console.log(line);
}
