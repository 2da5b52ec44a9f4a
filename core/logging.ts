/**
 * The one LogTape setup ep uses: the CLI's main thread and every handler thread (whose
 * `ep.log` and Lua errors must reach the same console at the same level).
 *
 * Log values often come from peers (a worker's name, a path, an error message), so both
 * formatters make every record one inert line: the text one shows each value and message
 * part through `escapeControls`, the JSON one writes what JSON leaves raw as `\uXXXX`.
 */
import {
  configure,
  defaultConsoleFormatter,
  getConfig,
  getConsoleSink,
  jsonLinesFormatter as logtapeJsonLines,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";
import { escapeControls, hasControls, inertJson } from "./escape.ts";

const LEVELS: readonly string[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** Options for {@linkcode configureLogging}. */
export interface LoggingOptions {
  /** Lowest level logged for `["ep"]`; unknown values mean `info`. */
  level?: string;
  /** JSON lines instead of text. */
  json?: boolean;
  /** Also log `["ep", "access"]` (one line per job) at info. */
  access?: boolean;
  /** Replace an existing configuration (the CLI) or keep it (a handler thread). */
  reset?: boolean;
}

/** A value as the text log shows it: one line, every peer-supplied character inert. */
function showValue(v: unknown): string {
  if (typeof v === "string") return `"${escapeControls(v)}"`;
  if (v instanceof Error) {
    // The message may be a peer's; the stack frames below it are code locations.
    const frames = (v.stack ?? "").split("\n").filter((l) => /^\s+at /.test(l));
    return [escapeControls(`${v.name}: ${v.message}`), ...frames.map(escapeControls)].join(
      "\n",
    );
  }
  return escapeControls(Deno.inspect(v, { colors: false, breakLength: Infinity }));
}

/**
 * LogTape's console layout (time, level, category, message), with the message's parts and
 * values rendered here through `escapeControls`: a record is one line (an error's stack
 * frames aside) whatever its values hold.
 */
export function consoleFormatter(record: LogRecord): readonly unknown[] {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    // Template parts are code, or text a module rendered and escaped itself (the access
    // log); one that was not is escaped here.
    const t = String(part);
    text += i % 2 === 1 ? showValue(part) : hasControls(t) ? escapeControls(t) : t;
  }
  // The text becomes part of a console format string: `%` must stay literal.
  return defaultConsoleFormatter({ ...record, message: [text.replaceAll("%", "%%")] });
}

/** LogTape's JSON lines, with what JSON leaves raw (C1, U+2028, bidi) as `\uXXXX`. */
export function jsonLinesFormatter(record: LogRecord): string {
  return inertJson(logtapeJsonLines(record));
}

/** Configures LogTape with a console sink for category `["ep"]`. */
export async function configureLogging(o: LoggingOptions = {}): Promise<void> {
  if (!o.reset && getConfig()) return;
  const lowestLevel = LEVELS.includes(o.level ?? "") ? o.level as LogLevel : "info";
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
