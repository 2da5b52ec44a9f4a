/**
 * `ep bench`: the load generator (being built).
 *
 * @module
 */

/**
 * Runs `ep bench` with its arguments and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { benchMain } from "./bench_cli.ts";
 * Deno.exit(await benchMain(["--help"]));
 * ```
 */
export function benchMain(_args: string[]): Promise<number> {
  console.error("ep bench: not available yet");
  return Promise.resolve(2);
}
