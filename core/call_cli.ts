/**
 * `ep call <service> [body | @file | -]`: sends one request and prints the reply body.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { connect } from "./client.ts";
import { JobError } from "./job.ts";

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
 * Runs `ep call` with its arguments and returns the exit code.
 *
 * @example
 * ```ts ignore
 * import { callMain } from "./call_cli.ts";
 * Deno.exit(await callMain(["echo", "hi", "--addr", "127.0.0.1:7070"]));
 * ```
 */
export async function callMain(args: string[]): Promise<number> {
  let values;
  let rest: string[];
  try {
    const parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        addr: { type: "string" },
        timeout: { type: "string" },
        token: { type: "string" },
      },
    });
    values = parsed.values;
    rest = parsed.positionals;
  } catch (err) {
    console.error(`ep call: ${(err as Error).message}`);
    return EXIT.usage;
  }
  return await call(rest, values);
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
