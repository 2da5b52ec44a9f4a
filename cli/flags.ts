/**
 * Command-line flags that several `ep` commands share, and the parsers of their values.
 *
 * @module
 */

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
