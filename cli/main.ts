/**
 * The `ep` command line. `deno task ep <subcommand>`; the compiled binary is the same.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { configureLogging } from "../core/logging.ts";
import { type Node, startNode } from "../core/node/node.ts";
import type { MonitorOptions } from "../core/observe/monitor.ts";
import { toFileUrl } from "./_paths.ts";

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
  status               a balancer's services, workers and totals (ep status --help)
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
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        addr: { type: "string" },
        timeout: { type: "string" },
        token: { type: "string" },
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
        help: { type: "boolean", short: "h" },
      },
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
    case "run": {
      const script = parsed.positionals[1];
      if (!script) {
        console.error("ep run: missing script\n\nUsage: ep run <script.lua>");
        return 2;
      }
      return await (await import("../lua/control.ts")).runScript(script, {
        observe: observeOptions(values),
      });
    }
    case "start":
      return await (await import("../lua/control.ts")).runScript(
        new URL("../scripts/main.lua", import.meta.url).pathname,
        { observe: observeOptions(values) },
      );
    case "balancer":
    case "worker":
      return await runRole(command, values);
    default:
      console.error(`ep: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

interface RoleFlags {
  port?: string;
  host?: string;
  connect?: string;
  threads?: string;
  concurrency?: string;
  handlers?: string;
  prefetch?: string;
  "prefetch-budget"?: string;
  token?: string;
  name?: string;
  "access-log"?: boolean;
  "status-token"?: string;
  "status-public"?: boolean;
}

/** Runs `start`, `balancer` or `worker` until SIGINT/SIGTERM (a worker drains first). */
async function runRole(role: "balancer" | "worker", v: RoleFlags): Promise<number> {
  const env = (name: string) => Deno.env.get(name);
  const port = Number(v.port ?? env("EP_PORT") ?? 7070);
  const hostname = v.host ?? env("EP_HOST") ?? "127.0.0.1";
  const threads = Number(v.threads ?? env("EP_THREADS") ?? 0) || undefined;
  const handlers = v.handlers
    ? toFileUrl(v.handlers)
    : new URL("./demo_services.ts", import.meta.url).href;
  const connect = (v.connect ?? env("EP_CONNECT") ?? "127.0.0.1:7070").split(",").map((s) =>
    s.trim()
  ).filter(Boolean);
  let node: Node;
  try {
    node = await startNode({
      listen: role === "worker" ? undefined : { port, hostname },
      connect: role === "worker" ? connect : undefined,
      handlers: role === "balancer" ? undefined : {
        options: { handlers },
        threads,
        concurrency: Number(v.concurrency ?? 8),
      },
      token: v.token ?? env("EP_TOKEN"),
      name: v.name ?? `ep-worker-${Deno.pid}`,
      observe: observeOptions(v),
      prefetch: v.prefetch === undefined ? undefined : Number(v.prefetch),
      balancer: v["prefetch-budget"] === undefined
        ? undefined
        : { prefetchBudgetMs: Number(v["prefetch-budget"]) },
    });
  } catch (err) {
    console.error(`ep ${role}: ${(err as Error).message}`);
    return 1;
  }
  if (node.server) {
    console.log(`ep ${role} listening on ${hostname}:${node.server.addr.port} (HTTP/1.1 and EP)`);
  } else {
    console.log(`ep worker pulling from ${connect.join(", ")}`);
  }
  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      (role === "worker" ? node.drain() : node.close()).finally(resolve);
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  await stopped;
  return 0;
}

/** Status page and access log options from the flags (and `EP_STATUS_TOKEN`). */
export function observeOptions(
  v: { "access-log"?: boolean; "status-token"?: string; "status-public"?: boolean },
): MonitorOptions {
  return {
    version: "0.1.0",
    accessLog: v["access-log"] ?? false,
    access: {
      token: v["status-token"] ?? Deno.env.get("EP_STATUS_TOKEN"),
      public: v["status-public"] ?? false,
    },
  };
}
