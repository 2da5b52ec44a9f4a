/**
 * The `ep` command line. `deno task ep <subcommand>`; the compiled binary is the same.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { configure, getConsoleSink, getJsonLinesFormatter, type LogLevel } from "@logtape/logtape";
import { connect } from "./client.ts";
import { demoHandler } from "./demo.ts";
import { JobError } from "./job.ts";
import { serve } from "./server.ts";

const USAGE = `ep: a runtime for background micro services with a preemptive balancer

Usage: ep <command> [options]

Commands:
  demo                 serve the demo services (echo, hello) over HTTP and EP on one port
  call <service> [body | @file | -]
                       send one request over EP and print the reply body
  version              print the version
  help                 print this help

Common options:
  --port <n>           port to listen on (demo; default $EP_PORT or 7070)
  --host <addr>        address to bind (demo; default $EP_HOST or 127.0.0.1)
  --addr <host:port>   server to call (call; default 127.0.0.1:7070)
  --timeout <ms>       request timeout (call; default 30000)
  --token <t>          EP token (default $EP_TOKEN)
  --log-level <lvl>    trace, debug, info, warning, error (default info)
  --log-json           log JSON lines instead of text
`;

/** Exit codes of `ep call`, one per way a request can fail. */
export const EXIT = {
  ok: 0,
  usage: 2,
  error: 1,
  timeout: 3,
  overloaded: 4,
  noService: 5,
  workerLost: 6,
  refused: 7,
} as const;

/**
 * Runs the CLI with `args` (without the program name) and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { main } from "./cli.ts";
 * Deno.exit(await main(["version"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
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
        "log-level": { type: "string" },
        "log-json": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    console.error(`ep: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  const [command = "help", ...rest] = positionals;
  if (values.help || command === "help") {
    console.log(USAGE);
    return EXIT.ok;
  }
  await setupLogging(values["log-level"] ?? "info", values["log-json"] ?? false);
  switch (command) {
    case "version":
      console.log("ep 0.1.0");
      return EXIT.ok;
    case "demo": {
      const port = Number(values.port ?? Deno.env.get("EP_PORT") ?? 7070);
      const hostname = values.host ?? Deno.env.get("EP_HOST") ?? "127.0.0.1";
      const token = values.token ?? Deno.env.get("EP_TOKEN");
      const server = serve({ port, hostname, handler: demoHandler(), ep: { clientToken: token } });
      console.log(`ep demo listening on ${hostname}:${server.addr.port} (HTTP/1.1 and EP)`);
      const stop = () => server.close();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      await server.finished;
      return EXIT.ok;
    }
    case "call":
      return await call(rest, values);
    default:
      console.error(`ep: unknown command "${command}"\n\n${USAGE}`);
      return EXIT.usage;
  }
}

async function call(
  rest: string[],
  values: { addr?: string; timeout?: string; token?: string },
): Promise<number> {
  const [service, arg] = rest;
  if (!service) {
    console.error("ep call: missing service name");
    return EXIT.usage;
  }
  let body: Uint8Array = new Uint8Array(0);
  if (arg === "-") body = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  else if (arg?.startsWith("@")) body = await Deno.readFile(arg.slice(1));
  else if (arg !== undefined) body = new TextEncoder().encode(arg);
  const timeoutMs = Number(values.timeout ?? 30_000);
  let client;
  try {
    client = await connect(values.addr ?? "127.0.0.1:7070", {
      token: values.token ?? Deno.env.get("EP_TOKEN"),
      timeoutMs,
    });
  } catch (err) {
    console.error(`ep call: cannot connect: ${(err as Error).message}`);
    return err instanceof Deno.errors.ConnectionRefused ? EXIT.refused : EXIT.error;
  }
  try {
    const reply = await client.request(service, body, { timeoutMs });
    await Deno.stdout.write(reply.body);
    return reply.status >= 200 && reply.status < 300 ? EXIT.ok : EXIT.error;
  } catch (err) {
    console.error(`ep call: ${(err as Error).message}`);
    if (err instanceof JobError) {
      switch (err.kind) {
        case "timeout":
          return EXIT.timeout;
        case "overloaded":
          return EXIT.overloaded;
        case "no_service":
          return EXIT.noService;
        case "worker_lost":
          return EXIT.workerLost;
      }
    }
    return EXIT.error;
  } finally {
    client.close();
  }
}

async function setupLogging(level: string, json: boolean): Promise<void> {
  const levels: LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];
  const lowestLevel = (levels as string[]).includes(level) ? level as LogLevel : "info";
  await configure({
    reset: true,
    sinks: {
      console: json ? getConsoleSink({ formatter: getJsonLinesFormatter() }) : getConsoleSink(),
    },
    loggers: [
      { category: ["ep"], lowestLevel, sinks: ["console"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["console"] },
    ],
  });
}
