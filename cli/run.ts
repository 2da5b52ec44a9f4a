/**
 * The `ep` commands that run a node until a signal: `run <script.lua>` and `start` (a Lua
 * control script decides what the process is), `balancer` and `worker` (a role set by
 * flags, with TypeScript handlers).
 *
 * @module
 */
import { type Node, startNode } from "../core/node/node.ts";
import type { MonitorOptions } from "../core/observe/monitor.ts";
import { toFileUrl } from "./_paths.ts";

/** The flags a control script or a role reads (see `ROLE_FLAGS` in `flags.ts`). */
export interface RoleFlags {
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
  "expose-errors"?: boolean;
}

/**
 * `ep run <script.lua>`: runs a Lua control script and returns its exit code (2 without a
 * script).
 *
 * @example
 * ```ts ignore
 * import { runControlScript } from "./run.ts";
 * Deno.exit(await runControlScript("scripts/balancer.lua", {}));
 * ```
 */
export async function runControlScript(script: string | undefined, v: RoleFlags): Promise<number> {
  if (!script) {
    console.error("ep run: missing script\n\nUsage: ep run <script.lua>");
    return 2;
  }
  return await (await import("../lua/control.ts")).runScript(script, {
    observe: observeOptions(v),
    exposeErrors: v["expose-errors"],
  });
}

/**
 * `ep start`: the all-in-one control script (`scripts/main.lua`).
 *
 * @example
 * ```ts ignore
 * import { start } from "./run.ts";
 * Deno.exit(await start({}));
 * ```
 */
export async function start(v: RoleFlags): Promise<number> {
  return await (await import("../lua/control.ts")).runScript(
    new URL("../scripts/main.lua", import.meta.url).pathname,
    { observe: observeOptions(v), exposeErrors: v["expose-errors"] },
  );
}

/**
 * `ep balancer`, `ep worker`: runs the role until SIGINT/SIGTERM (a worker drains first) and
 * returns the exit code (1 when the node cannot start).
 *
 * @example
 * ```ts ignore
 * import { runRole } from "./run.ts";
 * Deno.exit(await runRole("balancer", { port: "7070" }));
 * ```
 */
export async function runRole(role: "balancer" | "worker", v: RoleFlags): Promise<number> {
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
      exposeErrors: v["expose-errors"],
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
/**
 * Status page and access log options from the flags (and `EP_STATUS_TOKEN`).
 *
 * @example
 * ```ts
 * import { observeOptions } from "./run.ts";
 * console.assert(observeOptions({ "status-public": true }).access?.public === true);
 * ```
 */
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
