/**
 * The `ep` command line's shared parts, defined once: the flag groups several commands take,
 * the parser every command uses ({@linkcode parseFlags}: one-line errors), and the
 * configuration settings with their one rule, **flag > environment variable > default**,
 * under the same names in every command ({@linkcode SETTINGS}, printed by `ep --help`).
 * Each command spreads the groups it takes into its options; its own flags (`ep bench
 * --rate`, …) stay with it, and so does its help text.
 *
 * @example
 * ```ts
 * import { ADDRESS_FLAGS, CLIENT_FLAGS, clientAddr, HELP_FLAG, parseFlags } from "./flags.ts";
 * const { values } = parseFlags(["--port", "18300", "-h"], {
 *   ...CLIENT_FLAGS,
 *   ...ADDRESS_FLAGS,
 *   ...HELP_FLAG,
 * });
 * console.assert(values.help === true);
 * console.assert(clientAddr(values, () => undefined) === "127.0.0.1:18300");
 * ```
 *
 * @module
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { parseAddr } from "../core/net/transport.ts";
import { hasControls } from "../core/escape.ts";
import { ConfigValueError, quote, UsageError } from "./errors.ts";

/** `-h`, `--help`: every command. */
export const HELP_FLAG = {
  help: { type: "boolean", short: "h" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * `--addr`, `--timeout`, `--token`: the commands that talk to a server (`call`, `bench`,
 * `status`); the role commands accept them too (`--token` is the EP token a worker presents).
 */
export const CLIENT_FLAGS = {
  addr: { type: "string" },
  timeout: { type: "string" },
  token: { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** `--http`, `--header k:v` (repeatable): the commands that send requests (`call`, `bench`). */
export const REQUEST_FLAGS = {
  http: { type: "boolean" },
  header: { type: "string", multiple: true },
} as const satisfies ParseArgsOptionsConfig;

/** `--json`: print JSON instead of text (`bench`, `status`). */
export const JSON_FLAG = {
  json: { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * `--port`, `--host`: where a balancer listens (`start`, `balancer`, `run`, `check`), and
 * where the commands that talk to one find it when `--addr` is not given (`call`, `bench`,
 * `status`).
 */
export const ADDRESS_FLAGS = {
  port: { type: "string" },
  host: { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/** `--log-level`, `--log-json`: the commands that log (`run`, `start`, `balancer`, `worker`). */
export const LOG_FLAGS = {
  "log-level": { type: "string" },
  "log-json": { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * The flags of the commands that run a node (`run`, `start`, `balancer`, `worker`) besides
 * the address and log flags: the balancers to pull from, handler threads, prefetch, and
 * access to the status page.
 */
export const ROLE_FLAGS = {
  connect: { type: "string" },
  threads: { type: "string" },
  concurrency: { type: "string" },
  handlers: { type: "string" },
  prefetch: { type: "string" },
  "prefetch-budget": { type: "string" },
  name: { type: "string" },
  "access-log": { type: "boolean" },
  "status-token": { type: "string" },
  "status-public": { type: "boolean" },
  "expose-errors": { type: "boolean" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * Parses a `--header name:value` argument of `ep bench` and `ep call`: the name lower-cased
 * and the value trimmed. The name must be a token and the value free of control characters
 * (CR, LF, NUL, … and DEL): they are written into a request head as they are (the value as
 * UTF-8), so either could split it.
 *
 * @throws {RangeError} on a missing colon, a name that is not a token or a control
 * character in the value.
 *
 * @example
 * ```ts
 * import { parseHeaderArg } from "./flags.ts";
 * const [name, value] = parseHeaderArg("X-Trace: abc ");
 * console.assert(name === "x-trace" && value === "abc");
 * ```
 */
export function parseHeaderArg(arg: string): [string, string] {
  const i = arg.indexOf(":");
  if (i <= 0) throw new RangeError(`Invalid --header "${arg}": expected name:value`);
  const name = arg.slice(0, i).trim().toLowerCase();
  const value = arg.slice(i + 1).trim();
  if (!/^[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(name)) {
    throw new RangeError(`Invalid --header name ${JSON.stringify(name)}: not a token`);
  }
  // deno-lint-ignore no-control-regex -- control characters are what is refused
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    throw new RangeError(`Invalid --header value ${JSON.stringify(value)}: control character`);
  }
  return [name, value];
}

/**
 * `--servers a,b`, `--retry n`: the commands that send requests over EP (`call`, `bench`):
 * balancers to fail over across, in order, and retries of a failed request.
 */
export const FAILOVER_FLAGS = {
  servers: { type: "string" },
  retry: { type: "string" },
} as const satisfies ParseArgsOptionsConfig;

/**
 * The servers a command talks to, from `--servers a,b` or `--addr a` (not both), each a
 * `host:port`; `undefined` when neither is given.
 *
 * @throws {RangeError} when both are given or the list is empty; {TypeError} on an
 * address that is not `host:port`.
 *
 * @example
 * ```ts
 * import { parseServers } from "./flags.ts";
 * console.assert(parseServers({ servers: "10.0.0.1:7070, 10.0.0.2:7070" })?.length === 2);
 * console.assert(parseServers({ addr: "127.0.0.1:7070" })?.[0] === "127.0.0.1:7070");
 * console.assert(parseServers({}) === undefined);
 * ```
 */
export function parseServers(v: { servers?: string; addr?: string }): string[] | undefined {
  if (v.servers === undefined) return v.addr === undefined ? undefined : [v.addr];
  if (v.addr !== undefined) throw new RangeError("Give --addr or --servers, not both");
  const servers = v.servers.split(",").map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0) throw new RangeError(`Invalid --servers "${v.servers}": no address`);
  for (const s of servers) {
    const m = /^(?:\[[0-9a-fA-F:.]+\]|[^:\[\]]*):(\d{1,5})$/.exec(s);
    if (!m || Number(m[1]) > 65535) {
      throw new TypeError(`Invalid --servers address "${s}": expected host:port`);
    }
  }
  return servers;
}

/**
 * `--retry n`: the number of retries of a failed request (0: none), or `undefined`.
 *
 * @throws {RangeError} on anything but a whole number from 0 to 100.
 *
 * @example
 * ```ts
 * import { parseRetry } from "./flags.ts";
 * console.assert(parseRetry("3") === 3 && parseRetry(undefined) === undefined);
 * ```
 */
export function parseRetry(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !(n <= 100)) {
    throw new RangeError(`Invalid --retry "${text}": expected a whole number from 0 to 100`);
  }
  return n;
}

/**
 * Parses a command's arguments with `node:util`'s `parseArgs` (strict), with two changes a
 * user notices: a negative number is a string option's value (`--rate -5` is `--rate=-5`,
 * which the command then judges), and every mistake is one {@linkcode UsageError} line
 * (`Unknown option "--bogus"`, `Option --port needs a value`).
 *
 * @throws {UsageError} on an unknown option, an option without its value, a value given to
 * a boolean option, or a positional argument where the command takes none.
 *
 * @example
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const { values } = parseFlags(["--rate", "-5"], { rate: { type: "string" } });
 * console.assert(values.rate === "-5");
 * try {
 *   parseFlags(["--bogus"], { rate: { type: "string" } });
 * } catch (err) {
 *   console.assert((err as Error).message === 'Unknown option "--bogus"');
 * }
 * ```
 */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  allowPositionals = true,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: boolean }>> {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      joined.push(...args.slice(i));
      break;
    }
    const next = args[i + 1];
    const takesValue = a.startsWith("--") && !a.includes("=") &&
      options[a.slice(2)]?.type === "string";
    if (takesValue && next !== undefined && next.startsWith("-") && next !== "-") {
      if (/^-\.?\d/.test(next)) {
        joined.push(`${a}=${next}`);
        i++;
        continue;
      }
      // The next argument is an option (the value is missing), or a value that starts
      // with "-" and must be attached.
      throw new UsageError(
        next.startsWith("--") && options[next.slice(2).split("=")[0]]
          ? `Option ${a} needs a value`
          : `Option ${a} needs a value (a value that starts with "-" is written ${a}=${next})`,
      );
    }
    joined.push(a);
  }
  try {
    return parseArgs({ args: joined, options, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(usageMessage(err as Error & { code?: string }), {
      cause: err,
    });
  }
}

/** One line for a `parseArgs` error. */
function usageMessage(err: Error & { code?: string }): string {
  const named = /'([^']*)'/.exec(err.message)?.[1] ?? "";
  const option = named.replace(/ <value>$/, "");
  switch (err.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `Unknown option ${quote(option)}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `Unexpected argument ${quote(named)}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/argument missing/.test(err.message)) return `Option ${option} needs a value`;
      if (/does not take an argument/.test(err.message)) {
        return `Option ${option} takes no value`;
      }
      if (/ambiguous/.test(err.message)) return `Option ${option} needs a value`;
  }
  return err.message.split("\n")[0].replace(/\.$/, "");
}

/** Reads an environment variable (unset, or not readable, is `undefined`). */
export type Env = (name: string) => string | undefined;

/**
 * The process's environment, as an {@linkcode Env}: a variable that cannot be read (no
 * permission) is unset.
 *
 * @example
 * ```ts
 * import { processEnv } from "./flags.ts";
 * console.assert(processEnv("EP_SURELY_UNSET_VARIABLE") === undefined);
 * ```
 */
export const processEnv: Env = (name) => {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
};

/**
 * One configuration setting: its flag, its environment variable, its default and the
 * commands that read it. The table `ep --help` prints and README's "Configuration" shows.
 */
export interface Setting {
  /** The flag, without `--`; "" for a setting only an environment variable sets. */
  readonly flag: string;
  /** The environment variable, when the setting has one. */
  readonly env?: string;
  /** The default, as documented. */
  readonly default: string;
  /** The commands that read it. */
  readonly commands: string;
  /** What it sets. */
  readonly what: string;
}

/**
 * Every setting with an environment variable, in the one rule every command follows:
 * **a flag beats its environment variable, which beats the default**. The commands that run a
 * control script (`run`, `start`, `check`) set the variable of each flag given, so that the
 * script's `ep.env` reads the same value (and a flag also replaces what the script itself
 * sets: `--port` the port of its `ep.listen`, `--threads` its `ep.threads`, `--connect` its
 * `ep.connect`, `--token` its `ep.token`).
 *
 * @example
 * ```ts
 * import { SETTINGS } from "./flags.ts";
 * console.assert(SETTINGS.some((s) => s.flag === "port" && s.env === "EP_PORT"));
 * ```
 */
export const SETTINGS: readonly Setting[] = [
  {
    flag: "port",
    env: "EP_PORT",
    default: "7070",
    commands: "start, balancer, run, check; call, bench, status",
    what: "port a balancer listens on (0: any free port); the client commands call it",
  },
  {
    flag: "host",
    env: "EP_HOST",
    default: "127.0.0.1",
    commands: "start, balancer, run, check; call, bench, status",
    what: "address a balancer binds (0.0.0.0: all); the client commands call it",
  },
  {
    flag: "addr",
    env: "EP_ADDR",
    default: "<host>:<port>",
    commands: "call, bench, status",
    what: "the balancer the client commands call, host:port",
  },
  {
    flag: "connect",
    env: "EP_CONNECT",
    default: "127.0.0.1:7070",
    commands: "worker, run, check",
    what: "balancers a worker pulls from: host:port,host:port",
  },
  {
    flag: "threads",
    env: "EP_THREADS",
    default: "cores (start: 2)",
    commands: "start, worker, run, check",
    what: "handler threads; 0: the number of cores",
  },
  {
    flag: "token",
    env: "EP_TOKEN",
    default: "none",
    commands: "every command",
    what: "EP token a balancer requires of workers; workers and clients send it",
  },
  {
    flag: "status-token",
    env: "EP_STATUS_TOKEN",
    default: "none",
    commands: "start, balancer, run; status",
    what: "token of the /_ep/ page, stats, metrics (none: loopback only)",
  },
  {
    flag: "log-level",
    env: "EP_LOG_LEVEL",
    default: "info",
    commands: "start, balancer, worker, run, check",
    what: "trace, debug, info, warning, error, fatal",
  },
  {
    flag: "log-json",
    env: "EP_LOG_JSON",
    default: "0",
    commands: "start, balancer, worker, run, check",
    what: "1: JSON lines, and nothing else",
  },
  {
    flag: "",
    env: "EP_TIMER_SLACK_NS",
    default: "1000",
    commands: "every process",
    what: "timer slack each thread asks Linux for, ns (0: the kernel's 50 µs)",
  },
  {
    flag: "",
    env: "EP_INLINE",
    default: "0",
    commands: "ep run (a Lua worker)",
    what:
      "1: a one-slot Lua worker runs its handlers on its main thread (less CPU per job; a higher tail near saturation when they wait)",
  },
  {
    flag: "",
    env: "EP_SCHED_SLICE_US",
    default: "0",
    commands: "every process",
    what: "scheduler slice each thread asks Linux 6.12+ for, µs (0: the kernel's)",
  },
];

/**
 * The settings as the text table of `ep --help`.
 *
 * @example
 * ```ts
 * import { settingsTable } from "./flags.ts";
 * console.assert(settingsTable().includes("EP_PORT"));
 * ```
 */
export function settingsTable(width = 96): string {
  const rows = [
    ["flag", "variable", "default", "what"],
    ...SETTINGS.map((s) => [s.flag ? `--${s.flag}` : "", s.env ?? "", s.default, s.what]),
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c].length)));
  const indent = 2 + w[0] + 2 + w[1] + 2 + w[2] + 2;
  const out: string[] = [];
  for (const r of rows) {
    // The last column wraps at `width`, under itself.
    const words = r[3].split(" ");
    let line = `  ${r[0].padEnd(w[0])}  ${r[1].padEnd(w[1])}  ${r[2].padEnd(w[2])}  `;
    let used = 0;
    for (const word of words) {
      if (used > 0 && indent + used + 1 + word.length > width) {
        out.push(line.trimEnd());
        line = " ".repeat(indent);
        used = 0;
      }
      line += (used > 0 ? " " : "") + word;
      used += (used > 0 ? 1 : 0) + word.length;
    }
    out.push(line.trimEnd());
  }
  return out.join("\n");
}

/**
 * A setting's text: the flag's value when given, else the environment variable's, else
 * `undefined`; with where it came from (`--port`, `EP_PORT`), for error messages.
 *
 * @example
 * ```ts
 * import { settingText } from "./flags.ts";
 * const env = (n: string) => (n === "EP_PORT" ? "7071" : undefined);
 * console.assert(settingText({}, "port", env)?.source === "EP_PORT");
 * console.assert(settingText({ port: "1" }, "port", env)?.text === "1");
 * ```
 */
export function settingText(
  values: Record<string, unknown>,
  flag: string,
  env: Env = processEnv,
): { text: string; source: string } | undefined {
  const v = values[flag];
  if (typeof v === "string") return { text: v, source: `--${flag}` };
  if (v === true) return { text: "1", source: `--${flag}` };
  const name = flag ? SETTINGS.find((s) => s.flag === flag)?.env : undefined;
  const e = name ? env(name) : undefined;
  return e === undefined ? undefined : { text: e, source: name! };
}

/**
 * A port: an integer from 0 to 65535 (0: any free port).
 *
 * @throws {ConfigValueError} naming `source` and quoting the text otherwise.
 *
 * @example
 * ```ts
 * import { parsePort } from "./flags.ts";
 * console.assert(parsePort("7070", "--port") === 7070);
 * ```
 */
export function parsePort(text: string, source: string): number {
  const n = /^\d{1,5}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= 0 && n <= 65535)) {
    throw new ConfigValueError(source, text, "a port: an integer from 0 to 65535");
  }
  return n;
}

/**
 * A host to bind or to call: a name or an IP address (an IPv6 one without brackets).
 *
 * @throws {ConfigValueError} on an empty text, or one with spaces, control characters (bidi
 * controls included), or any of `/ [ ] @ ,`.
 *
 * @example
 * ```ts
 * import { parseHost } from "./flags.ts";
 * console.assert(parseHost("0.0.0.0", "EP_HOST") === "0.0.0.0");
 * ```
 */
export function parseHost(text: string, source: string): string {
  if (!/^[^\s/\[\]@,]+$/.test(text) || hasControls(text)) {
    throw new ConfigValueError(source, text, "a host: a name or an IP address");
  }
  return text;
}

/**
 * An address to call: `host:port` (`[v6]:port`; `:port` means 127.0.0.1).
 *
 * @throws {ConfigValueError} otherwise.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./flags.ts";
 * console.assert(parseAddress(" 10.0.0.1:7070", "--addr") === "10.0.0.1:7070");
 * ```
 */
export function parseAddress(text: string, source: string): string {
  const trimmed = text.trim();
  try {
    const { hostname } = parseAddr(trimmed);
    parseHost(hostname, source);
  } catch {
    throw new ConfigValueError(source, text, "an address: host:port");
  }
  return trimmed;
}

/**
 * Addresses separated by commas (blanks around them ignored); at least one.
 *
 * @throws {ConfigValueError} when one is not `host:port`, or none is given.
 *
 * @example
 * ```ts
 * import { parseAddressList } from "./flags.ts";
 * console.assert(parseAddressList("a:1, b:2", "--connect").join() === "a:1,b:2");
 * ```
 */
export function parseAddressList(text: string, source: string): string[] {
  const parts = text.split(",").map((s) => s.trim()).filter(Boolean);
  const expected = "a list of host:port addresses separated by commas";
  if (parts.length === 0) throw new ConfigValueError(source, text, expected);
  for (const p of parts) {
    try {
      parseAddress(p, source);
    } catch {
      throw new ConfigValueError(source, text, expected);
    }
  }
  return parts;
}

/**
 * A whole number of at least `min` (digits only: no sign, no fraction, no exponent).
 *
 * @throws {ConfigValueError} otherwise, saying `what` it counts.
 *
 * @example
 * ```ts
 * import { parseCount } from "./flags.ts";
 * console.assert(parseCount("8", "--concurrency", 1, "jobs") === 8);
 * ```
 */
export function parseCount(text: string, source: string, min: number, what: string): number {
  const n = /^\d{1,15}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= min)) {
    throw new ConfigValueError(source, text, `a number of ${what}: an integer from ${min} up`);
  }
  return n;
}

/**
 * Handler threads: a whole number, 0 meaning the number of cores (returned as
 * `undefined`: the default).
 *
 * @throws {ConfigValueError} otherwise.
 *
 * @example
 * ```ts
 * import { parseThreads } from "./flags.ts";
 * console.assert(parseThreads("0", "EP_THREADS") === undefined);
 * console.assert(parseThreads("4", "--threads") === 4);
 * ```
 */
export function parseThreads(text: string, source: string): number | undefined {
  const n = /^\d{1,6}$/.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!(n >= 0)) {
    throw new ConfigValueError(
      source,
      text,
      "a number of threads: 0 (the number of cores) or more",
    );
  }
  return n === 0 ? undefined : n;
}

/**
 * A positive duration in milliseconds (fractions allowed).
 *
 * @throws {ConfigValueError} otherwise.
 *
 * @example
 * ```ts
 * import { parseMs } from "./flags.ts";
 * console.assert(parseMs("250", "--timeout") === 250);
 * ```
 */
export function parseMs(text: string, source: string): number {
  const n = /^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : NaN;
  if (!(n > 0 && Number.isFinite(n))) {
    throw new ConfigValueError(source, text, "a duration: milliseconds, more than 0");
  }
  return n;
}

/** The log levels, lowest first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/**
 * A log level.
 *
 * @throws {ConfigValueError} listing the levels otherwise.
 *
 * @example
 * ```ts
 * import { parseLogLevel } from "./flags.ts";
 * console.assert(parseLogLevel("debug", "--log-level") === "debug");
 * ```
 */
export function parseLogLevel(text: string, source: string): typeof LOG_LEVELS[number] {
  const level = LOG_LEVELS.find((l) => l === text.trim().toLowerCase());
  if (!level) {
    throw new ConfigValueError(source, text, `a level: ${LOG_LEVELS.join(", ")}`);
  }
  return level;
}

/**
 * A yes or no: `1`, `true`, `yes` or `0`, `false`, `no`.
 *
 * @throws {ConfigValueError} otherwise.
 *
 * @example
 * ```ts
 * import { parseBool } from "./flags.ts";
 * console.assert(parseBool("1", "EP_LOG_JSON") === true);
 * ```
 */
export function parseBool(text: string, source: string): boolean {
  const t = text.trim().toLowerCase();
  if (t === "1" || t === "true" || t === "yes") return true;
  if (t === "0" || t === "false" || t === "no" || t === "") return false;
  throw new ConfigValueError(source, text, "1 or 0");
}

/**
 * The balancer the commands that talk to one (`call`, `bench`, `status`) call: `--addr`,
 * else `--host`/`--port` (each falling back to its variable), else `EP_ADDR`, else
 * `EP_HOST`/`EP_PORT`, else 127.0.0.1:7070. A host that binds every interface (0.0.0.0,
 * ::) is called on loopback.
 *
 * @throws {ConfigValueError} on a bad value, naming where it came from.
 *
 * @example
 * ```ts
 * import { clientAddr } from "./flags.ts";
 * const env = (n: string) => ({ EP_PORT: "18300", EP_HOST: "0.0.0.0" } as Record<string, string>)[n];
 * console.assert(clientAddr({}, env) === "127.0.0.1:18300");
 * console.assert(clientAddr({ addr: "h:1" }, env) === "h:1");
 * ```
 */
export function clientAddr(
  values: { addr?: string; port?: string; host?: string },
  env: Env = processEnv,
): string {
  if (values.addr !== undefined) return parseAddress(values.addr, "--addr");
  const envAddr = env("EP_ADDR");
  if (values.port === undefined && values.host === undefined && envAddr !== undefined) {
    return parseAddress(envAddr, "EP_ADDR");
  }
  const p = settingText(values, "port", env);
  const h = settingText(values, "host", env);
  const port = p ? parsePort(p.text, p.source) : 7070;
  let host = h ? parseHost(h.text, h.source) : "127.0.0.1";
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** What the commands that run a node read: each setting resolved and checked. */
export interface RoleSettings {
  /** Where a balancer listens. */
  port: number;
  /** Where a balancer binds. */
  host: string;
  /** The balancers a worker pulls from. */
  connect: string[];
  /** Handler threads; `undefined`: the default (the number of cores, or the script's). */
  threads?: number;
  /** Jobs one handler thread runs at once (`--concurrency`). */
  concurrency?: number;
  /** Jobs beyond its slots a worker may hold (`--prefetch`). */
  prefetch?: number;
  /** `--prefetch-budget` in ms. */
  prefetchBudgetMs?: number;
  /** The EP token. */
  token?: string;
  /** The status token. */
  statusToken?: string;
  /** The lowest level logged. */
  logLevel: typeof LOG_LEVELS[number];
  /** JSON lines instead of text. */
  logJson: boolean;
  /** The flags given on the command line among port, host, connect, threads, token. */
  given: { port?: number; host?: string; connect?: string[]; threads?: boolean; token?: string };
}

/**
 * Resolves the settings of the commands that run a node from their flags and the
 * environment, checking every value: each one that is bad is one {@linkcode ConfigValueError}
 * in the returned list (the settings are then not usable).
 *
 * @example
 * ```ts
 * import { roleSettings } from "./flags.ts";
 * const env = (n: string) => (n === "EP_THREADS" ? "0" : undefined);
 * const { settings, problems } = roleSettings({ port: "18300" }, env);
 * console.assert(problems.length === 0 && settings.port === 18300 && settings.threads === undefined);
 * ```
 */
export function roleSettings(
  values: Record<string, unknown>,
  env: Env = processEnv,
): { settings: RoleSettings; problems: ConfigValueError[] } {
  const problems: ConfigValueError[] = [];
  const read = <T>(flag: string, parse: (text: string, source: string) => T, fallback: T) => {
    const t = settingText(values, flag, env);
    if (!t) return fallback;
    try {
      return parse(t.text, t.source);
    } catch (err) {
      if (!(err instanceof ConfigValueError)) throw err;
      problems.push(err);
      return fallback;
    }
  };
  const flagOnly = <T>(flag: string, parse: (text: string, source: string) => T) => {
    const v = values[flag];
    return typeof v === "string" ? read(flag, parse, undefined) : undefined;
  };
  const settings: RoleSettings = {
    port: read("port", parsePort, 7070),
    host: read("host", parseHost, "127.0.0.1"),
    connect: read("connect", parseAddressList, ["127.0.0.1:7070"]),
    threads: read("threads", parseThreads, undefined),
    concurrency: flagOnly("concurrency", (t, s) => parseCount(t, s, 1, "jobs")),
    prefetch: flagOnly("prefetch", (t, s) => parseCount(t, s, 0, "jobs")),
    prefetchBudgetMs: flagOnly("prefetch-budget", (t, s) => parseCount(t, s, 0, "milliseconds")),
    token: settingText(values, "token", env)?.text,
    statusToken: settingText(values, "status-token", env)?.text,
    logLevel: read("log-level", parseLogLevel, "info"),
    logJson: read("log-json", parseBool, false),
    given: {},
  };
  const given = (flag: string) => typeof values[flag] === "string";
  if (given("port")) settings.given.port = settings.port;
  if (given("host")) settings.given.host = settings.host;
  if (given("connect")) settings.given.connect = settings.connect;
  if (given("threads")) settings.given.threads = true;
  if (given("token")) settings.given.token = settings.token;
  return { settings, problems };
}
