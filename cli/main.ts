/**
 * The `ep` command line: reads the command and hands it on. `call`, `bench` and `status`
 * parse their own flags (`call.ts`, `bench.ts`, `status.ts`); the commands that run a node
 * (`run`, `start`, `balancer`, `worker`) are in `run.ts`. Shared flags are in `flags.ts`.
 * `deno task ep <subcommand>`; the compiled binary is the same.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { configureLogging } from "../core/logging.ts";
import { CLIENT_FLAGS, HELP_FLAG, ROLE_FLAGS } from "./flags.ts";
import { runControlScript, runRole, start } from "./run.ts";

const USAGE = `ep: a runtime for background micro services with a preemptive balancer

Usage: ep <command> [options]

Commands:
  run <script.lua>     run a Lua control script: it decides what this process is
  start                all-in-one (scripts/main.lua): a balancer on port 7070 whose own
                       handler threads serve the Lua demo services (echo, json, sleep)
  balancer             a balancer: clients and module workers connect to it
  worker               a module worker with TypeScript handlers (--handlers; default the
                       TypeScript demo services): pulls jobs from --connect balancers
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

Common options:
  --port <n>           port to listen on (default $EP_PORT or 7070)
  --host <addr>        address to bind (default $EP_HOST or 127.0.0.1)
  --connect <a,b>      balancers a worker pulls from (default $EP_CONNECT or 127.0.0.1:7070)
  --threads <n>        handler threads (default $EP_THREADS or the number of cores)
  --concurrency <n>    jobs one handler thread runs at once (default 8)
  --handlers <file>    a TypeScript module exporting handlers by service name
                       (default: the demo services)
  --prefetch <n>       jobs beyond its slots a worker may hold (default 4)
  --prefetch-budget <ms>
                       balancer: beyond one, prefetched jobs wait in a worker at most about
                       this long, judged by the service's recent turnaround (default 3)
  --name <name>        the worker's name in balancer logs and stats
  --addr <host:port>   server to call (call; default 127.0.0.1:7070)
  --timeout <ms>       request timeout (call; default 30000)
  --token <t>          EP token (default $EP_TOKEN)
  --log-level <lvl>    trace, debug, info, warning, error (default info)
  --log-json           log JSON lines instead of text
  --access-log         log one line per job (category ep.access, level info)
  --status-token <t>   token required for the /_ep/ page, stats and metrics, and for EP
                       STATS_REQUEST (ep status --token), from every peer
                       (Authorization: Bearer <t> or ?token=<t>; default $EP_STATUS_TOKEN;
                       without one they are served to loopback peers only)
  --status-public      serve the /_ep/ page, stats, metrics and EP stats to every peer
                       without a token
  --expose-errors      send handlers' own error messages to clients (development; by
                       default a client gets "Handler failed (request <id>)" and the
                       message goes to the log)
`;

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
  // Subcommands with flags of their own parse their arguments themselves.
  if (args[0] === "call") return (await import("./call.ts")).callMain(args.slice(1));
  if (args[0] === "bench") return (await import("./bench.ts")).benchMain(args.slice(1));
  if (args[0] === "status") return (await import("./status.ts")).statusMain(args.slice(1));
  const admin = await import("./admin.ts");
  if (admin.ADMIN_VERBS.has(args[0])) return admin.adminMain(args[0], args.slice(1));
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { ...ROLE_FLAGS, ...CLIENT_FLAGS, ...HELP_FLAG },
    });
  } catch (err) {
    console.error(`ep: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command = "help"] = positionals;
  if (values.help || command === "help") {
    console.log(USAGE);
    return 0;
  }
  await configureLogging({
    level: values["log-level"],
    json: values["log-json"] ?? false,
    access: values["access-log"] ?? false,
    reset: true,
  });
  switch (command) {
    case "version":
      console.log("ep 0.1.0");
      return 0;
    case "run":
      return await runControlScript(positionals[1], values);
    case "start":
      return await start(values);
    case "balancer":
    case "worker":
      return await runRole(command, values);
    default:
      console.error(`ep: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}
