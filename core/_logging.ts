/**
 * The one LogTape setup ep uses: the CLI's main thread and every handler thread (whose
 * `ep.log` and Lua errors must reach the same console at the same level).
 */
import {
  configure,
  getConfig,
  getConsoleSink,
  getJsonLinesFormatter,
  type LogLevel,
} from "@logtape/logtape";

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

/** Configures LogTape with a console sink for category `["ep"]`. */
export async function configureLogging(o: LoggingOptions = {}): Promise<void> {
  if (!o.reset && getConfig()) return;
  const lowestLevel = LEVELS.includes(o.level ?? "") ? o.level as LogLevel : "info";
  await configure({
    reset: o.reset ?? false,
    sinks: {
      console: o.json ? getConsoleSink({ formatter: getJsonLinesFormatter() }) : getConsoleSink(),
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
