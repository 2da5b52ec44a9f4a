/**
 * The errors of the `ep` command line. Each is one line for the operator; the CLI prints
 * it after the command's name and exits 2.
 *
 * @module
 */
import { inertJson } from "../core/escape.ts";

/**
 * The command line is not one the command takes: an unknown option, an option without its
 * value, an argument too many.
 *
 * @example
 * ```ts
 * import { UsageError } from "./errors.ts";
 * const err = new UsageError('Unknown option "--bogus"');
 * console.assert(err.name === "UsageError");
 * ```
 */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/**
 * A setting's value, from a flag or an environment variable, is not one it can take
 * (`--port "abc"`, `EP_THREADS "-1"`). `source` says where it came from.
 *
 * @example
 * ```ts
 * import { ConfigValueError } from "./errors.ts";
 * const err = new ConfigValueError("EP_PORT", "abc", "a port: an integer from 0 to 65535");
 * console.assert(err.message === 'EP_PORT "abc" is not a port: an integer from 0 to 65535');
 * console.assert(err.source === "EP_PORT" && err.name === "ConfigValueError");
 * ```
 */
export class ConfigValueError extends Error {
  /** The flag (`--port`) or environment variable (`EP_PORT`) the value came from. */
  readonly source: string;
  /** The value, as given. */
  readonly value: string;
  /** Creates the error: `<source> "<value>" is not <expected>`. */
  constructor(source: string, value: string, expected: string, options?: ErrorOptions) {
    super(`${source} ${quote(value)} is not ${expected}`, options);
    this.name = "ConfigValueError";
    this.source = source;
    this.value = value;
  }
}

/**
 * `text` in double quotes, on one line and inert (JSON's escapes, and `\uXXXX` for what JSON
 * leaves raw: C1 controls, line separators, bidi controls).
 *
 * @example
 * ```ts
 * import { quote } from "./errors.ts";
 * console.assert(quote("a\nb") === '"a\\nb"');
 * ```
 */
export function quote(text: string): string {
  return inertJson(JSON.stringify(text));
}
