/**
 * The `ep` command line: finds the command and hands it on. `call`, `bench`, `status` and
 * `check` parse their own flags (`call.ts`, `bench.ts`, `status.ts`, `check.ts`); the
 * commands that run a node (`run`, `start`, `balancer`, `worker`) are in `run.ts`. Shared
 * flags and the configuration rule (flag > environment > default) are in `flags.ts`.
 * `deno task ep <subcommand>`; the compiled binary is the same.
 *
 * @module
 */
import { requestLowLatency } from "../core/threads/latency_hints.ts";
import { configureLogging } from "../core/logging.ts";
import {
  ADDRESS_FLAGS,
  CLIENT_FLAGS,
  HELP_FLAG,
  JSON_FLAG,
  LOG_FLAGS,
  parseFlags,
  REQUEST_FLAGS,
  ROLE_FLAGS,
  roleSettings,
  settingsTable,
} from "./flags.ts";
import { quote } from "./errors.ts";
import { runControlScript, runRole, start } from "./run.ts";

const USAGE = `ep: a runtime for background micro services with a preemptive balancer

Usage: ep <command> [options]     (options may come before or after the command)

Commands:
  run <script.lua>     run a Lua control script: it decides what this process is
  start                all-in-one (scripts/main.lua): a balancer on port 7070 whose own
                       handler threads serve the Lua demo services (echo, json, sleep)
  balancer             a balancer: clients and module workers connect to it
  worker               a module worker with TypeScript handlers (--handlers; default the
                       TypeScript demo services): pulls jobs from --connect balancers
  check [script.lua]   check a control script (default scripts/main.lua) and its service
                       files, the settings and the listen port; start nothing (ep check --help)
  call <service> [body | @file | -]
                       send one request and print the reply body (ep call --help)
  bench                load generator (ep bench --help)
  status               a balancer's services, workers and totals (ep status --help;
                       --watch refreshes every second)
  workers, services, errors
                       a balancer's workers (state, counts, last error), services
                       (descriptions) and last errors with request ids (ep workers --help)
  drain|disable|enable <worker>
                       take a worker out of rotation, or put it back
  set <service> max_queue <n>
                       bound a service's queue at run time
  version              print the version
  help                 print this help

Configuration: a flag beats its environment variable, which beats the default, with the
same names in every command. The commands that run a control script (run, start, check) set
the variable of each flag given, for the script's ep.env, and a flag replaces what the script
itself sets (--port the port of its ep.listen, --threads its ep.threads, --connect its
ep.connect, --token its ep.token). A bad value stops the command before it starts (exit 2).

${settingsTable()}

More options of run, start, balancer and worker:
  --concurrency <n>    jobs one handler thread runs at once (worker; default 8)
  --handlers <file>    a TypeScript module exporting handlers by service name
                       (worker; default: the demo services)
  --prefetch <n>       jobs beyond its slots a worker may hold (default 4)
  --prefetch-budget <ms>
                       balancer: beyond one, prefetched jobs wait in a worker at most about
                       this long, judged by the service's recent turnaround (default 3)
  --name <name>        the worker's name in balancer logs and stats
  --access-log         log one line per job: client, request, status, bytes, id (ep.access)
  --status-public      serve the /_ep/ page, stats, metrics and EP stats to every peer
                       without a token
  --expose-errors      send handlers' own error messages to clients (development; by
                       default a client gets "Handler failed (request <id>)" and the
                       message goes to the log)
  -h, --help           this help
`;

/** Every flag a command may take, to find the command among the arguments. */
const ALL_FLAGS = {
  ...HELP_FLAG,
  ...CLIENT_FLAGS,
  ...REQUEST_FLAGS,
  ...JSON_FLAG,
  ...ADDRESS_FLAGS,
  ...LOG_FLAGS,
  ...ROLE_FLAGS,
} as Record<string, { type: "string" | "boolean" }>;

/** The commands that parse their own flags. */
const SUBCOMMANDS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  call: async () => (await import("./call.ts")).callMain,
  bench: async () => (await import("./bench.ts")).benchMain,
  status: async () => (await import("./status.ts")).statusMain,
  check: async () => (await import("./check.ts")).checkMain,
};

/** Where the command word is: the first argument that is neither a flag nor a flag's value. */
function commandIndex(args: string[]): number {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") return -1;
    if (!a.startsWith("-") || a === "-") return i;
    if (a.startsWith("--") && !a.includes("=") && ALL_FLAGS[a.slice(2)]?.type === "string") i++;
  }
  return -1;
}

/**
 * Runs the CLI with `args` (without the program name) and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "./main.ts";
 * Deno.exit(await main(["version"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  // The main thread serves the sockets: its wake-ups are on every job's path (latency_hints.ts).
  requestLowLatency();
  // Subcommands with flags of their own parse their arguments themselves (flags given
  // before the command word included: `ep --port 7071 call echo hi`).
  const at = commandIndex(args);
  const sub = at >= 0 ? SUBCOMMANDS[args[at]] : undefined;
  if (sub) return (await sub())([...args.slice(0, at), ...args.slice(at + 1)]);
  if (at >= 0) {
    const admin = await import("./admin.ts");
    if (admin.ADMIN_VERBS.has(args[at])) {
      return admin.adminMain(args[at], [...args.slice(0, at), ...args.slice(at + 1)]);
    }
  }
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
    console.error(`ep: ${(err as Error).message} (see ep --help)`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command = "help"] = positionals;
  if (values.help || command === "help") {
    console.log(USAGE);
    return 0;
  }
  if (command === "version") {
    console.log("ep 0.1.0");
    return 0;
  }
  if (!["run", "start", "balancer", "worker"].includes(command)) {
    console.error(`ep: Unknown command ${quote(command)} (see ep --help)`);
    return 2;
  }
  const extra = positionals.slice(command === "run" ? 2 : 1);
  if (extra.length > 0) {
    console.error(`ep ${command}: Unexpected argument ${quote(extra[0])} (see ep --help)`);
    return 2;
  }
  // Every setting checked before anything starts: one line per bad value.
  const { settings, problems } = roleSettings(values);
  if (problems.length > 0) {
    for (const p of problems) console.error(`ep ${command}: ${p.message}`);
    return 2;
  }
  await configureLogging({
    level: settings.logLevel,
    json: settings.logJson,
    access: values["access-log"] ?? false,
    reset: true,
  });
  switch (command) {
    case "run":
      return await runControlScript(positionals[1], settings, values);
    case "start":
      return await start(settings, values);
    default:
      return await runRole(command as "balancer" | "worker", settings, values);
  }
}
