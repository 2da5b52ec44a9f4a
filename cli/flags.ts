/**
 * Command-line flags that several `ep` commands share, defined once, and the parsers of
 * their values. Each command spreads the groups it takes into its `parseArgs` options; its
 * own flags (`ep bench --rate`, …) stay with it, and so does its help text.
 *
 * @example
 * ```ts
 * import { parseArgs } from "node:util";
 * import { CLIENT_FLAGS, HELP_FLAG } from "./flags.ts";
 * const { values } = parseArgs({
 *   args: ["--addr", "127.0.0.1:7070", "-h"],
 *   options: { ...CLIENT_FLAGS, ...HELP_FLAG },
 * });
 * console.assert(values.addr === "127.0.0.1:7070" && values.help === true);
 * ```
 *
 * @module
 */
import type { ParseArgsOptionsConfig } from "node:util";

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
 * The flags of the commands that run a node (`run`, `start`, `balancer`, `worker`): where to
 * listen or connect, handler threads, prefetch, logging, and access to the status page.
 */
export const ROLE_FLAGS = {
  port: { type: "string" },
  host: { type: "string" },
  connect: { type: "string" },
  threads: { type: "string" },
  concurrency: { type: "string" },
  handlers: { type: "string" },
  prefetch: { type: "string" },
  "prefetch-budget": { type: "string" },
  name: { type: "string" },
  "log-level": { type: "string" },
  "log-json": { type: "boolean" },
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
