/**
 * `ep check [script.lua]` (like `nginx -t`, `haproxy -c`): checks what `ep run` would run,
 * and starts nothing. In order, each step only when the ones before found nothing wrong:
 *
 * 1. the settings, from flags and environment (`EP_PORT`, `EP_THREADS`, …; `flags.ts`);
 * 2. the control script: loaded and run in a Lua engine as `ep run` does (its `ep.listen`,
 *    `ep.service`, `ep.config` … checked as they are called), its timers never started;
 * 3. its connect addresses, and every service: each service file read and loaded in an
 *    engine of its own, as a handler thread loads it (an inline service through the script);
 * 4. the listen address: bound, then released at once.
 *
 * Exit 0 with one line `<script>: ok (…)` on stdout, or 1 with one line per problem on
 * stderr; 2 for a usage error.
 *
 * @module
 */
import { announce, configureLogging } from "../core/logging.ts";
import { listen } from "../core/net/transport.ts";
import { applyOverrides, type ControlConfig, loadControl } from "../lua/control.ts";
import { LuaError } from "../lua/errors.ts";
import { createHandlerRuntime, type LuaThreadOptions } from "../lua/thread.ts";
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  HELP_FLAG,
  LOG_FLAGS,
  parseAddress,
  parseFlags,
  ROLE_FLAGS,
  roleSettings,
} from "./flags.ts";
import { quote } from "./errors.ts";
import { flagsToEnv, overridesOf, START_SCRIPT } from "./run.ts";

const USAGE = `ep check: check a control script and start nothing (like nginx -t)

Usage: ep check [script.lua] [options]

  script.lua           the control script (default scripts/main.lua, what ep start runs)

Checks the settings (flags and environment variables, as ep run reads them: ep --help), loads
the control script and every service file in Lua engines as ep run would, checks the
addresses it connects to, and binds the listen address and releases it. Nothing is started:
no thread, no timer, no connection.

Options: the options of ep run (--port, --host, --connect, --threads, --token, --log-level,
…), which replace what the script sets as they would for ep run.
  -h, --help           this help

Exit codes: 0 ok (one line "<script>: ok (...)"), 1 problems (one line each, on stderr),
2 usage.
`;

/**
 * Runs `ep check` with its arguments and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { checkMain } from "./check.ts";
 * Deno.exit(await checkMain(["scripts/main.lua"]));
 * ```
 */
export async function checkMain(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseFlags(args, {
      ...ADDRESS_FLAGS,
      ...ROLE_FLAGS,
      ...LOG_FLAGS,
      token: CLIENT_FLAGS.token,
      ...HELP_FLAG,
    });
  } catch (err) {
    console.error(`ep check: ${(err as Error).message} (see ep check --help)`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) {
    console.error(`ep check: Unexpected argument ${quote(positionals[1])} (see ep check --help)`);
    return 2;
  }
  const script = positionals[0] ?? START_SCRIPT;
  const { settings, problems } = roleSettings(values);
  await configureLogging({
    level: problems.some((p) => p.source.includes("log-level") || p.source === "EP_LOG_LEVEL")
      ? "info"
      : settings.logLevel,
    json: settings.logJson,
    reset: true,
  });
  const report = (lines: string[]) => {
    for (const line of lines) announce(`ep check: ${line}`, { error: true });
    return 1;
  };
  // A script reads its settings through ep.env: with a bad one, what it would do is moot.
  if (problems.length > 0) return report(problems.map((p) => p.message));
  flagsToEnv(values);

  let config: ControlConfig;
  let dir: string;
  let real: string;
  try {
    real = await Deno.realPath(script);
    dir = real.slice(0, real.lastIndexOf("/") + 1);
    const control = await loadControl(real);
    config = control.config;
    await control.runtime.close();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.PermissionDenied) {
      return report([`Cannot read ${script}: ${osReason(err)}`]);
    }
    return report([err instanceof LuaError ? err.message : (err as Error).message]);
  }
  const notes = applyOverrides(config, overridesOf(settings));
  for (const note of notes) announce(`ep check: note: ${note}`, { error: true });
  if (config.exitCode !== undefined) {
    announce(`${script}: ok (the script exits with code ${config.exitCode} at once)`);
    return 0;
  }

  const found: string[] = [];
  if (!config.listen && config.connect.length === 0 && config.services.length > 0) {
    found.push("The script declares services but neither ep.listen nor ep.connect");
  }
  for (const addr of config.connect) {
    try {
      parseAddress(addr, "ep.connect");
    } catch (err) {
      found.push((err as Error).message);
    }
  }
  for (const s of config.services) {
    const problem = await checkService(s, real, dir);
    if (problem) found.push(`service ${quote(s.name)}: ${problem}`);
  }
  if (config.listen) {
    try {
      listen({ port: config.listen.port, hostname: config.listen.hostname }).close();
    } catch (err) {
      found.push((err as Error).message);
    }
  }
  if (found.length > 0) return report(found);
  announce(`${script}: ok (${summary(config)})`);
  return 0;
}

/**
 * Loads one service as a handler thread would (its file read, compiled and run, its handler
 * taken; an inline one through the control script), in an engine of its own; returns what
 * is wrong, or null.
 */
async function checkService(
  s: ControlConfig["services"][number],
  script: string,
  dir: string,
): Promise<string | null> {
  let file: string | undefined;
  if (!s.inline) {
    file = new URL(s.file, `file://${dir}`).pathname;
    try {
      const info = await Deno.stat(file);
      if (!info.isFile) return `${s.file} is not a file`;
    } catch (err) {
      return `Cannot read ${s.file}: ${osReason(err)}`;
    }
  }
  const options: LuaThreadOptions = {
    services: [{ name: s.name, file }],
    script,
    scriptDir: dir,
  };
  try {
    const runtime = await createHandlerRuntime({
      thread: 0,
      options,
      interrupt: new Int32Array(new SharedArrayBuffer(4)),
    });
    await runtime.close?.();
    return null;
  } catch (err) {
    return err instanceof LuaError ? err.message : (err as Error).message;
  }
}

/** What the script makes of the process, in a few words. */
function summary(c: ControlConfig): string {
  const parts: string[] = [];
  if (c.listen) parts.push(`a balancer on ${c.listen.hostname}:${c.listen.port}`);
  if (c.connect.length > 0) parts.push(`a worker of ${c.connect.join(", ")}`);
  if (c.services.length > 0) {
    parts.push(`services ${c.services.map((s) => s.name).join(", ")}`);
    const threads = c.threads ?? navigator.hardwareConcurrency;
    parts.push(`${threads} thread${threads === 1 ? "" : "s"}`);
  }
  const upstreams = Object.keys(c.upstreams);
  if (upstreams.length > 0) parts.push(`upstreams ${upstreams.join(", ")}`);
  return parts.join("; ") || "nothing to run";
}

/** An OS error's reason without the call and path Deno appends (`: stat '/x'`). */
function osReason(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file or directory";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  const message = (err as Error).message.replace(/: \w+ '.*'$/, "");
  return message.charAt(0).toLowerCase() + message.slice(1);
}
